/* child.h: the forked child of one point. The parent stays small (run.c): it never allocates
 * a point's buffers and never runs OpenMP or PAPI, so a forked child starts with a few MiB
 * resident and its high-water mark (reset with clear_refs) and wait4's ru_maxrss measure the
 * point alone. The child measures the point through its launcher (our own kernels, someone
 * else's program, or the ranks of a ring: launch/) and reports back through a pipe, one JSON
 * object a line: the record, then with --accuracy its error against the exact reference. */
#ifndef BENCH_CHILD_H
#define BENCH_CHILD_H

#include <sys/types.h>

#include "../point/point.h"

/* The child's whole life, from fork to _exit: never returns. fd is the pipe's write end;
 * parent the pid it was forked from (the child ends at once when that one is already gone). */
_Noreturn void run_child(const point_spec *s, const point_limits *lim, int fd, pid_t parent);

#endif
