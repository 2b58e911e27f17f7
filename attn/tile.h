/* tile.h: internal to attn/. The fused online-softmax kernel every streaming method runs on
 * (full_stream, block_sparse, etc, lsh): one tile of up to max_rows queries against a stream
 * of key/value tiles of up to max_cols keys, FlashAttention-2 order.
 *
 * Layout, and why: the tile keeps its queries transposed, (d, ld): lanes = rows rounded up
 * to TILE_LANES, so queries run along the vector lanes, and a stride ld one cache line more. Then S^T = K Q^T and O^T += V^T P^T
 * read K and V a row at a time, by broadcasting single elements: no packing, no transposed
 * copy of K, and any key row can come from anywhere. Every row argument is therefore a base
 * pointer plus an optional int32 index list (row r is base + idx[r] * ld), which is how lsh
 * gathers its sorted buckets and block_sparse its random blocks without copying Q, K or V.
 *
 * Per tile:
 *   tile_begin(t, q, ...);                          transposes and scales the queries
 *   for each key tile: s = tile_scores(t, k, ...);  s[j * t->ld + r] = score of query r, key j
 *                      <mask s in place: -INFINITY, or a finite penalty>
 *                      tile_accumulate(t, v, ...);  folds the tile into the running softmax
 *   tile_end(t, out, ...);                          out = O / l, lse = m + log l
 * A query row that only ever saw -INFINITY gets output 0 and lse -INFINITY. */
#ifndef ATTN_TILE_H
#define ATTN_TILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attn.h"
#include "kernels.h"

#define TILE_LANES 32 /* queries per micro-tile: two 16-float vectors */

typedef struct kern_tile {
    int max_rows, max_cols, d;
    int rows, cols;     /* current query and key counts */
    int lanes, ld;      /* rows rounded up to TILE_LANES (the lanes computed); the stride */
    float *qt;          /* (d, ld) scaled queries, transposed; padding lanes are zero */
    float *st;          /* (max_cols, ld) scores, then probabilities, transposed */
    float *ot;          /* (d, ld) output accumulator, transposed */
    float *m, *l;       /* (ld) running max and running sum */
    attn_stats *stats;  /* the calling thread's own counters (tile_init zeroes them), or NULL */
} kern_tile;

/* Workspace bytes of one tile. */
size_t tile_bytes(int max_rows, int max_cols, int d);
/* Carves a tile from a workspace cursor (see kernels.h). Its counters start unset (NULL): a
 * method that counts points t->stats at a thread-local attn_stats and adds that to the
 * call's (attn_stats_add) when its parallel region ends. */
void tile_init(kern_tile *t, kern_cursor *cursor, int max_rows, int max_cols, int d);

/* Starts a query tile: rows queries, row r = q + (qidx ? qidx[r] : r) * ldq, times scale. */
void tile_begin(kern_tile *t, const float *q, int64_t ldq, const int32_t *qidx, int rows,
                float scale);
/* Scores of the current queries against `cols` keys, key j = k + (kidx ? kidx[j] : j) * ldk.
 * Returns the (cols, ld) transposed score tile for the caller to mask. */
float *tile_scores(kern_tile *t, const float *k, int64_t ldk, const int32_t *kidx, int cols);
/* Online-softmax update with the (masked) score tile and the matching values. */
void tile_accumulate(kern_tile *t, const float *v, int64_t ldv, const int32_t *vidx);
/* Writes the tile's rows: out row r = out + (oidx ? oidx[r] : r) * ldo, and lse[row] = m + log l
 * (lse may be NULL). */
void tile_end(kern_tile *t, float *out, int64_t ldo, const int32_t *oidx, float *lse);
/* Like tile_end, but keeps each output row's softmax state as a running max m[row] and a sum
 * l[row] (of exp(logit - m)), and with `merge` combines this tile's candidates with what the
 * rows already hold, as one softmax over both sets (how lsh combines its hash rounds).
 * Why not merge through the lse: with a finite mask penalty such as -1e5 a float lse keeps
 * only ~1e-2 absolute precision, and the merge weights would inherit that error; differences
 * of maxes of the same magnitude are exact. lse = m + log l once all sets are merged. */
void tile_end_merge(kern_tile *t, float *out, int64_t ldo, const int32_t *oidx, float *m,
                    float *l, bool merge);

/* Gathered rows (lsh's buckets, block_sparse's random blocks) sit anywhere in memory, where
 * the hardware prefetcher cannot guess them: asks for every line of rows idx[0..count) at
 * once, so their cache misses overlap. tile_scores and tile_accumulate do it for their own
 * rows; a caller that knows its next rows earlier (the values while the scores run) calls it
 * sooner. Does nothing when idx is NULL (contiguous rows prefetch themselves). */
void tile_prefetch_rows(const float *base, int64_t ld, const int32_t *idx, int count, int d);

/* Tests only: run the portable C path instead of the vector one. */
void tile_force_portable(bool on);
/* The path the kernel runs, chosen when it was compiled (-march): "avx512", "avx2" or
 * "portable". Every record's context names it. */
const char *tile_isa(void);

#endif
