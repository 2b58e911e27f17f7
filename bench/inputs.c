/* inputs.c: see inputs.h. splitmix64 on (seed, stream, index) gives independent uniform
 * pairs; Box-Muller turns each pair into two normals. */
#include "inputs.h"

#include <math.h>
#include <string.h>

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Two uniforms in (0, 1) from the counter (seed, stream, pair). */
static void uniform_pair(uint64_t seed, uint64_t stream, uint64_t pair, double *u1, double *u2)
{
    uint64_t base = mix64(seed * 0x9E3779B97F4A7C15ull ^ mix64(stream + 0x632BE59BD9B4E019ull));
    *u1 = ((double)(mix64(base + 2 * pair) >> 11) + 0.5) * 0x1p-53;
    *u2 = ((double)(mix64(base + 2 * pair + 1) >> 11) + 0.5) * 0x1p-53;
}

int inputs_parse(const char *name)
{
    if (strcmp(name, "random") == 0)
        return INPUTS_RANDOM;
    if (strcmp(name, "clustered") == 0)
        return INPUTS_CLUSTERED;
    return -1;
}

const char *inputs_name(int kind)
{
    return kind == INPUTS_CLUSTERED ? "clustered" : "random";
}

void inputs_normal(float *x, size_t count, uint64_t seed, uint64_t stream, float sigma,
                   int nthreads)
{
    const int64_t pairs = (int64_t)((count + 1) / 2);
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t p = 0; p < pairs; p++) {
        double u1, u2;
        uniform_pair(seed, stream, (uint64_t)p, &u1, &u2);
        double r = sigma * sqrt(-2.0 * log(u1)), t = 2.0 * M_PI * u2;
        size_t i = 2 * (size_t)p;
        x[i] = (float)(r * cos(t));
        if (i + 1 < count)
            x[i + 1] = (float)(r * sin(t));
    }
}

/* Clustered tokens: row i of head h is centre[c(i)] + 0.1 * noise, with the same centres for
 * q and k, so similar queries and keys exist (what LSH is built to find). */
static void clustered(const attn_shape *s, uint64_t seed, uint64_t stream, float *x, int nthreads)
{
    const int64_t heads = s->B * s->H, n = s->n, d = s->d;
    inputs_normal(x, (size_t)(heads * n * d), seed, stream, 0.1f, nthreads);
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t row = 0; row < heads * n; row++) {
        int64_t h = row / n;
        uint64_t c = mix64(seed ^ mix64((uint64_t)row + 0x1234567ull)) % INPUTS_CENTRES;
        /* the centre is its own counter stream: N(0, 1) in every coordinate */
        for (int64_t j = 0; j < d; j += 2) {
            double u1, u2;
            uniform_pair(seed, 1000 + (uint64_t)h, c * (uint64_t)d + (uint64_t)j, &u1, &u2);
            double r = sqrt(-2.0 * log(u1)), t = 2.0 * M_PI * u2;
            x[row * d + j] += (float)(r * cos(t));
            if (j + 1 < d)
                x[row * d + j + 1] += (float)(r * sin(t));
        }
    }
}

void inputs_generate(const attn_shape *s, int kind, uint64_t seed, float *q, float *k, float *v,
                     int nthreads)
{
    size_t count = attn_tensor_elems(s);
    if (kind == INPUTS_CLUSTERED) {
        clustered(s, seed, 1, q, nthreads);
        clustered(s, seed, 2, k, nthreads);
    } else {
        inputs_normal(q, count, seed, 1, 1.0f, nthreads);
        inputs_normal(k, count, seed, 2, 1.0f, nthreads);
    }
    inputs_normal(v, count, seed, 3, 1.0f, nthreads);
}
