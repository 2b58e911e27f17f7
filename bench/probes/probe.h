/* probe.h: what a point measures, one source per file, all behind one small interface.
 *
 * A probe source (probe_source) measures a target: this process (our own kernels, or one rank
 * of a ring), or another process, an external program measured from outside. It opens before
 * the inputs exist, sees them ready, starts and stops around the timed runs, and writes its
 * fields into the point's record, saying in the record's `unavailable` (field -> reason) why a
 * field it owns is null, a field it cannot measure of such a target included. measure.c runs
 * every source in probe_sources[] (probes.c) the same way for every kind of workload; adding a
 * source is one file and one line there. The sources:
 *   sde       the attention library's work counters, registered as PAPI software-defined
 *             events (sde:::attn::SCORES, ...): they count on any machine, a VM's too
 *   load      how much CPU time other processes took while the point ran (/proc/stat)
 *   rusage    getrusage around the repetitions (CPU time, faults, context switches)
 *   papi      PAPI event sets: hardware, perf software and SDE events
 *   rss       VmRSS and VmHWM, the high-water mark reset with clear_refs
 *   jemalloc  thread.peak and the allocator-wide statistics
 * Under them, each file keeps plain functions usable on their own (the tests and the external
 * workloads, measured from outside, use those). */
#ifndef BENCH_PROBE_H
#define BENCH_PROBE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../../attn/attn.h"

struct workload;

/* ---- the interface ------------------------------------------------------------------ */

/* What a source sees of the point and of what it measures. */
typedef struct probe_point {
    pid_t pid;                /* the process measured: 0, this one; else a program's, from
                                 outside (its threads included) */
    bool siblings;            /* this process is one of several the point runs as, children of
                                 one launcher on this host (the ranks of a ring): their CPU is
                                 the point's too, not other processes' */
    int threads;              /* the point's threads (this process's OpenMP team) */
    const char *counters;     /* the PAPI events asked for, comma-separated ("" none) */
    double model_scores;      /* the scores the point's model charges a run (0: no model) */
    double tokens;            /* B H n, for work per token */
    json_t *record;           /* the record being made: a source sets its own fields */
    json_t *unavailable;      /* field -> why it is null: a source adds its own */
    struct workload *workload;/* our own point's buffers, from `prepared` on; NULL otherwise */
    attn_stats *work;         /* where the kernels count their work, if a source asks for it
                                 in `open` (sde does); NULL: the kernels count nothing */
} probe_point;

typedef struct probe_source {
    const char *name;
    size_t state_bytes;       /* the source's own state, zeroed before open */
    /* Before the inputs exist (a source's own memory, PAPI's, belongs to the baseline).
     * Optional. */
    void (*open)(void *state, probe_point *pt);
    /* The buffers exist and hold the inputs; nothing has run. Optional. */
    void (*prepared)(void *state, probe_point *pt);
    /* Around the timed repetitions: start in list order, stop in reverse, so the cheapest
     * sources sit closest to the runs. Optional. */
    void (*start)(void *state, probe_point *pt);
    void (*stop)(void *state, probe_point *pt);
    /* The runs ran and were verified: write the fields, per run (`runs` ran between start
     * and stop). */
    void (*report)(void *state, probe_point *pt, int runs);
    /* The runs did not all run or check out (a failed allocation, a kernel error): write
     * what still means something, the memory's peak. Optional. */
    void (*failed)(void *state, probe_point *pt);
    /* Releases what open took. Optional. */
    void (*close)(void *state);
} probe_source;

/* Every source, in open (and start) order; NULL-terminated. */
extern const probe_source *const probe_sources[];

/* The sources opened for one point (probes.c), run in this order by measure.c alone. */
typedef struct probe_set {
    probe_point point;
    void *state[16];
    int count;
} probe_set;

/* Opens every source for the point described by `at` (its record and unavailable are made
 * here). */
void probes_open(probe_set *ps, const probe_point *at);
void probes_prepared(probe_set *ps, struct workload *w);
void probes_start(probe_set *ps);
void probes_stop(probe_set *ps);
/* Writes every source's fields and the `unavailable` map into the record. */
void probes_report(probe_set *ps, int runs);
/* After a failure, what the sources can still say (their `failed`). */
void probes_failed(probe_set *ps);
void probes_close(probe_set *ps);

/* ---- RSS ---------------------------------------------------------------------------- */

/* Reads VmRSS and VmHWM of this process in bytes. Returns 0, or -1 if /proc is unreadable. */
int probe_rss_read(uint64_t *rss, uint64_t *hwm);
/* Resets VmHWM to the current RSS (writes 5 to /proc/self/clear_refs). Returns 0 or -1. */
int probe_rss_reset_peak(void);
/* The same for another process (an external workload), measured from outside; pid 0 is this
 * one. */
int probe_rss_read_pid(pid_t pid, uint64_t *rss, uint64_t *hwm);
int probe_rss_reset_peak_pid(pid_t pid);

/* ---- CPU time and faults ------------------------------------------------------------ */

/* What the kernel accounts to a process, every thread: CPU seconds and page faults. */
typedef struct probe_usage {
    double user_s, system_s;
    double minor_faults, major_faults;
    double voluntary_switches, involuntary_switches; /* NAN for another process */
} probe_usage;
/* This process (getrusage), or pid's (/proc/PID/stat, in clock ticks). Returns 0 or -1. */
int probe_usage_read(pid_t pid, probe_usage *u);

/* ---- the rest of the machine -------------------------------------------------------- */

/* A reading of /proc/stat: CPU seconds of every core since boot, busy and in all, and the
 * runnable tasks now. Two readings around the timed repetitions, less the point's own CPU
 * time, say how much of the machine other processes used meanwhile. */
typedef struct probe_load {
    double busy_s, total_s;
    int procs_running;
    double wall_s;     /* CLOCK_MONOTONIC at the reading */
    int cores;         /* online CPUs */
    double tick_s;     /* /proc/stat's unit, 1 / CLK_TCK */
} probe_load;

int probe_load_read(probe_load *l);
/* The record's machine_load from two readings and the CPU seconds the point itself used in
 * between (every thread of the measured process): other processes' CPU time and share of
 * the machine, the runnable tasks at both ends, and `busy`: true when others took more than
 * PROBE_BUSY_SHARE even allowing for /proc/stat's resolution (a tick per core at each end),
 * false when less even so, and null when the window is too short to tell (a few milliseconds
 * against 10 ms ticks); `resolution_s` is that allowance. */
json_t *probe_load_record(const probe_load *before, const probe_load *after, double own_cpu_s);

/* This process's CPU seconds so far, every thread (getrusage). */
double probe_load_self_cpu_s(void);

/* Other processes used more than this share of the machine's CPU time: a busy measurement,
 * whose time is not to be trusted (or gated). */
#define PROBE_BUSY_SHARE 0.10

/* ---- the attention library's work counters as PAPI software-defined events ----------- */

/* The event name of work counter i ("sde:::attn::SCORES"). */
void probe_sde_event_name(int i, char *buf, size_t size);
/* Registers attn's counters with PAPI SDE under the library name "attn", counting into
 * *stats (which must outlive the registration). Returns 0, or -1 (libsde refused). */
int probe_sde_register(attn_stats *stats);

/* ---- jemalloc ----------------------------------------------------------------------- */

typedef struct probe_jemalloc_stats {
    uint64_t allocated, active, resident, mapped, retained, metadata;
} probe_jemalloc_stats;

/* True when jemalloc is the allocator of this build (false under sanitizers). */
bool probe_jemalloc_available(void);
/* jemalloc's version string, or NULL. */
const char *probe_jemalloc_version(void);
/* Resets this thread's peak of (allocated - deallocated). Returns 0 or -1. */
int probe_jemalloc_peak_reset(void);
/* Reads this thread's peak since the last reset, in bytes. Returns 0 or -1. */
int probe_jemalloc_peak_read(uint64_t *bytes);
/* Reads the bytes this thread has allocated so far (cumulative). Returns 0 or -1. */
int probe_jemalloc_thread_allocated(uint64_t *bytes);
/* Refreshes the statistics epoch, then reads the allocator-wide stats. Returns 0 or -1. */
int probe_jemalloc_read_stats(probe_jemalloc_stats *st);
/* Reads a boolean or unsigned option (e.g. "opt.retain", "opt.narenas") as text. */
int probe_jemalloc_opt(const char *name, char *buf, int size);

/* ---- PAPI --------------------------------------------------------------------------- */

#define PROBE_MAX_EVENTS 48
#define PROBE_MAX_THREADS 256

/* The counter groups `--counters` knows by name (a comma-separated list each): hw, sw, and
 * sde (every attn work counter, as a PAPI software-defined event). */
extern const char probe_papi_default_hw[];
extern const char probe_papi_default_sw[];
/* Expands a --counters list: the names hw, sw, sde, default (all three) and none stand for
 * their groups; anything else is an event name kept as it is. Returns 0, or -1 when the result
 * does not fit `size` or names no event at all while not being "none". */
int probe_counters_expand(const char *list, char *out, size_t size);

typedef struct probe_papi_event {
    char name[64];
    bool process_wide;  /* software-defined (sde:::): one count per process, read once */
    bool ok;            /* counted on every thread */
    char reason[256];   /* why not, when !ok */
    long long value;    /* summed over threads, after stop */
} probe_papi_event;

typedef struct probe_papi {
    bool initialized;
    char init_error[256];      /* when !initialized */
    char version[32];          /* runtime library version, "7.0.0.0" */
    bool virtualized;          /* PAPI's hardware info says this is a VM */
    char vm_vendor[64];
    char perf_component[256];  /* "enabled" or the perf_event component's disabled reason */
    int nthreads;
    int nevents;
    probe_papi_event events[PROBE_MAX_EVENTS];
    int eventset[PROBE_MAX_THREADS];
    int sde_eventset;          /* the process-wide events, on the thread that initialized */
    bool attached;             /* the sets count another process's threads (probe_papi_attach) */
} probe_papi;

/* Initializes PAPI in this (child) process and, in each of `nthreads` OpenMP threads, builds
 * an event set from `events` (comma-separated names), adding every event on its own and
 * recording per event whether it can be counted and why not. An event is kept only if every
 * thread could add it. Software-defined events (sde:::LIB::NAME) count a library's variables,
 * not a thread's: they go into one more set, read once. Returns 0 (even if no event works) or
 * -1 if PAPI itself failed to initialize (p->init_error says why). */
int probe_papi_init(probe_papi *p, const char *events, int nthreads);
/* The same for another process (an external workload, measured from outside): one set
 * attached (PAPI_attach) to each thread the process has now, each following the threads that
 * thread creates (PAPI_INHERIT), so every thread's work is counted once. Software-defined
 * events are unavailable (they count attnbench's own library). probe_papi_start/stop then
 * start and stop the sets from this thread. Returns 0, or -1 if PAPI failed to initialize. */
int probe_papi_attach(probe_papi *p, const char *events, pid_t pid);
/* Starts counting in every thread of the team (same team size as init). Returns 0, or -1
 * when some thread could not start: then nothing counts, and every event that was to be
 * counted is marked unavailable with the reason (its value must never be read as 0). */
int probe_papi_start(probe_papi *p);
/* Stops counting and sums each event over the threads into events[i].value. Returns 0, or -1
 * when some thread could not stop: every event is then unavailable, with the reason. */
int probe_papi_stop(probe_papi *p);
/* Releases the event sets and shuts PAPI down. */
void probe_papi_free(probe_papi *p);

#endif
