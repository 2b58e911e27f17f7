/* test_fit.c: the scaling-exponent fit on synthetic data with known exponents. */
#include "helpers.h"

#include <math.h>

#include "../report/fit.h"

static void test_exact_on_noiseless_power_laws(void **state)
{
    (void)state;
    const double exps[] = {0.5, 1.0, 1.37, 2.0, 3.0};
    double n[11], y[11];
    for (size_t e = 0; e < sizeof exps / sizeof exps[0]; e++) {
        for (int i = 0; i < 11; i++) {
            n[i] = ldexp(1.0, 10 + i);
            y[i] = 3.5 * pow(n[i], exps[e]);
        }
        fit_result f = fit_power(n, y, 11, 0);
        assert_true(f.ok);
        assert_int_equal(f.k, 11);
        assert_float_equal(f.b, exps[e], 1e-12);
        assert_float_equal(f.a, 3.5, 1e-9 * 3.5);
        assert_float_equal(f.r2, 1.0, 1e-12);
        assert_true(f.se_b < 1e-9);
        assert_float_equal(f.n_min, 1024, 0);
        assert_float_equal(f.n_max, 1048576, 0);
    }
}

static void test_noisy_within_standard_error(void **state)
{
    (void)state;
    double n[40], y[40];
    float noise[40];
    fill_normal(noise, 40, 3, 1.0f);
    for (int i = 0; i < 40; i++) {
        n[i] = 1000.0 * pow(1.25, i);
        y[i] = 7.0 * pow(n[i], 1.3) * exp(0.05 * noise[i]);
    }
    fit_result f = fit_power(n, y, 40, 0);
    assert_true(f.ok && f.se_b > 0 && f.se_b < 0.01);
    assert_true(fabs(f.b - 1.3) <= 3 * f.se_b);
    assert_true(f.r2 > 0.99 && f.r2 < 1.0);
}

static void test_range_and_degenerate_inputs(void **state)
{
    (void)state;
    /* a constant overhead bends the curve at small n; fitting the tail recovers b = 2 */
    double n[8], y[8];
    for (int i = 0; i < 8; i++) {
        n[i] = ldexp(1.0, 10 + i);
        y[i] = 3 * n[i] * n[i] + 5e6;
    }
    fit_result all = fit_power(n, y, 8, 0), tail = fit_power(n, y, 8, 32768);
    assert_true(all.b < 1.9);
    assert_int_equal(tail.k, 3);
    assert_true(fabs(tail.b - 2.0) < 0.02);
    /* y <= 0 and NaN are left out; one point, or one distinct n, is no fit */
    double n2[4] = {1024, 2048, 4096, 8192}, y2[4] = {0, NAN, -1, 10};
    assert_false(fit_power(n2, y2, 4, 0).ok);
    double n3[3] = {64, 64, 64}, y3[3] = {1, 2, 3};
    assert_false(fit_power(n3, y3, 3, 0).ok);
    double n4[2] = {10, 100}, y4[2] = {1, 100};
    fit_result two = fit_power(n4, y4, 2, 0);
    assert_true(two.ok && isnan(two.se_b));
    assert_float_equal(two.b, 2.0, 1e-12);
}

/* One point off by a factor of 3 (a busy repetition): least squares bends, Theil-Sen does not;
 * on clean data both give the exponent. */
static void test_theil_sen_resists_one_bad_point(void **state)
{
    (void)state;
    double n[6], y[6];
    for (int i = 0; i < 6; i++) {
        n[i] = ldexp(1.0, 14 + i);
        y[i] = 2e-9 * pow(n[i], 2.0);
    }
    assert_float_equal(fit_theil_sen(n, y, 6, 0), 2.0, 1e-12);
    y[5] *= 3; /* the largest n timed on a busy machine */
    const fit_result f = fit_power(n, y, 6, 0);
    assert_true(fabs(f.b - 2.0) > 0.15);
    assert_float_equal(fit_theil_sen(n, y, 6, 0), 2.0, 1e-12);
    assert_true(isnan(fit_theil_sen(n, y, 1, 0)));
    assert_true(isnan(fit_theil_sen(n, y, 6, 1e9))); /* no point from n_from on */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_on_noiseless_power_laws),
        cmocka_unit_test(test_theil_sen_resists_one_bad_point),
        cmocka_unit_test(test_noisy_within_standard_error),
        cmocka_unit_test(test_range_and_degenerate_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
