/* inputs.h: deterministic inputs of a point, generated in the measured child from the seed.
 * Counter-based (element i is a function of seed, stream and i only), so the values do not
 * depend on the thread count and any shard of a sweep regenerates the same inputs. */
#ifndef BENCH_INPUTS_H
#define BENCH_INPUTS_H

#include <stddef.h>
#include <stdint.h>

#include "../../attn/attn.h"

enum inputs_kind {
    INPUTS_RANDOM,    /* q, k, v ~ N(0, 1) */
    INPUTS_CLUSTERED, /* q and k within 0.1 of one of n / INPUTS_CLUSTER_TOKENS random centres
                         per head (about that many tokens each); v ~ N(0, 1) */
};
#define INPUTS_CLUSTER_TOKENS 32

/* Parses "random" / "clustered"; returns the kind or -1. */
int inputs_parse(const char *name);
const char *inputs_name(int kind);

/* x[i] ~ sigma * N(0, 1), element i drawn from (seed, stream, i). */
void inputs_normal(float *x, size_t count, uint64_t seed, uint64_t stream, float sigma,
                   int nthreads);
/* Some rows of every head: chunk c is rows [start[c], start[c] + len[c]) of the sequence. A
 * ring rank's inputs are its rows only, packed (B, H, rows, d) in chunk order, with the values
 * those rows have in the whole tensors. */
typedef struct inputs_rows {
    int chunks;
    int64_t start[2], len[2];
} inputs_rows;

/* x (B, H, rows, d) = the rows' elements of inputs_normal's whole (B, H, n, d) tensor. */
void inputs_normal_rows(const attn_shape *s, const inputs_rows *rows, uint64_t seed,
                        uint64_t stream, float sigma, float *x, int nthreads);
/* q, k, v of the rows, as inputs_generate makes them for the whole sequence. */
void inputs_generate_rows(const attn_shape *s, const inputs_rows *rows, int kind, uint64_t seed,
                          float *q, float *k, float *v, int nthreads);
/* Fills q, k, v (B, H, n, d) of one point, fp32. */
void inputs_generate(const attn_shape *s, int kind, uint64_t seed, float *q, float *k, float *v,
                     int nthreads);

/* The same values stored as s->dtype: in bf16, inputs_generate's fp32 values rounded to
 * nearest even, so an fp32 run on the widened inputs sees exactly what the bf16 run saw. They
 * are made a block of rows at a time through a small fp32 buffer (INPUTS_STAGE_FLOATS), never
 * a whole fp32 tensor, so the point's peak memory is its bf16 tensors'. */
#define INPUTS_STAGE_FLOATS ((size_t)1 << 17)
int inputs_generate_as(const attn_shape *s, int kind, uint64_t seed, void *q, void *k, void *v,
                       int nthreads);
/* The same for some rows (a ring rank's), as inputs_generate_rows lays them out. */
int inputs_generate_rows_as(const attn_shape *s, const inputs_rows *rows, int kind,
                            uint64_t seed, void *q, void *k, void *v, int nthreads);
/* inputs_normal_rows' values stored as s->dtype (a ring rank's dO), staged a row at a time. */
int inputs_normal_rows_as(const attn_shape *s, const inputs_rows *rows, uint64_t seed,
                          uint64_t stream, float sigma, void *x, int nthreads);
/* inputs_normal's values stored as dtype (rounded in bf16), staged likewise. */
int inputs_normal_as(void *x, attn_dtype dtype, size_t count, uint64_t seed, uint64_t stream,
                     float sigma, int nthreads);

#endif
