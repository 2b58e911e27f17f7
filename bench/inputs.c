/* inputs.c: see inputs.h. attn/rng.h's counter-based normals, written in parallel. */
#include "inputs.h"

#include <math.h>
#include <string.h>

#include "../attn/rng.h"

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
    const size_t part = 1 << 14; /* even: the parts are independent stretches of the stream */
    const int64_t parts = (int64_t)((count + part - 1) / part);
    const uint64_t base = rng_stream(seed, stream);
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t p = 0; p < parts; p++) {
        const size_t i0 = (size_t)p * part;
        rng_fill_normal(x + i0, i0 / 2, count - i0 < part ? count - i0 : part, base, sigma);
    }
}

/* Clustered tokens: row i of head h is centre[c(i)] + 0.1 * noise, with the same centres for
 * q and k, so similar queries and keys exist (what LSH is built to find). Centres are
 * nearly orthogonal N(0, 1) vectors, so attention concentrates inside a cluster, and with
 * about 32 tokens per cluster a cluster fits in one LSH chunk. */
static void clustered(const attn_shape *s, uint64_t seed, uint64_t stream, float *x, int nthreads)
{
    const int64_t heads = s->B * s->H, n = s->n, d = s->d;
    const uint64_t centres = (uint64_t)(n / INPUTS_CLUSTER_TOKENS > 1 ? n / INPUTS_CLUSTER_TOKENS : 1);
    inputs_normal(x, (size_t)(heads * n * d), seed, stream, 0.1f, nthreads);
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t row = 0; row < heads * n; row++) {
        const int64_t h = row / n;
        const uint64_t c = rng_mix64(seed ^ rng_mix64((uint64_t)row + 0x1234567ull)) % centres;
        /* centre c of head h: N(0, 1) in every coordinate, its own counter stream */
        const uint64_t base = rng_stream(seed, 1000 + (uint64_t)h);
        for (int64_t j = 0; j < d; j += 2) {
            double a, b;
            rng_normal_pair(base, c * (uint64_t)((d + 1) / 2) + (uint64_t)j / 2, &a, &b);
            x[row * d + j] += (float)a;
            if (j + 1 < d)
                x[row * d + j + 1] += (float)b;
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
