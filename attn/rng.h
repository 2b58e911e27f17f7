/* rng.h: the counter-based random numbers attnbench draws everywhere (inputs, LSH rotations,
 * BigBird's random blocks). Value i of a stream is a pure function of (seed, stream, i), so
 * results never depend on thread counts or on the order in which values are drawn. */
#ifndef ATTN_RNG_H
#define ATTN_RNG_H

#include <math.h>
#include <stdint.h>

/* splitmix64's finalizer: a bijective mix of 64 bits. */
static inline uint64_t rng_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The base of stream `stream` under `seed`. */
static inline uint64_t rng_stream(uint64_t seed, uint64_t stream)
{
    return rng_mix64(seed * 0x9E3779B97F4A7C15ull ^ rng_mix64(stream + 0x632BE59BD9B4E019ull));
}

/* Uniform in (0, 1) from counter i of a stream base. */
static inline double rng_uniform(uint64_t base, uint64_t i)
{
    return ((double)(rng_mix64(base + i) >> 11) + 0.5) * 0x1p-53;
}

/* Normals 2i and 2i+1 of a stream base (Box-Muller on uniforms 2i and 2i+1). */
static inline void rng_normal_pair(uint64_t base, uint64_t i, double *a, double *b)
{
    double r = sqrt(-2.0 * log(rng_uniform(base, 2 * i))), t = 2.0 * M_PI * rng_uniform(base, 2 * i + 1);
    *a = r * cos(t);
    *b = r * sin(t);
}

/* count normals of a stream base, scaled by sigma, into x, starting at pair first_pair (x[0]
 * is normal 2 * first_pair): any split of a long fill into even-sized parts gives the same
 * values as one fill. */
static inline void rng_fill_normal(float *x, uint64_t first_pair, size_t count, uint64_t base,
                                   double sigma)
{
    for (size_t i = 0; i < count; i += 2) {
        double a, b;
        rng_normal_pair(base, first_pair + i / 2, &a, &b);
        x[i] = (float)(sigma * a);
        if (i + 1 < count)
            x[i + 1] = (float)(sigma * b);
    }
}

#endif
