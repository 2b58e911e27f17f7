/* test_attn_full.c: the exact methods (full, full_stream) against a double-precision
 * reference, and the registry's error handling. */
#include "helpers.h"
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5 /* max abs error <= TOL * (1 + |ref|) */

static const int64_t lengths[] = {1, 7, 113, 255, 1024};
static const int64_t dims[] = {16, 64, 128};

/* One reference per (n, d, causal), shared by every method, tile size and thread count. */
typedef struct fixture {
    attn_shape s;
    float *q, *k, *v;
    double *out, *lse;
} fixture;

static void fixture_init(fixture *f, int64_t B, int64_t H, int64_t n, int64_t d, int causal,
                         uint64_t seed)
{
    f->s = (attn_shape){.B = B, .H = H, .n = n, .d = d, .causal = causal};
    size_t elems = attn_tensor_elems(&f->s), rows = (size_t)(B * H * n);
    f->q = malloc(elems * sizeof(float));
    f->k = malloc(elems * sizeof(float));
    f->v = malloc(elems * sizeof(float));
    f->out = malloc(elems * sizeof(double));
    f->lse = malloc(rows * sizeof(double));
    fill_normal(f->q, elems, seed, 1.0f);
    fill_normal(f->k, elems, seed + 1, 1.0f);
    fill_normal(f->v, elems, seed + 2, 1.0f);
    int *mult = malloc((size_t)(n * n) * sizeof *mult);
    ref_mult_all(n, causal, mult);
    for (int64_t bh = 0; bh < B * H; bh++) {
        size_t off = (size_t)(bh * n * d);
        double *qd = ref_doubles(f->q + off, n * d), *kd = ref_doubles(f->k + off, n * d),
               *vd = ref_doubles(f->v + off, n * d);
        ref_dot ctx = {.q = qd, .k = kd, .d = d, .scale = 1.0 / sqrt((double)d)};
        ref_multiset(n, d, vd, mult, ref_dot_logit, &ctx, f->out + off, f->lse + bh * n);
        free(qd), free(kd), free(vd);
    }
    free(mult);
}

static void fixture_free(fixture *f)
{
    free(f->q);
    free(f->k);
    free(f->v);
    free(f->out);
    free(f->lse);
}

/* Runs one configuration, checks it against the reference, returns the output (caller frees)
 * so callers can compare runs bitwise. */
static float *check_method(const fixture *f, const char *method, const char *const *params,
                           int nthreads)
{
    float *out, *lse;
    int rc = run_method(method, params, &f->s, f->q, f->k, f->v, nthreads, &out, &lse, NULL);
    assert_int_equal(rc, ATTN_OK);
    size_t elems = attn_tensor_elems(&f->s), rows = (size_t)(f->s.B * f->s.H * f->s.n);
    assert_allclose(out, f->out, elems, TOL, TOL);
    assert_allclose(lse, f->lse, rows, TOL, TOL);
    free(lse);
    return out;
}

static void test_exact_methods_match_reference(void **state)
{
    (void)state;
    const char *const tiles_default[] = {NULL};
    const char *const tiles_odd[] = {"tile_q=7", "tile_k=5", NULL};
    const char *const tiles_wide[] = {"tile_q=64", "tile_k=33", NULL};
    const char *const tiles_one[] = {"tile_q=1", "tile_k=1", NULL};
    for (size_t ni = 0; ni < sizeof lengths / sizeof lengths[0]; ni++)
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
            for (int causal = 0; causal <= 1; causal++) {
                fixture f;
                fixture_init(&f, 1, 1, lengths[ni], dims[di], causal, 100 + ni * 10 + di);
                free(check_method(&f, "full", NULL, 2));
                float *base = check_method(&f, "full_stream", tiles_default, 1);
                size_t bytes = attn_tensor_elems(&f.s) * sizeof(float);
                for (int threads = 2; threads <= 3; threads++) {
                    float *other = check_method(&f, "full_stream", tiles_default, threads);
                    assert_memory_equal(base, other, bytes); /* thread count changes nothing */
                    free(other);
                }
                free(check_method(&f, "full_stream", tiles_odd, 2));
                free(check_method(&f, "full_stream", tiles_wide, 3));
                if (f.s.n <= 255)
                    free(check_method(&f, "full_stream", tiles_one, 2));
                free(base);
                fixture_free(&f);
            }
}

static void test_batched_heads(void **state)
{
    (void)state;
    for (int causal = 0; causal <= 1; causal++) {
        fixture f;
        fixture_init(&f, 2, 3, 70, 32, causal, 7);
        const char *const tiles[] = {"tile_q=16", "tile_k=24", NULL};
        free(check_method(&f, "full", NULL, 2));
        free(check_method(&f, "full_stream", tiles, 2));
        fixture_free(&f);
    }
}

/* Softmax weights sum to one, so a constant V must come out unchanged in every row. */
static void test_constant_v_gives_constant_output(void **state)
{
    (void)state;
    const char *methods[] = {"full", "full_stream"};
    attn_shape s = {.B = 1, .H = 2, .n = 300, .d = 64, .causal = 1};
    size_t elems = attn_tensor_elems(&s);
    float *q = malloc(elems * sizeof *q), *k = malloc(elems * sizeof *k),
          *v = malloc(elems * sizeof *v);
    fill_normal(q, elems, 1, 3.0f); /* large logits: a peaked softmax */
    fill_normal(k, elems, 2, 3.0f);
    for (size_t i = 0; i < elems; i++)
        v[i] = 0.25f + (float)(i % 64);
    for (int m = 0; m < 2; m++) {
        float *out, *lse;
        assert_int_equal(run_method(methods[m], NULL, &s, q, k, v, 2, &out, &lse, NULL), 0);
        for (size_t i = 0; i < elems; i++)
            assert_float_equal(out[i], v[i], 1e-5 * (1 + fabs(v[i])));
        free(out);
        free(lse);
    }
    free(q);
    free(k);
    free(v);
}

static void test_registry_errors(void **state)
{
    (void)state;
    assert_null(attn_find("no_such_method"));
    const attn_method *m = attn_find("full_stream");
    assert_non_null(m);
    attn_params p;
    attn_params_default(m, &p);
    assert_int_equal(attn_params_parse(&p, "tile_q=64"), ATTN_OK);
    assert_int_equal((int)p.v[attn_param_index(m, "tile_q")], 64);
    assert_int_equal(attn_params_parse(&p, "nope=3"), ATTN_EUNKNOWN_PARAM);
    assert_int_equal(attn_params_parse(&p, "tile_q=0"), ATTN_EPARAM_RANGE);
    assert_int_equal(attn_params_parse(&p, "tile_q=99999"), ATTN_EPARAM_RANGE);
    assert_int_equal(attn_params_parse(&p, "tile_q=1.5"), ATTN_EPARAM_VALUE);
    assert_int_equal(attn_params_parse(&p, "tile_q=abc"), ATTN_EPARAM_VALUE);
    assert_int_equal(attn_params_parse(&p, "tile_q="), ATTN_EPARAM_VALUE);
    assert_int_equal(attn_params_parse(&p, "tile_q"), ATTN_EPARAM_VALUE);
    assert_int_equal(attn_params_parse(&p, "tile_q=auto"), ATTN_EPARAM_VALUE);
    /* a failed set leaves the old value */
    assert_int_equal((int)p.v[attn_param_index(m, "tile_q")], 64);
    assert_string_equal(attn_errname(ATTN_EPARAM_RANGE), "ATTN_EPARAM_RANGE");
    assert_string_equal(attn_strerror(12345), "unknown error");

    int count;
    const attn_method *const *all = attn_methods(&count);
    float x = 0, out = 0, lse = 0;
    attn_tensors t = {.q = &x, .k = &x, .v = &x, .out = &out, .lse = &lse};
    for (int i = 0; i < count; i++) {
        attn_params_default(all[i], &p);
        const char *why = NULL;
        for (int64_t bad = -1; bad <= 0; bad++) {
            attn_shape s = {.B = 1, .H = 1, .n = bad, .d = 16};
            assert_int_equal(attn_check(&s, &p, &why), ATTN_ESHAPE);
            assert_true(why && *why);
            assert_int_equal(attn_forward_alloc(&s, &p, &t, 1), ATTN_ESHAPE);
            s = (attn_shape){.B = 1, .H = 1, .n = 8, .d = bad};
            assert_int_equal(attn_check(&s, &p, &why), ATTN_ESHAPE);
        }
        /* sizes whose products overflow (B*H = 2^80 wraps to 0) or pass 2^63 elements */
        attn_shape huge = {.B = INT64_C(1) << 40, .H = INT64_C(1) << 40, .n = 8, .d = 16};
        assert_int_equal(attn_check(&huge, &p, &why), ATTN_ESHAPE);
        huge = (attn_shape){.B = 1 << 10, .H = 1 << 10, .n = INT64_C(1) << 31, .d = 4096};
        assert_int_equal(attn_check(&huge, &p, &why), ATTN_ESHAPE);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_methods_match_reference),
        cmocka_unit_test(test_batched_heads),
        cmocka_unit_test(test_constant_v_gives_constant_output),
        cmocka_unit_test(test_registry_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
