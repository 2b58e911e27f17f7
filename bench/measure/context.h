/* context.h: the context every record carries, so a results file says where and with what
 * it was measured (and shards from different machines can be told apart when merged). */
#ifndef BENCH_CONTEXT_H
#define BENCH_CONTEXT_H

#include <jansson.h>
#include <stdint.h>

/* Collects the machine and build context (host, CPU, cores, memory, kernel, compiler and
 * flags, git commit and dirty flag, library versions, overcommit, THP, cgroup version, date).
 * Cheap; called once per command in the parent. Returns a new reference. */
json_t *context_collect(void);

/* True when this binary was built from a tree with uncommitted changes (context.git_dirty):
 * its results cannot be reproduced from a commit. */
int context_built_dirty(void);
/* The commit this binary was built from. */
const char *context_git_commit(void);

#endif
