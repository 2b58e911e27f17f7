/* measure.h: the one way a point is measured, whatever runs it.
 *
 * Three kinds of workload differ only in how they run, which a driver says: attnbench's own
 * kernels in this process (launch/own.c), someone else's program measured from outside
 * (launch/external.c), and one rank of a ring over MPI processes (mpi/ring_rank.c).
 * measure_point runs the same sequence for all of them, with every probe source
 * (probes/probe.h):
 *
 *   launch                    the program started (another process), or nothing (this one)
 *   probes open               the baseline: memory before the inputs
 *   prepare                   the inputs allocated and generated, or the program ready
 *   probes prepared
 *   warm-up                   untimed runs, checked (ours)
 *   probes start, repeat, probes stop     the timed runs, and nothing else
 *   finish                    the runs' output checked, the program reaped
 *   probes report, close      every source's fields into the record
 *
 * and the harness's own timings (opening the probes, the inputs, the warm-up, the probes'
 * start and stop, and their share of the timed runs). */
#ifndef BENCH_MEASURE_H
#define BENCH_MEASURE_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#include "../point/point.h"

struct workload;

/* Each step returns POINT_OK or another status with the reason in why. */
typedef struct measure_driver {
    void *ctx;
    /* Starts the workload up to its baseline; sets *pid to the process measured (0: this
     * one). Optional: this process. */
    int (*launch)(void *ctx, pid_t *pid, char *why, size_t size);
    /* Brings the inputs ready, nothing run yet; *w: our own buffers, or NULL. The kernels
     * count their work into *work (a probe's), when it is not NULL. */
    int (*prepare)(void *ctx, attn_stats *work, struct workload **w, char *why, size_t size);
    /* Untimed runs before the window. Optional. */
    int (*warmup)(void *ctx, char *why, size_t size);
    /* The timed runs: times[0..reps), each run's wall time. */
    int (*repeat)(void *ctx, double *times, char *why, size_t size);
    /* After the window, whatever happened (status: the steps' so far, why its reason): what
     * the runs wrote checked, the program's end awaited and told. Returns the point's status:
     * the one given, or what it learned (how a program that stopped reporting ended). Optional. */
    int (*finish)(void *ctx, int status, json_t *record, char *why, size_t size);
    /* Runs inside the probes' window: the repetitions, and for an external program its
     * warm-up too (it follows ready). Counters are reported per run of the window. */
    int window_runs;
    /* This process is one of the point's several, siblings under one launcher (a rank). */
    bool siblings;
} measure_driver;

/* Measures point s with driver d into record (its measured fields and `unavailable`) and
 * harness (the harness's timings), with times[reps] for the repetitions. Returns POINT_OK, or
 * the status of the step that failed with why; every probe is closed either way. */
int measure_point(const point_spec *s, const measure_driver *d, json_t *record, json_t *harness,
                  double *times, char *why, size_t size);

#endif
