/* test_tile.c: the fused tile kernel on its own: gathered rows, several key tiles of odd
 * sizes, masks by position (a band, causal with finite penalties, a self logit and key
 * scales), merging two candidate sets, in the vector path this build compiled (AVX-512 or
 * AVX2, tile_isa() says which) and the portable path alike. */
#include "helpers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../attn/tile.h"

#define TOL 1e-5

/* Dense reference over an explicit candidate list: query rows qi, key rows kj (into q/k/v of
 * `total` rows); with a mask, each pair's logit follows the tile_mask rule on the positions
 * mask->qpos[i], mask->kpos[j]; scale applied to the scores. */
typedef struct cand {
    int nq, nk;
    const int32_t *qi, *kj;
    const tile_mask *mask; /* positions given as arrays over the candidates; NULL: none */
} cand;

static double logit_of(const cand *c, int i, int j, double dot)
{
    const tile_mask *m = c->mask;
    if (!m)
        return dot;
    const int32_t kp = m->kpos[j], qp = m->qpos[i];
    const int64_t diff = (int64_t)kp - qp;
    if (diff < m->lo || diff > m->hi)
        return m->hidden;
    if (m->self && diff == 0)
        return m->self_logit;
    return m->kscale ? dot * (double)m->kscale[j] : dot;
}

static void reference(const cand *c, const float *q, const float *k, const float *v, int d,
                      double scale, double *out, double *lse)
{
    for (int i = 0; i < c->nq; i++) {
        double m = -INFINITY, z = 0;
        double *s = malloc((size_t)c->nk * sizeof *s);
        for (int j = 0; j < c->nk; j++) {
            double dot = 0;
            for (int x = 0; x < d; x++)
                dot += (double)q[c->qi[i] * d + x] * k[c->kj[j] * d + x];
            s[j] = logit_of(c, i, j, dot * scale);
            m = fmax(m, s[j]);
        }
        for (int x = 0; x < d; x++)
            out[i * d + x] = 0;
        for (int j = 0; j < c->nk; j++)
            if (s[j] > -INFINITY) {
                double p = exp(s[j] - m);
                z += p;
                for (int x = 0; x < d; x++)
                    out[i * d + x] += p * v[c->kj[j] * d + x];
            }
        for (int x = 0; x < d && z > 0; x++)
            out[i * d + x] /= z;
        lse[i] = z > 0 ? m + log(z) : -INFINITY;
        free(s);
    }
}

/* Runs the tile kernel over key tiles of the given sizes, with c->mask's rule. */
static void run_tile(const cand *c, const float *q, const float *k, const float *v, int d,
                     float scale, const int *tiles, int ntiles, float *out, float *lse)
{
    int max_cols = 0;
    for (int i = 0; i < ntiles; i++)
        max_cols = tiles[i] > max_cols ? tiles[i] : max_cols;
    size_t bytes = tile_bytes(c->nq, max_cols, d, ATTN_FP32);
    char *work = aligned_alloc(64, (bytes + 63) / 64 * 64);
    kern_cursor cursor = {work, 0};
    kern_tile t;
    tile_init(&t, &cursor, c->nq, max_cols, d, ATTN_FP32);
    tile_begin(&t, q, d, c->qi, c->nq, scale);
    for (int i = 0, j0 = 0; i < ntiles; j0 += tiles[i++]) {
        tile_mask m;
        if (c->mask) { /* this tile's keys: the positions from j0 on */
            m = *c->mask;
            m.kpos = c->mask->kpos + j0;
            m.kscale = c->mask->kscale ? c->mask->kscale + j0 : NULL;
        }
        tile_attend(&t, k, d, c->kj + j0, v, d, c->kj + j0, tiles[i], c->mask ? &m : NULL);
    }
    /* out rows in candidate order: an identity index */
    tile_end(&t, out, d, NULL, lse);
    free(work);
}

/* The queries' scale: large gains spread the logits over tens of units, so the running
 * shift moves often (its rescale of the accumulator is tested, not only its first move). */
static float q_gain = 1.0f;

/* mask 0: none; 1: a band of random positions where row 0 sees nothing and row 1 only the
 * last tile; 2: causal with lsh's finite penalties, its self logit and key scales */
static void check_config(int total, int nq, int d, const int *tiles, int ntiles, int masked,
                         unsigned seed)
{
    int nk = 0;
    for (int i = 0; i < ntiles; i++)
        nk += tiles[i];
    float *q = malloc((size_t)total * d * sizeof *q), *k = malloc((size_t)total * d * sizeof *k),
          *v = malloc((size_t)total * d * sizeof *v);
    fill_normal(q, (size_t)total * d, seed, q_gain);
    fill_normal(k, (size_t)total * d, seed + 1, 1.0f);
    fill_normal(v, (size_t)total * d, seed + 2, 1.0f);
    int32_t *qi = malloc((size_t)nq * sizeof *qi), *kj = malloc((size_t)nk * sizeof *kj);
    int32_t *qp = malloc((size_t)nq * sizeof *qp), *kp = malloc((size_t)nk * sizeof *kp);
    float *kscale = malloc(1000 * sizeof *kscale);
    srand(seed);
    for (int i = 0; i < nq; i++)
        qi[i] = rand() % total; /* gathered from anywhere, repeats allowed */
    for (int j = 0; j < nk; j++)
        kj[j] = rand() % total;
    for (int i = 0; i < nq; i++)
        qp[i] = 100 + rand() % 200;
    for (int j = 0; j < nk; j++)
        kp[j] = 100 + rand() % 200;
    for (int x = 0; x < 1000; x++)
        kscale[x] = 0.5f + (float)(rand() % 100) / 100.0f;
    tile_mask mask = {.qpos = qp, .kpos = kp, .lo = -40, .hi = 25, .hidden = -INFINITY};
    if (masked == 1) {
        qp[0] = 900; /* row 0 sees nothing at all */
        if (nq > 1) { /* row 1 sees only the last tile */
            qp[1] = 700;
            for (int j = nk - tiles[ntiles - 1]; j < nk; j++)
                kp[j] = 700 + rand() % 10;
        }
    } else if (masked == 2) {
        mask = (tile_mask){.qpos = qp, .kpos = kp, .lo = INT32_MIN, .hi = 0, .hidden = -1e9f,
                           .self = true, .self_logit = -1e5f, .kscale = kscale};
        if (nk > 0)
            kp[0] = qp[0]; /* a token's own key */
    }
    cand c = {.nq = nq, .nk = nk, .qi = qi, .kj = kj, .mask = masked ? &mask : NULL};
    double *ref = malloc((size_t)nq * d * sizeof *ref), *ref_lse = malloc((size_t)nq * sizeof *ref_lse);
    float *out = malloc((size_t)nq * d * sizeof *out), *lse = malloc((size_t)nq * sizeof *lse);
    const float scale = 1.0f / sqrtf((float)d);
    reference(&c, q, k, v, d, scale, ref, ref_lse);
    for (int portable = 0; portable <= 1; portable++) {
        tile_force_portable(portable);
        fill_nan(out, (size_t)nq * d);
        fill_nan(lse, (size_t)nq);
        run_tile(&c, q, k, v, d, scale, tiles, ntiles, out, lse);
        assert_allclose(out, ref, (size_t)nq * d, TOL, TOL);
        assert_allclose(lse, ref_lse, (size_t)nq, TOL, TOL);
    }
    tile_force_portable(false);
    free(q), free(k), free(v), free(qi), free(kj), free(qp), free(kp), free(kscale), free(ref),
        free(ref_lse), free(out), free(lse);
}

static void test_gathered_rows_odd_tiles(void **state)
{
    (void)state;
    static const int dims[] = {1, 3, 8, 16, 64, 72, 128};
    static const int rows[] = {1, 17, 32, 45, 64};
    const int tiles_a[] = {8}, tiles_b[] = {5, 16, 3}, tiles_c[] = {1, 1, 9, 24};
    unsigned seed = 1;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
            check_config(200, rows[ri], dims[di], tiles_a, 1, 0, seed++);
            check_config(200, rows[ri], dims[di], tiles_b, 3, 0, seed++);
            check_config(200, rows[ri], dims[di], tiles_c, 4, 1, seed++);
            check_config(200, rows[ri], dims[di], tiles_b, 3, 2, seed++);
        }
}

/* Logits spread over tens of units: the shift moves many times within a row. */
static void test_moving_shift(void **state)
{
    (void)state;
    const int tiles[] = {13, 40, 7, 64};
    q_gain = 12.0f;
    for (unsigned seed = 500; seed < 506; seed++) {
        check_config(300, 45, 16, tiles, 4, 0, seed);
        check_config(300, 64, 64, tiles, 4, 1, seed + 100);
        check_config(300, 33, 72, tiles, 4, 2, seed + 200);
    }
    q_gain = 1.0f;
}

/* Two passes over disjoint key sets, merged, equal one softmax over their union. */
static void test_merge_is_one_softmax(void **state)
{
    (void)state;
    const int d = 24, nq = 40, total = 300, n1 = 37, n2 = 50;
    float *q = malloc(total * d * sizeof *q), *k = malloc(total * d * sizeof *k),
          *v = malloc(total * d * sizeof *v);
    fill_normal(q, total * d, 9, 1.0f);
    fill_normal(k, total * d, 10, 1.0f);
    fill_normal(v, total * d, 11, 1.0f);
    int32_t qi[40], kj[87], out_rows[40];
    for (int i = 0; i < nq; i++) {
        qi[i] = 3 * i;
        out_rows[i] = nq - 1 - i; /* scattered output rows */
    }
    for (int j = 0; j < n1 + n2; j++)
        kj[j] = (7 * j + 1) % total;
    cand c = {.nq = nq, .nk = n1 + n2, .qi = qi, .kj = kj};
    double ref[40 * 24], ref_lse[40];
    reference(&c, q, k, v, d, 0.5, ref, ref_lse);
    double ref_scattered[40 * 24], lse_scattered[40];
    for (int i = 0; i < nq; i++) {
        memcpy(ref_scattered + out_rows[i] * d, ref + i * d, d * sizeof(double));
        lse_scattered[out_rows[i]] = ref_lse[i];
    }
    size_t bytes = tile_bytes(nq, n2, d, ATTN_FP32);
    char *work = aligned_alloc(64, (bytes + 63) / 64 * 64);
    kern_cursor cursor = {work, 0};
    kern_tile t;
    tile_init(&t, &cursor, nq, n2, d, ATTN_FP32);
    float out[40 * 24], lse[40], m[40], l[40];
    fill_nan(out, 40 * 24);
    for (int pass = 0; pass < 2; pass++) {
        tile_begin(&t, q, d, qi, nq, 0.5f);
        const int32_t *keys = pass ? kj + n1 : kj;
        tile_attend(&t, k, d, keys, v, d, keys, pass ? n2 : n1, NULL);
        tile_end_merge(&t, out, d, out_rows, m, l, pass == 1);
    }
    for (int i = 0; i < nq; i++)
        lse[i] = m[i] + logf(l[i]);
    assert_allclose(out, ref_scattered, 40 * 24, TOL, TOL);
    assert_allclose(lse, lse_scattered, 40, TOL, TOL);
    free(work), free(q), free(k), free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gathered_rows_odd_tiles),
        cmocka_unit_test(test_moving_shift),
        cmocka_unit_test(test_merge_is_one_softmax),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
