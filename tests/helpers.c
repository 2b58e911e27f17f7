/* helpers.c: shared test helpers (see helpers.h). */
#include "helpers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void fill_normal(float *x, size_t count, uint64_t seed, float sigma)
{
    uint64_t st = seed * 0x2545F4914F6CDD1Dull + 1;
    for (size_t i = 0; i < count; i += 2) {
        double u1 = ((double)(splitmix64(&st) >> 11) + 0.5) * 0x1p-53;
        double u2 = ((double)(splitmix64(&st) >> 11) + 0.5) * 0x1p-53;
        double r = sqrt(-2.0 * log(u1)), t = 2.0 * M_PI * u2;
        x[i] = (float)(sigma * r * cos(t));
        if (i + 1 < count)
            x[i + 1] = (float)(sigma * r * sin(t));
    }
}

void fill_nan(float *x, size_t count)
{
    for (size_t i = 0; i < count; i++)
        x[i] = NAN;
}

void check_allclose(const float *got, const double *want, size_t count, double atol, double rtol,
                    const char *file, int line)
{
    for (size_t i = 0; i < count; i++) {
        double g = got[i], w = want[i];
        int ok = isinf(w) ? g == w : (isfinite(g) && fabs(g - w) <= atol + rtol * fabs(w));
        if (!ok) {
            print_error("%s:%d: element %zu: got %.9g, want %.9g (atol %g, rtol %g)\n", file,
                        line, i, g, w, atol, rtol);
            _fail(file, line);
        }
    }
}

int run_method(const char *name, const char *const *params, const attn_shape *s,
               const float *q, const float *k, const float *v, int nthreads, float **out,
               float **lse, int32_t **structure)
{
    const attn_method *m = attn_find(name);
    assert_non_null(m);
    attn_params p;
    attn_params_default(m, &p);
    for (int i = 0; params && params[i]; i++) {
        int rc = attn_params_parse(&p, params[i]);
        if (rc)
            return rc;
    }
    int rc = attn_check(s, &p, NULL);
    if (rc)
        return rc;
    attn_cost c;
    m->cost(s, &p, nthreads, &c);
    size_t elems = attn_tensor_elems(s), rows = (size_t)(s->B * s->H * s->n);
    *out = malloc(elems * sizeof **out);
    *lse = malloc(rows * sizeof **lse);
    assert_non_null(*out);
    assert_non_null(*lse);
    fill_nan(*out, elems);
    fill_nan(*lse, rows);
    size_t ns = attn_structure_elems(&c);
    int32_t *st = ns ? malloc(ns * sizeof *st) : NULL;
    if (ns)
        memset(st, 0xff, ns * sizeof *st);
    if (structure)
        *structure = st;
    attn_tensors t = {.q = q, .k = k, .v = v, .out = *out, .lse = *lse, .structure = st};
    rc = attn_forward_alloc(s, &p, &t, nthreads);
    if (!structure)
        free(st);
    return rc;
}
