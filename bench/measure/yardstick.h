/* yardstick.h: the machine's sgemm rate, the yardstick a kernel's speed is read against.
 *
 * OpenBLAS sgemm C = A B on n x n fp32 matrices, with the OpenBLAS kernels and thread count the
 * attention methods use (blas_env.c), so "x% of sgemm" compares like with like. A sweep
 * measures it at each of its thread counts before its first point and every record of the
 * sweep carries the result in its context (context.yardstick), which is where the report's
 * "of sgemm" columns read it: a record says what its machine could do when it was measured,
 * and records from different machines or shards each keep their own. */
#ifndef BENCH_YARDSTICK_H
#define BENCH_YARDSTICK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* n = 2048 runs at the rate of 4096 on the machines seen (within 1%) in a quarter of the time */
enum { YARDSTICK_N = 2048, YARDSTICK_REPS = 3 };

typedef struct yardstick {
    int64_t n;
    int threads, reps;
    double gflops_median, gflops_best;
} yardstick;

/* Measures sgemm in this process: one untimed run, then reps timed ones. Returns 0, or -1 when
 * the matrices cannot be allocated. */
int yardstick_sgemm(int64_t n, int threads, int reps, yardstick *y);

/* y as a JSON object, with the OpenBLAS core that ran and why that one. New reference. */
json_t *yardstick_json(const yardstick *y);

/* Measures at each of threads[0..count) in a child process (the caller starts no OpenBLAS
 * threads and keeps no matrices) and returns {"sgemm": [yardstick_json, ...]}, or NULL with
 * the reason in why. */
json_t *yardstick_measure_apart(const int *threads, int count, char *why, size_t size);

#endif
