/* kernels.h: internal to attn/. Building blocks the methods share: workspace carving, BLAS
 * products, row max and a vectorized exp. The fused streaming kernel is in tile.h.
 *
 * Threading rule: methods parallelize with OpenMP themselves and call BLAS from inside their
 * parallel regions; every such region starts with kern_blas_serial() so that BLAS runs on the
 * calling thread only, whatever the team size (see kernels.c). */
#ifndef ATTN_KERNELS_H
#define ATTN_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "attn.h"

#define KERN_ALIGN 64

/* Bytes of a workspace slice of `count` elements of `elem` bytes, rounded to KERN_ALIGN. */
static inline size_t kern_slice_bytes(size_t count, size_t elem)
{
    return (count * elem + KERN_ALIGN - 1) / KERN_ALIGN * KERN_ALIGN;
}

/* A workspace cursor: slices are taken from base + off in order. With base NULL it only
 * counts, so one carving function gives both a workspace's size and its layout. */
typedef struct kern_cursor {
    char *base;
    size_t off;
} kern_cursor;

/* Takes the next slice (NULL when only counting); the workspace is KERN_ALIGN-aligned. */
static inline void *kern_take(kern_cursor *c, size_t count, size_t elem)
{
    void *p = c->base ? c->base + c->off : NULL;
    c->off += kern_slice_bytes(count, elem);
    return p;
}

/* Makes BLAS calls from the current OpenMP task single-threaded (call first in a region). */
void kern_blas_serial(void);

/* C (m, n) = alpha * A (m, k) * B (n, k)^T + beta * C, row-major with leading dimensions. */
void kern_gemm_nt(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                  int ldb, float beta, float *c, int ldc);
/* C (m, n) = alpha * A (k, m)^T * B (k, n) + beta * C. */
void kern_gemm_tn(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                  int ldb, float beta, float *c, int ldc);
/* C (m, n) = alpha * A (m, k) * B (k, n) + beta * C. */
void kern_gemm_nn(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                  int ldb, float beta, float *c, int ldc);

/* Returns max(x[0..n)); -INFINITY for n == 0. */
float kern_max(const float *x, int n);
/* The index of the first maximum of the concatenation [x, -x] (2 * half values, half >= 1):
 * angular LSH's bucket. A NaN counts as the maximum (the first NaN's index, as torch.argmax
 * picks), so the result is in [0, 2 half) for any input. */
int64_t kern_argmax_pm(const float *x, int64_t half);
/* x[j] = exp(x[j] - shift) in place; returns the sum of the new values (fixed summation order). */
float kern_exp_shift_sum(float *x, int n, float shift);

/* Rows idx[0..count) (idx NULL: 0..count) of base (leading dimension ld, elements of dtype),
 * d elements each, widened into dst (count, d) fp32; and rows of src (count, d) fp32 rounded
 * into rows of base. The staging every bf16 path uses (tile, backward, the dense methods);
 * for fp32 they copy. */
void kern_rows_widen(const void *base, int64_t ld, const int32_t *idx, int count, int d,
                     attn_dtype dtype, float *dst);
void kern_rows_narrow(const float *src, int count, int d, void *base, int64_t ld,
                      const int32_t *idx, attn_dtype dtype);

#endif
