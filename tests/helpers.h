/* helpers.h: what every cmocka test shares: deterministic random inputs, a double-precision
 * reference attention, and assert_allclose. Include after cmocka's prerequisites. */
#ifndef TESTS_HELPERS_H
#define TESTS_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../attn/attn.h"

/* Fills x[0..count) with N(0, sigma^2) values from a splitmix64 stream seeded by `seed`. */
void fill_normal(float *x, size_t count, uint64_t seed, float sigma);
/* Fills x with a quiet NaN, so an element a kernel forgot to write is caught. */
void fill_nan(float *x, size_t count);

/* Fails (with the first bad index) unless |got - want| <= atol + rtol * |want| everywhere and
 * got is finite wherever want is. */
#define assert_allclose(got, want, count, atol, rtol) \
    check_allclose((got), (want), (count), (atol), (rtol), __FILE__, __LINE__)
void check_allclose(const float *got, const double *want, size_t count, double atol, double rtol,
                    const char *file, int line);

/* Runs method `name` with "key=value" params (NULL-terminated list, may be NULL) on one
 * shape; allocates out/lse/structure (returned, caller frees). Returns the attn error code. */
int run_method(const char *name, const char *const *params, const attn_shape *s,
               const float *q, const float *k, const float *v, int nthreads, float **out,
               float **lse, int32_t **structure);

#endif
