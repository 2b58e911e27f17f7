/* capacity.h: how long a sequence fits. A method's analytical model (point_model_of: the bytes
 * and flops of a point at any n) is calibrated by measured records of it, and the calibrated
 * model predicts a point's peak RSS and time at lengths never run; the largest n whose
 * prediction fits a memory budget (and a time budget) is its capacity. `attnbench capacity`
 * (bench/commands/cmd_capacity.c) and the report's capacity tables share this.
 *
 * Memory: peak RSS = base + ratio x model bytes, a least-squares line through the series'
 * largest points (the model's bytes at least 1/64 of the largest's): base is what the process
 * holds beside the point (libraries, allocator, thread stacks), ratio what the allocator and
 * the page tables add to each byte the model counts (1.00-1.03 here).
 * Time: seconds per model flop = a n^b through the series' four largest points timed on a quiet
 * machine (b their Theil-Sen exponent, at least 0), times the model's flops at n (so a calibration at one shape predicts another: more
 * heads or layers do proportionally more flops at the same rate). */
#ifndef REPORT_CAPACITY_H
#define REPORT_CAPACITY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../attn/stack.h"
#include "../bench/point/point.h"
#include "series.h"

typedef struct capacity_calibration {
    char series[1024];    /* the key of the series it came from */
    int mem_points;       /* records the memory line stands on */
    double mem_base;      /* bytes */
    double mem_ratio;
    double n_measured;    /* the largest n of the series measured ok */
    int time_points;      /* quiet records the time curve stands on (0: no time prediction) */
    double time_a, time_b; /* seconds per model flop = time_a * n^time_b */
} capacity_calibration;

/* The point a record describes, rebuilt from its fields (method and parameters, shape, threads,
 * training stack, ranks). Returns 0, or -1 for a record that is not one of our own points (an
 * external program, a method this build does not know). */
int capacity_spec_of(const json_t *rec, point_spec *s);

/* Calibrates from a series' ok records. Returns 0, or -1 when it has none. */
int capacity_calibrate(const report_series *s, capacity_calibration *c);

typedef struct capacity_prediction {
    int64_t n;
    bool runs;             /* the method runs this point (its check passes) */
    double model_bytes;    /* the model's bytes (per rank for a ring over ranks) */
    double peak_rss_bytes; /* predicted (per rank) */
    double flops;          /* the model's flops */
    double time_s;         /* predicted; NAN without a time curve */
} capacity_prediction;

/* The prediction for s at length n. */
void capacity_predict(const point_spec *s, int64_t n, const capacity_calibration *c,
                      capacity_prediction *p);

/* The lengths searched: multiples of the granule, or powers of two. */
enum capacity_lengths { CAPACITY_GRANULE, CAPACITY_POW2 };

typedef struct capacity_answer {
    int64_t granule;       /* the step searched (1 for powers of two) */
    capacity_prediction at;   /* at n_max (n 0: not even the shortest length fits) */
    capacity_prediction next; /* at the next length searched: the one that does not fit */
    const char *limited_by;   /* "memory", "time", or "length" (the method or the harness
                                 runs nothing longer) */
} capacity_answer;

/* The largest n of the lengths searched whose predicted peak RSS is at most mem_budget and,
 * when time_budget > 0, predicted time at most time_budget. s gives everything but n. */
void capacity_search(const point_spec *s, const capacity_calibration *c, double mem_budget,
                     double time_budget, enum capacity_lengths lengths, capacity_answer *a);

/* The granule of s's method: its own (lsh chunk_len, block_sparse block), else 1. */
int64_t capacity_granule(const point_spec *s);

/* The calibration as a JSON object (series, points, base, ratio, time curve). */
json_t *capacity_calibration_json(const capacity_calibration *c, const char *source);

/* The longest length the harness runs. */
#define CAPACITY_MAX_N (INT64_C(1) << 31)

#endif
