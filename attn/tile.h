/* tile.h: internal to attn/. The fused online-softmax kernel every streaming method runs on
 * (full_stream, block_sparse, etc, lsh, ring): one tile of up to max_rows queries against a
 * stream of key/value tiles of up to max_cols keys, FlashAttention-2 order.
 *
 * Layout, and why: the tile keeps its queries transposed, (d, ld): lanes = rows rounded up to
 * TILE_LANES, so queries run along the vector lanes, and a stride ld one cache line more.
 * tile_attend works a strip of query lanes at a time (32 with AVX-512, 16 with AVX2) against
 * groups of a few keys: the group's scores S^T = K Q^T are accumulated in registers by
 * broadcasting single elements of K, masked there, turned into probabilities there (the
 * online softmax runs along the lanes, one query per lane, so its max and sum need no
 * shuffles), and O^T += V^T P^T reads them from those same registers into the strip's output
 * rows, which stay in L1. No score tile is ever stored. Any key row can come from anywhere:
 * every row argument is a base pointer plus an optional int32 index list (row r is
 * base + idx[r] * ld), which is how lsh gathers its sorted buckets and block_sparse its random
 * blocks without copying Q, K or V.
 *
 * Storage: a tile reads and writes rows of its dtype. bf16 rows are widened to fp32 as they
 * enter (the queries when the tile begins, a key tile's K and V rows once per tile_attend, into
 * contiguous scratch, which also turns a gather into sequential reads for the strips), and the
 * output rows are rounded once as they leave; the scores, the softmax and the accumulators are
 * fp32 whatever the dtype, and the vector paths never see bf16. Widening costs 2 d per key
 * against the 4 d x rows FLOPs it serves.
 *
 * Per tile:
 *   tile_begin(t, q, ...);                      transposes and scales the queries
 *   for each key tile: tile_attend(t, k, ..., v, ..., mask);
 *   tile_end(t, out, ...);                      out = O / l, lse = m + log l
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
    attn_dtype dtype;   /* storage of the rows read, and written unless out_dtype says */
    attn_dtype out_dtype; /* storage of the output rows (tile_init: dtype); a caller merging
                             several passes into fp32 accumulators sets ATTN_FP32 */
    int rows, cols;     /* current query and key counts */
    int lanes, ld;      /* rows rounded up to TILE_LANES (the lanes computed); the stride */
    float *qt;          /* (d, ld) scaled queries, transposed; padding lanes are zero */
    float *ot;          /* (d, ld) output accumulator, transposed */
    float *m, *l;       /* (ld) running max and running sum */
    float *kbuf, *vbuf; /* bf16 only: (max(max_rows, max_cols), d) rows widened to fp32 */
    attn_stats *stats;  /* the calling thread's own counters (tile_init zeroes them), or NULL */
} kern_tile;

/* Workspace bytes of one tile whose rows are stored as dtype. */
size_t tile_bytes(int max_rows, int max_cols, int d, attn_dtype dtype);
/* Carves a tile from a workspace cursor (see kernels.h). Its counters start unset (NULL): a
 * method that counts points t->stats at a thread-local attn_stats and adds that to the
 * call's (attn_stats_add) when its parallel region ends. */
void tile_init(kern_tile *t, kern_cursor *cursor, int max_rows, int max_cols, int d,
               attn_dtype dtype);

/* Starts a query tile: rows queries, row r = q + (qidx ? qidx[r] : r) * ldq, times scale. */
void tile_begin(kern_tile *t, const void *q, int64_t ldq, const int32_t *qidx, int rows,
                float scale);
/* Which keys a query sees, stated by positions: query r's is qpos[r] (qpos NULL: q0 + r), key
 * j's kpos[j] (NULL: k0 + j). Key k is visible from query q when lo <= k - q <= hi; a hidden
 * key's logit becomes `hidden` (-INFINITY, or a finite penalty such as lsh's -1e9). With
 * `self`, a visible key at the query's own position gets self_logit instead (lsh's -1e5: a
 * penalty, not a mask). kscale, when set, first multiplies the logits of the tile's key j
 * by kscale[j] (by column, not position: a caller whose keys are gathered gathers their
 * scales once, and the kernel reads them in order). Positions are any int32 the method chooses: token indices (causal, a
 * band), or segment ids (ETC's globals, lo = hi = 0). Hidden scores are counted
 * (ATTN_STAT_SCORES_MASKED); a group of keys the mask cannot change runs unmasked. */
typedef struct tile_mask {
    const int32_t *qpos, *kpos;
    int32_t q0, k0;
    int32_t lo, hi;
    float hidden;
    bool self;
    float self_logit;
    const float *kscale;
} tile_mask;

/* The current queries against `cols` keys and values, key j = k + (kidx ? kidx[j] : j) * ldk
 * and value j likewise from v, vidx: scores, the mask (NULL: none), and the online-softmax
 * update, fused. */
void tile_attend(kern_tile *t, const void *k, int64_t ldk, const int32_t *kidx, const void *v,
                 int64_t ldv, const int32_t *vidx, int cols, const tile_mask *mask);
/* Writes the tile's rows: out row r = out + (oidx ? oidx[r] : r) * ldo, and lse[row] = m + log l
 * (lse may be NULL). */
void tile_end(kern_tile *t, void *out, int64_t ldo, const int32_t *oidx, float *lse);
/* Like tile_end, but keeps each output row's softmax state as a running max m[row] and a sum
 * l[row] (of exp(logit - m)), and with `merge` combines this tile's candidates with what the
 * rows already hold, as one softmax over both sets (how lsh combines its hash rounds).
 * Why not merge through the lse: with a finite mask penalty such as -1e5 a float lse keeps
 * only ~1e-2 absolute precision, and the merge weights would inherit that error; differences
 * of maxes of the same magnitude are exact. lse = m + log l once all sets are merged.
 * In bf16 the rows hold the sets merged so far rounded to bf16, so a row merged from k sets is
 * rounded k times, not once (an fp32 copy of the rows would cost more than the bf16 output). */
void tile_end_merge(kern_tile *t, void *out, int64_t ldo, const int32_t *oidx, float *m,
                    float *l, bool merge);

/* Gathered rows (lsh's buckets, block_sparse's random blocks) sit anywhere in memory, where
 * the hardware prefetcher cannot guess them: asks for every line of rows idx[0..count) at
 * once, so their cache misses overlap. A method calls it for the rows of a tile or two ahead,
 * so that the fetches overlap the current tile's arithmetic (just before use hides nothing,
 * which is why tile_attend does not). Does nothing when idx is NULL (contiguous rows prefetch
 * themselves). */
void tile_prefetch_rows(const void *base, int64_t ld, const int32_t *idx, int count, int d,
                        attn_dtype dtype);


/* Tests only: run the portable C path instead of the vector one. */
void tile_force_portable(bool on);
/* The path the kernel runs, chosen when it was compiled (-march): "avx512", "avx2" or
 * "portable". Every record's context names it. */
const char *tile_isa(void);

#endif
