/* cgroup.h: what the kernel says about the memory a point may use and about OOM kills, so
 * the harness skips a point its container or Slurm allocation cannot hold (instead of
 * having it killed) and calls a death an OOM kill only on the kernel's evidence.
 *
 * Both cgroup versions are read: v2 (one unified hierarchy: memory.max, memory.events) and
 * v1 (a memory hierarchy of its own: memory.limit_in_bytes, memory.oom_control), found
 * through /proc/self/cgroup. A limit set on any ancestor applies too, so the effective limit
 * is the smallest along the path. */
#ifndef BENCH_CGROUP_H
#define BENCH_CGROUP_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct cgroup_memory {
    int version;        /* 1 or 2; 0 when no memory cgroup was found */
    char dir[800];      /* this process's memory cgroup folder */
    char root[256];     /* the hierarchy's mount point */
} cgroup_memory;

/* Finds the memory cgroup of the process whose /proc/<pid>/cgroup is `proc_cgroup`, with
 * hierarchies mounted under `mounts` (normally "/sys/fs/cgroup"; tests pass a fake tree).
 * Returns 0, or -1 when there is none (cg->version is 0 then). */
int cgroup_find(const char *proc_cgroup, const char *mounts, cgroup_memory *cg);

/* The smallest memory limit on the cgroup's path to the root, in bytes, and the file it came
 * from; 0 when nothing limits it ("max", or v1's page-counter maximum). */
uint64_t cgroup_memory_limit(const cgroup_memory *cg, char *file, size_t size);

/* The cgroup's count of processes killed by the OOM killer (v2 memory.events oom_kill, v1
 * memory.oom_control oom_kill), and the file; -1 when the kernel does not keep one. */
int64_t cgroup_oom_kills(const cgroup_memory *cg, char *file, size_t size);

/* The system-wide count of OOM kills (/proc/vmstat oom_kill), or -1. */
int64_t cgroup_vmstat_oom_kills(void);

/* The memory a point may use on this machine: the smallest of physical memory (MemTotal),
 * the cgroup limit, RLIMIT_AS and, inside a Slurm job, the allocation's memory
 * (SLURM_MEM_PER_NODE, or SLURM_MEM_PER_CPU x SLURM_CPUS_ON_NODE: a cluster whose Slurm does
 * not enforce it through cgroups still expects it kept), and which one that is. */
typedef struct memory_bound {
    uint64_t mem_total, cgroup_limit, rlimit_as, slurm_mem; /* 0: none or unknown */
    char cgroup_file[900];
    uint64_t bytes;     /* the smallest of those that exist */
    const char *source; /* "MemTotal", "cgroup", "RLIMIT_AS" or "Slurm allocation" */
} memory_bound;

void cgroup_memory_bound(memory_bound *b);

/* The OOM-kill counters the kernel keeps for this process's memory cgroup and for the whole
 * system, read before a child runs and after it died of a SIGKILL attnbench did not send. */
typedef struct oom_watch {
    cgroup_memory cg;
    char file[900];
    int64_t cgroup_before, vmstat_before;
} oom_watch;
void oom_watch_begin(oom_watch *w);
/* Whether the kernel recorded an OOM kill since oom_watch_begin; `evidence` says what was
 * read either way, so a `killed` record says why its cause is unknown. */
bool oom_watch_end(const oom_watch *w, char *evidence, size_t size);

#endif
