/* inputs.c: see inputs.h. attn/rng.h's counter-based normals, written in parallel. */
#include "inputs.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../../attn/rng.h"

#include <omp.h>

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

/* count normals of stream `base` from element e0 on (element i is half of pair i / 2) */
static void normal_from(float *x, uint64_t e0, size_t count, uint64_t base, float sigma)
{
    size_t i = 0;
    if ((e0 & 1) && count) { /* starts on the second half of a pair */
        double a, b;
        rng_normal_pair(base, e0 / 2, &a, &b);
        x[0] = (float)(sigma * b);
        i = 1;
    }
    rng_fill_normal(x + i, (e0 + i) / 2, count - i, base, sigma);
}

void inputs_normal_rows(const attn_shape *s, const inputs_rows *rows, uint64_t seed,
                        uint64_t stream, float sigma, float *x, int nthreads)
{
    const int64_t heads = s->B * s->H, d = s->d, part = 256; /* rows per work item */
    const uint64_t base = rng_stream(seed, stream);
    int64_t local = 0, items = 0;
    for (int c = 0; c < rows->chunks; c++) {
        local += rows->len[c];
        items += (rows->len[c] + part - 1) / part;
    }
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t it = 0; it < heads * items; it++) {
        const int64_t bh = it / items;
        int64_t i = it % items, at = 0;
        int c = 0;
        for (; i >= (rows->len[c] + part - 1) / part; c++) {
            i -= (rows->len[c] + part - 1) / part;
            at += rows->len[c];
        }
        const int64_t r0 = i * part, count = rows->len[c] - r0 < part ? rows->len[c] - r0 : part;
        normal_from(x + ((bh * local) + at + r0) * d,
                    (uint64_t)((bh * s->n + rows->start[c] + r0) * d), (size_t)(count * d), base,
                    sigma);
    }
}

/* Clustered tokens: row i of head h is centre[c(i)] + 0.1 * noise, with the same centres for
 * q and k, so similar queries and keys exist (what LSH is built to find). Centres are
 * nearly orthogonal N(0, 1) vectors, so attention concentrates inside a cluster, and with
 * about 32 tokens per cluster a cluster fits in one LSH chunk. */
static void clustered(const attn_shape *s, const inputs_rows *rows, uint64_t seed,
                      uint64_t stream, float *x, int nthreads)
{
    const int64_t heads = s->B * s->H, n = s->n, d = s->d;
    const uint64_t centres = (uint64_t)(n / INPUTS_CLUSTER_TOKENS > 1 ? n / INPUTS_CLUSTER_TOKENS : 1);
    inputs_normal_rows(s, rows, seed, stream, 0.1f, x, nthreads);
    int64_t local = 0;
    for (int c = 0; c < rows->chunks; c++)
        local += rows->len[c];
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t lr = 0; lr < heads * local; lr++) {
        const int64_t h = lr / local;
        int64_t i = lr % local;
        int c = 0;
        for (; i >= rows->len[c]; c++)
            i -= rows->len[c];
        const int64_t row = h * n + rows->start[c] + i; /* the row's index in the whole tensor */
        const uint64_t cl = rng_mix64(seed ^ rng_mix64((uint64_t)row + 0x1234567ull)) % centres;
        /* centre cl of head h: N(0, 1) in every coordinate, its own counter stream */
        const uint64_t base = rng_stream(seed, 1000 + (uint64_t)h);
        for (int64_t j = 0; j < d; j += 2) {
            double a, b;
            rng_normal_pair(base, cl * (uint64_t)((d + 1) / 2) + (uint64_t)j / 2, &a, &b);
            x[lr * d + j] += (float)a;
            if (j + 1 < d)
                x[lr * d + j + 1] += (float)b;
        }
    }
}

void inputs_generate_rows(const attn_shape *s, const inputs_rows *rows, int kind, uint64_t seed,
                          float *q, float *k, float *v, int nthreads)
{
    if (kind == INPUTS_CLUSTERED) {
        clustered(s, rows, seed, 1, q, nthreads);
        clustered(s, rows, seed, 2, k, nthreads);
    } else {
        inputs_normal_rows(s, rows, seed, 1, 1.0f, q, nthreads);
        inputs_normal_rows(s, rows, seed, 2, 1.0f, k, nthreads);
    }
    inputs_normal_rows(s, rows, seed, 3, 1.0f, v, nthreads);
}

void inputs_generate(const attn_shape *s, int kind, uint64_t seed, float *q, float *k, float *v,
                     int nthreads)
{
    const inputs_rows all = {.chunks = 1, .start = {0}, .len = {s->n}};
    inputs_generate_rows(s, &all, kind, seed, q, k, v, nthreads);
}

/* What a staged fill makes: q, k, v as inputs_generate_rows does (normal = false), or one
 * tensor of inputs_normal_rows' values. */
typedef struct stage_job {
    bool normal;
    int kind;
    uint64_t seed, stream;
    float sigma;
} stage_job;

/* Fills the rows' tensors dst (one, or q k v) stored as s->dtype, a block of rows of every head
 * at a time through an fp32 stage of at most INPUTS_STAGE_FLOATS per tensor. */
static int staged(const attn_shape *s, const inputs_rows *rows, const stage_job *job,
                  void *const dst[3], int nthreads)
{
    const int count = job->normal ? 1 : 3;
    const int64_t heads = s->B * s->H, d = s->d;
    int64_t local = 0, longest = 0;
    for (int c = 0; c < rows->chunks; c++) {
        local += rows->len[c];
        longest = rows->len[c] > longest ? rows->len[c] : longest;
    }
    int64_t block = (int64_t)INPUTS_STAGE_FLOATS / (heads * d); /* rows of every head */
    block = block < 1 ? 1 : block > longest ? longest : block;
    const int64_t part_floats = heads * block * d;
    float *stage = malloc((size_t)(count * part_floats) * sizeof *stage);
    if (!stage)
        return ATTN_ENOMEM;
    for (int c = 0, at = 0; c < rows->chunks; at += (int)rows->len[c], c++)
        for (int64_t r0 = 0; r0 < rows->len[c]; r0 += block) {
            const int64_t len = rows->len[c] - r0 < block ? rows->len[c] - r0 : block;
            const inputs_rows part = {.chunks = 1, .start = {rows->start[c] + r0}, .len = {len}};
            if (job->normal)
                inputs_normal_rows(s, &part, job->seed, job->stream, job->sigma, stage, nthreads);
            else
                inputs_generate_rows(s, &part, job->kind, job->seed, stage, stage + part_floats,
                                     stage + 2 * part_floats, nthreads);
            for (int t = 0; t < count; t++)
#pragma omp parallel for num_threads(nthreads) schedule(static)
                for (int64_t h = 0; h < heads; h++)
                    attn_convert(stage + t * part_floats + h * len * d, ATTN_FP32,
                                 attn_elem_mut(dst[t], s->dtype, (size_t)((h * local + at + r0) * d)),
                                 s->dtype, (size_t)(len * d));
        }
    free(stage);
    return 0;
}

int inputs_generate_rows_as(const attn_shape *s, const inputs_rows *rows, int kind,
                            uint64_t seed, void *q, void *k, void *v, int nthreads)
{
    if (s->dtype == ATTN_FP32) {
        inputs_generate_rows(s, rows, kind, seed, q, k, v, nthreads);
        return 0;
    }
    const stage_job job = {.kind = kind, .seed = seed};
    void *const dst[3] = {q, k, v};
    return staged(s, rows, &job, dst, nthreads);
}

int inputs_generate_as(const attn_shape *s, int kind, uint64_t seed, void *q, void *k, void *v,
                       int nthreads)
{
    const inputs_rows all = {.chunks = 1, .start = {0}, .len = {s->n}};
    return inputs_generate_rows_as(s, &all, kind, seed, q, k, v, nthreads);
}

int inputs_normal_rows_as(const attn_shape *s, const inputs_rows *rows, uint64_t seed,
                          uint64_t stream, float sigma, void *x, int nthreads)
{
    if (s->dtype == ATTN_FP32) {
        inputs_normal_rows(s, rows, seed, stream, sigma, x, nthreads);
        return 0;
    }
    const stage_job job = {.normal = true, .seed = seed, .stream = stream, .sigma = sigma};
    void *const dst[3] = {x, NULL, NULL};
    return staged(s, rows, &job, dst, nthreads);
}

int inputs_normal_as(void *x, attn_dtype dtype, size_t count, uint64_t seed, uint64_t stream,
                     float sigma, int nthreads)
{
    if (dtype == ATTN_FP32) {
        inputs_normal(x, count, seed, stream, sigma, nthreads);
        return 0;
    }
    const size_t part = 1 << 14; /* inputs_normal's parts: the same values */
    const int64_t parts = (int64_t)((count + part - 1) / part);
    const uint64_t base = rng_stream(seed, stream);
    float *stage = malloc((size_t)nthreads * part * sizeof *stage);
    if (!stage)
        return ATTN_ENOMEM;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t p = 0; p < parts; p++) {
        const size_t i0 = (size_t)p * part, len = count - i0 < part ? count - i0 : part;
        float *mine = stage + (size_t)omp_get_thread_num() * part;
        rng_fill_normal(mine, i0 / 2, len, base, sigma);
        attn_convert(mine, ATTN_FP32, attn_elem_mut(x, dtype, i0), dtype, len);
    }
    free(stage);
    return 0;
}
