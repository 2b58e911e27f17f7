/* fit.c: see fit.h. Ordinary least squares on (ln n, ln y). */
#include "fit.h"

#include <math.h>

fit_result fit_power(const double *n, const double *y, size_t count, double n_from)
{
    fit_result f = {.se_b = NAN, .r2 = NAN, .n_min = INFINITY, .n_max = -INFINITY};
    double sx = 0, sz = 0;
    for (size_t i = 0; i < count; i++) {
        if (n[i] < n_from || !(y[i] > 0) || !(n[i] > 0) || !isfinite(y[i]))
            continue;
        sx += log(n[i]);
        sz += log(y[i]);
        f.k++;
        f.n_min = fmin(f.n_min, n[i]);
        f.n_max = fmax(f.n_max, n[i]);
    }
    if (f.k < 2 || f.n_min == f.n_max)
        return f;
    const double mx = sx / (double)f.k, mz = sz / (double)f.k;
    double sxx = 0, sxz = 0, szz = 0;
    for (size_t i = 0; i < count; i++) {
        if (n[i] < n_from || !(y[i] > 0) || !(n[i] > 0) || !isfinite(y[i]))
            continue;
        const double dx = log(n[i]) - mx, dz = log(y[i]) - mz;
        sxx += dx * dx;
        sxz += dx * dz;
        szz += dz * dz;
    }
    f.ok = 1;
    f.b = sxz / sxx;
    f.a = exp(mz - f.b * mx);
    const double ssr = fmax(szz - f.b * sxz, 0.0); /* residual sum of squares */
    f.r2 = szz > 0 ? 1.0 - ssr / szz : 1.0;
    if (f.k > 2)
        f.se_b = sqrt(ssr / (double)(f.k - 2) / sxx);
    return f;
}

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
    const double ssr = fmax(syy - f.b * sxy, 0.0);
    f.r2 = syy > 0 ? 1.0 - ssr / syy : 1.0;
    if (f.k > 2)
        f.se_b = sqrt(ssr / (double)(f.k - 2) / sxx);
    return f;
}
