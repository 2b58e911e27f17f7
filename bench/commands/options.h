/* options.h: the flags `run` and `sweep` share (shape, repetitions, inputs, counters, limits),
 * parsed in one place so both commands accept exactly the same spellings. */
#ifndef BENCH_OPTIONS_H
#define BENCH_OPTIONS_H

#include <getopt.h>
#include <stdbool.h>

#include "../../attn/stack.h"
#include "../point/point.h"

enum {
    OPT_D = 1000, OPT_HEADS, OPT_BATCH, OPT_CAUSAL, OPT_REPS, OPT_SEED, OPT_THREADS, OPT_INPUTS,
    OPT_ACCURACY, OPT_COUNTERS, OPT_MEM_LIMIT, OPT_TIME_LIMIT, OPT_NO_SKIP, OPT_WARMUP, OPT_TRAIN,
    OPT_STACK, OPT_LAYERS, OPT_D_FF, OPT_FF_CHUNK, OPT_BACKWARD, OPT_QUIET_WAIT, OPT_RANKS,
    OPT_BUSY_RETRIES, OPT_RETRY_WAIT, OPT_DTYPE,
};

#define OPTIONS_COMMON_LONG                                                                      \
    {"d", required_argument, 0, OPT_D}, {"heads", required_argument, 0, OPT_HEADS},              \
        {"batch", required_argument, 0, OPT_BATCH}, {"causal", no_argument, 0, OPT_CAUSAL},      \
        {"reps", required_argument, 0, OPT_REPS}, {"seed", required_argument, 0, OPT_SEED},      \
        {"threads", required_argument, 0, OPT_THREADS},                                         \
        {"inputs", required_argument, 0, OPT_INPUTS},                                           \
        {"accuracy", no_argument, 0, OPT_ACCURACY},                                             \
        {"counters", required_argument, 0, OPT_COUNTERS},                                       \
        {"mem-limit", required_argument, 0, OPT_MEM_LIMIT},                                     \
        {"time-limit", required_argument, 0, OPT_TIME_LIMIT},                                   \
        {"no-skip", no_argument, 0, OPT_NO_SKIP}, {"warmup", required_argument, 0, OPT_WARMUP},  \
        {"train", no_argument, 0, OPT_TRAIN}, {"stack", required_argument, 0, OPT_STACK},        \
        {"layers", required_argument, 0, OPT_LAYERS}, {"d-ff", required_argument, 0, OPT_D_FF}, \
        {"ff-chunk", required_argument, 0, OPT_FF_CHUNK},                                       \
        {"backward", no_argument, 0, OPT_BACKWARD},                                             \
        {"quiet-wait", required_argument, 0, OPT_QUIET_WAIT},                                   \
        {"busy-retries", required_argument, 0, OPT_BUSY_RETRIES},                               \
        {"retry-wait", required_argument, 0, OPT_RETRY_WAIT},                                   \
        {"ranks", required_argument, 0, OPT_RANKS}, {"dtype", required_argument, 0, OPT_DTYPE}

#define OPTIONS_COMMON_HELP                                                                      \
    "  --d D            head dimension (default 64)\n"                                           \
    "  --heads H        heads (default 1)      --batch B   batch (default 1)\n"                  \
    "  --causal         causal attention\n"                                                     \
    "  --dtype T        storage of q, k, v, out and gradients: fp32 (default) or bf16 (fp32\n" \
    "                   scores, softmax and accumulators; sweeps: a list, e.g. fp32,bf16)\n" \
    "  --reps R         timed repetitions (default 5)  --warmup W  untimed runs first (1)\n"  \
    "  --seed S         input seed (default 1) --threads T (default: all cores)\n"               \
    "  --inputs KIND    random (default), or clustered: q and k near n/32 centres per head\n"  \
    "  --accuracy       also run exact attention after the measured region, record the error\n" \
    "  --backward       each run is the forward and the backward (to q, k, v) of the method\n" \
    "  --counters LIST  PAPI events and groups, comma-separated: hw, sw, sde (attn's work\n"      \
    "                   counters, sde:::attn::SCORES ...), default (all three), none\n"          \
    "  --mem-limit SIZE skip points whose model exceeds SIZE (K/M/G suffixes; default 80% of\n" \
    "                   the smallest of physical memory, the cgroup limit, RLIMIT_AS and a\n"  \
    "                   Slurm job's memory); the child's address space is capped at SIZE + 2G\n" \
    "  --time-limit S   kill a point after S seconds (default 600)\n"                           \
    "  --no-skip        run points even when their model exceeds the memory limit\n"          \
    "  --quiet-wait S   before each point, wait up to S seconds for other processes to use\n" \
    "                   less than 10% of the machine (every record says how busy it was)\n" \
    "  --busy-retries N a point timed while others used over 10% of the machine runs again,\n" \
    "                   up to N more times (run: 0, sweep: 2); the record keeps every attempt\n" \
    "  --retry-wait S   each such attempt first waits up to S seconds for a quiet machine\n" \
    "                   (default 10)\n"                                                      \
    "  --train          measure a training step of a layer stack over the method instead of\n" \
    "                   one forward; method `reversible` is --train --stack reversible over lsh\n" \
    "  --stack KIND     standard (default) or reversible  --layers L (default 2; sweeps: a\n"  \
    "                   range or list as for --n)  --d-ff F (default 4 d_model)\n"            \
    "  --ff-chunk P     feed-forward positions per chunk (default 1024)\n"                    \
    "  --ranks P        method ring only: run it as P MPI processes through mpirun, each with\n" \
    "                   --threads or cores / P threads (sweeps: a list, e.g. 1,2,4); without\n" \
    "                   it ring runs in one process\n"

typedef struct options {
    attn_shape shape;   /* d, H, B, causal; n and dtype are set per point */
    attn_dtype dtypes[2]; /* --dtype: one, or a sweep's list */
    int ndtypes;
    int threads, reps, warmup, inputs;
    bool threads_given; /* --threads was given: ranks on one machine do not share it out */
    bool train;
    int stack;          /* enum stack_kind */
    int64_t layers[64]; /* --layers: one value, or a sweep's list */
    int nlayers;
    int64_t d_ff, ff_chunk;
    int64_t ranks[16];  /* --ranks: a ring's MPI process counts; nranks 0 when not given */
    int nranks;
    unsigned long long seed;
    bool accuracy, backward;
    char counters[2048];
    point_limits limits;
} options;

/* Defaults: d 64, one head, batch 1, 5 reps, seed 1, all cores, default counters, memory
 * limit 80% of the smallest of MemTotal, the cgroup limit, RLIMIT_AS and a Slurm job's memory,
 * time limit 600 s. */
void options_default(options *o);
/* Applies a common flag. Returns 0 when handled, CLI_EUSAGE after printing an error, or -1
 * when `opt` is not a common flag. */
int options_apply(const char *cmd, int opt, const char *arg, options *o);
/* What a method name stands for beyond an attention method of the registry. */
typedef struct method_ref {
    const char *label;      /* the record's method name when not the attention's own
                               ("reversible", "ext:NAME"), or NULL */
    bool reversible;        /* `reversible`: the Reformer, a reversible stack's training step
                               over lsh */
    const struct external_peer *external; /* ext:NAME: someone else's program */
} method_ref;

/* Looks up a method by name: a method of the registry, `reversible`, or `ext:NAME` (an
 * external program, asked what it implements). Fills p with the defaults of the attention
 * method (the implemented one for ext:) and *ref; prints the known methods, or why the
 * program cannot be used, and returns CLI_EUSAGE for a name that does not resolve. */
int options_method(const char *cmd, const char *name, attn_params *p, method_ref *ref);
/* Fills a point spec from the options for one method/params, reference, length, depth and
 * rank count (0: in one process); its dtype is the first of --dtype (set it for the others). */
void options_spec(const options *o, const attn_params *p, const method_ref *ref, int64_t n,
                  int layers, int ranks, point_spec *s);
/* Parses "MIN:MAX[:FACTOR]" or "a,b,c" (K/M suffixes count 1024s) into at most max values in
 * [1, limit]. Returns the count or -1. */
int options_parse_range(const char *text, int64_t *vals, int max, int64_t limit);

#endif
