/* full_stream.c: exact attention in tiles with the online softmax (FlashAttention-2 order: Dao,
 * "FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning", 2023).
 *
 * Each work item is one (batch, head, query tile); it streams the key/value tiles through the
 * fused tile kernel (tile.h), so the extra memory is a tile_q x d accumulator and its
 * transposed queries per thread: O(n) overall (the saved logsumexp), never n x n.
 * Causal: key tiles entirely above the diagonal are skipped; the diagonal tile is masked with
 * -inf. Items are independent and each runs the same calls whatever the thread count, so the
 * result is bitwise identical for any nthreads. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "backward.h"
#include "kernels.h"
#include "methods.h"
#include "tile.h"

enum { FS_TILE_Q, FS_TILE_K };

static const attn_param_spec fs_params[] = {
    [FS_TILE_Q] = {.name = "tile_q", .help = "query rows per tile", .kind = ATTN_PARAM_INT,
                   .def = 128, .min = 1, .max = 4096},
    [FS_TILE_K] = {.name = "tile_k", .help = "key rows per tile", .kind = ATTN_PARAM_INT,
                   .def = 256, .min = 1, .max = 16384},
};

static int fs_check(const attn_shape *s, const attn_params *p, const char **why)
{
    (void)p;
    *why = "n must fit a BLAS int dimension";
    return s->n > INT32_MAX / 2 ? ATTN_EUNSUPPORTED : ATTN_OK;
}

/* Tile sizes clamped to n, so a short sequence does not pay for a huge tile. */
static void fs_tiles(const attn_shape *s, const attn_params *p, int *tq, int *tk)
{
    *tq = (int)fmin(p->v[FS_TILE_Q], (double)s->n);
    *tk = (int)fmin(p->v[FS_TILE_K], (double)s->n);
}

static void fs_cost(const attn_shape *s, const attn_params *p, int nthreads, attn_cost *c)
{
    int tq, tk;
    fs_tiles(s, p, &tq, &tk);
    *c = (attn_cost){0};
    c->workspace_bytes = (size_t)nthreads * tile_bytes(tq, tk, (int)s->d, s->dtype);
    double n = (double)s->n;
    /* causal: the lower triangle with its diagonal, as FlashAttention counts it (about half) */
    double pairs = s->causal ? n * (n + 1) / 2 : n * n;
    c->scores = (double)(s->B * s->H) * pairs;
    c->flops = 4.0 * c->scores * (double)s->d;
    /* backward: D of the head being worked on, and a tile pass per thread */
    c->bwd_workspace_bytes = bwd_head_bytes(s) +
                             (size_t)nthreads * bwd_tile_bytes(tq, tk, (int)s->d);
    c->bwd_flops = 2.5 * c->flops; /* S, dP, dV, dQ, dK: five products to the forward's two */
}

static int fs_forward(const attn_shape *s, const attn_params *p, const attn_tensors *t,
                      void *work, int nthreads)
{
    const int n = (int)s->n, d = (int)s->d;
    int tq, tk;
    fs_tiles(s, p, &tq, &tk);
    const float scale = 1.0f / sqrtf((float)d);
    const int64_t qtiles = (n + tq - 1) / tq, items = s->B * s->H * qtiles;
    const size_t per_thread = tile_bytes(tq, tk, d, s->dtype);

#pragma omp parallel num_threads(nthreads)
    {
        kern_cursor cursor = {(char *)work + (size_t)omp_get_thread_num() * per_thread, 0};
        kern_tile tile;
        tile_init(&tile, &cursor, tq, tk, d, s->dtype);
        attn_stats mine = {{0}};
        tile.stats = t->stats ? &mine : NULL;
#pragma omp for schedule(dynamic)
        for (int64_t item = 0; item < items; item++) {
            const int64_t bh = item / qtiles;
            const int q0 = (int)(item % qtiles) * tq;
            const int rows = n - q0 < tq ? n - q0 : tq;
            const size_t off = (size_t)bh * (size_t)n * (size_t)d;
            /* causal: keys beyond the tile's last query are never needed */
            const int kend = s->causal ? q0 + rows : n;

            tile_begin(&tile, attn_elem(t->q, s->dtype, off + (size_t)q0 * d), d, NULL, rows,
                       scale);
            for (int k0 = 0; k0 < kend; k0 += tk) {
                const int cols = kend - k0 < tk ? kend - k0 : tk;
                /* causal: key k0 + j is hidden from the queries before it */
                const tile_mask causal = {.q0 = q0, .k0 = k0, .lo = INT32_MIN, .hi = 0,
                                          .hidden = -INFINITY};
                tile_attend(&tile, attn_elem(t->k, s->dtype, off + (size_t)k0 * d), d, NULL,
                            attn_elem(t->v, s->dtype, off + (size_t)k0 * d), d, NULL, cols,
                            s->causal ? &causal : NULL);
            }
            tile_end(&tile, attn_elem_mut(t->out, s->dtype, off + (size_t)q0 * d), d, NULL,
                     t->lse + (size_t)bh * (size_t)n + q0);
        }
        attn_stats_add(t->stats, &mine);
    }
    return ATTN_OK;
}

/* Causal: key rows after the query row are masked (their P is 0, so dS is too). */
static void causal_mask(const void *ctx, float *s, int lds, int rows, int cols,
                        const int32_t *qrows, const int32_t *krows, float *shift, int grad)
{
    (void)ctx;
    (void)shift;
    if (grad)
        return;
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++)
            if (krows[j] > qrows[r])
                s[(size_t)r * lds + j] = -INFINITY;
}

/* The units of one head's backward: every query tile against each key tile it saw. */
typedef struct fs_units {
    int n, tq, tk;
    bool causal;
    int q0, k0; /* the next unit */
} fs_units;

static bool fs_next(void *state, bwd_tile *t, bwd_unit *u)
{
    fs_units *c = state;
    if (c->q0 >= c->n)
        return false;
    const int rows = c->n - c->q0 < c->tq ? c->n - c->q0 : c->tq;
    const int kend = c->causal ? c->q0 + rows : c->n;
    const int cols = kend - c->k0 < c->tk ? kend - c->k0 : c->tk;
    *u = (bwd_unit){.qrows = bwd_range(t->qrows, c->q0, rows), .rows = rows,
                    .krows = bwd_range(t->krows, c->k0, cols), .cols = cols,
                    .mask = c->causal && c->k0 + cols > c->q0 + 1 ? causal_mask : NULL};
    if ((c->k0 += c->tk) >= kend) {
        c->k0 = 0;
        c->q0 += c->tq;
    }
    return true;
}

static void fs_head_units(void *state, int64_t bh, const bwd_io *io)
{
    (void)bh, (void)io;
    fs_units *c = state;
    c->q0 = c->k0 = 0;
}

/* FlashAttention's backward from the saved lse: every query tile against each key tile it saw,
 * run by the one driver (backward.h): bitwise the same for any thread count, and a single head
 * uses every thread. */
static int fs_backward(const attn_shape *s, const attn_params *p, const attn_grads *g, void *work,
                       int nthreads)
{
    int tq, tk;
    fs_tiles(s, p, &tq, &tk);
    fs_units units = {.n = (int)s->n, .tq = tq, .tk = tk, .causal = s->causal};
    const bwd_plan plan = {.max_rows = tq, .max_cols = tk, .prepare = true,
                           .scale = 1.0f / sqrtf((float)s->d), .state = &units,
                           .head_units = fs_head_units, .next = fs_next};
    kern_cursor cursor = {work, 0};
    const bwd_head head = bwd_head_carve(s, &cursor);
    bwd_drive(s, g, &plan, &head, cursor.base + cursor.off, nthreads);
    return ATTN_OK;
}

const attn_method attn_full_stream = {
    .name = "full_stream",
    .summary = "exact attention in tiles with the online softmax (FlashAttention-2), O(n) memory",
    .params = fs_params,
    .n_params = (int)(sizeof fs_params / sizeof fs_params[0]),
    .check = fs_check,
    .cost = fs_cost,
    .forward = fs_forward,
    .backward = fs_backward,
};
