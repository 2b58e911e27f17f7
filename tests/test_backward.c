/* test_backward.c: every method's backward pass against central finite differences of a
 * double-precision reference forward (with the method's own structure held fixed, as the
 * backward holds it), on small shapes, odd lengths, causal and not; and full_stream's
 * backward against full's on a larger shape. */
#include "helpers.h"
#include "reference.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a head's reference forward needs besides q, k, v. */
typedef struct head_ref {
    const char *method;
    int64_t n, d;
    int causal;
    const int *mult;  /* candidate multiplicities, n x n */
} head_ref;

/* sum(dout o O) for one head, in double */
static double head_loss(const head_ref *h, const double *q, const double *k, const double *v,
                        const double *dout)
{
    double *out = malloc((size_t)(h->n * h->d) * sizeof *out), *lse = malloc((size_t)h->n * sizeof *lse);
    if (strcmp(h->method, "lsh") == 0) {
        ref_sqk c = {.q = q, .d = h->d, .causal = h->causal};
        ref_multiset(h->n, h->d, v, h->mult, ref_sqk_logit, &c, out, lse);
    } else {
        ref_dot c = {.q = q, .k = k, .d = h->d, .scale = 1.0 / sqrt((double)h->d)};
        ref_multiset(h->n, h->d, v, h->mult, ref_dot_logit, &c, out, lse);
    }
    double loss = 0;
    for (int64_t i = 0; i < h->n * h->d; i++)
        loss += dout[i] * out[i];
    free(out);
    free(lse);
    return loss;
}

/* Central differences of head_loss with respect to every element of x (one of q, k, v). */
static void finite_diff(const head_ref *h, double *q, double *k, double *v, const double *dout,
                        double *x, double *grad)
{
    const double eps = 1e-5;
    for (int64_t i = 0; i < h->n * h->d; i++) {
        const double keep = x[i];
        x[i] = keep + eps;
        const double up = head_loss(h, q, k, v, dout);
        x[i] = keep - eps;
        const double down = head_loss(h, q, k, v, dout);
        x[i] = keep;
        grad[i] = (up - down) / (2 * eps);
    }
}

/* The multiplicities a method's structure implies for head bh. */
static void head_mult(const char *method, const attn_shape *s, const char *const *params,
                      const int32_t *st, int64_t bh, int *mult)
{
    const int64_t n = s->n;
    const attn_method *m = attn_find(method);
    attn_params p;
    attn_params_default(m, &p);
    for (int i = 0; params && params[i]; i++)
        assert_int_equal(attn_params_parse(&p, params[i]), 0);
    if (strcmp(method, "lsh") == 0) {
        const int h = (int)p.v[attn_param_index(m, "n_hashes")];
        int64_t c = (int64_t)p.v[attn_param_index(m, "chunk_len")];
        c = c < n ? c : n;
        int32_t *bk = malloc((size_t)(h * n) * sizeof *bk);
        for (int r = 0; r < h; r++)
            memcpy(bk + r * n, st + (size_t)(r * s->B * s->H + bh) * (size_t)n, (size_t)n * 4);
        ref_mult_lsh(bk, n, h, c, mult);
        free(bk);
    } else if (strcmp(method, "block_sparse") == 0) {
        const int64_t block = (int64_t)p.v[attn_param_index(m, "block")];
        const int n_rand = (int)p.v[attn_param_index(m, "n_rand")];
        const int64_t nb = (n + block - 1) / block;
        ref_mult_block_sparse(n, block, n_rand, st + (size_t)(bh * nb * n_rand), mult);
    } else if (strcmp(method, "etc") == 0) {
        attn_cost c;
        m->cost(s, &p, 1, &c);
        const int64_t g = n - (c.structure_ndim ? c.structure_dims[0] : 0);
        ref_mult_etc(n, g, (int64_t)p.v[attn_param_index(m, "radius")],
                     (int)p.v[attn_param_index(m, "l2g")] == 1,
                     (int)p.v[attn_param_index(m, "g2l")] == 1, st, mult);
    } else {
        ref_mult_all(n, s->causal, mult);
    }
}

static void check_backward(const char *method, const char *const *params, attn_shape s,
                           uint64_t seed)
{
    const size_t e = attn_tensor_elems(&s);
    const int64_t n = s.n, d = s.d;
    float *q = malloc(e * 4), *k = malloc(e * 4), *v = malloc(e * 4), *dout = malloc(e * 4);
    fill_normal(q, e, seed, 1.0f);
    fill_normal(k, e, seed + 1, 1.0f);
    fill_normal(v, e, seed + 2, 1.0f);
    fill_normal(dout, e, seed + 3, 1.0f);
    float *out, *lse;
    int32_t *st;
    assert_int_equal(run_method(method, params, &s, q, k, v, 2, &out, &lse, &st), 0);
    float *dq = malloc(e * 4), *dk = malloc(e * 4), *dv = malloc(e * 4);
    fill_nan(dq, e), fill_nan(dk, e), fill_nan(dv, e);
    attn_params p;
    attn_params_default(attn_find(method), &p);
    for (int i = 0; params && params[i]; i++)
        assert_int_equal(attn_params_parse(&p, params[i]), 0);
    attn_grads g = {.q = q, .k = k, .v = v, .out = out, .lse = lse, .dout = dout, .structure = st,
                    .dq = dq, .dk = dk, .dv = dv};
    assert_int_equal(attn_backward_alloc(&s, &p, &g, 2), 0);

    int *mult = malloc((size_t)(n * n) * sizeof *mult);
    double *gq = malloc((size_t)(n * d) * 8), *gk = malloc((size_t)(n * d) * 8),
           *gv = malloc((size_t)(n * d) * 8);
    for (int64_t bh = 0; bh < s.B * s.H; bh++) {
        const size_t off = (size_t)(bh * n * d);
        head_mult(method, &s, params, st, bh, mult);
        head_ref h = {.method = method, .n = n, .d = d, .causal = s.causal, .mult = mult};
        double *qd = ref_doubles(q + off, n * d), *kd = ref_doubles(k + off, n * d),
               *vd = ref_doubles(v + off, n * d), *dod = ref_doubles(dout + off, n * d);
        finite_diff(&h, qd, kd, vd, dod, qd, gq);
        finite_diff(&h, qd, kd, vd, dod, kd, gk);
        finite_diff(&h, qd, kd, vd, dod, vd, gv);
        print_message("%s n=%lld d=%lld causal=%d head %lld\n", method, (long long)n,
                      (long long)d, s.causal, (long long)bh);
        assert_allclose(dq + off, gq, (size_t)(n * d), 2e-5, 1e-4);
        assert_allclose(dk + off, gk, (size_t)(n * d), 2e-5, 1e-4);
        assert_allclose(dv + off, gv, (size_t)(n * d), 2e-5, 1e-4);
        free(qd), free(kd), free(vd), free(dod);
    }
    free(mult), free(gq), free(gk), free(gv);
    free(q), free(k), free(v), free(dout), free(out), free(lse), free(st), free(dq), free(dk), free(dv);
}

static attn_shape shape(int64_t B, int64_t H, int64_t n, int64_t d, int causal)
{
    return (attn_shape){.B = B, .H = H, .n = n, .d = d, .causal = causal};
}

static void test_exact_methods_vs_finite_differences(void **state)
{
    (void)state;
    const char *const small_tiles[] = {"tile_q=4", "tile_k=5", NULL};
    for (int causal = 0; causal <= 1; causal++) {
        check_backward("full", NULL, shape(1, 2, 7, 3, causal), 1);
        check_backward("full", NULL, shape(2, 1, 13, 8, causal), 2);
        check_backward("full_stream", NULL, shape(1, 2, 7, 3, causal), 3);
        check_backward("full_stream", small_tiles, shape(2, 1, 13, 8, causal), 4);
        check_backward("full_stream", small_tiles, shape(1, 1, 1, 4, causal), 5);
    }
}

static void test_lsh_vs_finite_differences(void **state)
{
    (void)state;
    const char *const a[] = {"chunk_len=4", "n_hashes=1", NULL};
    const char *const b[] = {"chunk_len=4", "n_hashes=3", "n_buckets=4", NULL};
    const char *const c[] = {"chunk_len=8", "n_hashes=2", NULL}; /* n <= chunk_len */
    for (int causal = 0; causal <= 1; causal++) {
        check_backward("lsh", a, shape(1, 2, 16, 4, causal), 10);
        check_backward("lsh", b, shape(2, 1, 12, 5, causal), 11);
        check_backward("lsh", c, shape(1, 1, 6, 4, causal), 12);
    }
}

static void test_sparse_vs_finite_differences(void **state)
{
    (void)state;
    const char *const bs[] = {"block=4", "n_rand=1", NULL};
    const char *const bs2[] = {"block=3", "n_rand=2", "seed=5", NULL};
    check_backward("block_sparse", bs, shape(1, 2, 22, 4, 0), 20);
    check_backward("block_sparse", bs2, shape(2, 1, 25, 3, 0), 21);
    const char *const e1[] = {"radius=2", "globals=3", NULL};
    const char *const e2[] = {"radius=1", "tokens_per_global=4", "l2g=segment", "g2l=segment", NULL};
    const char *const e3[] = {"radius=3", "globals=2", "l2g=segment", NULL};
    check_backward("etc", e1, shape(1, 2, 20, 4, 0), 30);
    check_backward("etc", e2, shape(1, 1, 19, 3, 0), 31);
    check_backward("etc", e3, shape(2, 1, 15, 4, 0), 32);
}

/* The streaming backward equals the textbook one on a larger, odd, causal shape. */
static void test_full_stream_backward_equals_full(void **state)
{
    (void)state;
    for (int causal = 0; causal <= 1; causal++) {
        attn_shape s = shape(1, 3, 301, 64, causal);
        const size_t e = attn_tensor_elems(&s);
        float *q = malloc(e * 4), *k = malloc(e * 4), *v = malloc(e * 4), *dout = malloc(e * 4);
        fill_normal(q, e, 40, 1.0f), fill_normal(k, e, 41, 1.0f), fill_normal(v, e, 42, 1.0f);
        fill_normal(dout, e, 43, 1.0f);
        float *grads[2][3];
        for (int m = 0; m < 2; m++) {
            const char *method = m ? "full_stream" : "full";
            float *out, *lse;
            assert_int_equal(run_method(method, NULL, &s, q, k, v, 2, &out, &lse, NULL), 0);
            for (int x = 0; x < 3; x++) {
                grads[m][x] = malloc(e * 4);
                fill_nan(grads[m][x], e);
            }
            attn_params p;
            attn_params_default(attn_find(method), &p);
            attn_grads g = {.q = q, .k = k, .v = v, .out = out, .lse = lse, .dout = dout,
                            .dq = grads[m][0], .dk = grads[m][1], .dv = grads[m][2]};
            assert_int_equal(attn_backward_alloc(&s, &p, &g, m ? 3 : 2), 0);
            free(out), free(lse);
        }
        for (int x = 0; x < 3; x++) {
            double *ref = ref_doubles(grads[0][x], (int64_t)e);
            assert_allclose(grads[1][x], ref, e, 1e-5, 1e-4);
            free(ref), free(grads[0][x]), free(grads[1][x]);
        }
        free(q), free(k), free(v), free(dout);
    }
}

/* The backward spreads one head's tiles over the team and adds their partials in a fixed
 * order: the gradients are bitwise the same for any thread count, with one head (B = H = 1,
 * where all the parallelism is inside the head) and with several. */
static void test_backward_bitwise_for_any_thread_count(void **state)
{
    (void)state;
    static const struct {
        const char *method;
        const char *params[4];
        int causal;
    } cases[] = {
        {"full_stream", {"tile_q=32", "tile_k=48", NULL}, 0},
        {"full_stream", {"tile_q=32", "tile_k=48", NULL}, 1},
        {"lsh", {"chunk_len=16", "n_hashes=3", NULL}, 1},
        {"block_sparse", {"block=16", "n_rand=2", NULL}, 0},
        {"etc", {"radius=9", "globals=7", NULL}, 0},
    };
    static const int heads[] = {1, 3};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int hh = 0; hh < 2; hh++) {
            attn_shape s = shape(1, heads[hh], 400, 16, cases[c].causal);
            const size_t e = attn_tensor_elems(&s);
            float *q = malloc(e * 4), *k = malloc(e * 4), *v = malloc(e * 4), *dout = malloc(e * 4);
            fill_normal(q, e, 50, 1.0f), fill_normal(k, e, 51, 1.0f), fill_normal(v, e, 52, 1.0f);
            fill_normal(dout, e, 53, 1.0f);
            float *out, *lse;
            int32_t *st;
            assert_int_equal(run_method(cases[c].method, cases[c].params, &s, q, k, v, 2, &out,
                                        &lse, &st), 0);
            attn_params p;
            attn_params_default(attn_find(cases[c].method), &p);
            for (int i = 0; cases[c].params[i]; i++)
                assert_int_equal(attn_params_parse(&p, cases[c].params[i]), 0);
            float *first[3] = {NULL, NULL, NULL};
            static const int team[] = {1, 2, 3, 5};
            for (int tt = 0; tt < 4; tt++) {
                float *gr[3];
                for (int x = 0; x < 3; x++) {
                    gr[x] = malloc(e * 4);
                    fill_nan(gr[x], e);
                }
                attn_grads g = {.q = q, .k = k, .v = v, .out = out, .lse = lse, .dout = dout,
                                .structure = st, .dq = gr[0], .dk = gr[1], .dv = gr[2]};
                assert_int_equal(attn_backward_alloc(&s, &p, &g, team[tt]), 0);
                for (int x = 0; x < 3; x++) {
                    if (tt == 0) {
                        first[x] = gr[x];
                        for (size_t i = 0; i < e; i++)
                            assert_true(isfinite(gr[x][i]));
                        continue;
                    }
                    if (memcmp(first[x], gr[x], e * 4) != 0)
                        fail_msg("%s causal=%d H=%d: d%c with %d threads differs from 1 thread",
                                 cases[c].method, cases[c].causal, heads[hh], "qkv"[x], team[tt]);
                    free(gr[x]);
                }
            }
            for (int x = 0; x < 3; x++)
                free(first[x]);
            free(q), free(k), free(v), free(dout), free(out), free(lse), free(st);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backward_bitwise_for_any_thread_count),
        cmocka_unit_test(test_exact_methods_vs_finite_differences),
        cmocka_unit_test(test_lsh_vs_finite_differences),
        cmocka_unit_test(test_sparse_vs_finite_differences),
        cmocka_unit_test(test_full_stream_backward_equals_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
