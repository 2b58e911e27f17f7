/* reference.c: see reference.h. */
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ref_multiset(int64_t n, int64_t d, const double *v, const int *mult, ref_logit_fn logit,
                  const void *ctx, double *out, double *lse)
{
    double *l = malloc((size_t)n * sizeof *l);
    for (int64_t i = 0; i < n; i++) {
        double m = -INFINITY, z = 0;
        for (int64_t j = 0; j < n; j++)
            if (mult[i * n + j]) {
                l[j] = logit(i, j, ctx);
                m = fmax(m, l[j]);
            }
        for (int64_t c = 0; c < d; c++)
            out[i * d + c] = 0;
        for (int64_t j = 0; j < n; j++)
            if (mult[i * n + j]) {
                const double p = mult[i * n + j] * exp(l[j] - m);
                z += p;
                for (int64_t c = 0; c < d; c++)
                    out[i * d + c] += p * v[j * d + c];
            }
        for (int64_t c = 0; c < d; c++)
            out[i * d + c] = z > 0 ? out[i * d + c] / z : 0;
        lse[i] = z > 0 ? m + log(z) : -INFINITY;
    }
    free(l);
}

double ref_dot_logit(int64_t i, int64_t j, const void *ctx)
{
    const ref_dot *c = ctx;
    double dot = 0;
    for (int64_t x = 0; x < c->d; x++)
        dot += c->q[i * c->d + x] * c->k[j * c->d + x];
    return dot * c->scale;
}

double ref_sqk_logit(int64_t i, int64_t j, const void *ctx)
{
    const ref_sqk *c = ctx;
    if (c->causal && j > i)
        return -1e9;
    if (i == j)
        return -1e5;
    double ss = 0, dot = 0;
    for (int64_t x = 0; x < c->d; x++) {
        ss += c->q[j * c->d + x] * c->q[j * c->d + x];
        dot += c->q[i * c->d + x] * c->q[j * c->d + x];
    }
    return dot / sqrt(ss / (double)c->d + 1e-6) / sqrt((double)c->d);
}

void ref_mult_all(int64_t n, int causal, int *mult)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            mult[i * n + j] = !causal || j <= i;
}

/* per round, a stable sort by (bucket, position); chunks of `chunk`, each seeing its
 * predecessor (cyclically over all rounds) and itself, a single chunk itself once */
void ref_mult_lsh(const int32_t *buckets, int64_t n, int h, int64_t chunk, int *mult)
{
    const int64_t total = h * n;
    int32_t *pos = malloc((size_t)total * sizeof *pos);
    for (int r = 0; r < h; r++) { /* insertion sort: stable, and nothing like lsh.c's */
        int32_t *p = pos + r * n;
        const int32_t *b = buckets + r * n;
        for (int64_t j = 0; j < n; j++) {
            int64_t k = j;
            while (k > 0 && b[p[k - 1]] > b[j]) {
                p[k] = p[k - 1];
                k--;
            }
            p[k] = (int32_t)j;
        }
    }
    memset(mult, 0, (size_t)(n * n) * sizeof *mult);
    const int64_t chunks = total / chunk;
    for (int64_t a = 0; a < chunks; a++) {
        const int64_t prev = (a + chunks - 1) % chunks;
        for (int64_t e = a * chunk; e < (a + 1) * chunk; e++)
            for (int side = 0; side < 2; side++) {
                const int64_t kc = side ? a : prev;
                if (!side && prev == a)
                    continue;
                for (int64_t f = kc * chunk; f < (kc + 1) * chunk; f++)
                    mult[pos[e] * n + pos[f]]++;
            }
    }
    free(pos);
}

void ref_mult_block_sparse(int64_t n, int64_t block, int n_rand, const int32_t *table, int *mult)
{
    const int64_t nb = (n + block - 1) / block;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            const int64_t I = i / block, J = j / block;
            int m = I == 0 || I == nb - 1 || J == 0 || J == nb - 1 || (I - J <= 1 && J - I <= 1);
            for (int a = 0; a < n_rand && !m; a++)
                m = table[I * n_rand + a] == J;
            mult[i * n + j] = m;
        }
}

void ref_mult_etc(int64_t n, int64_t g, int64_t radius, int l2g_segment, int g2l_segment,
                  const int32_t *segments, int *mult)
{
    for (int64_t p = 0; p < n; p++)
        for (int64_t k = 0; k < n; k++) {
            const int pg = p < g, kg = k < g;
            int m;
            if (pg && kg)
                m = 1;
            else if (pg)
                m = !g2l_segment || segments[k - g] == p;
            else if (kg)
                m = !l2g_segment || segments[p - g] == k;
            else
                m = llabs((long long)(p - k)) <= radius;
            mult[p * n + k] = m;
        }
}

double *ref_doubles(const float *x, int64_t count)
{
    double *y = malloc((size_t)count * sizeof *y);
    for (int64_t i = 0; i < count; i++)
        y[i] = x[i];
    return y;
}
