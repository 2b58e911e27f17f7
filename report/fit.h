/* fit.h: the scaling exponent of a metric: least squares of log(y) = log(a) + b log(n) over the
 * given points, with b's standard error and R^2. The exponent is free (1.37 is reported as
 * 1.37), not a choice among fixed complexity classes. */
#ifndef REPORT_FIT_H
#define REPORT_FIT_H

#include <stddef.h>

typedef struct fit_result {
    int ok;          /* at least two distinct n with y > 0 */
    size_t k;        /* points used */
    double a, b;     /* y ~ a * n^b */
    double se_b;     /* standard error of b (NAN for k < 3) */
    double r2;       /* coefficient of determination on the log-log axes */
    double n_min, n_max;
} fit_result;

/* Fits y ~ a * n^b over the points with n >= n_from and y > 0. */
fit_result fit_power(const double *n, const double *y, size_t count, double n_from);

/* The Theil-Sen exponent of y ~ n^b over the same points as fit_power: the median of the
 * slopes between every pair of points on the log-log axes. One bad point (a time measured while
 * the machine was busy) moves it little, where it can bend least squares. NAN with fewer than
 * two distinct n. */
double fit_theil_sen(const double *n, const double *y, size_t count, double n_from);

/* Ordinary least squares of y = a + b x (b: the slope, e.g. bytes per layer), with b's
 * standard error and R^2; n_min/n_max are the x range. */
fit_result fit_linear(const double *x, const double *y, size_t count);

#endif
