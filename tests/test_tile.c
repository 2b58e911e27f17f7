/* test_tile.c: the fused tile kernel on its own: gathered rows, several key tiles of odd
 * sizes, masking, merging two candidate sets, in the vector path this build compiled (AVX-512 or
 * AVX2, tile_isa() says which) and the portable path alike. */
#include "helpers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../attn/tile.h"

#define TOL 1e-5

/* Dense reference over an explicit candidate list: query rows qi, key rows kj (into q/k/v
 * of `total` rows), allowed(i, j) on those positions; scale applied to the scores. */
typedef struct cand {
    int nq, nk;
    const int32_t *qi, *kj;
    const unsigned char *mask; /* nq x nk, 1 = attend; NULL = all */
} cand;

static void reference(const cand *c, const float *q, const float *k, const float *v, int d,
                      double scale, double *out, double *lse)
{
    for (int i = 0; i < c->nq; i++) {
        double m = -INFINITY, z = 0;
        double *s = malloc((size_t)c->nk * sizeof *s);
        for (int j = 0; j < c->nk; j++) {
            if (c->mask && !c->mask[i * c->nk + j]) {
                s[j] = -INFINITY;
                continue;
            }
            double dot = 0;
            for (int x = 0; x < d; x++)
                dot += (double)q[c->qi[i] * d + x] * k[c->kj[j] * d + x];
            s[j] = dot * scale;
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

/* Runs the tile kernel over key tiles of the given sizes, masking with c->mask. */
static void run_tile(const cand *c, const float *q, const float *k, const float *v, int d,
                     float scale, const int *tiles, int ntiles, float *out, float *lse)
{
    int max_cols = 0;
    for (int i = 0; i < ntiles; i++)
        max_cols = tiles[i] > max_cols ? tiles[i] : max_cols;
    size_t bytes = tile_bytes(c->nq, max_cols, d);
    char *work = aligned_alloc(64, (bytes + 63) / 64 * 64);
    kern_cursor cursor = {work, 0};
    kern_tile t;
    tile_init(&t, &cursor, c->nq, max_cols, d);
    tile_begin(&t, q, d, c->qi, c->nq, scale);
    for (int i = 0, j0 = 0; i < ntiles; j0 += tiles[i++]) {
        float *s = tile_scores(&t, k, d, c->kj + j0, tiles[i]);
        for (int j = 0; j < tiles[i]; j++)
            for (int r = 0; r < c->nq; r++)
                if (c->mask && !c->mask[r * c->nk + j0 + j])
                    s[(size_t)j * t.ld + r] = -INFINITY;
        tile_accumulate(&t, v, d, c->kj + j0);
    }
    /* out rows in candidate order: an identity index */
    tile_end(&t, out, d, NULL, lse);
    free(work);
}

static void check_config(int total, int nq, int d, const int *tiles, int ntiles, int masked,
                         unsigned seed)
{
    int nk = 0;
    for (int i = 0; i < ntiles; i++)
        nk += tiles[i];
    float *q = malloc((size_t)total * d * sizeof *q), *k = malloc((size_t)total * d * sizeof *k),
          *v = malloc((size_t)total * d * sizeof *v);
    fill_normal(q, (size_t)total * d, seed, 1.0f);
    fill_normal(k, (size_t)total * d, seed + 1, 1.0f);
    fill_normal(v, (size_t)total * d, seed + 2, 1.0f);
    int32_t *qi = malloc((size_t)nq * sizeof *qi), *kj = malloc((size_t)nk * sizeof *kj);
    srand(seed);
    for (int i = 0; i < nq; i++)
        qi[i] = rand() % total; /* gathered from anywhere, repeats allowed */
    for (int j = 0; j < nk; j++)
        kj[j] = rand() % total;
    unsigned char *mask = NULL;
    if (masked) {
        mask = malloc((size_t)nq * nk);
        for (int i = 0; i < nq * nk; i++)
            mask[i] = rand() % 3 != 0;
        for (int j = 0; j < nk; j++)
            mask[0 * nk + j] = 0; /* row 0 sees nothing at all */
        if (nq > 1)
            for (int j = 0; j < nk; j++) /* row 1 sees only the last tile */
                mask[1 * nk + j] = j >= nk - tiles[ntiles - 1];
    }
    cand c = {.nq = nq, .nk = nk, .qi = qi, .kj = kj, .mask = mask};
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
    free(q), free(k), free(v), free(qi), free(kj), free(mask), free(ref), free(ref_lse), free(out),
        free(lse);
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
        }
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
    size_t bytes = tile_bytes(nq, n2, d);
    char *work = aligned_alloc(64, (bytes + 63) / 64 * 64);
    kern_cursor cursor = {work, 0};
    kern_tile t;
    tile_init(&t, &cursor, nq, n2, d);
    float out[40 * 24], lse[40], m[40], l[40];
    fill_nan(out, 40 * 24);
    for (int pass = 0; pass < 2; pass++) {
        tile_begin(&t, q, d, qi, nq, 0.5f);
        const int32_t *keys = pass ? kj + n1 : kj;
        tile_scores(&t, k, d, keys, pass ? n2 : n1);
        tile_accumulate(&t, v, d, keys);
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
        cmocka_unit_test(test_merge_is_one_softmax),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
