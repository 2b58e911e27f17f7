/* sweep.h: the plan of a sweep, the points a command line or a suite file asks for, each
 * with the options of its group. `attnbench sweep` builds one and runs it (sweep.c); the
 * suite fuzzer builds them from arbitrary text. */
#ifndef BENCH_SWEEP_H
#define BENCH_SWEEP_H

#include <stdio.h>

#include "../point/point.h"
#include "options.h"

typedef struct sweep {
    options *groups[256]; /* per group options (owned); points point into them */
    int ngroups;
    point_spec *points;
    int *group_of;        /* the group of each point, for its limits */
    int npoints, capacity;
} sweep;

/* An empty plan, or NULL when out of memory. Free with sweep_free (NULL does nothing). */
sweep *sweep_new(void);
void sweep_free(sweep *sw);
/* Adds the point groups of a suite file (one group of sweep flags per line, # comments),
 * each starting from `defaults`; `path` names the file in messages. Returns 0, or CLI_EUSAGE
 * after one line naming path:line and the problem. */
int sweep_add_suite(sweep *sw, FILE *f, const char *path, const options *defaults);

#endif
