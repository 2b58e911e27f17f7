/* block_sparse.c: BigBird's ITC block-sparse attention (Zaheer et al., "Big Bird: Transformers
 * for Longer Sequences", NeurIPS 2020), bidirectional. References: google-research/bigbird
 * bigbird/core/attention.py (bigbird_block_sparse_attention, bigbird_block_rand_mask) and
 * huggingface/transformers src/transformers/models/big_bird/modeling_big_bird.py
 * (BigBirdBlockSparseAttention, _bigbird_block_rand_mask); tests/peers_test.py checks this
 * file against HF's kernel given the same random-block table.
 *
 * The sequence is cut into nb = ceil(n / block) blocks. Blocks 0 and nb-1 are global: their
 * queries attend to every key, and every query attends to their keys. Every other query block
 * i attends to the window {i-1, i, i+1}, the two global blocks, and n_rand random blocks.
 *
 * Conventions (where the references differ):
 *  - The random table is drawn fresh from a counter-based generator keyed by (seed, head,
 *    block row): n_rand distinct blocks, uniform over the blocks not in the row's window or
 *    global set, from the whole sequence (the TF/HF "plans" draw from a prefix only). The same
 *    pattern serves every batch element, as in BigBird. A row with fewer candidates than
 *    n_rand takes all of them; unused table slots hold -1, as do the global rows.
 *  - A length that is not a multiple of the block is padded: the padded keys are never
 *    attended (weight exactly 0) and the padded queries never computed.
 *  - Scores are scaled by 1/sqrt(d); no attention dropout (TF applies none in this mode).
 * Each block row is streamed through the fused tile kernel with the online softmax, keys
 * gathered by index: the band is never materialized and nothing is copied. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "kernels.h"
#include "methods.h"
#include "rng.h"
#include "tile.h"

enum { BS_BLOCK, BS_N_RAND, BS_SEED };

static const attn_param_spec bs_params[] = {
    [BS_BLOCK] = {.name = "block", .help = "block size (tokens)", .kind = ATTN_PARAM_INT,
                  .def = 64, .min = 1, .max = 4096},
    [BS_N_RAND] = {.name = "n_rand", .help = "random key blocks per query block",
                   .kind = ATTN_PARAM_INT, .def = 3, .min = 0, .max = 64},
    [BS_SEED] = {.name = "seed", .help = "seed of the random-block table", .kind = ATTN_PARAM_INT,
                 .def = 0, .min = 0, .max = 9007199254740992.0},
};

enum { BS_GLOBAL_TILE = 256 }; /* keys per tile when a global row streams the whole sequence */
enum { BS_PREFETCH_AHEAD = 2 }; /* items ahead whose random blocks are fetched early */

typedef struct bs_geom {
    int64_t n, nb;
    int block, n_rand;
} bs_geom;

static bs_geom geom(const attn_shape *s, const attn_params *p)
{
    bs_geom g = {.n = s->n, .block = (int)p->v[BS_BLOCK], .n_rand = (int)p->v[BS_N_RAND]};
    g.nb = (s->n + g.block - 1) / g.block;
    return g;
}

static int64_t block_keys(const bs_geom *g, int64_t b)
{
    int64_t end = (b + 1) * g->block;
    return (end < g->n ? end : g->n) - b * g->block;
}

static int is_global(const bs_geom *g, int64_t i)
{
    return i == 0 || i == g->nb - 1;
}

/* The distinct window and global blocks of middle row i, ascending. */
static int window_blocks(const bs_geom *g, int64_t i, int64_t out[5])
{
    int64_t cand[5] = {0, i - 1, i, i + 1, g->nb - 1};
    int count = 0;
    for (int a = 0; a < 5; a++) {
        int dup = 0;
        for (int b = 0; b < count; b++)
            dup |= out[b] == cand[a];
        if (!dup)
            out[count++] = cand[a];
    }
    for (int a = 1; a < count; a++) /* insertion sort of at most 5 */
        for (int b = a; b > 0 && out[b - 1] > out[b]; b--) {
            int64_t t = out[b];
            out[b] = out[b - 1];
            out[b - 1] = t;
        }
    return count;
}

static int bs_check(const attn_shape *s, const attn_params *p, const char **why)
{
    (void)p;
    if (s->causal) {
        *why = "BigBird ITC attention is bidirectional: it has no causal form";
        return ATTN_EUNSUPPORTED;
    }
    if (s->n > INT32_MAX) {
        *why = "positions must fit int32";
        return ATTN_EUNSUPPORTED;
    }
    return ATTN_OK;
}

static int max_cols(const bs_geom *g)
{
    int middle = (5 + g->n_rand) * g->block;
    return middle > BS_GLOBAL_TILE ? middle : BS_GLOBAL_TILE;
}

static size_t per_thread_bytes(const bs_geom *g, int d, attn_dtype dtype)
{
    return tile_bytes(g->block, max_cols(g), d, dtype) +
           kern_slice_bytes((size_t)max_cols(g), sizeof(int32_t));
}

static void bs_cost(const attn_shape *s, const attn_params *p, int nthreads, attn_cost *c)
{
    bs_geom g = geom(s, p);
    *c = (attn_cost){0};
    c->workspace_bytes = (size_t)nthreads * per_thread_bytes(&g, (int)s->d, s->dtype);
    c->structure_ndim = 4;
    c->structure_dims[0] = s->B;
    c->structure_dims[1] = s->H;
    c->structure_dims[2] = g.nb;
    c->structure_dims[3] = g.n_rand;
    /* attended (query, key) pairs: exact, from the pattern (random blocks are never the
     * partial last block, which is global). The middle rows 3 .. nb - 4 all see five distinct
     * blocks and as many random ones: their pairs are one product (every count is an integer
     * below 2^53, so the sum is the same), and the cost of any n is O(1), as a caller that
     * bisects over n (capacity) needs */
    const int64_t mid_lo = 3, mid_hi = g.nb - 4;
    double pairs = 0;
    for (int64_t i = 0; i < g.nb; i++) {
        if (i == mid_lo && mid_hi > mid_lo)
            i = mid_hi; /* the rows in between are added below, as many times row mid_hi */
        const double rows = (double)block_keys(&g, i);
        if (is_global(&g, i)) {
            pairs += rows * (double)g.n;
            continue;
        }
        int64_t w[5];
        int nw = window_blocks(&g, i, w);
        double keys = 0;
        for (int a = 0; a < nw; a++)
            keys += (double)block_keys(&g, w[a]);
        const int64_t cand = g.nb - nw; /* blocks outside the window and the globals */
        keys += (double)(cand < g.n_rand ? cand : g.n_rand) * g.block;
        pairs += rows * keys * (double)(i == mid_hi && mid_hi > mid_lo ? mid_hi - mid_lo + 1 : 1);
    }
    c->scores = (double)(s->B * s->H) * pairs;
    c->flops = 4.0 * c->scores * (double)s->d;
    c->bwd_workspace_bytes = bwd_head_bytes(s) +
                             (size_t)nthreads * bwd_tile_bytes(g.block, max_cols(&g), (int)s->d);
    c->bwd_flops = 2.5 * c->flops;
}

/* Fills row i of head h's random table (n_rand slots, -1 where unused). */
static void draw_row(const bs_geom *g, uint64_t seed, int64_t h, int64_t i, int32_t *row)
{
    for (int a = 0; a < g->n_rand; a++)
        row[a] = -1;
    if (is_global(g, i))
        return;
    int64_t w[5];
    const int nw = window_blocks(g, i, w);
    const int64_t cand = g->nb - nw;
    const int want = (int)(cand < g->n_rand ? cand : g->n_rand);
    const uint64_t base = rng_stream(seed, (uint64_t)(h * g->nb + i));
    if (cand <= 2 * (int64_t)g->n_rand + 8) {
        /* few candidates: list them, then a partial Fisher-Yates shuffle */
        int64_t list[2 * 64 + 8];
        int count = 0;
        for (int64_t b = 0, a = 0; b < g->nb; b++) {
            while (a < nw && w[a] < b)
                a++;
            if (a < nw && w[a] == b)
                continue;
            list[count++] = b;
        }
        for (int a = 0; a < want; a++) {
            int pick = a + (int)(rng_mix64(base + (uint64_t)a) % (uint64_t)(count - a));
            int64_t t = list[a];
            list[a] = list[pick];
            list[pick] = t;
            row[a] = (int32_t)list[a];
        }
        return;
    }
    /* many candidates: rejection sampling, distinct and outside the window */
    int got = 0;
    for (uint64_t attempt = 0; got < want; attempt++) {
        int64_t b = (int64_t)(rng_mix64(base + attempt) % (uint64_t)g->nb);
        int bad = 0;
        for (int a = 0; a < nw; a++)
            bad |= w[a] == b;
        for (int a = 0; a < got; a++)
            bad |= row[a] == b;
        if (!bad)
            row[got++] = (int32_t)b;
    }
}

/* The keys of middle row i: its window and global blocks, then its random blocks (rnd, n_rand
 * of them, -1 unused), as head rows. Returns the count. */
static int row_keys(const bs_geom *g, int64_t i, const int32_t *rnd, int32_t *keys)
{
    int64_t w[5];
    const int nw = window_blocks(g, i, w);
    int cols = 0;
    for (int a = 0; a < nw + g->n_rand; a++) {
        const int64_t blk = a < nw ? w[a] : rnd[a - nw];
        if (blk < 0)
            continue;
        for (int64_t j = blk * g->block; j < blk * g->block + block_keys(g, blk); j++)
            keys[cols++] = (int32_t)j;
    }
    return cols;
}

/* Work item `item` of the forward: block row i of head *bh. The two global rows of each head
 * go first (the long items), then the middle rows in order. */
static int64_t item_row(const bs_geom *g, int64_t item, int64_t *bh)
{
    const int64_t k = item % g->nb;
    *bh = item / g->nb;
    return k == 0 ? 0 : k == 1 ? g->nb - 1 : k - 1;
}

/* The random blocks of a later item, asked for now: they lie anywhere in the head, and their
 * fetches overlap this item's arithmetic (the window blocks are the neighbours', in cache). */
static void prefetch_random_blocks(const bs_geom *g, const attn_tensors *t, attn_dtype dtype,
                                   int64_t item, int d)
{
    int64_t bh;
    const int64_t i = item_row(g, item, &bh);
    if (is_global(g, i))
        return;
    const size_t off = (size_t)bh * (size_t)g->n * (size_t)d;
    const int32_t *rnd = t->structure + (size_t)(bh * g->nb + i) * (size_t)g->n_rand;
    for (int a = 0; a < g->n_rand; a++) {
        if (rnd[a] < 0)
            continue;
        const size_t first = off + (size_t)rnd[a] * (size_t)g->block * (size_t)d;
        const size_t bytes = (size_t)block_keys(g, rnd[a]) * (size_t)d * attn_dtype_size(dtype);
        const char *k = attn_elem(t->k, dtype, first), *v = attn_elem(t->v, dtype, first);
        for (size_t b = 0; b < bytes; b += 64) {
            __builtin_prefetch(k + b);
            __builtin_prefetch(v + b);
        }
    }
}

static int bs_forward(const attn_shape *s, const attn_params *p, const attn_tensors *t,
                      void *work, int nthreads)
{
    const bs_geom g = geom(s, p);
    const int d = (int)s->d, mc = max_cols(&g);
    const int64_t n = s->n, nb = g.nb, H = s->H, heads = s->B * s->H;
    const uint64_t seed = (uint64_t)p->v[BS_SEED];
    const float scale = 1.0f / sqrtf((float)d);
    const size_t per_thread = per_thread_bytes(&g, d, s->dtype);

    /* pass 1: the random table, the same for every batch element (unless given) */
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t hi = 0; hi < (g.n_rand && !t->reuse_structure ? H * nb : 0); hi++) {
        int32_t *row = t->structure + (size_t)hi * (size_t)g.n_rand;
        draw_row(&g, seed, t->head_offset + hi / nb, hi % nb, row);
        for (int64_t b = 1; b < s->B; b++)
            for (int a = 0; a < g.n_rand; a++)
                row[(size_t)(b * H * nb) * (size_t)g.n_rand + (size_t)a] = row[a];
    }

    /* pass 2: every block row; the two global rows of each head go first (the long items) */
#pragma omp parallel num_threads(nthreads)
    {
        kern_cursor cursor = {(char *)work + (size_t)omp_get_thread_num() * per_thread, 0};
        kern_tile tile;
        tile_init(&tile, &cursor, g.block, mc, d, s->dtype);
        int32_t *keys = kern_take(&cursor, (size_t)mc, sizeof(int32_t));
        attn_stats mine = {{0}};
        tile.stats = t->stats ? &mine : NULL;
#pragma omp for schedule(dynamic)
        for (int64_t item = 0; item < heads * nb; item++) {
            int64_t bh;
            const int64_t i = item_row(&g, item, &bh);
            const size_t off = (size_t)bh * (size_t)n * (size_t)d;
            const attn_dtype dt = s->dtype;
            const void *q = attn_elem(t->q, dt, off), *kk = attn_elem(t->k, dt, off),
                       *v = attn_elem(t->v, dt, off);
            const int rows = (int)block_keys(&g, i);
            if (g.n_rand && item + BS_PREFETCH_AHEAD < heads * nb)
                prefetch_random_blocks(&g, t, dt, item + BS_PREFETCH_AHEAD, d);
            tile_begin(&tile, attn_elem(q, dt, (size_t)i * g.block * d), d, NULL, rows, scale);
            if (is_global(&g, i)) {
                for (int64_t k0 = 0; k0 < n; k0 += BS_GLOBAL_TILE) {
                    const int cols = (int)(n - k0 < BS_GLOBAL_TILE ? n - k0 : BS_GLOBAL_TILE);
                    tile_attend(&tile, attn_elem(kk, dt, (size_t)k0 * d), d, NULL,
                                attn_elem(v, dt, (size_t)k0 * d), d, NULL, cols, NULL);
                }
            } else {
                /* window and global blocks, then the random ones, as one key list */
                const int32_t *rnd =
                    g.n_rand ? t->structure + (size_t)(bh * nb + i) * (size_t)g.n_rand : NULL;
                const int cols = row_keys(&g, i, rnd, keys);
                tile_attend(&tile, kk, d, keys, v, d, keys, cols, NULL);
            }
            tile_end(&tile, attn_elem_mut(t->out, dt, off + (size_t)i * g.block * d), d, NULL,
                     t->lse + (size_t)bh * (size_t)n + (size_t)i * g.block);
        }
        attn_stats_add(t->stats, &mine);
    }
    /* the random blocks the table holds (drawn now or given), every head and batch element */
    if (t->stats && g.n_rand) {
        uint64_t drawn = 0;
        for (size_t i = 0; i < (size_t)(heads * nb) * (size_t)g.n_rand; i++)
            drawn += t->structure[i] >= 0;
        attn_stats part = {{0}};
        part.v[ATTN_STAT_RANDOM_BLOCKS] = drawn;
        attn_stats_add(t->stats, &part);
    }
    return ATTN_OK;
}

/* The units of one head's backward: each block row against the keys the forward gave it (a
 * global row in tiles of BS_GLOBAL_TILE keys), in block order. */
typedef struct bs_units {
    const bs_geom *g;
    const int32_t *structure; /* every head's random blocks */
    const int32_t *table;     /* the head's, or NULL */
    int64_t n, i, k0;         /* the next unit */
} bs_units;

static bool bs_next(void *state, bwd_tile *t, bwd_unit *u)
{
    bs_units *c = state;
    const bs_geom *g = c->g;
    if (c->i >= g->nb)
        return false;
    const int rows = (int)block_keys(g, c->i);
    *u = (bwd_unit){.qrows = bwd_range(t->qrows, c->i * g->block, rows), .rows = rows,
                    .krows = t->krows};
    if (is_global(g, c->i)) {
        u->cols = (int)(c->n - c->k0 < BS_GLOBAL_TILE ? c->n - c->k0 : BS_GLOBAL_TILE);
        bwd_range(t->krows, c->k0, u->cols);
        if ((c->k0 += BS_GLOBAL_TILE) >= c->n) {
            c->k0 = 0;
            c->i++;
        }
    } else {
        u->cols = row_keys(g, c->i, c->table ? c->table + c->i * g->n_rand : NULL, t->krows);
        c->i++;
    }
    return true;
}

static void bs_head_units(void *state, int64_t bh, const bwd_io *io)
{
    (void)io;
    bs_units *c = state;
    const bs_geom *g = c->g;
    c->table = g->n_rand ? c->structure + (size_t)(bh * g->nb) * (size_t)g->n_rand : NULL;
    c->i = c->k0 = 0;
}

/* The backward: each block row against its window, globals and random blocks, run by the one
 * driver (backward.h): one head uses every thread, and the result does not depend on the thread
 * count. */
static int bs_backward(const attn_shape *s, const attn_params *p, const attn_grads *gr,
                       void *work, int nthreads)
{
    const bs_geom g = geom(s, p);
    bs_units units = {.g = &g, .structure = gr->structure, .n = s->n};
    const bwd_plan plan = {.max_rows = g.block, .max_cols = max_cols(&g), .prepare = true,
                           .scale = 1.0f / sqrtf((float)s->d), .state = &units,
                           .head_units = bs_head_units, .next = bs_next};
    kern_cursor cursor = {work, 0};
    const bwd_head head = bwd_head_carve(s, &cursor);
    bwd_drive(s, gr, &plan, &head, cursor.base + cursor.off, nthreads);
    return ATTN_OK;
}

static int64_t bs_granule(const attn_params *p)
{
    return (int64_t)p->v[BS_BLOCK];
}

const attn_method attn_block_sparse = {
    .name = "block_sparse",
    .summary = "BigBird ITC block-sparse attention: 2 global blocks, window of 3, random blocks",
    .params = bs_params,
    .n_params = (int)(sizeof bs_params / sizeof bs_params[0]),
    .check = bs_check,
    .cost = bs_cost,
    .forward = bs_forward,
    .backward = bs_backward,
    .granule = bs_granule,
};
