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

void kern_gemm_tn(int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                  int ldb, float beta, float *c, int ldc)
{
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
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

/* The first NaN of x[0..half), or -1. */
static int64_t first_nan(const float *x, int64_t half)
{
    for (int64_t j = 0; j < half; j++)
        if (isnan(x[j]))
            return j;
    return -1;
}

int64_t kern_argmax_pm(const float *x, int64_t half)
{
    /* pass 1: the largest and smallest x; -min(x) is the largest of -x. A NaN anywhere wins,
     * as it does in torch.argmax and numpy.argmax (and it must not make the search of pass 2
     * run off the end: NaN equals nothing, not even itself) */
    float mx = x[0], mn = x[0];
    int unordered = isnan(x[0]);
    int64_t j = 0;
#if defined(__AVX512F__)
    __m512 vmax = _mm512_set1_ps(x[0]), vmin = vmax;
    __mmask16 nan_lanes = 0;
    for (; j + 16 <= half; j += 16) {
        const __m512 v = _mm512_loadu_ps(x + j);
        nan_lanes |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        vmax = _mm512_max_ps(vmax, v);
        vmin = _mm512_min_ps(vmin, v);
    }
    unordered |= nan_lanes != 0;
    mx = _mm512_reduce_max_ps(vmax);
    mn = _mm512_reduce_min_ps(vmin);
#elif defined(__AVX2__)
    __m256 vmax = _mm256_set1_ps(x[0]), vmin = vmax, nan_lanes = _mm256_setzero_ps();
    for (; j + 8 <= half; j += 8) {
        const __m256 v = _mm256_loadu_ps(x + j);
        nan_lanes = _mm256_or_ps(nan_lanes, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        vmax = _mm256_max_ps(vmax, v);
        vmin = _mm256_min_ps(vmin, v);
    }
    unordered |= _mm256_movemask_ps(nan_lanes) != 0;
    float lanes_max[8], lanes_min[8];
    _mm256_storeu_ps(lanes_max, vmax);
    _mm256_storeu_ps(lanes_min, vmin);
    for (int i = 0; i < 8; i++) {
        mx = lanes_max[i] > mx ? lanes_max[i] : mx;
        mn = lanes_min[i] < mn ? lanes_min[i] : mn;
    }
#endif
    for (; j < half; j++) {
        unordered |= isnan(x[j]);
        mx = x[j] > mx ? x[j] : mx;
        mn = x[j] < mn ? x[j] : mn;
    }
    if (unordered)
        return first_nan(x, half);
    /* pass 2: the first position of the winner; on a tie the x half comes first. The target
     * is one of the values, so the search stops inside the half. */
    const int positive = mx >= -mn;
    const float target = positive ? mx : mn;
    j = 0;
#if defined(__AVX512F__)
    const __m512 vt = _mm512_set1_ps(target);
    for (; j + 16 <= half; j += 16) {
        const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + j), vt, _CMP_EQ_OQ);
        if (hit)
            return (positive ? 0 : half) + j + __builtin_ctz(hit);
    }
#elif defined(__AVX2__)
    const __m256 vt = _mm256_set1_ps(target);
    for (; j + 8 <= half; j += 8) {
        const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + j), vt, _CMP_EQ_OQ));
        if (hit)
            return (positive ? 0 : half) + j + __builtin_ctz((unsigned)hit);
    }
#endif
    while (j < half - 1 && x[j] != target)
        j++;
    return (positive ? 0 : half) + j;
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

void kern_rows_widen(const void *base, int64_t ld, const int32_t *idx, int count, int d,
                     attn_dtype dtype, float *dst)
{
    for (int r = 0; r < count; r++) {
        const size_t row = (size_t)(idx ? idx[r] : r) * (size_t)ld;
        float *y = dst + (size_t)r * (size_t)d;
        if (dtype == ATTN_BF16) {
            const attn_bf16 *x = (const attn_bf16 *)base + row;
            for (int c = 0; c < d; c++) /* a shift: the compiler vectorizes it */
                y[c] = attn_bf16_to_f32(x[c]);
        } else {
            memcpy(y, (const float *)base + row, (size_t)d * sizeof(float));
        }
    }
}

void kern_rows_narrow(const float *src, int count, int d, void *base, int64_t ld,
                      const int32_t *idx, attn_dtype dtype)
{
    for (int r = 0; r < count; r++) {
        const size_t row = (size_t)(idx ? idx[r] : r) * (size_t)ld;
        const float *x = src + (size_t)r * (size_t)d;
        if (dtype == ATTN_BF16) {
            attn_bf16 *y = (attn_bf16 *)base + row;
            for (int c = 0; c < d; c++)
                y[c] = attn_f32_to_bf16(x[c]);
        } else {
            memcpy((float *)base + row, x, (size_t)d * sizeof(float));
        }
    }
}
