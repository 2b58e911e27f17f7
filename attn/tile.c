/* tile.c: the fused online-softmax tile kernel (see tile.h for the layout and why).
 *
 * Three implementations of the fused step, chosen at build time by the instruction set:
 * AVX-512 (groups of 8 keys by 32 query lanes: 16 zmm of scores, then of probabilities), AVX2
 * with FMA (4 keys by 16 lanes in 8 ymm: AMD Zen 2/3 and older Intel), and a portable C path
 * with the same steps, for any other x86-64 and for the tests, which run it beside the vector
 * one. */
#include "tile.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "kernels.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#define TILE_HAVE_AVX512 1
#define TILE_HAVE_AVX2 0
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
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

void tile_prefetch_rows(const void *base, int64_t ld, const int32_t *idx, int count, int d,
                        attn_dtype dtype)
{
    if (!idx)
        return;
    const size_t size = attn_dtype_size(dtype);
    for (int j = 0; j < count; j++) {
        const char *row = (const char *)base + (size_t)idx[j] * (size_t)ld * size;
        for (size_t off = 0; off < (size_t)d * size; off += 64)
            __builtin_prefetch(row + off);
    }
}

/* Rows of the bf16 staging buffers: a key tile, or the query or output rows of a tile. */
static size_t staged_rows(int max_rows, int max_cols)
{
    return (size_t)(max_rows > max_cols ? max_rows : max_cols);
}

size_t tile_bytes(int max_rows, int max_cols, int d, attn_dtype dtype)
{
    size_t ld = (size_t)stride_for(lanes_for(max_rows));
    /* no score tile is stored: a key tile's size costs workspace only to stage bf16 rows */
    const size_t staging = dtype == ATTN_BF16
                               ? 2 * kern_slice_bytes(staged_rows(max_rows, max_cols) * (size_t)d,
                                                      sizeof(float))
                               : 0;
    return 2 * kern_slice_bytes((size_t)d * ld, sizeof(float)) +
           2 * kern_slice_bytes(ld, sizeof(float)) + staging;
}

void tile_init(kern_tile *t, kern_cursor *cursor, int max_rows, int max_cols, int d,
               attn_dtype dtype)
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
    t->m = kern_take(cursor, ld, sizeof(float));
    t->l = kern_take(cursor, ld, sizeof(float));
    t->dtype = t->out_dtype = dtype;
    t->kbuf = t->vbuf = NULL;
    if (dtype == ATTN_BF16) {
        const size_t rows = staged_rows(max_rows, max_cols);
        t->kbuf = kern_take(cursor, rows * (size_t)d, sizeof(float));
        t->vbuf = kern_take(cursor, rows * (size_t)d, sizeof(float));
    }
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

void tile_begin(kern_tile *t, const void *qrows, int64_t ldq, const int32_t *qidx, int rows,
                float scale)
{
    const int d = t->d, lanes = lanes_for(rows), ld = stride_for(lanes);
    assert(rows >= 1 && rows <= t->max_rows); /* the workspace was sized for max_rows */
    if (qidx) {
        count(t, ATTN_STAT_ROWS_GATHERED, (uint64_t)rows);
        count(t, ATTN_STAT_BYTES_GATHERED,
              (uint64_t)rows * (uint64_t)t->d * attn_dtype_size(t->dtype));
    }
    const float *q = qrows;
    if (t->dtype == ATTN_BF16) { /* widened once, then transposed as fp32 rows are */
        kern_rows_widen(qrows, ldq, qidx, rows, d, ATTN_BF16, t->kbuf);
        q = t->kbuf, ldq = d, qidx = NULL;
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

/* ---- the fused kernel: scores, mask, online softmax and O^T += V^T P^T per strip ---------- */

/* The online softmax keeps, per query lane, the shift m of its exponentials and the sum
 * l = sum exp(s - m). The shift is the running max as of its last move, and moves only when
 * a score exceeds it by more than TILE_RESCALE: then l and the lane's output accumulator are
 * scaled by exp(m_old - m_new). After the first key groups a shift rarely moves, so the
 * accumulator is seldom touched outside the products; an exponential is at most e^8, far
 * from float's range whatever the key count (FlashAttention-4's conditional rescaling). The
 * result is the same softmax; only roundings differ. */
#define TILE_RESCALE 8.0f

static inline int32_t qpos_of(const tile_mask *mk, int r)
{
    return mk->qpos ? mk->qpos[r] : mk->q0 + r;
}

static inline int32_t kpos_of(const tile_mask *mk, int j)
{
    return mk->kpos ? mk->kpos[j] : mk->k0 + j;
}

/* The extremes of positions of rows [r0, r0 + count) (queries, or keys with key = 1). */
static void pos_range(const tile_mask *mk, int key, int r0, int count, int32_t *lo, int32_t *hi)
{
    const int32_t *pos = key ? mk->kpos : mk->qpos;
    const int32_t base = key ? mk->k0 : mk->q0;
    if (!pos) {
        *lo = base + r0;
        *hi = base + r0 + count - 1;
        return;
    }
    *lo = *hi = pos[r0];
    for (int i = 1; i < count; i++) {
        *lo = pos[r0 + i] < *lo ? pos[r0 + i] : *lo;
        *hi = pos[r0 + i] > *hi ? pos[r0 + i] : *hi;
    }
}

/* What the mask does to keys [j, j + nk) for queries at positions [qlo, qhi]: nothing (a
 * tile away from the diagonal or the band's edge: the group runs unmasked), something (the
 * group is masked score by score), or hides every score with -INFINITY (the group is skipped:
 * exp(-inf) adds exactly nothing, so the result is bitwise that of computing it; its scores
 * are counted as computed and hidden, as the backward, which recomputes them, counts them). */
typedef enum { GROUP_OPEN, GROUP_MASKED, GROUP_HIDDEN } group_kind;

static group_kind group_masked(const tile_mask *mk, int32_t qlo, int32_t qhi, int j, int nk)
{
    if (!mk)
        return GROUP_OPEN;
    int32_t klo, khi;
    pos_range(mk, 1, j, nk, &klo, &khi);
    const int64_t dmin = (int64_t)klo - qhi, dmax = (int64_t)khi - qlo;
    if ((dmax < mk->lo || dmin > mk->hi) && mk->hidden == -INFINITY)
        return GROUP_HIDDEN;
    if (mk->kscale)
        return GROUP_MASKED;
    if (mk->self && dmin <= 0 && dmax >= 0)
        return GROUP_MASKED;
    return dmin < mk->lo || dmax > mk->hi ? GROUP_MASKED : GROUP_OPEN;
}

/* Whether keys [j, j + nk) run for a strip of `valid` rows at positions [qlo, qhi], and if so
 * whether masked; a group hidden entirely counts its rows' scores as hidden and runs not. */
static bool group_runs(const tile_mask *mk, int32_t qlo, int32_t qhi, int j, int nk, int valid,
                       uint64_t *hidden, bool *masked)
{
    const group_kind kind = group_masked(mk, qlo, qhi, j, nk);
    if (kind == GROUP_HIDDEN) {
        *hidden += (uint64_t)valid * (uint64_t)nk;
        return false;
    }
    *masked = kind == GROUP_MASKED;
    return true;
}

/* Scalar mask of one score: key position kp, query position qp; counts a hidden score. */
static inline float mask_score(const tile_mask *mk, float s, int32_t kp, int32_t qp, float w,
                               uint64_t *hidden)
{
    const int32_t diff = kp - qp;
    if (diff < mk->lo || diff > mk->hi) {
        ++*hidden;
        return mk->hidden;
    }
    return mk->self && diff == 0 ? mk->self_logit : s * w;
}

/* Portable: strips of TILE_LANES lanes, key groups of PORTABLE_KEYS, the same steps as the
 * vector paths with expf. */
enum { PORTABLE_KEYS = 8 };

static void attend_portable(kern_tile *t, const float *k, int64_t ldk, const int32_t *kidx,
                            const float *v, int64_t ldv, const int32_t *vidx, const tile_mask *mk)
{
    const int d = t->d, ld = t->ld, cols = t->cols;
    uint64_t hidden = 0;
    for (int q0 = 0; q0 < t->lanes; q0 += TILE_LANES) {
        const int valid = t->rows - q0 < TILE_LANES ? t->rows - q0 : TILE_LANES;
        int32_t qlo = 0, qhi = 0;
        if (mk)
            pos_range(mk, 0, q0, valid, &qlo, &qhi);
        for (int j = 0; j < cols; j += PORTABLE_KEYS) {
            const int nk = cols - j < PORTABLE_KEYS ? cols - j : PORTABLE_KEYS;
            bool masked;
            if (!group_runs(mk, qlo, qhi, j, nk, valid, &hidden, &masked))
                continue;
            float s[PORTABLE_KEYS][TILE_LANES];
            for (int i = 0; i < nk; i++) {
                const float *kr = row_of(k, ldk, kidx, j + i);
                for (int r = 0; r < TILE_LANES; r++)
                    s[i][r] = 0.0f;
                for (int c = 0; c < d; c++)
                    for (int r = 0; r < TILE_LANES; r++)
                        s[i][r] = fmaf(kr[c], t->qt[(size_t)c * ld + q0 + r], s[i][r]);
                if (masked) {
                    const int32_t kp = kpos_of(mk, j + i);
                    const float w = mk->kscale ? mk->kscale[j + i] : 1.0f;
                    for (int r = 0; r < valid; r++)
                        s[i][r] = mask_score(mk, s[i][r], kp, qpos_of(mk, q0 + r), w, &hidden);
                }
            }
            for (int r = 0; r < TILE_LANES; r++) {
                float g = s[0][r], m = t->m[q0 + r];
                for (int i = 1; i < nk; i++)
                    g = fmaxf(g, s[i][r]);
                if (g > m + TILE_RESCALE) { /* the shift moves */
                    const float alpha = expf(m - g);
                    t->l[q0 + r] *= alpha;
                    for (int c = 0; c < d; c++)
                        t->ot[(size_t)c * ld + q0 + r] *= alpha;
                    t->m[q0 + r] = m = g;
                }
                const float shift = m == -INFINITY ? 0.0f : m; /* all hidden so far: p = 0 */
                for (int i = 0; i < nk; i++) {
                    s[i][r] = expf(s[i][r] - shift);
                    t->l[q0 + r] += s[i][r];
                }
            }
            for (int i = 0; i < nk; i++) {
                const float *vr = row_of(v, ldv, vidx, j + i);
                for (int c = 0; c < d; c++) {
                    float *o = t->ot + (size_t)c * ld + q0;
                    for (int r = 0; r < TILE_LANES; r++)
                        o[r] = fmaf(vr[c], s[i][r], o[r]);
                }
            }
        }
    }
    count(t, ATTN_STAT_SCORES_MASKED, hidden);
}

#if TILE_HAVE_AVX512
/* exp(x) for 16 floats, within 2 ulp of expf over the softmax's range (x <= TILE_RESCALE):
 * Cody-Waite reduction x = k ln2 + r with k = round(x log2 e), |r| <= ln2/2, Cephes's degree-6
 * polynomial for exp(r), and 2^k by vscalefps (no exponent arithmetic to wrap). Below
 * -87.3 (and -inf, a hidden score) it is 0; NaN stays NaN. Inlined: one exponential per
 * score against 2d FMAs of products, so it must cost a few instructions, not a call. */
static inline __m512 exp16(__m512 x)
{
    const __m512 lo = _mm512_set1_ps(-87.3365447505531f);
    const __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ);
    const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 y = _mm512_set1_ps(1.9875691500E-4f);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507E-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073E-3f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894E-2f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459E-1f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201E-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_scalef_ps(keep, y, k);
}

/* A strip of 32 query lanes (two vectors u = 0, 1): its softmax state and, when masked, its
 * query positions and which lanes are rows. */
typedef struct strip512 {
    __m512 m[2], shift[2], l[2];
    __m512i qp[2];
    __mmask16 valid[2];
} strip512;

/* One group of nk keys against a strip, everything in registers: the scores (nk x 2
 * accumulators, d steps), the mask, the softmax update, and the products into the strip's
 * O^T rows, which stay in L1. */
static inline __attribute__((always_inline)) void group_avx512(kern_tile *t, int q0,
                                                                 const float *const *kr,
                                                                 const float *const *vr, int nk,
                                                                 strip512 *st, const tile_mask *mk,
                                                                 bool masked, int j,
                                                                 uint64_t *hidden)
{
    const int d = t->d, ld = t->ld;
    const float *qt = t->qt + q0;
    float *ot = t->ot + q0;
    __m512 s[8][2];
    for (int i = 0; i < nk; i++)
        s[i][0] = s[i][1] = _mm512_setzero_ps();
    for (int c = 0; c < d; c++) {
        const __m512 x0 = _mm512_load_ps(qt + (size_t)c * ld),
                     x1 = _mm512_load_ps(qt + (size_t)c * ld + 16);
        for (int i = 0; i < nk; i++) {
            const __m512 b = _mm512_set1_ps(kr[i][c]);
            s[i][0] = _mm512_fmadd_ps(b, x0, s[i][0]);
            s[i][1] = _mm512_fmadd_ps(b, x1, s[i][1]);
        }
    }
    if (masked) {
        const __m512i lo = _mm512_set1_epi32(mk->lo), hi = _mm512_set1_epi32(mk->hi);
        const __m512 hid_v = _mm512_set1_ps(mk->hidden), self_v = _mm512_set1_ps(mk->self_logit);
        for (int i = 0; i < nk; i++) {
            const int32_t kp = kpos_of(mk, j + i);
            const __m512 w = _mm512_set1_ps(mk->kscale ? mk->kscale[j + i] : 1.0f);
            for (int u = 0; u < 2; u++) {
                const __m512i diff = _mm512_sub_epi32(_mm512_set1_epi32(kp), st->qp[u]);
                const __mmask16 hid = _mm512_cmpgt_epi32_mask(diff, hi) |
                                      _mm512_cmplt_epi32_mask(diff, lo);
                __m512 x = _mm512_mul_ps(s[i][u], w);
                if (mk->self)
                    x = _mm512_mask_mov_ps(x, _mm512_cmpeq_epi32_mask(diff, _mm512_setzero_si512()),
                                           self_v);
                s[i][u] = _mm512_mask_mov_ps(x, hid, hid_v);
                *hidden += (uint64_t)__builtin_popcount(hid & st->valid[u]);
            }
        }
    }
    /* the softmax: the group's max per lane; the shift moves only past TILE_RESCALE */
    __m512 g[2] = {s[0][0], s[0][1]};
    for (int i = 1; i < nk; i++)
        for (int u = 0; u < 2; u++)
            g[u] = _mm512_max_ps(g[u], s[i][u]);
    const __m512 th = _mm512_set1_ps(TILE_RESCALE);
    __mmask16 up[2];
    for (int u = 0; u < 2; u++)
        up[u] = _mm512_cmp_ps_mask(g[u], _mm512_add_ps(st->m[u], th), _CMP_GT_OQ);
    if (up[0] | up[1]) {
        __m512 alpha[2];
        for (int u = 0; u < 2; u++) { /* lanes that do not move keep alpha = 1 exactly */
            alpha[u] = _mm512_mask_mov_ps(_mm512_set1_ps(1.0f), up[u],
                                          exp16(_mm512_sub_ps(st->m[u], g[u])));
            st->m[u] = _mm512_mask_mov_ps(st->m[u], up[u], g[u]);
            st->shift[u] = _mm512_mask_mov_ps(st->shift[u], up[u], g[u]);
            st->l[u] = _mm512_mul_ps(st->l[u], alpha[u]);
        }
        for (int c = 0; c < d; c++) {
            float *o = ot + (size_t)c * ld;
            _mm512_store_ps(o, _mm512_mul_ps(_mm512_load_ps(o), alpha[0]));
            _mm512_store_ps(o + 16, _mm512_mul_ps(_mm512_load_ps(o + 16), alpha[1]));
        }
    }
    for (int i = 0; i < nk; i++)
        for (int u = 0; u < 2; u++) {
            s[i][u] = exp16(_mm512_sub_ps(s[i][u], st->shift[u]));
            st->l[u] = _mm512_add_ps(st->l[u], s[i][u]);
        }
    /* O^T += V^T P^T: P stays in the registers it was computed in */
    for (int c = 0; c < d; c++) {
        float *o = ot + (size_t)c * ld;
        __m512 o0 = _mm512_load_ps(o), o1 = _mm512_load_ps(o + 16);
        for (int i = 0; i < nk; i++) {
            const __m512 b = _mm512_set1_ps(vr[i][c]);
            o0 = _mm512_fmadd_ps(b, s[i][0], o0);
            o1 = _mm512_fmadd_ps(b, s[i][1], o1);
        }
        _mm512_store_ps(o, o0);
        _mm512_store_ps(o + 16, o1);
    }
}

static void attend_avx512(kern_tile *t, const float *k, int64_t ldk, const int32_t *kidx,
                          const float *v, int64_t ldv, const int32_t *vidx, const tile_mask *mk)
{
    const int cols = t->cols;
    uint64_t hidden = 0;
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (int q0 = 0; q0 < t->lanes; q0 += 32) {
        const int valid = t->rows - q0 < 32 ? t->rows - q0 : 32;
        strip512 st;
        int32_t qlo = 0, qhi = 0;
        for (int u = 0; u < 2; u++) {
            st.m[u] = _mm512_load_ps(t->m + q0 + 16 * u);
            st.l[u] = _mm512_load_ps(t->l + q0 + 16 * u);
            /* all hidden so far (m = -inf): shift by 0, so p = exp(-inf) = 0 */
            st.shift[u] = _mm512_mask_mov_ps(st.m[u],
                                              _mm512_cmp_ps_mask(st.m[u], _mm512_set1_ps(-INFINITY),
                                                                 _CMP_EQ_OQ),
                                              _mm512_setzero_ps());
            const int in = valid - 16 * u;
            st.valid[u] = in >= 16 ? 0xFFFF : in <= 0 ? 0 : (__mmask16)((1u << in) - 1);
            st.qp[u] = _mm512_setzero_si512();
            if (mk)
                st.qp[u] = mk->qpos ? _mm512_maskz_loadu_epi32(st.valid[u], mk->qpos + q0 + 16 * u)
                                    : _mm512_add_epi32(_mm512_set1_epi32(mk->q0 + q0 + 16 * u), iota);
        }
        if (mk)
            pos_range(mk, 0, q0, valid, &qlo, &qhi);
        for (int j = 0; j < cols; j += 8) {
            const int nk = cols - j < 8 ? cols - j : 8;
            bool masked;
            if (!group_runs(mk, qlo, qhi, j, nk, valid, &hidden, &masked))
                continue;
            const float *kr[8], *vr[8];
            for (int i = 0; i < nk; i++) {
                kr[i] = row_of(k, ldk, kidx, j + i);
                vr[i] = row_of(v, ldv, vidx, j + i);
            }
            switch (nk) { /* each width its own unrolled copy, its accumulators in registers */
            case 8: group_avx512(t, q0, kr, vr, 8, &st, mk, masked, j, &hidden); break;
            case 7: group_avx512(t, q0, kr, vr, 7, &st, mk, masked, j, &hidden); break;
            case 6: group_avx512(t, q0, kr, vr, 6, &st, mk, masked, j, &hidden); break;
            case 5: group_avx512(t, q0, kr, vr, 5, &st, mk, masked, j, &hidden); break;
            case 4: group_avx512(t, q0, kr, vr, 4, &st, mk, masked, j, &hidden); break;
            case 3: group_avx512(t, q0, kr, vr, 3, &st, mk, masked, j, &hidden); break;
            case 2: group_avx512(t, q0, kr, vr, 2, &st, mk, masked, j, &hidden); break;
            default: group_avx512(t, q0, kr, vr, 1, &st, mk, masked, j, &hidden); break;
            }
        }
        for (int u = 0; u < 2; u++) {
            _mm512_store_ps(t->m + q0 + 16 * u, st.m[u]);
            _mm512_store_ps(t->l + q0 + 16 * u, st.l[u]);
        }
    }
    count(t, ATTN_STAT_SCORES_MASKED, hidden);
}
#endif

#if TILE_HAVE_AVX2
/* exp(x) for 8 floats, within 2 ulp of expf over the softmax's range (x <= TILE_RESCALE):
 * Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, Cephes's degree-6 polynomial for exp(r),
 * and 2^k through the exponent bits. k comes from adding 1.5 * 2^23 (the rounding of that sum
 * leaves round(x log2 e) in the low mantissa bits, ready to shift into an exponent), which
 * saves a round and a conversion. Below -87.3 (and -inf, a hidden score) it is 0; NaN stays
 * NaN (max returns its second operand, the NaN, and the polynomial carries it). Not for
 * x > 88: 2^k would wrap. */
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

/* The AVX2 strip: 16 query lanes (two vectors), groups of AVX2_KEYS keys: 2 x AVX2_KEYS
 * accumulators, two lane vectors and a broadcast fit the 16 ymm registers. */
enum { AVX2_KEYS = 4 };

typedef struct strip256 {
    __m256 m[2], shift[2], l[2];
    __m256i qp[2];
    __m256i valid[2]; /* all ones where the lane is a row */
} strip256;

static inline __attribute__((always_inline)) void group_avx2(kern_tile *t, int q0,
                                                               const float *const *kr,
                                                               const float *const *vr, int nk,
                                                               strip256 *st, const tile_mask *mk,
                                                               bool masked, int j,
                                                               uint64_t *hidden)
{
    const int d = t->d, ld = t->ld;
    const float *qt = t->qt + q0;
    float *ot = t->ot + q0;
    __m256 s[AVX2_KEYS][2];
    for (int i = 0; i < nk; i++)
        s[i][0] = s[i][1] = _mm256_setzero_ps();
    for (int c = 0; c < d; c++) {
        const __m256 x0 = _mm256_load_ps(qt + (size_t)c * ld),
                     x1 = _mm256_load_ps(qt + (size_t)c * ld + 8);
        for (int i = 0; i < nk; i++) {
            const __m256 b = _mm256_broadcast_ss(kr[i] + c);
            s[i][0] = _mm256_fmadd_ps(b, x0, s[i][0]);
            s[i][1] = _mm256_fmadd_ps(b, x1, s[i][1]);
        }
    }
    if (masked) {
        const __m256i lo = _mm256_set1_epi32(mk->lo), hi = _mm256_set1_epi32(mk->hi);
        const __m256 hid_v = _mm256_set1_ps(mk->hidden), self_v = _mm256_set1_ps(mk->self_logit);
        for (int i = 0; i < nk; i++) {
            const int32_t kp = kpos_of(mk, j + i);
            const __m256 w = _mm256_set1_ps(mk->kscale ? mk->kscale[j + i] : 1.0f);
            for (int u = 0; u < 2; u++) {
                const __m256i diff = _mm256_sub_epi32(_mm256_set1_epi32(kp), st->qp[u]);
                const __m256i hid = _mm256_or_si256(_mm256_cmpgt_epi32(diff, hi),
                                                    _mm256_cmpgt_epi32(lo, diff));
                __m256 x = _mm256_mul_ps(s[i][u], w);
                if (mk->self)
                    x = _mm256_blendv_ps(x, self_v, _mm256_castsi256_ps(
                                                        _mm256_cmpeq_epi32(diff, _mm256_setzero_si256())));
                s[i][u] = _mm256_blendv_ps(x, hid_v, _mm256_castsi256_ps(hid));
                *hidden += (uint64_t)__builtin_popcount((unsigned)_mm256_movemask_ps(
                    _mm256_castsi256_ps(_mm256_and_si256(hid, st->valid[u]))));
            }
        }
    }
    __m256 g[2] = {s[0][0], s[0][1]};
    for (int i = 1; i < nk; i++)
        for (int u = 0; u < 2; u++)
            g[u] = _mm256_max_ps(g[u], s[i][u]);
    const __m256 th = _mm256_set1_ps(TILE_RESCALE);
    __m256 up[2];
    for (int u = 0; u < 2; u++)
        up[u] = _mm256_cmp_ps(g[u], _mm256_add_ps(st->m[u], th), _CMP_GT_OQ);
    if (_mm256_movemask_ps(_mm256_or_ps(up[0], up[1]))) {
        __m256 alpha[2];
        for (int u = 0; u < 2; u++) { /* lanes that do not move keep alpha = 1 exactly */
            alpha[u] = _mm256_blendv_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(st->m[u], g[u])),
                                        up[u]);
            st->m[u] = _mm256_blendv_ps(st->m[u], g[u], up[u]);
            st->shift[u] = _mm256_blendv_ps(st->shift[u], g[u], up[u]);
            st->l[u] = _mm256_mul_ps(st->l[u], alpha[u]);
        }
        for (int c = 0; c < d; c++) {
            float *o = ot + (size_t)c * ld;
            _mm256_store_ps(o, _mm256_mul_ps(_mm256_load_ps(o), alpha[0]));
            _mm256_store_ps(o + 8, _mm256_mul_ps(_mm256_load_ps(o + 8), alpha[1]));
        }
    }
    for (int i = 0; i < nk; i++)
        for (int u = 0; u < 2; u++) {
            s[i][u] = exp8(_mm256_sub_ps(s[i][u], st->shift[u]));
            st->l[u] = _mm256_add_ps(st->l[u], s[i][u]);
        }
    for (int c = 0; c < d; c++) {
        float *o = ot + (size_t)c * ld;
        __m256 o0 = _mm256_load_ps(o), o1 = _mm256_load_ps(o + 8);
        for (int i = 0; i < nk; i++) {
            const __m256 b = _mm256_broadcast_ss(vr[i] + c);
            o0 = _mm256_fmadd_ps(b, s[i][0], o0);
            o1 = _mm256_fmadd_ps(b, s[i][1], o1);
        }
        _mm256_store_ps(o, o0);
        _mm256_store_ps(o + 8, o1);
    }
}

static void attend_avx2(kern_tile *t, const float *k, int64_t ldk, const int32_t *kidx,
                        const float *v, int64_t ldv, const int32_t *vidx, const tile_mask *mk)
{
    const int cols = t->cols;
    uint64_t hidden = 0;
    const __m256i iota = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    for (int q0 = 0; q0 < t->lanes; q0 += 16) {
        const int valid = t->rows - q0 < 16 ? t->rows - q0 : 16;
        if (valid <= 0)
            break; /* the lanes past the last row's strip (lanes are a multiple of 32) */
        strip256 st;
        int32_t qlo = 0, qhi = 0;
        for (int u = 0; u < 2; u++) {
            st.m[u] = _mm256_load_ps(t->m + q0 + 8 * u);
            st.l[u] = _mm256_load_ps(t->l + q0 + 8 * u);
            st.shift[u] = _mm256_blendv_ps(st.m[u], _mm256_setzero_ps(),
                                           _mm256_cmp_ps(st.m[u], _mm256_set1_ps(-INFINITY),
                                                         _CMP_EQ_OQ));
            const __m256i lane = _mm256_add_epi32(_mm256_set1_epi32(8 * u), iota);
            st.valid[u] = _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), lane);
            st.qp[u] = _mm256_setzero_si256();
            if (mk && mk->qpos)
                st.qp[u] = _mm256_maskload_epi32(mk->qpos + q0 + 8 * u, st.valid[u]);
            else if (mk)
                st.qp[u] = _mm256_add_epi32(_mm256_set1_epi32(mk->q0 + q0 + 8 * u), iota);
        }
        if (mk)
            pos_range(mk, 0, q0, valid, &qlo, &qhi);
        for (int j = 0; j < cols; j += AVX2_KEYS) {
            const int nk = cols - j < AVX2_KEYS ? cols - j : AVX2_KEYS;
            bool masked;
            if (!group_runs(mk, qlo, qhi, j, nk, valid, &hidden, &masked))
                continue;
            const float *kr[AVX2_KEYS], *vr[AVX2_KEYS];
            for (int i = 0; i < nk; i++) {
                kr[i] = row_of(k, ldk, kidx, j + i);
                vr[i] = row_of(v, ldv, vidx, j + i);
            }
            switch (nk) {
            case 4: group_avx2(t, q0, kr, vr, 4, &st, mk, masked, j, &hidden); break;
            case 3: group_avx2(t, q0, kr, vr, 3, &st, mk, masked, j, &hidden); break;
            case 2: group_avx2(t, q0, kr, vr, 2, &st, mk, masked, j, &hidden); break;
            default: group_avx2(t, q0, kr, vr, 1, &st, mk, masked, j, &hidden); break;
            }
        }
        for (int u = 0; u < 2; u++) {
            _mm256_store_ps(t->m + q0 + 8 * u, st.m[u]);
            _mm256_store_ps(t->l + q0 + 8 * u, st.l[u]);
        }
    }
    count(t, ATTN_STAT_SCORES_MASKED, hidden);
}
#endif

void tile_attend(kern_tile *t, const void *krows, int64_t ldk, const int32_t *kidx,
                 const void *vrows, int64_t ldv, const int32_t *vidx, int cols, const tile_mask *mask)
{
    assert(cols >= 1 && cols <= t->max_cols);
    t->cols = cols;
    count(t, ATTN_STAT_SCORES, (uint64_t)t->rows * (uint64_t)cols);
    count(t, ATTN_STAT_TILES, 1);
    /* one exponential per score and one per row for a rescale of its running sum */
    count(t, ATTN_STAT_EXPS, (uint64_t)t->rows * (uint64_t)(cols + 1));
    const uint64_t row_bytes = (uint64_t)t->d * attn_dtype_size(t->dtype);
    if (kidx) {
        count(t, ATTN_STAT_ROWS_GATHERED, (uint64_t)cols);
        count(t, ATTN_STAT_BYTES_GATHERED, (uint64_t)cols * row_bytes);
    }
    if (vidx) {
        count(t, ATTN_STAT_ROWS_GATHERED, (uint64_t)cols);
        count(t, ATTN_STAT_BYTES_GATHERED, (uint64_t)cols * row_bytes);
    }
    const float *k = krows, *v = vrows;
    if (t->dtype == ATTN_BF16) { /* the key tile widened once for all the tile's strips */
        kern_rows_widen(krows, ldk, kidx, cols, t->d, ATTN_BF16, t->kbuf);
        kern_rows_widen(vrows, ldv, vidx, cols, t->d, ATTN_BF16, t->vbuf);
        k = t->kbuf, v = t->vbuf, ldk = ldv = t->d, kidx = vidx = NULL;
    }
#if TILE_HAVE_AVX512
    if (use_avx512()) {
        attend_avx512(t, k, ldk, kidx, v, ldv, vidx, mask);
        return;
    }
#endif
#if TILE_HAVE_AVX2
    if (use_avx2()) {
        attend_avx2(t, k, ldk, kidx, v, ldv, vidx, mask);
        return;
    }
#endif
    attend_portable(t, k, ldk, kidx, v, ldv, vidx, mask);
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

/* Writes the tile's rows through the weights wa, wb (see store_rows); bf16 rows are staged:
 * widened first when read (merge), rounded once when written. */
static void store(kern_tile *t, void *out, int64_t ldo, const int32_t *oidx, const float *wa,
                  const float *wb)
{
    if (t->out_dtype != ATTN_BF16) {
        store_rows_scalar(t, store_rows(t, out, ldo, oidx, wa, wb), out, ldo, oidx, wa, wb);
        return;
    }
    float *rows = t->kbuf;
    bool reads = false;
    for (int r = 0; r < t->rows && !reads; r++)
        reads = wa[r] != 0.0f;
    if (reads)
        kern_rows_widen(out, ldo, oidx, t->rows, t->d, ATTN_BF16, rows);
    store_rows_scalar(t, store_rows(t, rows, t->d, NULL, wa, wb), rows, t->d, NULL, wa, wb);
    kern_rows_narrow(rows, t->rows, t->d, out, ldo, oidx, ATTN_BF16);
}

void tile_end(kern_tile *t, void *out, int64_t ldo, const int32_t *oidx, float *lse)
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
    store(t, out, ldo, oidx, wa, wb);
}

void tile_end_merge(kern_tile *t, void *out, int64_t ldo, const int32_t *oidx, float *m,
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
    store(t, out, ldo, oidx, wa, wb);
}
