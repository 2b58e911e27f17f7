/* backward.h: internal to attn/. The backward pass of one query tile against one key tile,
 * shared by the streaming methods (full_stream, lsh, block_sparse, etc). It recomputes the
 * probabilities from the saved logsumexp instead of storing them (FlashAttention's backward):
 *
 *   S = scale Q K^T (masked as the forward masked it),  P = exp(S - lse),
 *   dV += P^T dO,  dS = P o (dO V^T - D)  with D = rowsum(dO o O),
 *   dQ += scale dS K,  dK += dS^T (scale Q)
 *
 * Rows come from anywhere by index (a head-relative row list for queries and keys) and the
 * results are added back to their rows, so a method only says which keys each query tile saw.
 * Duplicate key rows in one tile (LSH's rounds) are added once per copy, as the forward counted
 * them. Not thread-safe on shared outputs: callers give each head to one thread. */
#ifndef ATTN_BACKWARD_H
#define ATTN_BACKWARD_H

#include <stddef.h>
#include <stdint.h>

typedef struct bwd_tile {
    int max_rows, max_cols, d;
    float *q, *k, *v, *dout;   /* gathered rows */
    float *s, *dp;             /* (max_rows, max_cols): scores then P; dP then dS */
    float *part_q, *part_k, *part_v; /* partial dq (max_rows, d), dk and dv (max_cols, d) */
    float *lse, *dd;           /* (max_rows) gathered lse and D */
    int32_t *qrows, *krows;    /* row lists for callers that stream contiguous ranges */
} bwd_tile;

typedef struct bwd_io {
    const float *q, *k, *v, *dout, *lse, *D; /* one head: (n, d), (n) */
    const float *kscale;       /* optional: key row j is k[j] * kscale[j] (lsh's normalized keys) */
    float *dq, *dk, *dv;       /* one head, accumulated into */
    int d;
    float scale;
} bwd_io;

/* Masks a row-major score tile s (rows, cols; leading dimension lds) of query rows qrows
 * against key rows krows. grad = 0: set the masked logits (-INFINITY, or a replacing
 * constant); the callback may also change a row's shift (P = exp(s - shift), the saved lse
 * by default) when it can state that row's probabilities more precisely. grad = 1: s holds
 * dS: zero it wherever the logit was replaced by a constant (no gradient reaches q or k). */
typedef void (*bwd_mask_fn)(const void *ctx, float *s, int lds, int rows, int cols,
                            const int32_t *qrows, const int32_t *krows, float *shift, int grad);

size_t bwd_tile_bytes(int max_rows, int max_cols, int d);
void bwd_tile_init(bwd_tile *t, char **cursor, int max_rows, int max_cols, int d);
/* One query tile against one key tile; mask may be NULL. */
void bwd_tile_run(bwd_tile *t, const bwd_io *io, const int32_t *qrows, int rows,
                  const int32_t *krows, int cols, bwd_mask_fn mask, const void *ctx);
/* Fills a row list with first, first + 1, ... (count rows); returns it. */
int32_t *bwd_range(int32_t *rows, int64_t first, int count);
/* D[i] = dot(dout[i], out[i]) for the n rows of one head. */
void bwd_rowdot(const float *dout, const float *out, int64_t n, int d, float *D);

struct attn_grads;
/* Starts head bh of a backward call: zeroes its dq, dk, dv, computes its D into D (n floats)
 * and returns the head as a bwd_io with the given softmax scale. */
bwd_io bwd_head(const struct attn_grads *g, int64_t bh, int64_t n, int d, float scale, float *D);

#endif
