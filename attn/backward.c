/* backward.c: the tile backward pass (see backward.h), with BLAS products on gathered rows. */
#include "backward.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "attn.h"
#include "kernels.h"

size_t bwd_tile_bytes(int max_rows, int max_cols, int d)
{
    const size_t r = (size_t)max_rows, c = (size_t)max_cols, dd = (size_t)d;
    return 3 * kern_slice_bytes(r * dd, sizeof(float)) +   /* q, dout, part_q */
           4 * kern_slice_bytes(c * dd, sizeof(float)) +   /* k, v, part_k, part_v */
           2 * kern_slice_bytes(r * c, sizeof(float)) +    /* s, dp */
           2 * kern_slice_bytes(r, sizeof(float)) +        /* lse, dd */
           kern_slice_bytes(r, sizeof(int32_t)) + kern_slice_bytes(c, sizeof(int32_t));
}

void bwd_tile_init(bwd_tile *t, char **cursor, int max_rows, int max_cols, int d)
{
    const size_t r = (size_t)max_rows, c = (size_t)max_cols, dd = (size_t)d;
    t->max_rows = max_rows;
    t->max_cols = max_cols;
    t->d = d;
    t->q = kern_take(cursor, r * dd, sizeof(float));
    t->dout = kern_take(cursor, r * dd, sizeof(float));
    t->part_q = kern_take(cursor, r * dd, sizeof(float));
    t->k = kern_take(cursor, c * dd, sizeof(float));
    t->v = kern_take(cursor, c * dd, sizeof(float));
    t->part_k = kern_take(cursor, c * dd, sizeof(float));
    t->part_v = kern_take(cursor, c * dd, sizeof(float));
    t->s = kern_take(cursor, r * c, sizeof(float));
    t->dp = kern_take(cursor, r * c, sizeof(float));
    t->lse = kern_take(cursor, r, sizeof(float));
    t->dd = kern_take(cursor, r, sizeof(float));
    t->qrows = kern_take(cursor, r, sizeof(int32_t));
    t->krows = kern_take(cursor, c, sizeof(int32_t));
}

int32_t *bwd_range(int32_t *rows, int64_t first, int count)
{
    for (int i = 0; i < count; i++)
        rows[i] = (int32_t)(first + i);
    return rows;
}

void bwd_rowdot(const float *dout, const float *out, int64_t n, int d, float *D)
{
    for (int64_t i = 0; i < n; i++) {
        float acc = 0.0f;
        for (int c = 0; c < d; c++)
            acc += dout[i * d + c] * out[i * d + c];
        D[i] = acc;
    }
}

bwd_io bwd_head(const attn_grads *g, int64_t bh, int64_t n, int d, float scale, float *D)
{
    const size_t off = (size_t)bh * (size_t)n * (size_t)d, bytes = (size_t)n * d * sizeof(float);
    memset(g->dq + off, 0, bytes);
    memset(g->dk + off, 0, bytes);
    memset(g->dv + off, 0, bytes);
    bwd_rowdot(g->dout + off, g->out + off, n, d, D);
    return (bwd_io){.q = g->q + off, .k = g->k + off, .v = g->v + off, .dout = g->dout + off,
                    .lse = g->lse + (size_t)bh * (size_t)n, .D = D, .dq = g->dq + off,
                    .dk = g->dk + off, .dv = g->dv + off, .d = d, .scale = scale};
}

void bwd_tile_run(bwd_tile *t, const bwd_io *io, const int32_t *qrows, int rows,
                  const int32_t *krows, int cols, bwd_mask_fn mask, const void *ctx)
{
    assert(rows >= 1 && rows <= t->max_rows && cols >= 1 && cols <= t->max_cols);
    const int d = io->d;
    /* gather */
    for (int r = 0; r < rows; r++) {
        const int64_t i = qrows[r];
        for (int c = 0; c < d; c++) {
            t->q[(size_t)r * d + c] = io->q[i * d + c] * io->scale;
            t->dout[(size_t)r * d + c] = io->dout[i * d + c];
        }
        t->lse[r] = io->lse[i];
        t->dd[r] = io->D[i];
    }
    for (int j = 0; j < cols; j++) {
        const int64_t k = krows[j];
        const float w = io->kscale ? io->kscale[k] : 1.0f;
        for (int c = 0; c < d; c++) {
            t->k[(size_t)j * d + c] = io->k[k * d + c] * w;
            t->v[(size_t)j * d + c] = io->v[k * d + c];
        }
    }
    /* P = exp(scale Q K^T - lse), with the forward's masks */
    kern_gemm_nt(rows, cols, d, 1.0f, t->q, d, t->k, d, 0.0f, t->s, cols);
    if (mask)
        mask(ctx, t->s, cols, rows, cols, qrows, krows, t->lse, 0);
    for (int r = 0; r < rows; r++) {
        float *p = t->s + (size_t)r * cols;
        if (t->lse[r] == -INFINITY) /* the row attended to nothing */
            memset(p, 0, (size_t)cols * sizeof(float));
        else
            kern_exp_shift_sum(p, cols, t->lse[r]);
    }
    /* dV += P^T dO; dP = dO V^T; dS = P o (dP - D) */
    kern_gemm_tn(cols, d, rows, 1.0f, t->s, cols, t->dout, d, 0.0f, t->part_v, d);
    kern_gemm_nt(rows, cols, d, 1.0f, t->dout, d, t->v, d, 0.0f, t->dp, cols);
    for (int r = 0; r < rows; r++) {
        const float *p = t->s + (size_t)r * cols;
        float *ds = t->dp + (size_t)r * cols;
        for (int j = 0; j < cols; j++)
            ds[j] = p[j] * (ds[j] - t->dd[r]);
    }
    if (mask)
        mask(ctx, t->dp, cols, rows, cols, qrows, krows, NULL, 1);
    /* dQ += scale dS K; dK += dS^T (scale Q) */
    kern_gemm_nn(rows, d, cols, io->scale, t->dp, cols, t->k, d, 0.0f, t->part_q, d);
    kern_gemm_tn(cols, d, rows, 1.0f, t->dp, cols, t->q, d, 0.0f, t->part_k, d);
    /* scatter-add */
    for (int r = 0; r < rows; r++) {
        float *dst = io->dq + (int64_t)qrows[r] * d;
        for (int c = 0; c < d; c++)
            dst[c] += t->part_q[(size_t)r * d + c];
    }
    for (int j = 0; j < cols; j++) {
        float *dk = io->dk + (int64_t)krows[j] * d, *dv = io->dv + (int64_t)krows[j] * d;
        for (int c = 0; c < d; c++) {
            dk[c] += t->part_k[(size_t)j * d + c];
            dv[c] += t->part_v[(size_t)j * d + c];
        }
    }
}
