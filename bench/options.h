/* options.h: the flags `run` and `sweep` share (shape, repetitions, inputs, counters, limits),
 * parsed in one place so both commands accept exactly the same spellings. */
#ifndef BENCH_OPTIONS_H
#define BENCH_OPTIONS_H

#include <getopt.h>
#include <stdbool.h>

#include "point.h"

enum {
    OPT_D = 1000, OPT_HEADS, OPT_BATCH, OPT_CAUSAL, OPT_REPS, OPT_SEED, OPT_THREADS, OPT_INPUTS,
    OPT_ACCURACY, OPT_COUNTERS, OPT_MEM_LIMIT, OPT_TIME_LIMIT, OPT_NO_SKIP,
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
        {"no-skip", no_argument, 0, OPT_NO_SKIP}

#define OPTIONS_COMMON_HELP                                                                      \
    "  --d D            head dimension (default 64)\n"                                           \
    "  --heads H        heads (default 1)      --batch B   batch (default 1)\n"                  \
    "  --causal         causal attention\n"                                                     \
    "  --reps R         timed repetitions after one warm-up (default 5)\n"                       \
    "  --seed S         input seed (default 1) --threads T (default: all cores)\n"               \
    "  --inputs KIND    random (default), or clustered: q and k near n/32 centres per head\n"  \
    "  --accuracy       also run exact attention after the measured region, record the error\n" \
    "  --counters LIST  PAPI events, comma-separated, or default|hw|sw|none (default: hw,sw)\n" \
    "  --mem-limit SIZE skip points whose model exceeds SIZE (K/M/G suffixes; default 80%% of\n" \
    "                   physical memory); the child's address space is capped at SIZE + 2G\n"   \
    "  --time-limit S   kill a point after S seconds (default 600)\n"                           \
    "  --no-skip        run points even when their model exceeds the memory limit\n"

typedef struct options {
    attn_shape shape;   /* d, H, B, causal; n is set per point */
    int threads, reps, inputs;
    unsigned long long seed;
    bool accuracy;
    char counters[512];
    point_limits limits;
} options;

/* Defaults: d 64, one head, batch 1, 5 reps, seed 1, all cores, default counters, memory
 * limit 80% of MemTotal, time limit 600 s. */
void options_default(options *o);
/* Applies a common flag. Returns 0 when handled, CLI_EUSAGE after printing an error, or -1
 * when `opt` is not a common flag. */
int options_apply(const char *cmd, int opt, const char *arg, options *o);
/* Fills a point spec from the options for one method/params and length. */
void options_spec(const options *o, const attn_params *p, int64_t n, point_spec *s);

#endif
