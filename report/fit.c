/* fit.c: see fit.h. Ordinary least squares; the power law is the straight line through
 * (ln n, ln y). */
#include "fit.h"

#include <math.h>
#include <stdlib.h>

fit_result fit_linear(const double *x, const double *y, size_t count)
{
    fit_result f = {.se_b = NAN, .r2 = NAN, .n_min = INFINITY, .n_max = -INFINITY};
    double sx = 0, sy = 0;
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i]))
            continue;
        sx += x[i];
        sy += y[i];
        f.k++;
        f.n_min = fmin(f.n_min, x[i]);
        f.n_max = fmax(f.n_max, x[i]);
    }
    if (f.k < 2 || f.n_min == f.n_max)
        return f;
    const double mx = sx / (double)f.k, my = sy / (double)f.k;
    double sxx = 0, sxy = 0, syy = 0;
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i]))
            continue;
        sxx += (x[i] - mx) * (x[i] - mx);
        sxy += (x[i] - mx) * (y[i] - my);
        syy += (y[i] - my) * (y[i] - my);
    }
    f.ok = 1;
    f.b = sxy / sxx;
    f.a = my - f.b * mx;
    const double ssr = fmax(syy - f.b * sxy, 0.0); /* residual sum of squares */
    f.r2 = syy > 0 ? 1.0 - ssr / syy : 1.0;
    if (f.k > 2)
        f.se_b = sqrt(ssr / (double)(f.k - 2) / sxx);
    return f;
}

fit_result fit_power(const double *n, const double *y, size_t count, double n_from)
{
    fit_result f = {.se_b = NAN, .r2 = NAN, .n_min = INFINITY, .n_max = -INFINITY};
    double *ln_n = malloc((count + 1) * sizeof *ln_n), *ln_y = malloc((count + 1) * sizeof *ln_y);
    size_t k = 0;
    for (size_t i = 0; ln_n && ln_y && i < count; i++) {
        if (n[i] < n_from || !(y[i] > 0) || !(n[i] > 0) || !isfinite(y[i]))
            continue;
        ln_n[k] = log(n[i]);
        ln_y[k++] = log(y[i]);
        f.n_min = fmin(f.n_min, n[i]); /* the range in n itself, not exp(ln n) */
        f.n_max = fmax(f.n_max, n[i]);
    }
    if (ln_n && ln_y) {
        const double n_min = f.n_min, n_max = f.n_max;
        f = fit_linear(ln_n, ln_y, k);
        f.a = exp(f.a);
        f.n_min = n_min;
        f.n_max = n_max;
    }
    free(ln_n);
    free(ln_y);
    return f;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double fit_theil_sen(const double *n, const double *y, size_t count, double n_from)
{
    double *slopes = malloc((count * (count - (count > 0)) / 2 + 1) * sizeof *slopes);
    size_t m = 0;
    for (size_t i = 0; slopes && i < count; i++)
        for (size_t j = i + 1; j < count; j++) {
            if (n[i] < n_from || n[j] < n_from || !(y[i] > 0) || !(y[j] > 0) || !(n[i] > 0) ||
                !(n[j] > 0) || n[i] == n[j] || !isfinite(y[i]) || !isfinite(y[j]))
                continue;
            slopes[m++] = (log(y[j]) - log(y[i])) / (log(n[j]) - log(n[i]));
        }
    double b = NAN;
    if (m > 0) {
        qsort(slopes, m, sizeof *slopes, cmp_double);
        b = m % 2 ? slopes[m / 2] : 0.5 * (slopes[m / 2 - 1] + slopes[m / 2]);
    }
    free(slopes);
    return b;
}
