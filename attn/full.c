/* full.c: textbook attention that materializes the n x n score matrix, one head at a time.
 *
 * Quadratic in memory by construction: the workspace is one (n, n) fp32 matrix, which is the
 * point of this method (it is what runs out of memory at long n). Both cores work on the same
 * head, each on its own blocks of query rows, so the workspace does not grow with the thread
 * count. Per row block: S = QK^T/sqrt(d), causal mask, P = softmax(S) in place, O = PV.
 * Not the fast path (see full_stream); the oracle-shaped reference the others are judged by.
 * In bf16 the head's rows are widened into fp32 copies first and its results rounded from
 * fp32 ones (O(n d) beside the O(n^2) matrix, so the matrix is still what the memory is). */
#include <math.h>
#include <omp.h>
#include <stdbool.h>

#include "backward.h"
#include "kernels.h"
#include "methods.h"

enum { FULL_ROW_BLOCK = 64 }; /* fixed, so results do not depend on the thread count */

static int full_check(const attn_shape *s, const attn_params *p, const char **why)
{
    (void)p;
    *why = "n must fit a BLAS int dimension";
    return s->n > INT32_MAX / 2 ? ATTN_EUNSUPPORTED : ATTN_OK;
}

static void full_cost(const attn_shape *s, const attn_params *p, int nthreads, attn_cost *c)
{
    (void)p;
    (void)nthreads;
    double n = (double)s->n;
    *c = (attn_cost){0};
    const size_t head = (size_t)s->n * (size_t)s->d;
    const bool bf16 = s->dtype == ATTN_BF16;
    c->workspace_bytes = kern_slice_bytes((size_t)s->n * (size_t)s->n, sizeof(float)) +
                         (bf16 ? 4 * kern_slice_bytes(head, sizeof(float)) : 0); /* q k v out */
    /* QK^T and PV on the whole matrix (the textbook kernel masks after computing). */
    c->scores = (double)(s->B * s->H) * n * n;
    c->flops = 4.0 * c->scores * (double)s->d;
    /* backward: P and dS, both n x n, and D; bf16: q k v dout dq dk dv widened */
    c->bwd_workspace_bytes = 2 * kern_slice_bytes((size_t)s->n * (size_t)s->n, sizeof(float)) +
                             kern_slice_bytes((size_t)s->n, sizeof(float)) +
                             (bf16 ? 7 * kern_slice_bytes(head, sizeof(float)) : 0);
    c->bwd_flops = 2.5 * c->flops;
}

/* One head's rows of a tensor as fp32: the tensor itself, or (bf16) widened into `copy`
 * (head_copy: a slice of the workspace in bf16, NULL in fp32). */
static const float *head_rows(const attn_shape *s, const void *base, size_t off, float *copy)
{
    if (s->dtype != ATTN_BF16)
        return (const float *)base + off;
    attn_convert(attn_elem(base, s->dtype, off), s->dtype, copy, ATTN_FP32,
                 (size_t)s->n * (size_t)s->d);
    return copy;
}

static float *head_copy(const attn_shape *s, kern_cursor *c)
{
    return s->dtype == ATTN_BF16 ? kern_take(c, (size_t)s->n * (size_t)s->d, sizeof(float)) : NULL;
}

/* Where a head's result is computed: the tensor itself, or (bf16) its fp32 copy. */
static float *head_result(const attn_shape *s, void *base, size_t off, float *copy)
{
    return s->dtype == ATTN_BF16 ? copy : (float *)base + off;
}

/* Rounds a head's fp32 result into its bf16 rows (nothing in fp32). */
static void head_store(const attn_shape *s, const float *copy, void *base, size_t off)
{
    if (s->dtype == ATTN_BF16)
        attn_convert(copy, ATTN_FP32, attn_elem_mut(base, s->dtype, off), s->dtype,
                     (size_t)s->n * (size_t)s->d);
}

static int full_forward(const attn_shape *s, const attn_params *p, const attn_tensors *t,
                        void *work, int nthreads)
{
    (void)p;
    const int n = (int)s->n, d = (int)s->d;
    const float scale = 1.0f / sqrtf((float)d);
    kern_cursor cursor = {work, 0};
    float *scores = kern_take(&cursor, (size_t)n * (size_t)n, sizeof(float));
    float *copies[4];
    for (int i = 0; i < 4; i++)
        copies[i] = head_copy(s, &cursor);
    const int nblocks = (n + FULL_ROW_BLOCK - 1) / FULL_ROW_BLOCK;

    for (int64_t bh = 0; bh < s->B * s->H; bh++) {
        const size_t off = (size_t)bh * (size_t)n * (size_t)d;
        const float *q = head_rows(s, t->q, off, copies[0]), *k = head_rows(s, t->k, off, copies[1]),
                    *v = head_rows(s, t->v, off, copies[2]);
        float *out = head_result(s, t->out, off, copies[3]);
        float *lse = t->lse + (size_t)bh * (size_t)n;
#pragma omp parallel num_threads(nthreads)
        {
            kern_blas_serial();
            attn_stats mine = {{0}};
#pragma omp for schedule(dynamic)
            for (int blk = 0; blk < nblocks; blk++) {
                const int r0 = blk * FULL_ROW_BLOCK;
                const int rows = n - r0 < FULL_ROW_BLOCK ? n - r0 : FULL_ROW_BLOCK;
                float *srows = scores + (size_t)r0 * (size_t)n;
                /* every score of the rows is computed and exponentiated, the masked ones too */
                mine.v[ATTN_STAT_TILES]++;
                mine.v[ATTN_STAT_SCORES] += (uint64_t)rows * (uint64_t)n;
                mine.v[ATTN_STAT_EXPS] += (uint64_t)rows * (uint64_t)n;
                /* pass 1: S = scale * Q K^T for these rows */
                kern_gemm_nt(rows, n, d, scale, q + (size_t)r0 * d, d, k, d, 0.0f, srows, n);
                /* pass 2: mask, softmax in place, save the row logsumexp */
                for (int r = 0; r < rows; r++) {
                    const int i = r0 + r;
                    float *row = srows + (size_t)r * (size_t)n;
                    if (s->causal) {
                        for (int j = i + 1; j < n; j++)
                            row[j] = -INFINITY;
                        mine.v[ATTN_STAT_SCORES_MASKED] += (uint64_t)(n - 1 - i);
                    }
                    float m = kern_max(row, n);
                    float sum = kern_exp_shift_sum(row, n, m);
                    lse[i] = m + logf(sum);
                    const float inv = 1.0f / sum;
                    for (int j = 0; j < n; j++)
                        row[j] *= inv;
                }
                /* pass 3: O = P V */
                kern_gemm_nn(rows, d, n, 1.0f, srows, n, v, d, 0.0f, out + (size_t)r0 * d, d);
            }
            attn_stats_add(t->stats, &mine);
        }
        head_store(s, out, t->out, off);
    }
    return ATTN_OK;
}

/* The textbook backward on the materialized matrices, one head at a time: P = exp(S - lse)
 * (n x n), dV = P^T dO, dS = P o (dO V^T - D) (n x n), dQ = scale dS K, dK = scale dS^T Q.
 * Row blocks for the row-wise products, key blocks for the transposed ones. */
static int full_backward(const attn_shape *s, const attn_params *p, const attn_grads *g,
                         void *work, int nthreads)
{
    (void)p;
    const int n = (int)s->n, d = (int)s->d;
    const float scale = 1.0f / sqrtf((float)d);
    kern_cursor cursor = {work, 0};
    float *P = kern_take(&cursor, (size_t)n * (size_t)n, sizeof(float));
    float *dS = kern_take(&cursor, (size_t)n * (size_t)n, sizeof(float));
    float *D = kern_take(&cursor, (size_t)n, sizeof(float));
    float *copies[7];
    for (int i = 0; i < 7; i++)
        copies[i] = head_copy(s, &cursor);
    const int nblocks = (n + FULL_ROW_BLOCK - 1) / FULL_ROW_BLOCK;

    for (int64_t bh = 0; bh < s->B * s->H; bh++) {
        const size_t off = (size_t)bh * (size_t)n * (size_t)d;
        const float *q = head_rows(s, g->q, off, copies[0]), *k = head_rows(s, g->k, off, copies[1]),
                    *v = head_rows(s, g->v, off, copies[2]),
                    *dout = head_rows(s, g->dout, off, copies[3]);
        const float *lse = g->lse + (size_t)bh * (size_t)n;
        float *dq = head_result(s, g->dq, off, copies[4]), *dk = head_result(s, g->dk, off, copies[5]),
              *dv = head_result(s, g->dv, off, copies[6]);
        bwd_rowdot(attn_elem(g->dout, s->dtype, off), attn_elem(g->out, s->dtype, off), s->dtype, n,
                   d, D);
        if (g->stats) {
            attn_stats part = {{0}};
            part.v[ATTN_STAT_BWD_SCORES] = (uint64_t)n * (uint64_t)n; /* all of S, recomputed */
            attn_stats_add(g->stats, &part);
        }
#pragma omp parallel num_threads(nthreads)
        {
            kern_blas_serial();
            /* pass 1: P, and dS = P o (dO V^T - D), row block by row block */
#pragma omp for schedule(dynamic)
            for (int blk = 0; blk < nblocks; blk++) {
                const int r0 = blk * FULL_ROW_BLOCK;
                const int rows = n - r0 < FULL_ROW_BLOCK ? n - r0 : FULL_ROW_BLOCK;
                float *prow = P + (size_t)r0 * (size_t)n, *dsrow = dS + (size_t)r0 * (size_t)n;
                kern_gemm_nt(rows, n, d, scale, q + (size_t)r0 * d, d, k, d, 0.0f, prow, n);
                kern_gemm_nt(rows, n, d, 1.0f, dout + (size_t)r0 * d, d, v, d, 0.0f, dsrow, n);
                for (int r = 0; r < rows; r++) {
                    const int i = r0 + r;
                    float *pr = prow + (size_t)r * n, *dr = dsrow + (size_t)r * n;
                    if (s->causal)
                        for (int j = i + 1; j < n; j++)
                            pr[j] = -INFINITY;
                    kern_exp_shift_sum(pr, n, lse[i]);
                    for (int j = 0; j < n; j++)
                        dr[j] = pr[j] * (dr[j] - D[i]);
                }
                /* dQ = scale dS K */
                kern_gemm_nn(rows, d, n, scale, dsrow, n, k, d, 0.0f, dq + (size_t)r0 * d, d);
            }
            /* pass 2: dV = P^T dO and dK = scale dS^T Q, key block by key block */
#pragma omp for schedule(dynamic)
            for (int blk = 0; blk < nblocks; blk++) {
                const int c0 = blk * FULL_ROW_BLOCK;
                const int cols = n - c0 < FULL_ROW_BLOCK ? n - c0 : FULL_ROW_BLOCK;
                kern_gemm_tn(cols, d, n, 1.0f, P + c0, n, dout, d, 0.0f, dv + (size_t)c0 * d, d);
                kern_gemm_tn(cols, d, n, scale, dS + c0, n, q, d, 0.0f, dk + (size_t)c0 * d, d);
            }
        }
        head_store(s, dq, g->dq, off);
        head_store(s, dk, g->dk, off);
        head_store(s, dv, g->dv, off);
    }
    return ATTN_OK;
}

const attn_method attn_full = {
    .name = "full",
    .summary = "textbook attention, materializes the n x n score matrix (quadratic memory)",
    .params = NULL,
    .n_params = 0,
    .check = full_check,
    .cost = full_cost,
    .forward = full_forward,
    .backward = full_backward,
};
