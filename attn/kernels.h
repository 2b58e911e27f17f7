/* kernels.h: internal to attn/. The building blocks every method shares: workspace carving,
 * BLAS products on tiles, a vectorized exp, and the online-softmax accumulator (FlashAttention-2
 * order) that full_stream, block_sparse, etc and lsh all stream their key tiles through.
 *
 * Threading rule: methods parallelize with OpenMP themselves and call BLAS from inside their
 * parallel regions; every such region starts with kern_blas_serial() so that BLAS runs on the
 * calling thread only, whatever the team size (see kernels.c). */
#ifndef ATTN_KERNELS_H
#define ATTN_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define KERN_ALIGN 64

/* Bytes of a workspace slice of `count` elements of `elem` bytes, rounded to KERN_ALIGN. */
static inline size_t kern_slice_bytes(size_t count, size_t elem)
{
    return (count * elem + KERN_ALIGN - 1) / KERN_ALIGN * KERN_ALIGN;
}

/* Takes the next slice from a workspace cursor (the workspace is KERN_ALIGN-aligned). */
static inline void *kern_take(char **cursor, size_t count, size_t elem)
{
    void *p = *cursor;
    *cursor += kern_slice_bytes(count, elem);
    return p;
}

/* Makes BLAS calls from the current OpenMP task single-threaded (call first in a region). */
void kern_blas_serial(void);

/* C (m, n) = alpha * A (m, k) * B (n, k)^T + beta * C, row-major with leading dimensions. */
void kern_gemm_nt(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                  int ldb, float beta, float *c, int ldc);
/* C (m, n) = alpha * A (m, k) * B (k, n) + beta * C. */
void kern_gemm_nn(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                  int ldb, float beta, float *c, int ldc);

/* Returns max(x[0..n)); -INFINITY for n == 0. */
float kern_max(const float *x, int n);
/* x[j] = exp(x[j] - shift) in place; returns the sum of the new values (fixed summation order). */
float kern_exp_shift_sum(float *x, int n, float shift);

/* The online-softmax accumulator for a tile of up to `max_rows` queries against key tiles of
 * up to `max_cols` keys, head dimension d. Usage per query tile:
 *   stream_begin(st, rows);
 *   for each key tile: s = stream_scores(...); <mask s in place>; stream_accumulate(st, v, ...);
 *   stream_end(st, out, ldo, lse);
 * Masked scores are -INFINITY (never attended) or a finite penalty (attended with that logit).
 * A row that saw only -INFINITY gets output 0 and lse -INFINITY. */
typedef struct kern_stream {
    int max_rows, max_cols, d;
    int rows, cols;  /* current tile */
    float *m;        /* (max_rows) running max */
    float *l;        /* (max_rows) running sum of exp(s - m) */
    float *acc;      /* (max_rows, d) running sum of exp(s - m) * v */
    float *s;        /* (max_rows, max_cols) score tile, leading dimension = cols of the tile */
} kern_stream;

/* Workspace bytes of one accumulator. */
size_t kern_stream_bytes(int max_rows, int max_cols, int d);
/* Carves an accumulator from a workspace cursor. */
void kern_stream_init(kern_stream *st, char **cursor, int max_rows, int max_cols, int d);
void kern_stream_begin(kern_stream *st, int rows);
/* s (rows, cols) = scale * q (rows, d) k (cols, d)^T; returns s, leading dimension cols. */
float *kern_stream_scores(kern_stream *st, const float *q, int ldq, const float *k, int ldk,
                          int cols, float scale);
/* Folds the (masked) score tile into the running softmax and adds P v (cols, d). */
void kern_stream_accumulate(kern_stream *st, const float *v, int ldv);
/* out (rows, d) = acc / l; lse[r] = m + log l (lse may be NULL). */
void kern_stream_end(kern_stream *st, float *out, int ldo, float *lse);

#endif
