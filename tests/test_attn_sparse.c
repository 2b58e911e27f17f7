/* test_attn_sparse.c: lsh, block_sparse and etc against exact references: the
 * configurations where each must equal full attention, and, in general configurations, a
 * dense reference rebuilt from the method's own discrete structure (same buckets, same random
 * table, same segments), so a hashing error and an attention error are told apart. */
#include "helpers.h"
#include "reference.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5

typedef struct inputs {
    attn_shape s;
    float *q, *k, *v;
} inputs;

static inputs make_inputs(int64_t B, int64_t H, int64_t n, int64_t d, int causal, uint64_t seed)
{
    inputs in = {.s = {.B = B, .H = H, .n = n, .d = d, .causal = causal}};
    size_t e = attn_tensor_elems(&in.s);
    in.q = malloc(e * sizeof(float));
    in.k = malloc(e * sizeof(float));
    in.v = malloc(e * sizeof(float));
    fill_normal(in.q, e, seed, 1.0f);
    fill_normal(in.k, e, seed + 1, 1.0f);
    fill_normal(in.v, e, seed + 2, 1.0f);
    return in;
}

static void free_inputs(inputs *in)
{
    free(in->q), free(in->k), free(in->v);
}

static size_t head_off(const attn_shape *s, int64_t bh)
{
    return (size_t)(bh * s->n * s->d);
}

/* Head bh of a method's output and lse against scaled dot-product attention over the
 * candidate multiset mult (n x n), computed in double. */
static void assert_head_matches_mask(const inputs *in, int64_t bh, const int *mult,
                                     const float *out, const float *lse)
{
    const int64_t n = in->s.n, d = in->s.d;
    double *qd = ref_doubles(in->q + head_off(&in->s, bh), n * d);
    double *kd = ref_doubles(in->k + head_off(&in->s, bh), n * d);
    double *vd = ref_doubles(in->v + head_off(&in->s, bh), n * d);
    double *ref = malloc((size_t)(n * d) * sizeof *ref), *ref_lse = malloc((size_t)n * sizeof *ref_lse);
    ref_dot ctx = {.q = qd, .k = kd, .d = d, .scale = 1.0 / sqrt((double)d)};
    ref_multiset(n, d, vd, mult, ref_dot_logit, &ctx, ref, ref_lse);
    assert_allclose(out + head_off(&in->s, bh), ref, (size_t)(n * d), TOL, TOL);
    assert_allclose(lse + bh * n, ref_lse, (size_t)n, TOL, TOL);
    free(qd), free(kd), free(vd), free(ref), free(ref_lse);
}

static void check_lsh(int64_t B, int64_t H, int64_t n, int64_t d, int causal,
                      const char *const *params, int64_t c_expect, int h_expect, int vs_full,
                      uint64_t seed)
{
    inputs in = make_inputs(B, H, n, d, causal, seed);
    float *out, *lse;
    int32_t *st;
    assert_int_equal(run_method("lsh", params, &in.s, in.q, in.k, in.v, 2, &out, &lse, &st), 0);
    int *mult = malloc((size_t)(n * n) * sizeof *mult);
    double *ref = malloc((size_t)(n * d) * sizeof *ref), *ref_lse = malloc((size_t)n * sizeof *ref_lse);
    int32_t *bk = malloc((size_t)(h_expect * n) * sizeof *bk);
    for (int64_t bh = 0; bh < B * H; bh++) {
        if (vs_full) { /* the oracle: every key exactly once (or uniformly often) */
            for (int64_t i = 0; i < n * n; i++)
                mult[i] = 1;
        } else { /* the multiset this head's own buckets imply */
            for (int r = 0; r < h_expect; r++)
                memcpy(bk + r * n, st + (size_t)(r * B * H + bh) * (size_t)n, (size_t)n * sizeof *bk);
            ref_mult_lsh(bk, n, h_expect, c_expect, mult);
        }
        double *qd = ref_doubles(in.q + head_off(&in.s, bh), n * d);
        double *vd = ref_doubles(in.v + head_off(&in.s, bh), n * d);
        ref_sqk ctx = {.q = qd, .d = d, .causal = causal};
        ref_multiset(n, d, vd, mult, ref_sqk_logit, &ctx, ref, ref_lse);
        free(qd), free(vd);
        assert_allclose(out + head_off(&in.s, bh), ref, (size_t)(n * d), TOL, TOL);
        if (!vs_full) /* duplicates shift the lse by log(multiplicity); only then comparable */
            assert_allclose(lse + bh * n, ref_lse, (size_t)n, TOL, TOL);
    }
    free(mult), free(ref), free(ref_lse), free(bk), free(out), free(lse), free(st);
    free_inputs(&in);
}

static void test_lsh_oracles_equal_full_shared_qk(void **state)
{
    (void)state;
    for (int causal = 0; causal <= 1; causal++) {
        /* n <= chunk_len: one chunk, all keys */
        const char *const short1[] = {"n_hashes=1", NULL}, *const short3[] = {"n_hashes=3", NULL};
        check_lsh(1, 1, 7, 16, causal, short1, 7, 1, 1, 1);
        check_lsh(2, 2, 50, 64, causal, short3, 50, 3, 1, 2);
        /* n = 2 chunk_len, one round: chunks [c1, c0] and [c0, c1] */
        const char *const two[] = {"chunk_len=32", "n_hashes=1", NULL};
        check_lsh(1, 2, 64, 32, causal, two, 32, 1, 1, 3);
        const char *const two_nb[] = {"chunk_len=16", "n_hashes=1", "n_buckets=8", NULL};
        check_lsh(2, 1, 32, 16, causal, two_nb, 16, 1, 1, 4);
        /* chunk_len = n, several rounds: every key seen twice, uniformly */
        const char *const whole[] = {"chunk_len=96", "n_hashes=3", NULL};
        check_lsh(1, 1, 96, 64, causal, whole, 96, 3, 1, 5);
    }
}

static void test_lsh_general_matches_multiset_of_its_buckets(void **state)
{
    (void)state;
    for (int causal = 0; causal <= 1; causal++) {
        const char *const a[] = {"chunk_len=16", "n_hashes=1", NULL};
        check_lsh(1, 1, 128, 32, causal, a, 16, 1, 0, 10);
        const char *const b[] = {"chunk_len=16", "n_hashes=2", "n_buckets=4", NULL};
        check_lsh(2, 2, 96, 16, causal, b, 16, 2, 0, 11);
        const char *const c[] = {"chunk_len=8", "n_hashes=3", "seed=7", NULL};
        check_lsh(1, 1, 200, 64, causal, c, 8, 3, 0, 12);
        /* more than 128 buckets: factorized hashing */
        const char *const d[] = {"chunk_len=4", "n_hashes=2", "n_buckets=512", NULL};
        check_lsh(1, 1, 160, 8, causal, d, 4, 2, 0, 13);
    }
}

static void test_lsh_causal_first_token_is_v0(void **state)
{
    (void)state;
    inputs in = make_inputs(1, 3, 256, 64, 1, 20);
    float *out, *lse;
    const char *const p[] = {"chunk_len=32", "n_hashes=4", NULL};
    assert_int_equal(run_method("lsh", p, &in.s, in.q, in.k, in.v, 2, &out, &lse, NULL), 0);
    for (int64_t h = 0; h < 3; h++)
        for (int64_t c = 0; c < 64; c++)
            assert_float_equal(out[head_off(&in.s, h) + c], in.v[head_off(&in.s, h) + c], 1e-6);
    free(out), free(lse);
    free_inputs(&in);
}

/* Angular LSH: argmax over [xR, -xR] is invariant to positive scaling, and -x lands in the
 * opposite bucket of every factor. Checked on the structure output. */
static void test_lsh_hash_is_angular(void **state)
{
    (void)state;
    const int64_t n = 192, d = 32;
    for (int variant = 0; variant < 2; variant++) {
        inputs in = make_inputs(1, 1, n, d, 0, 30 + variant);
        for (int64_t i = 0; i < n; i += 3)
            for (int64_t c = 0; c < d; c++) {
                in.q[(i + 1) * d + c] = 2.5f * in.q[i * d + c];
                in.q[(i + 2) * d + c] = -in.q[i * d + c];
            }
        /* flat 6 buckets, or 512 factorized as 32 x 16 */
        const char *const flat[] = {"chunk_len=16", "n_buckets=6", NULL};
        const char *const fact[] = {"chunk_len=16", "n_buckets=512", NULL};
        float *out, *lse;
        int32_t *st;
        assert_int_equal(run_method("lsh", variant ? fact : flat, &in.s, in.q, in.k, in.v, 1,
                                    &out, &lse, &st), 0);
        const int64_t f1 = variant ? 32 : 6, f2 = variant ? 16 : 1;
        for (int r = 0; r < 2; r++)
            for (int64_t i = 0; i < n; i += 3) {
                const int32_t *b = st + r * n;
                assert_true(b[i] >= 0 && b[i] < f1 * f2);
                assert_int_equal(b[i + 1], b[i]);
                int64_t a1 = b[i] % f1, a2 = b[i] / f1;
                int64_t flipped = (a1 + f1 / 2) % f1 + f1 * (f2 > 1 ? (a2 + f2 / 2) % f2 : 0);
                assert_int_equal(b[i + 2], flipped);
            }
        free(out), free(lse), free(st);
        free_inputs(&in);
    }
}

static void test_lsh_deterministic_and_seeded(void **state)
{
    (void)state;
    inputs in = make_inputs(2, 2, 512, 64, 0, 40);
    const char *const p0[] = {"chunk_len=32", NULL}, *const p1[] = {"chunk_len=32", "seed=1", NULL};
    float *o1, *o2, *o3, *l1, *l2, *l3;
    int32_t *s1, *s2, *s3;
    size_t e = attn_tensor_elems(&in.s), ns = 2 * 2 * 2 * 512;
    assert_int_equal(run_method("lsh", p0, &in.s, in.q, in.k, in.v, 1, &o1, &l1, &s1), 0);
    assert_int_equal(run_method("lsh", p0, &in.s, in.q, in.k, in.v, 3, &o2, &l2, &s2), 0);
    assert_memory_equal(o1, o2, e * sizeof(float)); /* thread count changes nothing */
    assert_memory_equal(s1, s2, ns * sizeof(int32_t));
    assert_int_equal(run_method("lsh", p1, &in.s, in.q, in.k, in.v, 2, &o3, &l3, &s3), 0);
    assert_memory_not_equal(s1, s3, ns * sizeof(int32_t)); /* another seed, other buckets */
    free(o1), free(o2), free(o3), free(l1), free(l2), free(l3), free(s1), free(s2), free(s3);
    free_inputs(&in);
}

static void test_lsh_rejects_bad_parameters(void **state)
{
    (void)state;
    inputs in = make_inputs(1, 1, 100, 16, 0, 50);
    float *out = NULL, *lse = NULL;
    const char *const odd[] = {"n_buckets=7", NULL}, *const uneven[] = {"chunk_len=64", NULL};
    const char *const zero[] = {"chunk_len=0", NULL}, *const hashes[] = {"n_hashes=65", NULL};
    assert_int_equal(run_method("lsh", odd, &in.s, in.q, in.k, in.v, 1, &out, &lse, NULL),
                     ATTN_EPARAM_RANGE);
    assert_int_equal(run_method("lsh", uneven, &in.s, in.q, in.k, in.v, 1, &out, &lse, NULL),
                     ATTN_EUNSUPPORTED);
    assert_int_equal(run_method("lsh", zero, &in.s, in.q, in.k, in.v, 1, &out, &lse, NULL),
                     ATTN_EPARAM_RANGE);
    assert_int_equal(run_method("lsh", hashes, &in.s, in.q, in.k, in.v, 1, &out, &lse, NULL),
                     ATTN_EPARAM_RANGE);
    free_inputs(&in);
}

/* ---- block_sparse ------------------------------------------------------------------------ */

static void check_block_sparse(int64_t B, int64_t H, int64_t n, int64_t d, int64_t block,
                               int n_rand, uint64_t seed)
{
    char pb[32], pr[32], ps[32];
    snprintf(pb, sizeof pb, "block=%lld", (long long)block);
    snprintf(pr, sizeof pr, "n_rand=%d", n_rand);
    snprintf(ps, sizeof ps, "seed=%llu", (unsigned long long)seed);
    const char *const params[] = {pb, pr, ps, NULL};
    inputs in = make_inputs(B, H, n, d, 0, seed + 100);
    float *out, *lse;
    int32_t *table;
    assert_int_equal(run_method("block_sparse", params, &in.s, in.q, in.k, in.v, 2, &out, &lse,
                                &table), 0);
    const int64_t nb = (n + block - 1) / block;
    int *mult = malloc((size_t)(n * n) * sizeof *mult);
    for (int64_t bh = 0; bh < B * H; bh++) {
        const int32_t *t = n_rand ? table + (size_t)(bh * nb) * (size_t)n_rand : NULL;
        /* the table is legal: distinct, in range, outside the window and the global blocks */
        for (int64_t i = 0; i < nb; i++) {
            int used = 0;
            for (int a = 0; a < n_rand; a++) {
                int32_t b = t[i * n_rand + a];
                if (i == 0 || i == nb - 1) {
                    assert_int_equal(b, -1);
                    continue;
                }
                if (b < 0)
                    continue;
                used++;
                assert_true(b > 0 && b < nb - 1 && (b < i - 1 || b > i + 1));
                for (int c = 0; c < a; c++)
                    assert_int_not_equal(t[i * n_rand + c], b);
            }
            int64_t candidates = nb - 2 - 3 + (i - 1 == 0) + (i + 1 == nb - 1);
            if (i > 0 && i < nb - 1)
                assert_int_equal(used, candidates < n_rand ? candidates : n_rand);
        }
        /* the dense mask from the same table */
        ref_mult_block_sparse(n, block, n_rand, t, mult);
        assert_head_matches_mask(&in, bh, mult, out, lse);
    }
    /* the same pattern for every batch element */
    if (B > 1 && n_rand)
        assert_memory_equal(table, table + (size_t)(H * nb * n_rand), (size_t)(H * nb * n_rand) * 4);
    free(mult), free(out), free(lse), free(table);
    free_inputs(&in);
}

static void test_block_sparse_matches_dense_mask_of_its_table(void **state)
{
    (void)state;
    check_block_sparse(1, 1, 640, 32, 64, 3, 1);   /* 10 blocks */
    check_block_sparse(2, 2, 300, 16, 16, 3, 2);   /* padded last block */
    check_block_sparse(1, 2, 257, 64, 8, 5, 3);    /* a 1-token last block */
    check_block_sparse(1, 1, 100, 16, 16, 3, 4);   /* 7 blocks: fewer candidates than n_rand */
    check_block_sparse(1, 1, 40, 8, 16, 3, 5);     /* 3 blocks: all attend to everything */
    check_block_sparse(1, 1, 500, 16, 25, 0, 6);   /* no random blocks */
    check_block_sparse(1, 1, 33, 24, 1, 2, 7);     /* block of one token */
}

static void test_block_sparse_global_rows_equal_full(void **state)
{
    (void)state;
    inputs in = make_inputs(1, 1, 512, 64, 0, 60);
    float *out, *lse, *fout, *flse;
    assert_int_equal(run_method("block_sparse", NULL, &in.s, in.q, in.k, in.v, 2, &out, &lse, NULL), 0);
    assert_int_equal(run_method("full", NULL, &in.s, in.q, in.k, in.v, 2, &fout, &flse, NULL), 0);
    for (int64_t i = 0; i < 512; i++) {
        if (i >= 64 && i < 448)
            continue;
        for (int64_t c = 0; c < 64; c++)
            assert_float_equal(out[i * 64 + c], fout[i * 64 + c], TOL * (1 + fabs(fout[i * 64 + c])));
    }
    free(out), free(lse), free(fout), free(flse);
    free_inputs(&in);
}

static void test_block_sparse_seeded_and_bidirectional(void **state)
{
    (void)state;
    inputs in = make_inputs(1, 1, 1024, 16, 0, 70);
    float *o1, *o2, *l1, *l2;
    int32_t *t1, *t2;
    const char *const s0[] = {"seed=0", NULL}, *const s1[] = {"seed=1", NULL};
    assert_int_equal(run_method("block_sparse", s0, &in.s, in.q, in.k, in.v, 1, &o1, &l1, &t1), 0);
    assert_int_equal(run_method("block_sparse", s0, &in.s, in.q, in.k, in.v, 3, &o2, &l2, &t2), 0);
    assert_memory_equal(o1, o2, 1024 * 16 * sizeof(float));
    assert_memory_equal(t1, t2, 16 * 3 * sizeof(int32_t));
    free(o2), free(l2), free(t2);
    assert_int_equal(run_method("block_sparse", s1, &in.s, in.q, in.k, in.v, 1, &o2, &l2, &t2), 0);
    assert_memory_not_equal(t1, t2, 16 * 3 * sizeof(int32_t));
    free(o1), free(o2), free(l1), free(l2), free(t1), free(t2);
    in.s.causal = 1;
    float *o = NULL, *l = NULL;
    assert_int_equal(run_method("block_sparse", NULL, &in.s, in.q, in.k, in.v, 1, &o, &l, NULL),
                     ATTN_EUNSUPPORTED);
    free_inputs(&in);
}

/* ---- etc ---------------------------------------------------------------------------------- */

static void check_etc(int64_t n, int64_t d, const char *const *params, int64_t g_expect,
                      int64_t radius, int l2g, int g2l, int64_t tokens_per_global, uint64_t seed)
{
    inputs in = make_inputs(2, 1, n, d, 0, seed);
    float *out, *lse;
    int32_t *seg;
    assert_int_equal(run_method("etc", params, &in.s, in.q, in.k, in.v, 2, &out, &lse, &seg), 0);
    const int64_t nl = n - g_expect;
    for (int64_t i = 0; i < nl; i++) { /* segments: contiguous runs, in order, of the spec */
        if (tokens_per_global)
            assert_int_equal(seg[i], i / tokens_per_global);
        else if (g_expect)
            assert_int_equal(seg[i], (int64_t)((double)i * g_expect / nl));
        assert_true(i == 0 || seg[i] >= seg[i - 1]);
    }
    int *mult = malloc((size_t)(n * n) * sizeof *mult);
    ref_mult_etc(n, g_expect, radius, l2g, g2l, seg, mult);
    for (int64_t bh = 0; bh < 2; bh++) {
        assert_head_matches_mask(&in, bh, mult, out, lse);
    }
    free(mult), free(out), free(lse), free(seg);
    free_inputs(&in);
}

static void test_etc_radius_covering_everything_is_full_attention(void **state)
{
    (void)state;
    const int64_t n = 300, d = 32;
    inputs in = make_inputs(1, 2, n, d, 0, 80);
    const char *const p[] = {"radius=300", "globals=20", NULL};
    float *out, *lse, *fout, *flse;
    assert_int_equal(run_method("etc", p, &in.s, in.q, in.k, in.v, 2, &out, &lse, NULL), 0);
    assert_int_equal(run_method("full", NULL, &in.s, in.q, in.k, in.v, 2, &fout, &flse, NULL), 0);
    for (size_t i = 0; i < attn_tensor_elems(&in.s); i++)
        assert_float_equal(out[i], fout[i], TOL * (1 + fabs(fout[i])));
    free(out), free(lse), free(fout), free(flse);
    free_inputs(&in);
}

static void test_etc_general_masks(void **state)
{
    (void)state;
    const char *const a[] = {"radius=5", "globals=7", NULL};
    check_etc(200, 16, a, 7, 5, 0, 0, 0, 1);
    const char *const b[] = {"radius=1", "globals=0", NULL}; /* sliding window only */
    check_etc(150, 8, b, 0, 1, 0, 0, 0, 2);
    const char *const c[] = {"radius=84", "tokens_per_global=16", "l2g=segment", NULL};
    check_etc(700, 64, c, 42, 84, 1, 0, 16, 3);
    const char *const d[] = {"radius=2", "tokens_per_global=4", "l2g=segment", "g2l=segment", NULL};
    check_etc(333, 16, d, 67, 2, 1, 1, 4, 4);
    const char *const e[] = {"radius=3", "globals=9", "l2g=segment", "g2l=segment", NULL};
    check_etc(250, 24, e, 9, 3, 1, 1, 0, 5);
    const char *const f[] = {"radius=0", "globals=64", NULL};
    check_etc(40, 16, f, 40, 0, 0, 0, 0, 6); /* globals >= n: all tokens global */
    const char *const g[] = {"radius=200", "globals=130", NULL}; /* several global tiles */
    check_etc(400, 16, g, 130, 200, 0, 0, 0, 7);
}

static void test_etc_rejects_causal(void **state)
{
    (void)state;
    inputs in = make_inputs(1, 1, 64, 16, 1, 90);
    float *o = NULL, *l = NULL;
    assert_int_equal(run_method("etc", NULL, &in.s, in.q, in.k, in.v, 1, &o, &l, NULL),
                     ATTN_EUNSUPPORTED);
    const char *const bad[] = {"l2g=some", NULL};
    in.s.causal = 0;
    assert_int_equal(run_method("etc", bad, &in.s, in.q, in.k, in.v, 1, &o, &l, NULL),
                     ATTN_EPARAM_VALUE);
    free_inputs(&in);
}

/* ---- mass recall: the exact softmax mass on the keys a forward scored ---------------------- */

/* The oracle in double: for each row, the exact softmax over every key (logits of `logit`),
 * summed over the distinct candidates of mult; the mean over the head's rows. */
static double oracle_recall(int64_t n, const int *mult, ref_logit_fn logit, const void *ctx)
{
    double total = 0;
    double *l = malloc((size_t)n * sizeof *l);
    for (int64_t i = 0; i < n; i++) {
        double m = -INFINITY, z = 0, in = 0;
        for (int64_t j = 0; j < n; j++)
            m = fmax(m, l[j] = logit(i, j, ctx));
        for (int64_t j = 0; j < n; j++) {
            z += exp(l[j] - m);
            in += mult[i * n + j] ? exp(l[j] - m) : 0;
        }
        total += in / z;
    }
    free(l);
    return total / (double)n;
}

/* Runs `name` with params, its exact counterpart on the same inputs, and attn_mass_recall. */
static double method_recall(const char *name, const char *const *params, const inputs *in,
                            float **lse, int32_t **structure)
{
    float *out, *out_x, *lse_x;
    int32_t *st_x;
    assert_int_equal(run_method(name, params, &in->s, in->q, in->k, in->v, 2, &out, lse, structure), 0);
    attn_params p, x;
    attn_params_default(attn_find(name), &p);
    for (int i = 0; params && params[i]; i++)
        assert_int_equal(attn_params_parse(&p, params[i]), 0);
    attn_exact_params(&in->s, &p, &x);
    char values[8][64];
    const char *xp[9] = {NULL};
    for (int i = 0; i < x.method->n_params && i < 8; i++) {
        char val[48];
        snprintf(values[i], sizeof values[i], "%s=%s", x.method->params[i].name,
                 attn_param_format(&x, i, val, sizeof val));
        xp[i] = values[i];
    }
    assert_int_equal(run_method(x.method->name, xp, &in->s, in->q, in->k, in->v, 2, &out_x,
                                &lse_x, &st_x), 0);
    const attn_tensors t = {.q = in->q, .k = in->k, .v = in->v, .out = out, .lse = *lse,
                            .structure = *structure};
    double recall = -1;
    assert_int_equal(attn_mass_recall(&in->s, &p, &t, lse_x, &recall, 2), 0);
    free(out), free(out_x), free(lse_x), free(st_x);
    return recall;
}

static void test_mass_recall_against_oracle(void **state)
{
    (void)state;
    for (int causal = 0; causal <= 1; causal++) { /* lsh: 3 rounds, so keys repeat */
        inputs in = make_inputs(1, 1, 128, 16, causal, 40 + causal);
        const char *const params[] = {"chunk_len=16", "n_hashes=3", NULL};
        float *lse;
        int32_t *st;
        const double got = method_recall("lsh", params, &in, &lse, &st);
        int *mult = malloc(128 * 128 * sizeof *mult);
        ref_mult_lsh(st, 128, 3, 16, mult);
        double *qd = ref_doubles(in.q, 128 * 16);
        ref_sqk ctx = {.q = qd, .d = 16, .causal = causal};
        const double want = oracle_recall(128, mult, ref_sqk_logit, &ctx);
        print_message("lsh causal=%d: recall %.6f, oracle %.6f\n", causal, got, want);
        assert_true(want > 0.05 && want < 0.999); /* a real selection, neither all nor none */
        assert_float_equal(got, want, 1e-5);
        free(mult), free(qd), free(lse), free(st);
        free_inputs(&in);
    }
    { /* block_sparse and etc: every candidate once, from the forward's own logsumexp */
        inputs in = make_inputs(1, 1, 320, 16, 0, 44);
        const char *const bs[] = {"block=16", "n_rand=2", NULL};
        const char *const et[] = {"radius=5", "globals=12", NULL};
        int *mult = malloc(320 * 320 * sizeof *mult);
        double *qd = ref_doubles(in.q, 320 * 16), *kd = ref_doubles(in.k, 320 * 16);
        ref_dot ctx = {.q = qd, .k = kd, .d = 16, .scale = 0.25};
        float *lse;
        int32_t *st;
        double got = method_recall("block_sparse", bs, &in, &lse, &st);
        ref_mult_block_sparse(320, 16, 2, st, mult);
        double want = oracle_recall(320, mult, ref_dot_logit, &ctx);
        assert_true(want > 0.05 && want < 0.999);
        assert_float_equal(got, want, 1e-5);
        free(lse), free(st);
        got = method_recall("etc", et, &in, &lse, &st);
        ref_mult_etc(320, 12, 5, 0, 0, st, mult);
        want = oracle_recall(320, mult, ref_dot_logit, &ctx);
        assert_true(want > 0.05 && want < 0.999);
        assert_float_equal(got, want, 1e-5);
        free(lse), free(st), free(mult), free(qd), free(kd);
        free_inputs(&in);
    }
    for (int causal = 0; causal <= 1; causal++) { /* exact attention recalls everything */
        inputs in = make_inputs(2, 2, 77, 16, causal, 46);
        float *lse;
        int32_t *st;
        assert_float_equal(method_recall("full_stream", NULL, &in, &lse, &st), 1.0, 1e-6);
        free(lse), free(st);
        free_inputs(&in);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lsh_oracles_equal_full_shared_qk),
        cmocka_unit_test(test_lsh_general_matches_multiset_of_its_buckets),
        cmocka_unit_test(test_lsh_causal_first_token_is_v0),
        cmocka_unit_test(test_lsh_hash_is_angular),
        cmocka_unit_test(test_lsh_deterministic_and_seeded),
        cmocka_unit_test(test_lsh_rejects_bad_parameters),
        cmocka_unit_test(test_block_sparse_matches_dense_mask_of_its_table),
        cmocka_unit_test(test_block_sparse_global_rows_equal_full),
        cmocka_unit_test(test_block_sparse_seeded_and_bidirectional),
        cmocka_unit_test(test_etc_radius_covering_everything_is_full_attention),
        cmocka_unit_test(test_etc_general_masks),
        cmocka_unit_test(test_etc_rejects_causal),
        cmocka_unit_test(test_mass_recall_against_oracle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
