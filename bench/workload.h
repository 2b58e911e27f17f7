/* workload.h: what a point runs in its child: one attention forward, or one training step of
 * a layer stack over an attention method. The child allocates through it before the measured
 * region, runs it for the warm-up and each repetition, and asks it whether the warm-up wrote
 * every output element; the measuring itself (point.c) is the same for both. */
#ifndef BENCH_WORKLOAD_H
#define BENCH_WORKLOAD_H

#include <jansson.h>
#include <stdint.h>

#include "../attn/stack.h"
#include "point.h"

typedef struct workload {
    const point_spec *spec;
    point_model model;
    /* attention */
    float *q, *k, *v, *out, *lse;
    int32_t *structure;
    /* training */
    stack_config stack;
    float *weights, *grads, *x, *target, *dx;
    double loss;
    void *work;
} workload;

/* The model of a point: attention (the method's cost) or training (the stack's). */
int workload_model(const point_spec *s, point_model *m, const char **why);
/* Allocates every buffer and generates the inputs (and weights) from the seed. Returns 0, or
 * ATTN_ENOMEM when an allocation failed (nothing to free then but workload_free). */
int workload_prepare(workload *w, const point_spec *s);
/* Fills the outputs with NaN, so the next run must write every element. */
void workload_poison(workload *w);
/* One measured run. Returns 0 or an attn error. */
int workload_run(workload *w);
/* The first output element that is not a finite number (lse may be -inf), or -1. */
int64_t workload_unwritten(const workload *w);
/* The main output (attention: out; training: dx) and its element count. */
float *workload_output(workload *w, size_t *count);
/* Adds the workload's own fields to the child's report (training: the loss). */
void workload_report(const workload *w, json_t *r);
void workload_free(workload *w);

#endif
