/* probe.h: the three measuring probes of a point, each usable on its own:
 *   RSS      /proc/self/status VmRSS and VmHWM, and the high-water-mark reset (clear_refs)
 *   jemalloc thread.peak (reset / read) and the allocator-wide stats after an epoch refresh
 *   PAPI     low-level API, one event set per worker thread, every event added on its own
 * All of them are meant to run inside the measured child process (see point.c). */
#ifndef BENCH_PROBE_H
#define BENCH_PROBE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- RSS ---------------------------------------------------------------------------- */

/* Reads VmRSS and VmHWM of this process in bytes. Returns 0, or -1 if /proc is unreadable. */
int probe_rss_read(uint64_t *rss, uint64_t *hwm);
/* Resets VmHWM to the current RSS (writes 5 to /proc/self/clear_refs). Returns 0 or -1. */
int probe_rss_reset_peak(void);
/* The same for another process (an external workload), measured from outside; pid 0 is this
 * one. */
int probe_rss_read_pid(pid_t pid, uint64_t *rss, uint64_t *hwm);
int probe_rss_reset_peak_pid(pid_t pid);

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

#define PROBE_MAX_EVENTS 16
#define PROBE_MAX_THREADS 256

/* The default counter sets (a comma-separated list each). */
extern const char probe_papi_default_hw[];
extern const char probe_papi_default_sw[];

typedef struct probe_papi_event {
    char name[64];
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
} probe_papi;

/* Initializes PAPI in this (child) process and, in each of `nthreads` OpenMP threads, builds
 * an event set from `events` (comma-separated names), adding every event on its own and
 * recording per event whether it can be counted and why not. An event is kept only if every
 * thread could add it. Returns 0 (even if no event works) or -1 if PAPI itself failed to
 * initialize (p->init_error says why). */
int probe_papi_init(probe_papi *p, const char *events, int nthreads);
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
