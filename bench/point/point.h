/* point.h: one measured point (method, parameters, shape, threads, seed, inputs), its cost
 * model, and the JSON record that describes it (run/run.h runs it).
 *
 * A record always has the same keys (missing values are null), so results files are easy to
 * tabulate; see README.md ("Record fields") for what each one means. */
#ifndef BENCH_POINT_H
#define BENCH_POINT_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "../../attn/attn.h"

#define POINT_STATUSES(X)                                                                        \
    X(POINT_OK, "ok")                                                                            \
    X(POINT_SKIPPED, "skipped")                                                                  \
    X(POINT_UNSUPPORTED, "unsupported")                                                          \
    X(POINT_ALLOC_FAILED, "alloc_failed")                                                        \
    X(POINT_OOM_KILLED, "oom_killed")                                                            \
    X(POINT_KILLED, "killed")                                                                    \
    X(POINT_CRASHED, "crashed")                                                                  \
    X(POINT_TIMEOUT, "timeout")                                                                  \
    X(POINT_ERROR, "error")

enum point_status {
#define POINT_STATUS_ENUM(name, text) name,
    POINT_STATUSES(POINT_STATUS_ENUM)
#undef POINT_STATUS_ENUM
    POINT_NSTATUS
};

const char *point_status_name(int status);
/* Returns the status called `name`, or -1. */
int point_status_parse(const char *name);

typedef struct point_spec {
    attn_params params;   /* method and its parameter values (the inner one when training) */
    attn_shape shape;
    int threads;
    int reps;             /* timed repetitions */
    int warmup;           /* untimed runs before them (outputs poisoned and checked if >= 1) */
    uint64_t seed;
    int inputs;           /* enum inputs_kind */
    bool accuracy;        /* also run the exact counterpart after the measured region */
    bool backward;        /* attention: each run is the forward and then the backward of a
                             loss whose output gradient is random (the training cost of the
                             attention alone) */
    const char *counters; /* PAPI events, comma-separated ("" for none) */
    /* a training step of a layer stack instead of one attention forward */
    bool train;
    int stack;            /* enum stack_kind */
    int layers;
    int64_t d_ff;         /* 0: 4 d_model */
    int64_t ff_chunk;
    const char *label;    /* the record's method name when it is not the attention's own
                             ("reversible": the Reformer, a reversible stack over lsh; "ext:NAME"),
                             or NULL */
    int ranks;            /* ring over this many MPI processes (`--ranks`), started by mpirun;
                             0: the method runs in the point's own process */
    const struct external_peer *external; /* ext:NAME: the program run and measured instead of
                                             an attnbench method, which is the one it
                                             implements (params, model); or NULL */
} point_spec;

/* What the point's model says it costs, before anything runs. */
typedef struct point_model {
    double flops;              /* the useful work of one run */
    double scores;             /* attention: the query-key scores one forward is charged for
                                  (attn_cost.scores); 0 for training */
    double recompute_flops;    /* training: work done again on top (the reversible backward's
                                  recomputation); not in flops, so GFLOP/s is not inflated */
    uint64_t bytes;            /* everything the child allocates for the point */
    uint64_t io_bytes;         /* inputs and outputs (attention: q, k, v, out, lse, structure;
                                  training: x, dx; the loss's target is generated) */
    uint64_t workspace_bytes;
    uint64_t param_bytes;      /* training: weights and their gradients; 0 otherwise */
    uint64_t activation_bytes; /* training: what the stack keeps for its backward; 0 otherwise */
    int64_t d_ff;              /* training: the resolved feed-forward width */
} point_model;

typedef struct point_limits {
    uint64_t mem_limit;   /* bytes: points whose model exceeds it are skipped, and the child's
                             address space is capped at mem_limit + POINT_AS_SLACK */
    char mem_limit_source[320]; /* where it came from: "--mem-limit", "80% of the cgroup
                                   limit (FILE)", "80% of MemTotal", ... */
    double time_limit;    /* seconds of child run time before it is killed (0: none) */
    bool no_skip;         /* run points even when the model exceeds mem_limit */
    double mem_base, mem_ratio; /* when mem_ratio > 0, a point is skipped when mem_base +
                                   mem_ratio x its model exceeds mem_limit: its peak RSS as
                                   measured records predict it (capacity --verify) */
    double quiet_wait;    /* seconds to wait, before the point, for other processes to leave
                             the machine (0: do not wait) */
    int busy_retries;     /* a point timed while others used the machine runs again, up to
                             this many more times (-1: the command's default) */
    double retry_wait;    /* seconds each such attempt first waits for a quiet machine */
    volatile sig_atomic_t *stop; /* set by a signal handler: kill the point's child (or NULL) */
} point_limits;

/* Room in the child's address space beyond the memory limit: shared libraries, thread stacks,
 * OpenBLAS buffers and allocator reservations are virtual memory the limit does not mean. */
#define POINT_AS_SLACK (UINT64_C(2) << 30)

/* The canonical text of the point's identity ("method=lsh;n=1024;...") and its 16-hex-digit
 * id (FNV-1a 64 of the key). Measurement settings (reps, limits, counters) are not part of
 * the identity, so re-running a point with more repetitions replaces it. */
void point_key(const point_spec *s, char *buf, size_t size);
void point_id(const char *key, char id[17]);

/* A record with the point's identity and cost model filled in, every measured field null and
 * the given status and reason. Returns a new reference. */
json_t *point_record_new(const point_spec *s, const json_t *context, int status,
                         const char *reason);
/* Sets the record's timings from the repetitions' wall times (in run order; not changed):
 * wall_s_reps, wall_s (the median), wall_s_min, wall_s_max, and gflops from the point's model.
 * One place for our own points, external programs and ranks. */
void point_record_times(json_t *r, const point_spec *s, const double *times);
/* Whether the point's model exceeds the memory limit (and --no-skip is off): then returns 1
 * with the reason in buf. */
int point_over_memory(const point_spec *s, const point_limits *lim, char *buf, size_t size);
/* The point's model. Returns 0, or the attn error of a configuration that cannot run
 * (*why says why). */
int point_model_of(const point_spec *s, point_model *m, const char **why);

/* Test hooks: whether ATTNBENCH_FAULT names this fault, which makes a point's child fail in a
 * chosen way so the parent's classification of real process deaths can be tested: segv,
 * sigkill, sleep, exit (once the buffers exist), unwritten (an output element left as the
 * poison, as a buggy kernel would), inflate:PCT (PCT% more memory than the model, written: a
 * memory regression, for `check`), sleep-reference (a hang after the measured record, in
 * --accuracy's exact reference) and papi-busy (the counters' event sets already started by
 * someone else, so the harness's own PAPI_start fails for real). */
int point_fault(const char *name);

#endif
