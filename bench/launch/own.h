/* own.h: attnbench's own kernels as a workload of the measuring pipeline (measure.h), run in
 * this process: the buffers allocated and touched before anything is timed, the warm-up runs
 * on poisoned outputs checked, the repetitions on poisoned outputs checked after. The other
 * two kinds, someone else's program and the ranks of a ring, are external.h and ranks.h. */
#ifndef BENCH_OWN_H
#define BENCH_OWN_H

#include <jansson.h>
#include <stddef.h>

#include "../point/point.h"
#include "../point/workload.h"

typedef struct own_run {
    const point_spec *s;
    workload w;     /* the point's buffers; they outlive own_measure (for --accuracy) */
    void *inflated; /* the inflate:PCT fault's extra memory */
} own_run;

/* Measures o->s (set by the caller, the rest zero) into record and harness. Returns the
 * point's status, with why when it is not POINT_OK. */
int own_measure(own_run *o, json_t *record, json_t *harness, char *why, size_t size);

#endif
