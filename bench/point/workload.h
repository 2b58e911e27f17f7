/* workload.h: what a point runs in its child: one attention forward, or one training step of
 * a layer stack over an attention method. The child allocates through it before the measured
 * region, runs it for the warm-up and each repetition, and asks it whether the warm-up wrote
 * every output element; the measuring itself (measure/measure.h) is the same for both. */
#ifndef BENCH_WORKLOAD_H
#define BENCH_WORKLOAD_H

#include <jansson.h>
#include <stdint.h>

#include "../../attn/stack.h"
#include "point.h"

typedef struct workload {
    const point_spec *spec;
    point_model model;
    /* attention, stored as the shape's dtype (lse: fp32); with --backward also dout and the
     * gradients */
    void *q, *k, *v, *out, *dout, *dq, *dk, *dv;
    float *lse;
    int32_t *structure;
    /* training */
    stack_config stack;
    float *weights, *grads; /* fp32 */
    void *x, *dx;           /* the shape's dtype */
    size_t weight_floats;
    double loss;
    void *work;
    attn_stats *stats; /* where the kernels count their work, or NULL */
} workload;

/* The model of a point: attention (the method's cost) or training (the stack's). A ring point
 * over ranks: flops and scores of all ranks, bytes (io, workspace) of the largest rank. */
int workload_model(const point_spec *s, point_model *m, const char **why);
/* A ring point over `ranks` processes: what rank `rank` allocates (its rows of q, k, v, out,
 * lse, with --backward dout, dq, dk, dv, and one workspace for both passes). */
uint64_t workload_rank_bytes(const point_spec *s, int ranks, int rank);
/* Allocates every buffer, touches every page of it (so no run, warm-up or timed, pays for
 * first-touch page faults), and generates the inputs (and weights) from the seed; the runs
 * count their work into *stats (NULL: they do not count). Returns 0, or ATTN_ENOMEM when an
 * allocation failed (nothing to free then but workload_free). */
int workload_prepare(workload *w, const point_spec *s, attn_stats *stats);
/* Fills everything a run must write with NaN (attention: out and lse; training: dx and every
 * weight gradient), so a run that skips an element is caught by workload_verify. */
void workload_poison(workload *w);
/* One measured run. Returns 0 or an attn error. */
int workload_run(workload *w);
/* After a run on poisoned outputs: 0 when every element it must write is a finite number (lse
 * may be -inf, a row that saw no key) and a training loss is finite; otherwise -1 with the
 * first offender in why ("out element 17 is NaN: not written, or not finite"). */
int workload_verify(const workload *w, char *why, size_t size);
/* The main output (attention: out; training: dx), its element count and its storage. */
void *workload_output(workload *w, size_t *count, attn_dtype *dtype);
/* Adds the workload's own fields to the child's report (training: the loss). */
void workload_report(const workload *w, json_t *r);
void workload_free(workload *w);

#endif
