/* accuracy.h: how far a method's output is from exact attention on the same inputs (--accuracy):
 * the exact counterpart (attn_exact_params) runs after the measured region, on the point's own
 * inputs, for our methods and for an external program's output alike. */
#ifndef BENCH_ACCURACY_H
#define BENCH_ACCURACY_H

#include <jansson.h>
#include <stdint.h>

#include "point.h"

/* A method's output against its exact counterpart's on the same inputs: {max_rel, mean_rel
 * (row-wise), rel_fro (the whole output), mass_recall (the exact softmax mass on the keys the
 * method scored; from its logsumexp lse_m and structure, null when they are not given),
 * metric, reference, reference_s}, or {"error": why} when the reference could not run. */
json_t *point_exact_error(const point_spec *s, const float *q, const float *k, const float *v,
                          const float *out, const float *lse_m, const int32_t *structure_m);
/* The same for a point stored as its shape's dtype (q, k, v and out in it): the references run
 * in fp32 on the inputs widened exactly. In bf16 *vs_fp32 (when not NULL) also gets the error
 * against the same method and parameters run in fp32 on those inputs, the same fields as the
 * exact one's (NULL in fp32): how much the storage, not the method, costs. */
json_t *point_accuracy(const point_spec *s, const void *q, const void *k, const void *v,
                       const void *out, const float *lse_m, const int32_t *structure_m,
                       json_t **vs_fp32);

#endif
