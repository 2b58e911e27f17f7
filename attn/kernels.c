/* kernels.c: shared compute blocks (see kernels.h). The exponential is the first bottleneck of
 * a CPU attention kernel (one exp per score against 4d FLOPs of matrix work), so it is SLEEF's
 * vectorized expf (1-ulp) on AVX-512 or AVX2, with libm as the portable fallback. */
#include "kernels.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#include <sleef.h>
#endif

/* Debian's OpenMP build of OpenBLAS (what pkg-config finds) runs single-threaded inside an
 * active parallel region, but inside a one-thread team it would start threads of its own,
 * sized by the task's nthreads ICV. Setting that ICV to 1 applies to the current task only,
 * so it ends with the region and does not leak to the caller. */
void kern_blas_serial(void)
{
    omp_set_num_threads(1);
}

void kern_gemm_nt(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                  int ldb, float beta, float *c, int ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
                ldc);
}

void kern_gemm_nn(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                  int ldb, float beta, float *c, int ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta,
                c, ldc);
}

float kern_max(const float *x, int n)
{
    int j = 0;
    float mx = -INFINITY;
#if defined(__AVX512F__)
    __m512 vmx = _mm512_set1_ps(-INFINITY);
    for (; j + 16 <= n; j += 16)
        vmx = _mm512_max_ps(vmx, _mm512_loadu_ps(x + j));
    mx = _mm512_reduce_max_ps(vmx);
#endif
    for (; j < n; j++)
        mx = x[j] > mx ? x[j] : mx;
    return mx;
}

float kern_exp_shift_sum(float *x, int n, float shift)
{
    int j = 0;
    float sum = 0.0f;
#if defined(__AVX512F__)
    __m512 vs = _mm512_set1_ps(shift), acc = _mm512_setzero_ps();
    for (; j + 16 <= n; j += 16) {
        __m512 e = Sleef_expf16_u10(_mm512_sub_ps(_mm512_loadu_ps(x + j), vs));
        _mm512_storeu_ps(x + j, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (j < n) {
        __mmask16 k = (__mmask16)((1u << (n - j)) - 1);
        __m512 e = Sleef_expf16_u10(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), vs));
        e = _mm512_maskz_mov_ps(k, e);
        _mm512_mask_storeu_ps(x + j, k, e);
        acc = _mm512_add_ps(acc, e);
        j = n;
    }
    sum = _mm512_reduce_add_ps(acc);
#elif defined(__AVX2__)
    __m256 vs = _mm256_set1_ps(shift), acc = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8) {
        __m256 e = Sleef_expf8_u10(_mm256_sub_ps(_mm256_loadu_ps(x + j), vs));
        _mm256_storeu_ps(x + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, acc);
    for (int i = 0; i < 8; i++)
        sum += lanes[i];
#endif
    for (; j < n; j++) {
        x[j] = expf(x[j] - shift);
        sum += x[j];
    }
    return sum;
}

size_t kern_stream_bytes(int max_rows, int max_cols, int d)
{
    return 2 * kern_slice_bytes((size_t)max_rows, sizeof(float)) +
           kern_slice_bytes((size_t)max_rows * (size_t)d, sizeof(float)) +
           kern_slice_bytes((size_t)max_rows * (size_t)max_cols, sizeof(float));
}

void kern_stream_init(kern_stream *st, char **cursor, int max_rows, int max_cols, int d)
{
    st->max_rows = max_rows;
    st->max_cols = max_cols;
    st->d = d;
    st->rows = st->cols = 0;
    st->m = kern_take(cursor, (size_t)max_rows, sizeof(float));
    st->l = kern_take(cursor, (size_t)max_rows, sizeof(float));
    st->acc = kern_take(cursor, (size_t)max_rows * (size_t)d, sizeof(float));
    st->s = kern_take(cursor, (size_t)max_rows * (size_t)max_cols, sizeof(float));
}

void kern_stream_begin(kern_stream *st, int rows)
{
    st->rows = rows;
    for (int r = 0; r < rows; r++) {
        st->m[r] = -INFINITY;
        st->l[r] = 0.0f;
    }
    memset(st->acc, 0, (size_t)rows * (size_t)st->d * sizeof(float));
}

float *kern_stream_scores(kern_stream *st, const float *q, int ldq, const float *k, int ldk,
                          int cols, float scale)
{
    st->cols = cols;
    kern_gemm_nt(st->rows, cols, st->d, scale, q, ldq, k, ldk, 0.0f, st->s, cols);
    return st->s;
}

void kern_stream_accumulate(kern_stream *st, const float *v, int ldv)
{
    const int cols = st->cols, d = st->d;
    for (int r = 0; r < st->rows; r++) {
        float *s = st->s + (size_t)r * (size_t)cols;
        float mnew = fmaxf(st->m[r], kern_max(s, cols));
        if (mnew == -INFINITY) { /* nothing attendable yet: contribute nothing */
            memset(s, 0, (size_t)cols * sizeof(float));
            continue;
        }
        float alpha = st->m[r] == -INFINITY ? 0.0f : expf(st->m[r] - mnew);
        float sum = kern_exp_shift_sum(s, cols, mnew);
        st->l[r] = alpha * st->l[r] + sum;
        st->m[r] = mnew;
        if (alpha != 1.0f) {
            float *acc = st->acc + (size_t)r * (size_t)d;
            for (int c = 0; c < d; c++)
                acc[c] *= alpha;
        }
    }
    /* pass 2: acc += P v */
    kern_gemm_nn(st->rows, d, cols, 1.0f, st->s, cols, v, ldv, 1.0f, st->acc, d);
}

void kern_stream_end(kern_stream *st, float *out, int ldo, float *lse)
{
    const int d = st->d;
    for (int r = 0; r < st->rows; r++) {
        const float *acc = st->acc + (size_t)r * (size_t)d;
        float *o = out + (size_t)r * (size_t)ldo;
        float inv = st->l[r] > 0.0f ? 1.0f / st->l[r] : 0.0f;
        for (int c = 0; c < d; c++)
            o[c] = acc[c] * inv;
        if (lse)
            lse[r] = st->l[r] > 0.0f ? st->m[r] + logf(st->l[r]) : -INFINITY;
    }
}
