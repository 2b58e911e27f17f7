/* tile.c: the fused online-softmax tile kernel (see tile.h for the layout and why).
 *
 * Three implementations of the two products and the softmax update, chosen at build time by
 * the instruction set: AVX-512 micro-kernels (8 keys or 8 value columns by 32 query lanes, 16
 * zmm accumulators), AVX2 with FMA (6 keys or 6 value columns by 16 query lanes, 12 ymm
 * accumulators: AMD Zen 2/3 and older Intel), and a portable C path with the same arithmetic,
 * for any other x86-64 and for the tests, which run it beside the vector one. */
#include "tile.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "kernels.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#include <sleef.h>
#define TILE_HAVE_AVX512 1
#define TILE_HAVE_AVX2 0
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include <sleef.h>
#define TILE_HAVE_AVX512 0
#define TILE_HAVE_AVX2 1
#else
#define TILE_HAVE_AVX512 0
#define TILE_HAVE_AVX2 0
#endif

static bool portable_forced;

void tile_force_portable(bool on)
{
    portable_forced = on;
}

const char *tile_isa(void)
{
    return portable_forced ? "portable" : TILE_HAVE_AVX512 ? "avx512" : TILE_HAVE_AVX2 ? "avx2" : "portable";
}

#if TILE_HAVE_AVX512
static inline bool use_avx512(void)
{
    return !portable_forced;
}
#endif
#if TILE_HAVE_AVX2
static inline bool use_avx2(void)
{
    return !portable_forced;
}
#endif

static inline int lanes_for(int rows)
{
    return (rows + TILE_LANES - 1) / TILE_LANES * TILE_LANES;
}

/* The stride of the transposed arrays: the lanes and one cache line more. The kernels walk
 * them a row at a time (P^T and Q^T down the keys or columns, O^T down the columns); at a
 * stride of a power of two lines (128 lanes: 512 B) those rows fall in 1/8 of L1's sets and
 * evict each other and the V and K rows they meet; an odd number of lines spreads them over
 * every set. */
static inline int stride_for(int lanes)
{
    return lanes + 64 / (int)sizeof(float);
}

static inline const float *row_of(const float *base, int64_t ld, const int32_t *idx, int r)
{
    return base + (idx ? (int64_t)idx[r] : (int64_t)r) * ld;
}

void tile_prefetch_rows(const float *base, int64_t ld, const int32_t *idx, int count, int d)
{
    if (!idx)
        return;
    for (int j = 0; j < count; j++) {
        const char *row = (const char *)(base + (int64_t)idx[j] * ld);
        for (int off = 0; off < d * (int)sizeof(float); off += 64)
            __builtin_prefetch(row + off);
    }
}

size_t tile_bytes(int max_rows, int max_cols, int d)
{
    size_t ld = (size_t)stride_for(lanes_for(max_rows));
    return 2 * kern_slice_bytes((size_t)d * ld, sizeof(float)) +
           kern_slice_bytes((size_t)max_cols * ld, sizeof(float)) +
           2 * kern_slice_bytes(ld, sizeof(float));
}

void tile_init(kern_tile *t, kern_cursor *cursor, int max_rows, int max_cols, int d)
{
    size_t ld = (size_t)stride_for(lanes_for(max_rows));
    t->max_rows = max_rows;
    t->max_cols = max_cols;
    t->d = d;
    t->rows = t->cols = 0;
    t->lanes = lanes_for(max_rows);
    t->ld = (int)ld;
    t->qt = kern_take(cursor, (size_t)d * ld, sizeof(float));
    t->ot = kern_take(cursor, (size_t)d * ld, sizeof(float));
    t->st = kern_take(cursor, (size_t)max_cols * ld, sizeof(float));
    t->m = kern_take(cursor, ld, sizeof(float));
    t->l = kern_take(cursor, ld, sizeof(float));
    t->stats = NULL;
}

static inline void count(kern_tile *t, int stat, uint64_t v)
{
    if (t->stats)
        t->stats->v[stat] += v;
}

#if TILE_HAVE_AVX512
/* Transposes a 16 x 16 block held as 16 vectors (in place): r[i] element j -> r[j] element i. */
static inline void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) { /* pairs of rows, element by element */
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* then 64-bit pairs: r[i + k] lane L = rows i..i+3, elt 4L+k */
        const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]),
                      c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int k = 0; k < 4; k++) { /* then 128-bit lanes across the four groups of rows */
        const __m512 ab_lo = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x44),
                     ab_hi = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xEE),
                     cd_lo = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x44),
                     cd_hi = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xEE);
        t[k] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0x88);
        t[4 + k] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0xDD);
        t[8 + k] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0x88);
        t[12 + k] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0xDD);
    }
    for (int i = 0; i < 16; i++)
        r[i] = t[i];
}
#endif

#if TILE_HAVE_AVX2
/* Transposes an 8 x 8 block held as 8 vectors (in place): r[i] element j -> r[j] element i. */
static inline void transpose8(__m256 r[8])
{
    __m256 t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
        t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
    }
    for (int i = 0; i < 8; i++)
        r[i] = t[i];
}
#endif

void tile_begin(kern_tile *t, const float *q, int64_t ldq, const int32_t *qidx, int rows,
                float scale)
{
    const int d = t->d, lanes = lanes_for(rows), ld = stride_for(lanes);
    assert(rows >= 1 && rows <= t->max_rows); /* the workspace was sized for max_rows */
    if (qidx) {
        count(t, ATTN_STAT_ROWS_GATHERED, (uint64_t)rows);
        count(t, ATTN_STAT_BYTES_GATHERED, (uint64_t)rows * (uint64_t)t->d * sizeof(float));
    }
    t->rows = rows;
    t->lanes = lanes;
    t->ld = ld;
    t->cols = 0;
    int cvec = 0; /* columns done by the vector path, for every row */
#if TILE_HAVE_AVX512
    if (use_avx512()) { /* 16 query rows x 16 columns at a time, transposed in registers */
        const __m512 vscale = _mm512_set1_ps(scale);
        cvec = d / 16 * 16;
        for (int r0 = 0; r0 < rows; r0 += 16) {
            const int count = rows - r0 < 16 ? rows - r0 : 16;
            const float *qr[16];
            for (int i = 0; i < 16; i++)
                qr[i] = i < count ? row_of(q, ldq, qidx, r0 + i) : NULL;
            for (int c0 = 0; c0 < cvec; c0 += 16) {
                __m512 blk[16];
                for (int i = 0; i < 16; i++)
                    blk[i] = i < count ? _mm512_mul_ps(_mm512_loadu_ps(qr[i] + c0), vscale)
                                       : _mm512_setzero_ps();
                transpose16(blk);
                for (int i = 0; i < 16; i++)
                    _mm512_store_ps(t->qt + (size_t)(c0 + i) * ld + r0, blk[i]);
            }
        }
    }
#endif
#if TILE_HAVE_AVX2
    if (use_avx2()) { /* 8 query rows x 8 columns at a time, transposed in registers */
        const __m256 vscale = _mm256_set1_ps(scale);
        cvec = d / 8 * 8;
        for (int r0 = 0; r0 < rows; r0 += 8) {
            const int count = rows - r0 < 8 ? rows - r0 : 8;
            const float *qr[8];
            for (int i = 0; i < 8; i++)
                qr[i] = i < count ? row_of(q, ldq, qidx, r0 + i) : NULL;
            for (int c0 = 0; c0 < cvec; c0 += 8) {
                __m256 blk[8];
                for (int i = 0; i < 8; i++)
                    blk[i] = i < count ? _mm256_mul_ps(_mm256_loadu_ps(qr[i] + c0), vscale)
                                       : _mm256_setzero_ps();
                transpose8(blk);
                for (int i = 0; i < 8; i++)
                    _mm256_store_ps(t->qt + (size_t)(c0 + i) * ld + r0, blk[i]);
            }
        }
    }
#endif
    for (int r = 0; r < rows; r++) {
        const float *qr = row_of(q, ldq, qidx, r);
        for (int c = cvec; c < d; c++)
            t->qt[(size_t)c * ld + r] = qr[c] * scale;
    }
    for (int c = 0; c < d; c++)
        for (int r = rows; r < lanes; r++)
            t->qt[(size_t)c * ld + r] = 0.0f;
    for (int r = 0; r < lanes; r++) {
        t->m[r] = -INFINITY;
        t->l[r] = 0.0f;
    }
    memset(t->ot, 0, (size_t)d * (size_t)ld * sizeof(float));
}

/* ---- S^T = K Q^T ---------------------------------------------------------------------- */

static void scores_portable(kern_tile *t, const float *k, int64_t ldk, const int32_t *kidx)
{
    const int d = t->d, ld = t->ld;
    for (int j = 0; j < t->cols; j++) {
        const float *kr = row_of(k, ldk, kidx, j);
        float *s = t->st + (size_t)j * ld;
        for (int r = 0; r < t->lanes; r++)
            s[r] = 0.0f;
        for (int c = 0; c < d; c++) {
            const float kv = kr[c], *qt = t->qt + (size_t)c * ld;
            for (int r = 0; r < t->lanes; r++)
                s[r] = fmaf(kv, qt[r], s[r]);
        }
    }
}

#if TILE_HAVE_AVX512
/* One key against 32 query lanes, c = 0..d: the body of the 8-key micro-kernel. */
#define SCORE_STEP(i)                                                                            \
    b = _mm512_set1_ps(kr##i[c]);                                                                \
    a##i##0 = _mm512_fmadd_ps(b, x0, a##i##0);                                                   \
    a##i##1 = _mm512_fmadd_ps(b, x1, a##i##1)

static void scores_avx512(kern_tile *t, const float *k, int64_t ldk, const int32_t *kidx)
{
    const int d = t->d, ld = t->ld, cols = t->cols;
    for (int q0 = 0; q0 < t->lanes; q0 += TILE_LANES) {
        const float *qt = t->qt + q0;
        int j = 0;
        for (; j + 8 <= cols; j += 8) {
            const float *kr0 = row_of(k, ldk, kidx, j), *kr1 = row_of(k, ldk, kidx, j + 1),
                        *kr2 = row_of(k, ldk, kidx, j + 2), *kr3 = row_of(k, ldk, kidx, j + 3),
                        *kr4 = row_of(k, ldk, kidx, j + 4), *kr5 = row_of(k, ldk, kidx, j + 5),
                        *kr6 = row_of(k, ldk, kidx, j + 6), *kr7 = row_of(k, ldk, kidx, j + 7);
            __m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00,
                   a21 = a00, a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00,
                   a60 = a00, a61 = a00, a70 = a00, a71 = a00;
            for (int c = 0; c < d; c++) {
                const __m512 x0 = _mm512_load_ps(qt + (size_t)c * ld),
                             x1 = _mm512_load_ps(qt + (size_t)c * ld + 16);
                __m512 b;
                SCORE_STEP(0);
                SCORE_STEP(1);
                SCORE_STEP(2);
                SCORE_STEP(3);
                SCORE_STEP(4);
                SCORE_STEP(5);
                SCORE_STEP(6);
                SCORE_STEP(7);
            }
            float *s = t->st + (size_t)j * ld + q0;
            _mm512_store_ps(s, a00), _mm512_store_ps(s + 16, a01), s += ld;
            _mm512_store_ps(s, a10), _mm512_store_ps(s + 16, a11), s += ld;
            _mm512_store_ps(s, a20), _mm512_store_ps(s + 16, a21), s += ld;
            _mm512_store_ps(s, a30), _mm512_store_ps(s + 16, a31), s += ld;
            _mm512_store_ps(s, a40), _mm512_store_ps(s + 16, a41), s += ld;
            _mm512_store_ps(s, a50), _mm512_store_ps(s + 16, a51), s += ld;
            _mm512_store_ps(s, a60), _mm512_store_ps(s + 16, a61), s += ld;
            _mm512_store_ps(s, a70), _mm512_store_ps(s + 16, a71);
        }
        for (; j < cols; j++) { /* the last cols % 8 keys, one at a time */
            const float *kr = row_of(k, ldk, kidx, j);
            __m512 a0 = _mm512_setzero_ps(), a1 = a0;
            for (int c = 0; c < d; c++) {
                const __m512 b = _mm512_set1_ps(kr[c]);
                a0 = _mm512_fmadd_ps(b, _mm512_load_ps(qt + (size_t)c * ld), a0);
                a1 = _mm512_fmadd_ps(b, _mm512_load_ps(qt + (size_t)c * ld + 16), a1);
            }
            float *s = t->st + (size_t)j * ld + q0;
            _mm512_store_ps(s, a0);
            _mm512_store_ps(s + 16, a1);
        }
    }
}
#endif

#if TILE_HAVE_AVX2
/* The AVX2 micro-kernels hold nv x nb accumulators (8 query lanes each) in registers: nv lane
 * vectors by nb keys (scores) or value columns (PV), both compile-time constants once inlined;
 * each step loads nv vectors and broadcasts nb scalars for nv nb FMAs. */
#define AVX2_NV 2
#define AVX2_NB 6

static inline __attribute__((always_inline)) void scores_block_avx2(const float *qt, int ld,
                                                                     int d, const float *const *kr,
                                                                     int nk, float *s)
{
    __m256 a[AVX2_NB][AVX2_NV];
    for (int i = 0; i < nk; i++)
        for (int u = 0; u < AVX2_NV; u++)
            a[i][u] = _mm256_setzero_ps();
    for (int c = 0; c < d; c++) {
        __m256 x[AVX2_NV];
        for (int u = 0; u < AVX2_NV; u++)
            x[u] = _mm256_load_ps(qt + (size_t)c * ld + 8 * u);
        for (int i = 0; i < nk; i++) {
            const __m256 b = _mm256_broadcast_ss(kr[i] + c);
            for (int u = 0; u < AVX2_NV; u++)
                a[i][u] = _mm256_fmadd_ps(b, x[u], a[i][u]);
        }
    }
    for (int i = 0; i < nk; i++)
        for (int u = 0; u < AVX2_NV; u++)
            _mm256_store_ps(s + (size_t)i * ld + 8 * u, a[i][u]);
}

static void scores_avx2(kern_tile *t, const float *k, int64_t ldk, const int32_t *kidx)
{
    const int d = t->d, ld = t->ld, cols = t->cols;
    for (int q0 = 0; q0 < t->lanes; q0 += 8 * AVX2_NV) {
        const float *qt = t->qt + q0;
        int j = 0;
        for (; j + AVX2_NB <= cols; j += AVX2_NB) {
            const float *kr[AVX2_NB];
            for (int i = 0; i < AVX2_NB; i++)
                kr[i] = row_of(k, ldk, kidx, j + i);
            scores_block_avx2(qt, ld, d, kr, AVX2_NB, t->st + (size_t)j * ld + q0);
        }
        const float *kr[AVX2_NB];
        for (int i = 0; j + i < cols; i++)
            kr[i] = row_of(k, ldk, kidx, j + i);
        float *st = t->st + (size_t)j * ld + q0;
        switch (cols - j) { /* the last keys: a block of their own width, unrolled as well */
        case 5: scores_block_avx2(qt, ld, d, kr, 5, st); break;
        case 4: scores_block_avx2(qt, ld, d, kr, 4, st); break;
        case 3: scores_block_avx2(qt, ld, d, kr, 3, st); break;
        case 2: scores_block_avx2(qt, ld, d, kr, 2, st); break;
        case 1: scores_block_avx2(qt, ld, d, kr, 1, st); break;
        default: break;
        }
    }
}
#endif

float *tile_scores(kern_tile *t, const float *k, int64_t ldk, const int32_t *kidx, int cols)
{
    assert(cols >= 1 && cols <= t->max_cols);
    t->cols = cols;
    tile_prefetch_rows(k, ldk, kidx, cols, t->d);
    count(t, ATTN_STAT_SCORES, (uint64_t)t->rows * (uint64_t)cols);
    count(t, ATTN_STAT_TILES, 1);
    if (kidx) {
        count(t, ATTN_STAT_ROWS_GATHERED, (uint64_t)cols);
        count(t, ATTN_STAT_BYTES_GATHERED, (uint64_t)cols * (uint64_t)t->d * sizeof(float));
    }
#if TILE_HAVE_AVX512
    if (use_avx512()) {
        scores_avx512(t, k, ldk, kidx);
        return t->st;
    }
#endif
#if TILE_HAVE_AVX2
    if (use_avx2()) {
        scores_avx2(t, k, ldk, kidx);
        return t->st;
    }
#endif
    scores_portable(t, k, ldk, kidx);
    return t->st;
}

/* ---- online softmax and O^T += V^T P^T ------------------------------------------------- */

/* pass 1, portable: per query lane, the new max, exp(s - max), the rescale of l and O. */
static void softmax_portable(kern_tile *t)
{
    const int ld = t->ld, cols = t->cols, d = t->d;
    for (int r = 0; r < t->lanes; r++) {
        float mx = t->m[r];
        for (int j = 0; j < cols; j++)
            mx = fmaxf(mx, t->st[(size_t)j * ld + r]);
        const float shift = mx == -INFINITY ? 0.0f : mx; /* all masked so far: p = 0 */
        const float alpha = expf(t->m[r] - shift);
        float sum = 0.0f;
        for (int j = 0; j < cols; j++) {
            float *s = &t->st[(size_t)j * ld + r];
            *s = expf(*s - shift);
            sum += *s;
        }
        t->l[r] = alpha * t->l[r] + sum;
        t->m[r] = mx;
        for (int c = 0; c < d; c++)
            t->ot[(size_t)c * ld + r] *= alpha;
    }
}

static void pv_portable(kern_tile *t, const float *v, int64_t ldv, const int32_t *vidx)
{
    const int ld = t->ld, d = t->d;
    for (int j = 0; j < t->cols; j++) {
        const float *vr = row_of(v, ldv, vidx, j), *p = t->st + (size_t)j * ld;
        for (int c = 0; c < d; c++) {
            float *o = t->ot + (size_t)c * ld;
            for (int r = 0; r < t->lanes; r++)
                o[r] = fmaf(vr[c], p[r], o[r]);
        }
    }
}

#if TILE_HAVE_AVX512
static void softmax_avx512(kern_tile *t)
{
    const int ld = t->ld, cols = t->cols, d = t->d;
    const __m512 neg_inf = _mm512_set1_ps(-INFINITY);
    for (int r = 0; r < t->lanes; r += 16) {
        const __m512 mold = _mm512_load_ps(t->m + r);
        __m512 mx = mold;
        for (int j = 0; j < cols; j++)
            mx = _mm512_max_ps(mx, _mm512_load_ps(t->st + (size_t)j * ld + r));
        const __mmask16 none = _mm512_cmp_ps_mask(mx, neg_inf, _CMP_EQ_OQ);
        const __m512 shift = _mm512_mask_mov_ps(mx, none, _mm512_setzero_ps());
        const __m512 alpha = Sleef_expf16_u10(_mm512_sub_ps(mold, shift));
        __m512 sum = _mm512_setzero_ps();
        for (int j = 0; j < cols; j++) {
            float *s = t->st + (size_t)j * ld + r;
            const __m512 e = Sleef_expf16_u10(_mm512_sub_ps(_mm512_load_ps(s), shift));
            _mm512_store_ps(s, e);
            sum = _mm512_add_ps(sum, e);
        }
        _mm512_store_ps(t->l + r, _mm512_fmadd_ps(alpha, _mm512_load_ps(t->l + r), sum));
        _mm512_store_ps(t->m + r, mx);
        /* rescale the accumulator only where the max moved (alpha != 1) */
        if (_mm512_cmp_ps_mask(alpha, _mm512_set1_ps(1.0f), _CMP_NEQ_UQ))
            for (int c = 0; c < d; c++) {
                float *o = t->ot + (size_t)c * ld + r;
                _mm512_store_ps(o, _mm512_mul_ps(_mm512_load_ps(o), alpha));
            }
    }
}

#define PV_STEP(i)                                                                               \
    b = _mm512_set1_ps(vr[i]);                                                                   \
    o##i##0 = _mm512_fmadd_ps(b, p0, o##i##0);                                                   \
    o##i##1 = _mm512_fmadd_ps(b, p1, o##i##1)

#define PV_LOAD(i)                                                                               \
    __m512 o##i##0 = _mm512_load_ps(t->ot + (size_t)(c0 + i) * ld + q0),                         \
           o##i##1 = _mm512_load_ps(t->ot + (size_t)(c0 + i) * ld + q0 + 16)

#define PV_STORE(i)                                                                              \
    _mm512_store_ps(t->ot + (size_t)(c0 + i) * ld + q0, o##i##0);                                \
    _mm512_store_ps(t->ot + (size_t)(c0 + i) * ld + q0 + 16, o##i##1)

static void pv_avx512(kern_tile *t, const float *v, int64_t ldv, const int32_t *vidx)
{
    const int ld = t->ld, d = t->d, cols = t->cols;
    for (int q0 = 0; q0 < t->lanes; q0 += TILE_LANES) {
        int c0 = 0;
        for (; c0 + 8 <= d; c0 += 8) { /* 8 value columns by 32 query lanes */
            PV_LOAD(0); PV_LOAD(1); PV_LOAD(2); PV_LOAD(3);
            PV_LOAD(4); PV_LOAD(5); PV_LOAD(6); PV_LOAD(7);
            for (int j = 0; j < cols; j++) {
                const float *vr = row_of(v, ldv, vidx, j) + c0, *p = t->st + (size_t)j * ld + q0;
                const __m512 p0 = _mm512_load_ps(p), p1 = _mm512_load_ps(p + 16);
                __m512 b;
                PV_STEP(0); PV_STEP(1); PV_STEP(2); PV_STEP(3);
                PV_STEP(4); PV_STEP(5); PV_STEP(6); PV_STEP(7);
            }
            PV_STORE(0); PV_STORE(1); PV_STORE(2); PV_STORE(3);
            PV_STORE(4); PV_STORE(5); PV_STORE(6); PV_STORE(7);
        }
        for (; c0 < d; c0++) { /* the last d % 8 columns */
            __m512 o0 = _mm512_load_ps(t->ot + (size_t)c0 * ld + q0),
                   o1 = _mm512_load_ps(t->ot + (size_t)c0 * ld + q0 + 16);
            for (int j = 0; j < cols; j++) {
                const __m512 b = _mm512_set1_ps(row_of(v, ldv, vidx, j)[c0]);
                const float *p = t->st + (size_t)j * ld + q0;
                o0 = _mm512_fmadd_ps(b, _mm512_load_ps(p), o0);
                o1 = _mm512_fmadd_ps(b, _mm512_load_ps(p + 16), o1);
            }
            _mm512_store_ps(t->ot + (size_t)c0 * ld + q0, o0);
            _mm512_store_ps(t->ot + (size_t)c0 * ld + q0 + 16, o1);
        }
    }
}
#endif

#if TILE_HAVE_AVX2
/* exp(x) for 8 floats x <= 0, the online softmax's arguments (a score less the running max,
 * or the old max less the new), within 2 ulp of expf: Cody-Waite reduction x = k ln2 + r,
 * |r| <= ln2/2, Cephes's degree-6 polynomial for exp(r), and 2^k through the exponent bits.
 * Inlined, it costs a fraction of a SLEEF call, which mattered: one exponential per score
 * against 32 FMAs of products. k comes from adding 1.5 * 2^23 (the rounding of that sum
 * leaves round(x log2 e) in the low mantissa bits, ready to shift into an exponent), which
 * saves a round and a conversion; the domain saves the overflow clamp. Below -87.3 (and -inf,
 * a masked score) it is 0; NaN stays NaN (max returns its second operand, the NaN, and the
 * polynomial carries it). Not for x > 88: 2^k would wrap. */
static inline __m256 exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.3365447505531f), shifter = _mm256_set1_ps(12582912.0f);
    const __m256 xc = _mm256_max_ps(lo, x);
    const __m256 t = _mm256_fmadd_ps(xc, _mm256_set1_ps(1.44269504088896341f), shifter);
    const __m256 k = _mm256_sub_ps(t, shifter);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* t's bits are those of 1.5 * 2^23 plus k; shifted by 23, only k + 127 stays */
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t),
                                                         _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), y); /* underflow and -inf: 0 */
}

static void softmax_avx2(kern_tile *t)
{
    const int ld = t->ld, cols = t->cols, d = t->d;
    const __m256 neg_inf = _mm256_set1_ps(-INFINITY), one = _mm256_set1_ps(1.0f);
    for (int r = 0; r < t->lanes; r += 8) {
        const __m256 mold = _mm256_load_ps(t->m + r);
        __m256 mx = mold;
        for (int j = 0; j < cols; j++)
            mx = _mm256_max_ps(mx, _mm256_load_ps(t->st + (size_t)j * ld + r));
        /* all masked so far: shift by 0, so p = exp(-inf) = 0 */
        const __m256 none = _mm256_cmp_ps(mx, neg_inf, _CMP_EQ_OQ);
        const __m256 shift = _mm256_blendv_ps(mx, _mm256_setzero_ps(), none);
        const __m256 alpha = exp8(_mm256_sub_ps(mold, shift));
        __m256 sum = _mm256_setzero_ps();
        for (int j = 0; j < cols; j++) {
            float *s = t->st + (size_t)j * ld + r;
            const __m256 e = exp8(_mm256_sub_ps(_mm256_load_ps(s), shift));
            _mm256_store_ps(s, e);
            sum = _mm256_add_ps(sum, e);
        }
        _mm256_store_ps(t->l + r, _mm256_fmadd_ps(alpha, _mm256_load_ps(t->l + r), sum));
        _mm256_store_ps(t->m + r, mx);
        /* rescale the accumulator only where the max moved (alpha != 1) */
        if (_mm256_movemask_ps(_mm256_cmp_ps(alpha, one, _CMP_NEQ_UQ)))
            for (int c = 0; c < d; c++) {
                float *o = t->ot + (size_t)c * ld + r;
                _mm256_store_ps(o, _mm256_mul_ps(_mm256_load_ps(o), alpha));
            }
    }
}

/* O^T[c0 .. c0 + nc) += V^T P^T over keys [j0, j1) for 8 AVX2_NV query lanes, the
 * accumulators held in registers. The key loop walks plain pointers (a gathered row costs
 * one index load). */
static inline __attribute__((always_inline)) void pv_block_avx2(kern_tile *t, const float *v,
                                                                 int64_t ldv,
                                                                 const int32_t *vidx, int j0,
                                                                 int j1, int q0, int c0, int nc)
{
    const int ld = t->ld;
    __m256 o[AVX2_NB][AVX2_NV];
    for (int i = 0; i < nc; i++)
        for (int u = 0; u < AVX2_NV; u++)
            o[i][u] = _mm256_load_ps(t->ot + (size_t)(c0 + i) * ld + q0 + 8 * u);
    const float *p = t->st + (size_t)j0 * ld + q0, *vr = v + j0 * ldv + c0;
    for (int j = j0; j < j1; j++, p += ld, vr += ldv) {
        const float *row = vidx ? v + (int64_t)vidx[j] * ldv + c0 : vr;
        __m256 x[AVX2_NV];
        for (int u = 0; u < AVX2_NV; u++)
            x[u] = _mm256_load_ps(p + 8 * u);
        for (int i = 0; i < nc; i++) {
            const __m256 b = _mm256_broadcast_ss(row + i);
            for (int u = 0; u < AVX2_NV; u++)
                o[i][u] = _mm256_fmadd_ps(b, x[u], o[i][u]);
        }
    }
    for (int i = 0; i < nc; i++)
        for (int u = 0; u < AVX2_NV; u++)
            _mm256_store_ps(t->ot + (size_t)(c0 + i) * ld + q0 + 8 * u, o[i][u]);
}

/* Keys in blocks of PV_KEYS, so a block's V rows and P^T rows stay in L1 while every lane
 * and column block uses them (the whole V tile does not fit: it came from L2 once per
 * column block). */
enum { PV_KEYS = 64 };

static void pv_avx2(kern_tile *t, const float *v, int64_t ldv, const int32_t *vidx)
{
    const int d = t->d, cols = t->cols;
    for (int j0 = 0; j0 < cols; j0 += PV_KEYS) {
        const int j1 = cols - j0 < PV_KEYS ? cols : j0 + PV_KEYS;
        for (int q0 = 0; q0 < t->lanes; q0 += 8 * AVX2_NV) {
            int c0 = 0;
            for (; c0 + AVX2_NB <= d; c0 += AVX2_NB)
                pv_block_avx2(t, v, ldv, vidx, j0, j1, q0, c0, AVX2_NB);
            switch (d - c0) { /* the last columns: a block of their own width, unrolled */
            case 5: pv_block_avx2(t, v, ldv, vidx, j0, j1, q0, c0, 5); break;
            case 4: pv_block_avx2(t, v, ldv, vidx, j0, j1, q0, c0, 4); break;
            case 3: pv_block_avx2(t, v, ldv, vidx, j0, j1, q0, c0, 3); break;
            case 2: pv_block_avx2(t, v, ldv, vidx, j0, j1, q0, c0, 2); break;
            case 1: pv_block_avx2(t, v, ldv, vidx, j0, j1, q0, c0, 1); break;
            default: break;
            }
        }
    }
}
#endif

void tile_accumulate(kern_tile *t, const float *v, int64_t ldv, const int32_t *vidx)
{
    tile_prefetch_rows(v, ldv, vidx, t->cols, t->d);
    /* one exponential per score and one per row for the running sum's rescale */
    count(t, ATTN_STAT_EXPS, (uint64_t)t->rows * (uint64_t)(t->cols + 1));
    if (vidx) {
        count(t, ATTN_STAT_ROWS_GATHERED, (uint64_t)t->cols);
        count(t, ATTN_STAT_BYTES_GATHERED, (uint64_t)t->cols * (uint64_t)t->d * sizeof(float));
    }
#if TILE_HAVE_AVX512
    if (use_avx512()) {
        softmax_avx512(t);
        pv_avx512(t, v, ldv, vidx);
        return;
    }
#endif
#if TILE_HAVE_AVX2
    if (use_avx2()) {
        softmax_avx2(t);
        pv_avx2(t, v, ldv, vidx);
        return;
    }
#endif
    softmax_portable(t);
    pv_portable(t, v, ldv, vidx);
}

/* out row r = wa[r] * out row + wb[r] * (column r of ot), for the columns that the vector
 * path covers (16 or 8 rows by as many columns at a time, transposed in registers); wa[r] = 0
 * writes without reading. Returns the columns done, the rest being the scalar path's. */
static int store_rows(kern_tile *t, float *out, int64_t ldo, const int32_t *oidx, const float *wa,
                      const float *wb)
{
#if TILE_HAVE_AVX512
    if (!use_avx512())
        return 0;
    const int d = t->d, ld = t->ld, d16 = d / 16 * 16;
    for (int r0 = 0; r0 < t->rows; r0 += 16) {
        const int count = t->rows - r0 < 16 ? t->rows - r0 : 16;
        for (int c0 = 0; c0 < d16; c0 += 16) {
            __m512 blk[16];
            for (int i = 0; i < 16; i++)
                blk[i] = _mm512_load_ps(t->ot + (size_t)(c0 + i) * ld + r0);
            transpose16(blk);
            for (int i = 0; i < count; i++) {
                const int r = r0 + i;
                float *o = out + (oidx ? oidx[r] : r) * ldo + c0;
                __m512 x = _mm512_mul_ps(blk[i], _mm512_set1_ps(wb[r]));
                if (wa[r] != 0.0f)
                    x = _mm512_fmadd_ps(_mm512_set1_ps(wa[r]), _mm512_loadu_ps(o), x);
                _mm512_storeu_ps(o, x);
            }
        }
    }
    return d16;
#elif TILE_HAVE_AVX2
    if (!use_avx2())
        return 0;
    const int d = t->d, ld = t->ld, d8 = d / 8 * 8;
    for (int r0 = 0; r0 < t->rows; r0 += 8) {
        const int count = t->rows - r0 < 8 ? t->rows - r0 : 8;
        for (int c0 = 0; c0 < d8; c0 += 8) {
            __m256 blk[8];
            for (int i = 0; i < 8; i++)
                blk[i] = _mm256_load_ps(t->ot + (size_t)(c0 + i) * ld + r0);
            transpose8(blk);
            for (int i = 0; i < count; i++) {
                const int r = r0 + i;
                float *o = out + (oidx ? oidx[r] : r) * ldo + c0;
                __m256 x = _mm256_mul_ps(blk[i], _mm256_set1_ps(wb[r]));
                if (wa[r] != 0.0f)
                    x = _mm256_fmadd_ps(_mm256_set1_ps(wa[r]), _mm256_loadu_ps(o), x);
                _mm256_storeu_ps(o, x);
            }
        }
    }
    return d8;
#else
    (void)t, (void)out, (void)ldo, (void)oidx, (void)wa, (void)wb;
    return 0;
#endif
}

static void store_rows_scalar(kern_tile *t, int from, float *out, int64_t ldo,
                              const int32_t *oidx, const float *wa, const float *wb)
{
    for (int r = 0; r < t->rows; r++) {
        float *o = out + (oidx ? oidx[r] : r) * ldo;
        for (int c = from; c < t->d; c++) {
            const float x = t->ot[(size_t)c * t->ld + r] * wb[r];
            o[c] = wa[r] != 0.0f ? wa[r] * o[c] + x : x;
        }
    }
}

void tile_end(kern_tile *t, float *out, int64_t ldo, const int32_t *oidx, float *lse)
{
    /* the tile's own m and l arrays double as the weights: wa = 0, wb = 1 / l */
    float *wa = t->m, *wb = t->l;
    for (int r = 0; r < t->rows; r++) {
        const int64_t row = oidx ? oidx[r] : r;
        const float l = t->l[r];
        if (lse)
            lse[row] = l > 0.0f ? t->m[r] + logf(l) : -INFINITY;
        wa[r] = 0.0f;
        wb[r] = l > 0.0f ? 1.0f / l : 0.0f;
    }
    store_rows_scalar(t, store_rows(t, out, ldo, oidx, wa, wb), out, ldo, oidx, wa, wb);
}

void tile_end_merge(kern_tile *t, float *out, int64_t ldo, const int32_t *oidx, float *m,
                    float *l, bool merge)
{
    /* as in tile_end, the tile's m and l arrays become the weights: of what the row holds
     * (wa) and of this tile's sum (wb); each row reads its lt, mt before writing them */
    float *wa = t->m, *wb = t->l;
    for (int r = 0; r < t->rows; r++) {
        const int64_t row = oidx ? oidx[r] : r;
        const float lt = t->l[r], mt = t->m[r];
        if (!merge || l[row] == 0.0f) { /* the first set, or nothing seen before */
            wa[r] = 0.0f;
            wb[r] = lt > 0.0f ? 1.0f / lt : 0.0f;
            m[row] = mt;
            l[row] = lt;
        } else if (lt == 0.0f) { /* this tile saw nothing: keep what is there */
            wa[r] = 1.0f;
            wb[r] = 0.0f;
        } else { /* one softmax over both sets; ot holds lt * (this tile's output) */
            const float mx = fmaxf(m[row], mt);
            const float a = l[row] * expf(m[row] - mx), b = lt * expf(mt - mx);
            wa[r] = a / (a + b);
            wb[r] = expf(mt - mx) / (a + b);
            m[row] = mx;
            l[row] = a + b;
        }
    }
    store_rows_scalar(t, store_rows(t, out, ldo, oidx, wa, wb), out, ldo, oidx, wa, wb);
}
