/* run.h: runs one point in a forked child (child.h) and builds its record: the parent waits
 * for a quiet machine when asked, watches the child's time and the kernel's OOM kills,
 * classifies how the child ended (exit, signal, timeout) and measures a point timed on a busy
 * machine again. */
#ifndef BENCH_RUN_H
#define BENCH_RUN_H

#include <jansson.h>

#include "../point/point.h"

/* Runs the point in a forked child and returns its complete record (new reference); or NULL
 * when *lim->stop was set before the child finished on its own (the point is no result). */
json_t *point_run(const point_spec *s, const point_limits *lim, const json_t *context);

#endif
