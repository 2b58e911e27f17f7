/* test_hostile.c: every method's forward and backward fed hostile inputs straight (not through
 * the CLI's finiteness check): NaN and infinite rows, all-equal rows, zero rows, huge and
 * denormal magnitudes, n = 1, d = 1. The property is safety, not accuracy: the call returns 0
 * or a named error, never reads or writes out of bounds (the sanitizer build, `make asan`,
 * turns any such access into a failure here), and on finite inputs of ordinary magnitude the
 * outputs are finite. Each shape and pattern runs with both the tile kernel's paths. */
#include "helpers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../attn/tile.h"

/* How the inputs are spoiled; `finite` patterns must give finite outputs. */
typedef struct pattern {
    const char *name;
    float value;   /* written into the spoiled rows (or every element, for `all`) */
    bool all;      /* every element of q, k and v, not one row of one tensor */
    bool finite;
} pattern;

static const pattern patterns[] = {
    {"nan row", NAN, false, false},
    {"+inf row", INFINITY, false, false},
    {"-inf row", -INFINITY, false, false},
    {"huge row", 1e30f, false, false},
    {"zero row", 0.0f, false, true},
    {"denormal row", 1e-40f, false, true},
    {"all equal", 0.5f, true, true},
    {"all zero", 0.0f, true, true},
    {"all nan", NAN, true, false},
    {"all huge", -3e38f, true, false},
};
#define NPATTERNS (sizeof patterns / sizeof patterns[0])

typedef struct config {
    const char *method;
    const char *params[5];
} config;

/* Every method, and the branches of each that a hostile value could reach differently (LSH's
 * flat and factorized hashing, one chunk and many). */
static const config configs[] = {
    {"full", {NULL}},
    {"full_stream", {"tile_q=16", "tile_k=32", NULL}},
    {"lsh", {"chunk_len=1", NULL}},
    {"lsh", {"n_buckets=256", "n_hashes=3", NULL}},
    {"lsh", {"n_buckets=4", NULL}},
    {"block_sparse", {"block=2", "n_rand=1", NULL}},
    {"block_sparse", {NULL}},
    {"etc", {"radius=2", "globals=3", NULL}},
    {"etc", {"radius=1", "globals=2", "tokens_per_global=2", "l2g=segment", NULL}},
};
#define NCONFIGS (sizeof configs / sizeof configs[0])

typedef struct dims {
    int64_t B, H, n, d;
} dims;

static const dims shapes[] = {{1, 1, 1, 1}, {1, 1, 7, 1}, {1, 2, 64, 3}, {2, 1, 96, 16}};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

static int64_t first_nonfinite(const float *x, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (!isfinite(x[i]))
            return (int64_t)i;
    return -1;
}

/* Spoils q, k or v (by `which`) as the pattern says: row n/2 of head 0, or everything. */
static void spoil(const pattern *p, const attn_shape *s, int which, float *q, float *k, float *v)
{
    const size_t elems = attn_tensor_elems(s);
    float *const t[3] = {q, k, v};
    for (int i = 0; i < 3; i++) {
        if (p->all) {
            for (size_t e = 0; e < elems; e++)
                t[i][e] = p->value;
        } else if (i == which) {
            for (int64_t c = 0; c < s->d; c++)
                t[i][(size_t)(s->n / 2 * s->d + c)] = p->value;
        }
    }
}

/* One method, one shape, one pattern: forward, then backward, on poisoned outputs. */
static void run_one(const config *cf, const attn_shape *s, const pattern *pat, int which)
{
    const attn_method *m = attn_find(cf->method);
    assert_non_null(m);
    attn_params p;
    attn_params_default(m, &p);
    for (int i = 0; cf->params[i]; i++)
        assert_int_equal(attn_params_parse(&p, cf->params[i]), 0);
    const char *why;
    int rc = attn_check(s, &p, &why);
    if (rc) { /* a shape the method rejects is a named error, never a crash */
        assert_true(rc == ATTN_EUNSUPPORTED || rc == ATTN_EPARAM_RANGE);
        return;
    }
    attn_cost c;
    m->cost(s, &p, 2, &c);
    const size_t elems = attn_tensor_elems(s), rows = (size_t)(s->B * s->H * s->n);
    const size_t nstruct = attn_structure_elems(&c);
    float *q = malloc(elems * sizeof *q), *k = malloc(elems * sizeof *k),
          *v = malloc(elems * sizeof *v), *out = malloc(elems * sizeof *out),
          *lse = malloc(rows * sizeof *lse), *dout = malloc(elems * sizeof *dout),
          *dq = malloc(elems * sizeof *dq), *dk = malloc(elems * sizeof *dk),
          *dv = malloc(elems * sizeof *dv);
    int32_t *st = nstruct ? malloc(nstruct * sizeof *st) : NULL;
    fill_normal(q, elems, 11, 1.0f);
    fill_normal(k, elems, 12, 1.0f);
    fill_normal(v, elems, 13, 1.0f);
    fill_normal(dout, elems, 14, 1.0f);
    spoil(pat, s, which, q, k, v);
    fill_nan(out, elems);
    fill_nan(lse, rows);
    attn_tensors t = {.q = q, .k = k, .v = v, .out = out, .lse = lse, .structure = st};
    assert_int_equal(attn_forward_alloc(s, &p, &t, 2), ATTN_OK);
    if (pat->finite && first_nonfinite(out, elems) >= 0)
        fail_msg("%s %s n=%lld d=%lld causal=%d, %s in %c: output element %lld not finite",
                 cf->method, cf->params[0] ? cf->params[0] : "", (long long)s->n,
                 (long long)s->d, s->causal, pat->name, "qkv"[which],
                 (long long)first_nonfinite(out, elems));
    /* LSH's bucket ids must stay in range whatever the hash saw: the sort indexes its counts
     * by them, inside one workspace where the sanitizer would not see a stray index */
    if (strcmp(cf->method, "lsh") == 0) {
        const double nb_param = p.v[attn_param_index(m, "n_buckets")];
        const int64_t chunk = (int64_t)fmin(p.v[attn_param_index(m, "chunk_len")], (double)s->n);
        const int64_t nb = nb_param == ATTN_AUTO ? 2 * (s->n / chunk > 1 ? s->n / chunk : 1)
                                                 : (int64_t)nb_param;
        for (size_t i = 0; i < nstruct; i++)
            assert_true(st[i] >= 0 && st[i] < nb);
    }
    if (m->backward) {
        fill_nan(dq, elems);
        fill_nan(dk, elems);
        fill_nan(dv, elems);
        attn_grads g = {.q = q, .k = k, .v = v, .out = out, .lse = lse, .dout = dout,
                        .structure = st, .dq = dq, .dk = dk, .dv = dv};
        assert_int_equal(attn_backward_alloc(s, &p, &g, 2), ATTN_OK);
        if (pat->finite) {
            assert_true(first_nonfinite(dq, elems) < 0);
            assert_true(first_nonfinite(dk, elems) < 0);
            assert_true(first_nonfinite(dv, elems) < 0);
        }
    }
    free(q), free(k), free(v), free(out), free(lse), free(dout), free(dq), free(dk), free(dv);
    free(st);
}

static void sweep_all(bool portable)
{
    tile_force_portable(portable);
    int calls = 0;
    for (size_t c = 0; c < NCONFIGS; c++)
        for (size_t sh = 0; sh < NSHAPES; sh++)
            for (int causal = 0; causal < 2; causal++)
                for (size_t pt = 0; pt < NPATTERNS; pt++)
                    for (int which = 0; which < (patterns[pt].all ? 1 : 3); which++) {
                        const attn_shape s = {.B = shapes[sh].B, .H = shapes[sh].H,
                                              .n = shapes[sh].n, .d = shapes[sh].d,
                                              .causal = causal};
                        run_one(&configs[c], &s, &patterns[pt], which);
                        calls++;
                    }
    tile_force_portable(false);
    print_message("%d hostile calls, forward and backward\n", calls);
}

static void test_hostile_inputs_vector_path(void **state)
{
    (void)state;
    sweep_all(false);
}

static void test_hostile_inputs_portable_path(void **state)
{
    (void)state;
    sweep_all(true);
}

/* The reproducer of the LSH crash: one NaN query row (shared QK) with 256 buckets wrote the
 * bucket id 256 (past the counts) because the argmax found no maximum. */
static void test_lsh_nan_row_keeps_buckets_in_range(void **state)
{
    (void)state;
    const attn_shape s = {.B = 1, .H = 1, .n = 4096, .d = 64};
    const size_t elems = attn_tensor_elems(&s);
    float *q = malloc(elems * sizeof *q), *v = malloc(elems * sizeof *v);
    fill_normal(q, elems, 3, 1.0f);
    fill_normal(v, elems, 4, 1.0f);
    for (int c = 0; c < 64; c++)
        q[5 * 64 + c] = NAN;
    static const char *const params[] = {"n_buckets=256", NULL};
    float *out, *lse;
    int32_t *st;
    assert_int_equal(run_method("lsh", params, &s, q, q, v, 2, &out, &lse, &st), ATTN_OK);
    for (int r = 0; r < 2; r++)
        for (int64_t j = 0; j < s.n; j++)
            assert_true(st[r * s.n + j] >= 0 && st[r * s.n + j] < 256);
    assert_int_equal(st[5], 0); /* NaN wins the argmax at its first position */
    free(q), free(v), free(out), free(lse), free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lsh_nan_row_keeps_buckets_in_range),
        cmocka_unit_test(test_hostile_inputs_vector_path),
        cmocka_unit_test(test_hostile_inputs_portable_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
