/* full_stream.c: exact attention in tiles with the online softmax (FlashAttention-2 order).
 *
 * Each work item is one (batch, head, query tile); it streams the key/value tiles through a
 * kern_stream accumulator, so the extra memory is one tile_q x tile_k score tile plus a
 * tile_q x d accumulator per thread: O(n) overall (the saved logsumexp), never n x n.
 * Causal: key tiles entirely above the diagonal are skipped; the diagonal tile is masked with
 * -inf. Items are independent and each runs the same calls whatever the thread count, so the
 * result is bitwise identical for any nthreads. */
#include <math.h>
#include <omp.h>

#include "kernels.h"
#include "methods.h"

enum { FS_TILE_Q, FS_TILE_K };

static const attn_param_spec fs_params[] = {
    [FS_TILE_Q] = {.name = "tile_q", .help = "query rows per tile", .kind = ATTN_PARAM_INT,
                   .def = 128, .min = 1, .max = 4096},
    [FS_TILE_K] = {.name = "tile_k", .help = "key rows per tile", .kind = ATTN_PARAM_INT,
                   .def = 512, .min = 1, .max = 16384},
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
    c->workspace_bytes = (size_t)nthreads * kern_stream_bytes(tq, tk, (int)s->d);
    double n = (double)s->n;
    /* causal: the lower triangle with its diagonal, as FlashAttention counts it (about half) */
    double pairs = s->causal ? n * (n + 1) / 2 : n * n;
    c->flops = 4.0 * (double)(s->B * s->H) * pairs * (double)s->d;
}

static int fs_forward(const attn_shape *s, const attn_params *p, const attn_tensors *t,
                      void *work, int nthreads)
{
    const int n = (int)s->n, d = (int)s->d;
    int tq, tk;
    fs_tiles(s, p, &tq, &tk);
    const float scale = 1.0f / sqrtf((float)d);
    const int64_t qtiles = (n + tq - 1) / tq, items = s->B * s->H * qtiles;
    const size_t per_thread = kern_stream_bytes(tq, tk, d);

#pragma omp parallel num_threads(nthreads)
    {
        kern_blas_serial();
        char *cursor = (char *)work + (size_t)omp_get_thread_num() * per_thread;
        kern_stream st;
        kern_stream_init(&st, &cursor, tq, tk, d);
#pragma omp for schedule(dynamic)
        for (int64_t item = 0; item < items; item++) {
            const int64_t bh = item / qtiles;
            const int q0 = (int)(item % qtiles) * tq;
            const int rows = n - q0 < tq ? n - q0 : tq;
            const size_t off = (size_t)bh * (size_t)n * (size_t)d;
            const float *q = t->q + off + (size_t)q0 * d;
            /* causal: keys beyond the tile's last query are never needed */
            const int kend = s->causal ? q0 + rows : n;

            kern_stream_begin(&st, rows);
            for (int k0 = 0; k0 < kend; k0 += tk) {
                const int cols = kend - k0 < tk ? kend - k0 : tk;
                float *sc = kern_stream_scores(&st, q, d, t->k + off + (size_t)k0 * d, d, cols,
                                               scale);
                if (s->causal && k0 + cols > q0 + 1) /* the tile crosses the diagonal */
                    for (int r = 0; r < rows; r++)
                        for (int c = q0 + r + 1 - k0 > 0 ? q0 + r + 1 - k0 : 0; c < cols; c++)
                            sc[(size_t)r * cols + c] = -INFINITY;
                kern_stream_accumulate(&st, t->v + off + (size_t)k0 * d, d);
            }
            kern_stream_end(&st, t->out + off + (size_t)q0 * d, d,
                            t->lse + (size_t)bh * (size_t)n + q0);
        }
    }
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
};
