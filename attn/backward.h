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
 * them. */
#ifndef ATTN_BACKWARD_H
#define ATTN_BACKWARD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attn.h"
#include "kernels.h"

/* One computed unit's partials, kept until they are added in order (see bwd_run_units). */
typedef struct bwd_slot {
    float *part_q, *part_k, *part_v; /* partial dq (max_rows, d), dk and dv (max_cols, d) */
    int32_t *qrows, *krows;          /* the unit's row lists, copied */
    int rows, cols;
    _Atomic int busy;                /* from the claim until the partials were added */
} bwd_slot;

#define BWD_SLOTS 4 /* units a thread may have computed ahead of the adds */

typedef struct bwd_tile {
    int max_rows, max_cols, d;
    float *q, *k, *v, *dout;   /* gathered rows */
    float *s, *dp;             /* (max_rows, max_cols): scores then P; dP then dS */
    float *part_q, *part_k, *part_v; /* where the next compute writes: a slot's */
    float *lse, *dd;           /* (max_rows) gathered lse and D */
    int32_t *qrows, *krows;    /* row lists for callers that stream contiguous ranges */
    bwd_slot slots[BWD_SLOTS];
    attn_stats *stats;         /* the thread's own counters (bwd_tile_init sets NULL), or NULL */
} bwd_tile;

typedef struct bwd_io {
    const void *q, *k, *v, *dout; /* one head: (n, d), stored as dtype */
    const float *lse, *D;      /* (n) */
    const float *kscale;       /* optional: key row j is k[j] * kscale[j] (lsh's normalized keys) */
    float *dq, *dk, *dv;       /* one head, accumulated into: fp32 always (see bwd_head) */
    attn_dtype dtype;
    int d;
    float scale;
} bwd_io;

/* A head's workspace, shared by the team: D, and in bf16 the fp32 accumulators of dq, dk and
 * dv, which the driver rounds into the bf16 gradients once the head is done (a gradient row
 * gets partials from many tiles; adding them in bf16 would round at every add). In fp32 the
 * gradients themselves accumulate. */
typedef struct bwd_head {
    float *D;
    float *acc; /* bf16: (3, n, d) for dq, dk, dv; NULL in fp32 */
} bwd_head;

/* Bytes of a head's workspace for shape s; carving it from a cursor. */
size_t bwd_head_bytes(const attn_shape *s);
bwd_head bwd_head_carve(const attn_shape *s, kern_cursor *cursor);

/* Masks a row-major score tile s (rows, cols; leading dimension lds) of query rows qrows
 * against key rows krows. grad = 0: set the masked logits (-INFINITY, or a replacing
 * constant); the callback may also change a row's shift (P = exp(s - shift), the saved lse
 * by default) when it can state that row's probabilities more precisely. grad = 1: s holds
 * dS: zero it wherever the logit was replaced by a constant (no gradient reaches q or k). */
typedef void (*bwd_mask_fn)(const void *ctx, float *s, int lds, int rows, int cols,
                            const int32_t *qrows, const int32_t *krows, float *shift, int grad);

size_t bwd_tile_bytes(int max_rows, int max_cols, int d);
void bwd_tile_init(bwd_tile *t, kern_cursor *cursor, int max_rows, int max_cols, int d);
/* One query tile against one key tile, into the tile's partial dq, dk, dv; mask may be NULL. */
void bwd_tile_compute(bwd_tile *t, const bwd_io *io, const int32_t *qrows, int rows,
                      const int32_t *krows, int cols, bwd_mask_fn mask, const void *ctx);
/* Adds the partials of the last compute to the head's dq, dk, dv rows. */
void bwd_tile_scatter(const bwd_tile *t, const bwd_io *io, const int32_t *qrows, int rows,
                      const int32_t *krows, int cols);
/* Fills a row list with first, first + 1, ... (count rows); returns it. */
int32_t *bwd_range(int32_t *rows, int64_t first, int count);
/* D[i] = dot(dout[i], out[i]) for the n rows of one head, both stored as dtype. */
void bwd_rowdot(const void *dout, const void *out, attn_dtype dtype, int64_t n, int d, float *D);

struct attn_grads;
/* Head bh of a backward call as a bwd_io with the given softmax scale, its D and, in bf16, its
 * accumulators (from h). */
bwd_io bwd_head_io(const struct attn_grads *g, const attn_shape *s, int64_t bh, float scale,
                   const bwd_head *h);
/* Starts head bh: zeroes what its dq, dk, dv accumulate into and computes its D, the rows
 * split over the team (an `omp for`: call from every thread of a parallel region). */
void bwd_head_prepare(const struct attn_grads *g, const attn_shape *s, int64_t bh,
                      const bwd_head *h);
/* Ends head bh: in bf16, rounds the accumulators into its dq, dk, dv (an `omp for`); nothing
 * in fp32. */
void bwd_head_finish(const struct attn_grads *g, const attn_shape *s, int64_t bh,
                     const bwd_head *h);

/* Parallel and deterministic: a method lists one head's tile pairs (units) in a fixed order
 * through a generator; the team computes units in parallel and adds their partials to dq, dk
 * and dv in that order, one unit at a time, so every gradient element is summed in the same
 * order whatever the thread count (bitwise equal), and one head uses every thread. The adds
 * are O((rows + cols) d) against the compute's O(rows cols d). */
typedef struct bwd_unit {
    const int32_t *qrows, *krows; /* may point into the claiming thread's t->qrows, t->krows */
    int rows, cols;
    bwd_mask_fn mask;             /* or NULL */
    const void *ctx;
} bwd_unit;
/* Fills *u with the next unit, or returns false when the head has none left. Called under a
 * lock, in unit order, with the claiming thread's tile (for row lists to fill). */
typedef bool (*bwd_next_fn)(void *state, bwd_tile *t, bwd_unit *u);

#define BWD_RING 4096 /* units computed and not yet added, at most: threads x BWD_SLOTS, so
                         a team of at most 1024 threads */

typedef struct bwd_order {
    int64_t claimed;                     /* units handed out (under the claim lock) */
    _Atomic int64_t turn;                /* the unit whose partials are added next */
    bwd_slot *_Atomic ready[BWD_RING];   /* unit u's slot once computed, at u % BWD_RING */
    atomic_flag adding;                  /* held by the one thread adding partials */
} bwd_order;

/* Resets the order for a new head (one thread, then a barrier). */
void bwd_order_init(bwd_order *o);

/* ---- the driver: one backward pass, head by head, over the team ------------------------------ */

/* What a method says of its backward; bwd_drive runs the rest, the same for every method:
 * a parallel region, each thread's workspace and tile, and per head its setup, its units over
 * the team in a fixed order, its finish, and the counted work. */
typedef struct bwd_plan {
    int max_rows, max_cols;  /* the largest unit */
    size_t thread_extra;     /* bytes at the start of each thread's workspace, before its tile,
                                for the method (lsh's sort counters) */
    bool prepare;            /* zero the head's dq, dk, dv and compute its D (bwd_head_prepare);
                                false when the method did (ring, once for all its blocks) */
    float scale;             /* the scores' scale in the default io */
    void *state;             /* the method's, passed to every call below */
    /* The head's io; NULL: bwd_head_io(g, s, bh, scale, head). Every thread, after prepare. */
    void (*head_io)(void *state, const struct attn_grads *g, int64_t bh, bwd_io *io);
    /* Every thread of the team, after the io (may use omp for; may change io's fields, and
     * use its thread's extra bytes). Optional. */
    void (*head_begin)(void *state, int64_t bh, bwd_io *io, void *extra);
    /* One thread: the unit generator's state for head bh; then the team runs `next`. */
    void (*head_units)(void *state, int64_t bh, const bwd_io *io);
    bwd_next_fn next;
    /* Every thread, after all the head's units were added. Optional. */
    void (*head_end)(void *state, int64_t bh, const bwd_io *io);
} bwd_plan;

/* Each thread's workspace: its extra bytes and its tile. */
size_t bwd_thread_bytes(const bwd_plan *plan, int d);
/* Runs the backward of every head of s as plan says, with nthreads threads whose workspaces
 * follow one another from `threads` (bwd_thread_bytes each); head is the head's workspace
 * (bwd_head_carve). With prepare false, the method zeroed and rounds the gradients itself. */
void bwd_drive(const attn_shape *s, const struct attn_grads *g, const bwd_plan *plan,
               const bwd_head *head, char *threads, int nthreads);
/* Runs every unit `next` yields; call from every thread of the team, each with its own tile.
 * A thread computes into one of its BWD_SLOTS partial buffers and publishes it; whichever
 * thread finds the next unit in line published adds it (and those after it), so a thread
 * waits only when all its slots hold units not yet added: units of unequal cost (ETC's, a
 * global row's) do not stall the team. Returns when the head's every unit was added. */
void bwd_run_units(bwd_tile *t, const bwd_io *io, bwd_next_fn next, void *state, bwd_order *o);

#endif
