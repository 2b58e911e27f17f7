/* lsh.c: Reformer LSH attention (Kitaev, Kaiser, Levskaya, "Reformer: The Efficient
 * Transformer", ICLR 2020), as the Hugging Face and trax v2 implementations define it:
 * huggingface/transformers src/transformers/models/reformer/modeling_reformer.py
 * (LSHSelfAttention: _hash_vectors, _attend, ReverseSort) and google/trax
 * trax/layers/research/efficient_attention.py (LSHSelfAttention, hash_vecs, attend).
 * tests/peers_test.py checks this file against HF's LSHSelfAttention given the same buckets.
 *
 * Per (batch, head):
 *  1. Shared QK: the keys are the length-normalized queries, k_j = q_j * rsqrt(mean(q_j^2) +
 *     1e-6) / sqrt(d); the k input is not used. Queries are not normalized and the logits get
 *     no extra 1/sqrt(d) (so |q_i| acts as a temperature), as in HF and trax v2 (trax v1 and
 *     the paper's text differ by sqrt(d)).
 *  2. Angular LSH: per round r a Gaussian rotation R_r (d x nb/2) drawn from the seed; bucket =
 *     argmax over [qR, -qR], first maximum on ties. More than 128 buckets are factorized into
 *     two factors as trax does ([2^ceil(log2 sqrt nb), 2 (nb / (2 f1))], bucket = a1 + f1 a2),
 *     so hashing costs 2 n d (f1 + f2) / 2 per round instead of n d nb.
 *  3. A stable counting sort by (round, bucket, position); the n_hashes * n sorted entries are
 *     cut into chunks of chunk_len. Each chunk attends to itself and the chunk before it,
 *     cyclically, across round boundaries (look-adjacent, before=1, after=0).
 *  4. Masks by original position, replacing the logit: causal -1e9, then self -1e5 (so a token
 *     attends to itself only when nothing else is valid). Keys seen twice (two rounds, or the
 *     wrap-around) count twice: no duplicate correction, as in HF and trax v2.
 *  5. Rounds are combined through their logsumexp: one softmax over every (round, key)
 *     candidate of a query. The saved lse is that of the combined softmax.
 * n must be a multiple of chunk_len (HF requires it too); chunk_len >= n makes the sequence
 * one chunk per round. Nothing of Q, K or V is copied: the tile kernel gathers the rows of
 * each chunk and its neighbour by their sorted positions. Extra memory: n floats of key
 * scales, n_hashes * n sorted positions, the bucket ids (the structure output), small
 * per-thread tiles. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "kernels.h"
#include "methods.h"
#include "rng.h"
#include "tile.h"

enum { LSH_CHUNK_LEN, LSH_N_HASHES, LSH_N_BUCKETS, LSH_SEED };

static const attn_param_spec lsh_params[] = {
    [LSH_CHUNK_LEN] = {.name = "chunk_len", .help = "sorted entries per chunk (n must be a multiple)",
                       .kind = ATTN_PARAM_INT, .def = 64, .min = 1, .max = 2147483648.0},
    [LSH_N_HASHES] = {.name = "n_hashes", .help = "hashing rounds", .kind = ATTN_PARAM_INT,
                      .def = 2, .min = 1, .max = 64},
    [LSH_N_BUCKETS] = {.name = "n_buckets", .help = "buckets per round, even; auto = 2n/chunk_len",
                       .kind = ATTN_PARAM_INT, .def = ATTN_AUTO, .min = 2, .max = 1073741824.0,
                       .auto_ok = true},
    [LSH_SEED] = {.name = "seed", .help = "seed of the random rotations", .kind = ATTN_PARAM_INT,
                  .def = 0, .min = 0, .max = 9007199254740992.0},
};

#define LSH_SELF_MASK (-1e5f)
#define LSH_CAUSAL_MASK (-1e9f)
enum { LSH_TILE_Q = 128, LSH_TILE_K = 256, LSH_HASH_ROWS = 256, LSH_PREFETCH_AHEAD = 2 };

typedef struct lsh_geom {
    int64_t n, c, chunks;   /* chunk length, chunks per round */
    int h;                  /* rounds */
    int nf;                 /* bucket factors: 1 (flat) or 2 */
    int64_t f[2], nb;       /* factors and the effective bucket count */
    int64_t rot;            /* rotation columns per round: sum of f / 2 */
    int tq, tk;             /* tile sizes */
} lsh_geom;

static lsh_geom geom(const attn_shape *s, const attn_params *p)
{
    lsh_geom g = {.n = s->n, .h = (int)p->v[LSH_N_HASHES]};
    g.c = p->v[LSH_CHUNK_LEN] < (double)s->n ? (int64_t)p->v[LSH_CHUNK_LEN] : s->n;
    g.chunks = s->n / g.c;
    int64_t nb = p->v[LSH_N_BUCKETS] == ATTN_AUTO ? 2 * (s->n / g.c > 1 ? s->n / g.c : 1)
                                                  : (int64_t)p->v[LSH_N_BUCKETS];
    if (nb > 128) { /* trax's factorization */
        int64_t f1 = (int64_t)1 << (int)ceil(log2(sqrt((double)nb)));
        g.nf = 2;
        g.f[0] = f1;
        g.f[1] = 2 * (nb / (2 * f1));
    } else {
        g.nf = 1;
        g.f[0] = nb;
        g.f[1] = 1;
    }
    g.nb = g.f[0] * g.f[1];
    g.rot = g.f[0] / 2 + (g.nf == 2 ? g.f[1] / 2 : 0);
    g.tq = (int)(g.c < LSH_TILE_Q ? g.c : LSH_TILE_Q);
    g.tk = (int)(g.c < LSH_TILE_K ? g.c : LSH_TILE_K);
    return g;
}

static int lsh_check(const attn_shape *s, const attn_params *p, const char **why)
{
    if (p->v[LSH_N_BUCKETS] != ATTN_AUTO && (int64_t)p->v[LSH_N_BUCKETS] % 2 != 0) {
        *why = "n_buckets must be even (a bucket and its opposite)";
        return ATTN_EPARAM_RANGE;
    }
    const lsh_geom g = geom(s, p);
    if (s->n > INT32_MAX) {
        *why = "positions must fit int32";
        return ATTN_EUNSUPPORTED;
    }
    if (s->n % g.c != 0) {
        *why = "n must be a multiple of chunk_len (as in the Reformer); chunk_len >= n makes "
               "one chunk";
        return ATTN_EUNSUPPORTED;
    }
    return ATTN_OK;
}

/* Shared workspace (one head at a time) and what each thread carves for itself. */
static size_t shared_bytes(const lsh_geom *g, int d)
{
    return 2 * kern_slice_bytes((size_t)g->n, sizeof(float)) + /* key scales, running maxes */
           kern_slice_bytes((size_t)g->h * (size_t)g->n, sizeof(int32_t)) +       /* sorted */
           kern_slice_bytes((size_t)g->h * (size_t)(g->nb + 1), sizeof(int32_t)) + /* counts */
           kern_slice_bytes((size_t)d * (size_t)(g->h * g->rot), sizeof(float));  /* rotations */
}

static size_t thread_bytes(const lsh_geom *g, int d, attn_dtype dtype)
{
    const size_t widened = dtype == ATTN_BF16 /* the rows being hashed, as fp32 */
                               ? kern_slice_bytes((size_t)LSH_HASH_ROWS * (size_t)d, sizeof(float))
                               : 0;
    return kern_slice_bytes((size_t)LSH_HASH_ROWS * (size_t)(g->h * g->rot), sizeof(float)) +
           kern_slice_bytes((size_t)g->tk, sizeof(float)) + /* a key tile's scales */
           tile_bytes(g->tq, g->tk, d, dtype) + widened;
}

/* The backward's workspace: one head's state, shared by the team, and a tile pass and sort
 * counters per thread. */
static size_t bwd_shared_bytes(const lsh_geom *g, const attn_shape *s)
{
    return kern_slice_bytes((size_t)g->n, sizeof(float)) + bwd_head_bytes(s) + /* kscale, head */
           2 * kern_slice_bytes((size_t)g->n, sizeof(int32_t)) +                /* selfs, stamp */
           kern_slice_bytes((size_t)g->h * (size_t)g->n, sizeof(int32_t));      /* sorted */
}

static size_t lsh_bwd_thread_bytes(const lsh_geom *g, int d)
{
    return kern_slice_bytes((size_t)(g->nb + 1), sizeof(int32_t)) +             /* counts */
           bwd_tile_bytes(g->tq, 2 * g->tk, d);
}

static void lsh_cost(const attn_shape *s, const attn_params *p, int nthreads, attn_cost *c)
{
    const lsh_geom g = geom(s, p);
    *c = (attn_cost){0};
    c->workspace_bytes = shared_bytes(&g, (int)s->d) +
                         (size_t)nthreads * thread_bytes(&g, (int)s->d, s->dtype);
    c->structure_ndim = 4;
    c->structure_dims[0] = g.h;
    c->structure_dims[1] = s->B;
    c->structure_dims[2] = s->H;
    c->structure_dims[3] = s->n;
    const double n = (double)s->n, d = (double)s->d;
    const double keys = (double)(g.h * g.chunks > 1 ? 2 * g.c : g.c); /* one chunk: itself once */
    /* every candidate of every round is scored, the causally masked ones too */
    c->scores = (double)(s->B * s->H) * g.h * n * keys;
    c->flops = (double)(s->B * s->H) * 2.0 * n * d * (double)(g.h * g.rot) + 4.0 * c->scores * d;
    c->bwd_workspace_bytes = bwd_shared_bytes(&g, s) + (size_t)nthreads * lsh_bwd_thread_bytes(&g, (int)s->d);
    c->bwd_flops = (double)(s->B * s->H) * 10.0 * g.h * n * keys * d; /* no hashing */
}

/* Hashes rows [j0, j0 + rows) of q with every round's rotation (one product for all rounds),
 * writing bucket ids. rot: (d, h * rot) row-major; y: (rows, h * rot) scratch; widened:
 * (rows, d) scratch for bf16 rows (NULL in fp32): bf16 queries are hashed as they are stored. */
static void hash_rows(const lsh_geom *g, const void *q, attn_dtype dtype, int d, int64_t j0,
                      int rows, const float *rot, float *y, float *widened,
                      int32_t *const *buckets)
{
    const int cols = (int)(g->h * g->rot);
    const float *rows_f32 = (const float *)q + (size_t)j0 * d;
    if (dtype == ATTN_BF16) {
        kern_rows_widen(attn_elem(q, dtype, (size_t)j0 * d), d, NULL, rows, d, dtype, widened);
        rows_f32 = widened;
    }
    kern_gemm_nn(rows, cols, d, 1.0f, rows_f32, d, rot, cols, 0.0f, y, cols);
    for (int i = 0; i < rows; i++) {
        const float *yr = y + (size_t)i * cols;
        for (int r = 0; r < g->h; r++) {
            int64_t bucket = 0, stride = 1;
            const float *x = yr + r * g->rot;
            for (int k = 0; k < g->nf; k++) {
                const int64_t half = g->f[k] / 2;
                /* argmax over [x, -x]: the first maximum, as torch.argmax picks */
                bucket += kern_argmax_pm(x, half) * stride;
                stride *= g->f[k];
                x += half;
            }
            buckets[r][j0 + i] = (int32_t)bucket;
        }
    }
}

/* kscale[j] = rsqrt(mean(q_j^2) + 1e-6) / sqrt(d): key j is q_j * kscale[j]. */
static void key_scales(const void *q, attn_dtype dtype, int d, int64_t j0, int64_t j1,
                       float *kscale)
{
    for (int64_t j = j0; j < j1; j++) {
        double ss = 0;
        for (int c = 0; c < d; c++) {
            const double x = attn_value(q, dtype, (size_t)(j * d + c));
            ss += x * x;
        }
        kscale[j] = (float)(1.0 / sqrt(ss / d + 1e-6) / sqrt((double)d));
    }
}

/* One round's stable counting sort of positions by bucket (positions ascending within a
 * bucket); cnt holds nb + 1 counters. Counts the round's non-empty buckets and its largest
 * into stats, when given (O(nb): the counts are there). */
static void sort_round(const lsh_geom *g, const int32_t *buckets, int32_t *cnt, int32_t *sorted,
                       attn_stats *stats)
{
    memset(cnt, 0, (size_t)(g->nb + 1) * sizeof *cnt);
    for (int64_t j = 0; j < g->n; j++)
        cnt[buckets[j] + 1]++;
    if (stats) {
        int32_t largest = 0;
        for (int64_t k = 1; k <= g->nb; k++) {
            stats->v[ATTN_STAT_LSH_BUCKETS] += cnt[k] > 0;
            largest = cnt[k] > largest ? cnt[k] : largest;
        }
        stats->v[ATTN_STAT_LSH_BUCKET_MAX] += (uint64_t)largest;
    }
    for (int64_t k = 0; k < g->nb; k++)
        cnt[k + 1] += cnt[k];
    for (int64_t j = 0; j < g->n; j++)
        sorted[cnt[buckets[j]]++] = (int32_t)j;
}

/* The mask of a chunk's queries against a chunk's keys, by token position: a key's logit is
 * first scaled by the key's normalization (shared QK attends to unit keys); causal: a later
 * key's logit becomes -1e9 (counted as masked); a token's own key becomes -1e5, a penalty, so
 * a token with no other candidate still attends to itself, as in Reformer. */
static tile_mask chunk_mask(const int32_t *qpos, const int32_t *kpos, const float *kscale,
                            bool causal)
{
    return (tile_mask){.qpos = qpos, .kpos = kpos, .lo = INT32_MIN,
                       .hi = causal ? 0 : INT32_MAX, .hidden = LSH_CAUSAL_MASK, .self = true,
                       .self_logit = LSH_SELF_MASK, .kscale = kscale};
}

static int lsh_forward(const attn_shape *s, const attn_params *p, const attn_tensors *t,
                       void *work, int nthreads)
{
    const lsh_geom g = geom(s, p);
    const int d = (int)s->d, cols = (int)(g.h * g.rot);
    const int64_t n = s->n, total_chunks = g.h * g.chunks;
    const uint64_t seed = (uint64_t)p->v[LSH_SEED];
    kern_cursor cursor = {work, 0};
    float *kscale = kern_take(&cursor, (size_t)n, sizeof(float));
    float *runmax = kern_take(&cursor, (size_t)n, sizeof(float));
    int32_t *sorted = kern_take(&cursor, (size_t)g.h * (size_t)n, sizeof(int32_t));
    int32_t *counts = kern_take(&cursor, (size_t)g.h * (size_t)(g.nb + 1), sizeof(int32_t));
    float *rot = kern_take(&cursor, (size_t)d * (size_t)cols, sizeof(float));
    char *threads_base = cursor.base + cursor.off;
    const size_t per_thread = thread_bytes(&g, d, s->dtype);
    const attn_dtype dt = s->dtype;

    for (int64_t bh = 0; bh < s->B * s->H; bh++) {
        const int64_t b = bh / s->H, head = bh % s->H;
        const size_t off = (size_t)bh * (size_t)n * (size_t)d;
        const void *q = attn_elem(t->q, dt, off), *v = attn_elem(t->v, dt, off);
        void *out = attn_elem_mut(t->out, dt, off);
        float *lse = t->lse + (size_t)bh * (size_t)n;
        int32_t *buckets[64];
        for (int r = 0; r < g.h; r++)
            buckets[r] = t->structure + (size_t)((r * s->B + b) * s->H + head) * (size_t)n;

        /* the rotations of this head, all rounds side by side: (d, h * rot); the same for
         * every batch element, as HF draws them per head. Drawn when the head changes, and
         * not at all when the buckets are given. */
        if (!t->reuse_structure && (bh == 0 || head != (bh - 1) % s->H))
            rng_fill_normal(rot, 0, (size_t)d * (size_t)cols,
                            rng_stream(seed, (uint64_t)(t->head_offset + head)),
                            1.0);

#pragma omp parallel num_threads(nthreads)
        {
            kern_blas_serial();
            kern_cursor mine = {threads_base + (size_t)omp_get_thread_num() * per_thread, 0};
            float *y = kern_take(&mine, (size_t)LSH_HASH_ROWS * (size_t)cols, sizeof(float));
            float *kcol_scale = kern_take(&mine, (size_t)g.tk, sizeof(float));
            kern_tile tile;
            tile_init(&tile, &mine, g.tq, g.tk, d, dt);
            float *widened = dt == ATTN_BF16
                                 ? kern_take(&mine, (size_t)LSH_HASH_ROWS * (size_t)d, sizeof(float))
                                 : NULL;
            attn_stats work_done = {{0}};
            tile.stats = t->stats ? &work_done : NULL;

            /* pass 1: key scales and bucket ids (kept as given when reusing the structure) */
#pragma omp for schedule(static)
            for (int64_t j0 = 0; j0 < n; j0 += LSH_HASH_ROWS) {
                const int rows = (int)(n - j0 < LSH_HASH_ROWS ? n - j0 : LSH_HASH_ROWS);
                key_scales(q, dt, d, j0, j0 + rows, kscale);
                if (!t->reuse_structure)
                    hash_rows(&g, q, dt, d, j0, rows, rot, y, widened, buckets);
            }
            /* pass 2: stable counting sort by bucket, one round per thread at a time */
#pragma omp for schedule(static)
            for (int r = 0; r < g.h; r++)
                sort_round(&g, buckets[r], counts + (size_t)r * (size_t)(g.nb + 1),
                           sorted + (size_t)r * (size_t)n, tile.stats);
            /* pass 3: the chunks, round by round (a round's chunks write distinct rows) */
            for (int r = 0; r < g.h; r++) {
#pragma omp for schedule(dynamic)
                for (int64_t a = r * g.chunks; a < (r + 1) * g.chunks; a++) {
                    const int64_t prev = (a + total_chunks - 1) % total_chunks;
                    /* the rows are scattered over q and v: ask for the chunk after next now,
                     * so that its gathers overlap this chunk's arithmetic; its q rows here and
                     * its v rows between the two sides, so that the requests do not all wait
                     * for the same few miss buffers at once */
                    const int32_t *ahead = a + LSH_PREFETCH_AHEAD < total_chunks
                                               ? sorted + (a + LSH_PREFETCH_AHEAD) * g.c
                                               : NULL;
                    if (ahead)
                        tile_prefetch_rows(q, d, ahead, (int)g.c, d, dt);
                    for (int64_t q0 = 0; q0 < g.c; q0 += g.tq) {
                        const int rows = (int)(g.c - q0 < g.tq ? g.c - q0 : g.tq);
                        const int32_t *qpos = sorted + a * g.c + q0;
                        tile_begin(&tile, q, d, qpos, rows, 1.0f);
                        if (r > 0) /* the rows the merge will read back */
                            tile_prefetch_rows(out, d, qpos, rows, d, dt);
                        for (int side = 0; side < 2; side++) {
                            const int64_t kc = side == 0 ? prev : a;
                            if (side == 1 && ahead && q0 == 0)
                                tile_prefetch_rows(v, d, ahead, (int)g.c, d, dt);
                            if (side == 0 && prev == a)
                                continue; /* a single chunk: look at it once */
                            for (int64_t k0 = 0; k0 < g.c; k0 += g.tk) {
                                const int kcols = (int)(g.c - k0 < g.tk ? g.c - k0 : g.tk);
                                const int32_t *kpos = sorted + kc * g.c + k0;
                                /* the keys' scales gathered once for the tile's strips */
                                for (int j = 0; j < kcols; j++)
                                    kcol_scale[j] = kscale[kpos[j]];
                                const tile_mask mask = chunk_mask(qpos, kpos, kcol_scale, s->causal);
                                tile_attend(&tile, q, d, kpos, v, d, kpos, kcols, /* shared QK */
                                            &mask);
                            }
                        }
                        /* lse holds each row's running sum until the rounds are merged */
                        tile_end_merge(&tile, out, d, qpos, runmax, lse, r > 0);
                    }
                }
            }
#pragma omp for schedule(static)
            for (int64_t j = 0; j < n; j++)
                lse[j] = lse[j] > 0.0f ? runmax[j] + logf(lse[j]) : -INFINITY;
            attn_stats_add(t->stats, &work_done);
        }
    }
    return ATTN_OK;
}

typedef struct bwd_ctx {
    bool causal;
    const float *lse;      /* the head's saved lse */
    const int32_t *selfs;  /* copies of each position among its own candidates, all rounds */
} bwd_ctx;

/* A row whose every candidate is masked (a causal first token, say) has lse = -1e5 + log(its
 * self copies), which a float keeps only to ~4e-3: exp(-1e5 - lse) would be off by as much.
 * For such rows the self logit becomes 0 and the shift log(copies), so P is 1 / copies. */
#define LSH_ALL_MASKED (-1e4f)

/* The backward's masks: the causal and self logits are constants, so their gradient stops. */
static void bwd_mask(const void *ctx, float *s, int lds, int rows, int cols, const int32_t *qrows,
                     const int32_t *krows, float *shift, int grad)
{
    const bwd_ctx *c = ctx;
    for (int r = 0; r < rows; r++) {
        const int all_masked = c->lse[qrows[r]] < LSH_ALL_MASKED;
        if (all_masked && !grad)
            shift[r] = logf((float)c->selfs[qrows[r]]);
        for (int j = 0; j < cols; j++) {
            const int after = c->causal && krows[j] > qrows[r], self = krows[j] == qrows[r];
            if (after || self)
                s[(size_t)r * lds + j] = grad        ? 0.0f
                                         : after     ? LSH_CAUSAL_MASK
                                         : all_masked ? 0.0f
                                                      : LSH_SELF_MASK;
        }
    }
}

/* How many copies of each position are among its own candidates, over all rounds: one in its
 * own chunk, and one more when the chunk before holds it too (the previous round's copy). */
static void count_selfs(const lsh_geom *g, const int32_t *sorted, int32_t *selfs, int32_t *stamp)
{
    const int64_t total = g->h * g->chunks;
    memset(selfs, 0, (size_t)g->n * sizeof *selfs);
    for (int64_t j = 0; j < g->n; j++)
        stamp[j] = -1;
    for (int64_t a = 0; a < total; a++) {
        const int64_t prev = (a + total - 1) % total;
        if (prev != a)
            for (int64_t e = prev * g->c; e < (prev + 1) * g->c; e++)
                stamp[sorted[e]] = (int32_t)a;
        for (int64_t e = a * g->c; e < (a + 1) * g->c; e++)
            selfs[sorted[e]] += 1 + (stamp[sorted[e]] == a);
    }
}

/* The units of one head's backward: each (round, chunk)'s query tiles against a key tile of
 * the chunk before it (cyclically) and the same tile of its own, as one tile of up to 2 tk
 * keys: products twice as long as one side's, half as many units to add in order. */
typedef struct lsh_units {
    const lsh_geom *g;
    const int32_t *sorted;
    const bwd_ctx *ctx;
    int64_t a, q0, k0; /* the next unit */
    /* what the driver's hooks need of the call (lsh_backward) */
    const attn_shape *s;
    const int32_t *structure;
    float *kscale;
    int32_t *sorted_rw, *selfs, *stamp;
    bwd_ctx head_ctx;
} lsh_units;

static bool lsh_next(void *state, bwd_tile *t, bwd_unit *u)
{
    lsh_units *c = state;
    const lsh_geom *g = c->g;
    const int64_t total = g->h * g->chunks;
    if (c->a >= total)
        return false;
    const int64_t prev = (c->a + total - 1) % total;
    const int rows = (int)(g->c - c->q0 < g->tq ? g->c - c->q0 : g->tq);
    const int cols = (int)(g->c - c->k0 < g->tk ? g->c - c->k0 : g->tk);
    int n = 0;
    if (prev != c->a) /* a single chunk: look at it once */
        for (int j = 0; j < cols; j++)
            t->krows[n++] = c->sorted[prev * g->c + c->k0 + j];
    for (int j = 0; j < cols; j++)
        t->krows[n++] = c->sorted[c->a * g->c + c->k0 + j];
    *u = (bwd_unit){.qrows = c->sorted + c->a * g->c + c->q0, .rows = rows, .krows = t->krows,
                    .cols = n, .mask = bwd_mask, .ctx = c->ctx};
    if ((c->k0 += g->tk) >= g->c) {
        c->k0 = 0;
        if ((c->q0 += g->tq) >= g->c) {
            c->q0 = 0;
            c->a++;
        }
    }
    return true;
}

/* Every thread, at a head's start: the keys are the queries, scaled (no 1/sqrt(d), and k itself
 * is not used); the key scales, and the saved buckets sorted round by round. */
static void lsh_head_begin(void *state, int64_t bh, bwd_io *io, void *extra)
{
    lsh_units *c = state;
    const attn_shape *s = c->s;
    const lsh_geom *g = c->g;
    const int64_t n = s->n, b = bh / s->H, head = bh % s->H;
    const int d = io->d;
    io->scale = 1.0f;
    io->k = io->q;
    io->kscale = c->kscale;
#pragma omp for schedule(static)
    for (int64_t j0 = 0; j0 < n; j0 += 1024)
        key_scales(io->q, io->dtype, d, j0, j0 + 1024 < n ? j0 + 1024 : n, c->kscale);
#pragma omp for schedule(static)
    for (int r = 0; r < g->h; r++)
        sort_round(g, c->structure + (size_t)((r * s->B + b) * s->H + head) * (size_t)n,
                   (int32_t *)extra, c->sorted_rw + (size_t)r * (size_t)n, NULL);
}

static void lsh_head_units(void *state, int64_t bh, const bwd_io *io)
{
    (void)bh;
    lsh_units *c = state;
    count_selfs(c->g, c->sorted_rw, c->selfs, c->stamp);
    c->head_ctx = (bwd_ctx){.causal = c->s->causal, .lse = io->lse, .selfs = c->selfs};
    c->ctx = &c->head_ctx;
    c->sorted = c->sorted_rw;
    c->a = c->q0 = c->k0 = 0;
}

/* Every thread, after the head's units: the keys' gradient, collected in dk, flows through the
 * normalization k = x rho / sqrt(d), rho = (mean(x^2) + 1e-6)^-1/2, into dq (the keys are the
 * queries): dx = (rho / sqrt(d)) (g - x rho^2 (x . g) / d), with rho / sqrt(d) = kscale. */
static void lsh_head_end(void *state, int64_t bh, const bwd_io *io)
{
    (void)bh;
    const lsh_units *c = state;
    const int d = io->d;
    float *dq = io->dq, *dk = io->dk;
#pragma omp for schedule(static)
    for (int64_t j = 0; j < c->s->n; j++) {
        const size_t row = (size_t)(j * d);
        float *gk = dk + j * d;
        double xg = 0;
        for (int k = 0; k < d; k++)
            xg += (double)attn_value(io->q, io->dtype, row + k) * gk[k];
        const double a1 = c->kscale[j], rho2 = a1 * a1 * d;
        for (int k = 0; k < d; k++) {
            const float x = attn_value(io->q, io->dtype, row + k);
            dq[j * d + k] += (float)(a1 * (gk[k] - x * rho2 * xg / d));
            gk[k] = 0.0f;
        }
    }
}

/* The backward from the saved buckets (never hashed again) and the combined lse: each
 * query's candidates are one softmax (the multiset over rounds), so every (chunk, key tile)
 * is a tile backward with P = exp(s - lse). The keys' gradient first collects in dk as the
 * gradient of the normalized keys, then flows through the normalization into dq (the keys
 * are the queries); k has no gradient. Run by the one driver (backward.h): the team sorts the
 * saved buckets, runs the head's units with their partials added in a fixed order, then
 * applies the normalization, so one head uses every thread and the result does not depend on
 * the thread count. */
static int lsh_backward(const attn_shape *s, const attn_params *p, const attn_grads *gr,
                        void *work, int nthreads)
{
    const lsh_geom g = geom(s, p);
    const int64_t n = s->n;
    kern_cursor cursor = {work, 0};
    lsh_units units = {.g = &g, .s = s, .structure = gr->structure};
    units.kscale = kern_take(&cursor, (size_t)n, sizeof(float));
    const bwd_head head = bwd_head_carve(s, &cursor);
    units.selfs = kern_take(&cursor, (size_t)n, sizeof(int32_t));
    units.stamp = kern_take(&cursor, (size_t)n, sizeof(int32_t));
    units.sorted_rw = kern_take(&cursor, (size_t)g.h * (size_t)n, sizeof(int32_t));
    const bwd_plan plan = {.max_rows = (int)g.tq, .max_cols = 2 * (int)g.tk,
                           .thread_extra = kern_slice_bytes((size_t)(g.nb + 1), sizeof(int32_t)),
                           .prepare = true, .scale = 1.0f, .state = &units,
                           .head_begin = lsh_head_begin, .head_units = lsh_head_units,
                           .next = lsh_next, .head_end = lsh_head_end};
    bwd_drive(s, gr, &plan, &head, cursor.base + cursor.off, nthreads);
    return ATTN_OK;
}

/* The attention LSH approximates: full shared-QK attention with the self mask, which is this
 * method with the whole sequence as one chunk and one round. */
static void lsh_exact(const attn_shape *s, const attn_params *p, attn_params *exact)
{
    *exact = *p;
    exact->v[LSH_CHUNK_LEN] = (double)s->n;
    exact->v[LSH_N_HASHES] = 1;
}

/* Duplicates: for each query, its candidates over every round (its chunk and the one before,
 * cyclically) that repeat a (query, key) pair already seen, found with a per-thread stamp per
 * key. O(n_hashes n 2 chunk_len) per head, the forward's score count without the d: too dear
 * to count inside the forward, so it runs on the buckets the forward wrote. */
static int lsh_duplicates(const attn_shape *s, const attn_params *p, const int32_t *structure,
                          uint64_t *count, int nthreads)
{
    const lsh_geom g = geom(s, p);
    const int64_t n = s->n, total = g.h * g.chunks;
    int32_t *sorted = malloc((size_t)(g.h * n) * sizeof *sorted);
    int32_t *where = malloc((size_t)(g.h * n) * sizeof *where); /* entry of (round, position) */
    int32_t *cnt = malloc((size_t)(g.nb + 1) * sizeof *cnt);
    int32_t *stamps = malloc((size_t)nthreads * (size_t)n * sizeof *stamps);
    int rc = sorted && where && cnt && stamps ? ATTN_OK : ATTN_ENOMEM;
    uint64_t dup = 0;
    for (int64_t bh = 0; bh < s->B * s->H && rc == ATTN_OK; bh++) {
        const int64_t b = bh / s->H, head = bh % s->H;
        for (int r = 0; r < g.h; r++) {
            sort_round(&g, structure + (size_t)((r * s->B + b) * s->H + head) * (size_t)n, cnt,
                       sorted + (size_t)r * (size_t)n, NULL);
            for (int64_t e = 0; e < n; e++)
                where[r * n + sorted[r * n + e]] = (int32_t)(r * n + e);
        }
#pragma omp parallel num_threads(nthreads) reduction(+ : dup)
        {
            int32_t *stamp = stamps + (size_t)omp_get_thread_num() * (size_t)n;
            for (int64_t j = 0; j < n; j++)
                stamp[j] = -1;
#pragma omp for schedule(static)
            for (int64_t i = 0; i < n; i++)
                for (int r = 0; r < g.h; r++) {
                    const int64_t a = where[r * n + i] / g.c, prev = (a + total - 1) % total;
                    for (int side = prev == a; side < 2; side++)
                        for (int64_t e = (side ? a : prev) * g.c, end = e + g.c; e < end; e++) {
                            const int32_t key = sorted[e];
                            dup += stamp[key] == (int32_t)i;
                            stamp[key] = (int32_t)i;
                        }
                }
        }
    }
    *count = rc == ATTN_OK ? dup : 0;
    free(sorted), free(where), free(cnt), free(stamps);
    return rc;
}

/* Mass: the exact shared-QK softmax (one chunk, one round: lsh_exact) over each query's
 * distinct candidates in every round, found as lsh_duplicates finds repeats; the logits are the
 * forward's, q_i . q_j kscale_j with the causal and self masks replacing them. */
static int lsh_mass(const attn_shape *s, const attn_params *p, const attn_tensors *t,
                    const float *lse_exact, double *sum, int nthreads)
{
    const lsh_geom g = geom(s, p);
    const int64_t n = s->n, total = g.h * g.chunks;
    const int d = s->d;
    int32_t *sorted = malloc((size_t)(g.h * n) * sizeof *sorted);
    int32_t *where = malloc((size_t)(g.h * n) * sizeof *where);
    int32_t *cnt = malloc((size_t)(g.nb + 1) * sizeof *cnt);
    int32_t *stamps = malloc((size_t)nthreads * (size_t)n * sizeof *stamps);
    float *kscale = malloc((size_t)n * sizeof *kscale);
    /* bf16: each head's q widened to fp32 here; fp32: read in place */
    float *widened = s->dtype == ATTN_BF16 ? malloc((size_t)n * (size_t)d * sizeof *widened) : NULL;
    int rc = sorted && where && cnt && stamps && kscale && (widened || s->dtype != ATTN_BF16)
                 ? ATTN_OK
                 : ATTN_ENOMEM;
    double mass = 0;
    for (int64_t bh = 0; bh < s->B * s->H && rc == ATTN_OK; bh++) {
        const int64_t b = bh / s->H, head = bh % s->H;
        const void *qhead = attn_elem(t->q, s->dtype, (size_t)bh * (size_t)n * (size_t)d);
        if (widened)
            attn_convert(qhead, s->dtype, widened, ATTN_FP32, (size_t)n * (size_t)d);
        const float *q = widened ? widened : qhead;
        const float *lse = lse_exact + (size_t)bh * (size_t)n;
        key_scales(q, ATTN_FP32, d, 0, n, kscale);
        for (int r = 0; r < g.h; r++) {
            sort_round(&g, t->structure + (size_t)((r * s->B + b) * s->H + head) * (size_t)n, cnt,
                       sorted + (size_t)r * (size_t)n, NULL);
            for (int64_t e = 0; e < n; e++)
                where[r * n + sorted[r * n + e]] = (int32_t)(r * n + e);
        }
#pragma omp parallel num_threads(nthreads) reduction(+ : mass)
        {
            int32_t *stamp = stamps + (size_t)omp_get_thread_num() * (size_t)n;
            for (int64_t j = 0; j < n; j++)
                stamp[j] = -1;
#pragma omp for schedule(static)
            for (int64_t i = 0; i < n; i++)
                for (int r = 0; r < g.h; r++) {
                    const int64_t a = where[r * n + i] / g.c, prev = (a + total - 1) % total;
                    for (int side = prev == a; side < 2; side++)
                        for (int64_t e = (side ? a : prev) * g.c, end = e + g.c; e < end; e++) {
                            const int32_t j = sorted[e];
                            if (stamp[j] == (int32_t)i)
                                continue; /* seen in another round: its mass counts once */
                            stamp[j] = (int32_t)i;
                            double l;
                            if (s->causal && j > i)
                                l = LSH_CAUSAL_MASK;
                            else if (j == i)
                                l = LSH_SELF_MASK;
                            else {
                                double dot = 0;
                                for (int c = 0; c < d; c++)
                                    dot += (double)q[i * d + c] * q[(int64_t)j * d + c];
                                l = dot * kscale[j];
                            }
                            mass += exp(l - lse[i]);
                        }
                }
        }
    }
    *sum = rc == ATTN_OK ? mass : 0;
    free(sorted), free(where), free(cnt), free(stamps), free(kscale), free(widened);
    return rc;
}

static int64_t lsh_granule(const attn_params *p)
{
    return (int64_t)p->v[LSH_CHUNK_LEN];
}

const attn_method attn_lsh = {
    .name = "lsh",
    .summary = "Reformer LSH attention: shared QK, n_hashes rounds of angular LSH, sorted chunks",
    .params = lsh_params,
    .n_params = (int)(sizeof lsh_params / sizeof lsh_params[0]),
    .check = lsh_check,
    .cost = lsh_cost,
    .forward = lsh_forward,
    .backward = lsh_backward,
    .exact = lsh_exact,
    .duplicates = lsh_duplicates,
    .mass = lsh_mass,
    .granule = lsh_granule,
    .shared_qk = true,
};
