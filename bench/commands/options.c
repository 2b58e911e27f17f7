/* options.c: see options.h. */
#include "options.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "../launch/external.h"
#include "../measure/context.h"
#include "../point/inputs.h"
#include "../probes/probe.h"
#include "../sys/cgroup.h"
#include "../sys/cli.h"

void options_default(options *o)
{
    memset(o, 0, sizeof *o);
    o->shape = (attn_shape){.B = 1, .H = 1, .n = 0, .d = 64};
    o->threads = omp_get_max_threads();
    o->reps = 5;
    o->warmup = 1;
    o->stack = STACK_STANDARD;
    o->layers[0] = 2;
    o->nlayers = 1;
    o->ndtypes = 1; /* fp32 */
    o->ff_chunk = 1024;
    o->seed = 1;
    o->inputs = INPUTS_RANDOM;
    probe_counters_expand("default", o->counters, sizeof o->counters);
    /* 80% of what this process may really use: a container's or a Slurm allocation's
     * cgroup limit, RLIMIT_AS, or the Slurm job's memory, when one is below physical memory */
    memory_bound b;
    cgroup_memory_bound(&b);
    o->limits.mem_limit = b.bytes / 5 * 4;
    if (strcmp(b.source, "cgroup") == 0)
        snprintf(o->limits.mem_limit_source, sizeof o->limits.mem_limit_source,
                 "80%% of the cgroup limit in %.280s", b.cgroup_file);
    else
        snprintf(o->limits.mem_limit_source, sizeof o->limits.mem_limit_source, "80%% of %s",
                 b.source);
    o->limits.time_limit = 600;
    o->limits.busy_retries = -1; /* run: 0; sweep: SWEEP_BUSY_RETRIES */
    o->limits.retry_wait = 10;
}

/* The point's shape, repetitions, seed, threads, inputs and what is measured. Returns 0, the exit status of a bad value (after one line), or -1 when opt is not
 * one of them. */
static int apply_point_option(const char *cmd, int opt, const char *arg, options *o)
{
    int64_t x;
    switch (opt) {
    case OPT_D:
        if (cli_parse_int(arg, 1, 4096, &x))
            return cli_error(cmd, "--d '%s' is not an integer in [1, 4096]", arg);
        o->shape.d = x;
        return 0;
    case OPT_HEADS:
        if (cli_parse_int(arg, 1, 1 << 16, &x))
            return cli_error(cmd, "--heads '%s' is not an integer in [1, 65536]", arg);
        o->shape.H = x;
        return 0;
    case OPT_BATCH:
        if (cli_parse_int(arg, 1, 1 << 16, &x))
            return cli_error(cmd, "--batch '%s' is not an integer in [1, 65536]", arg);
        o->shape.B = x;
        return 0;
    case OPT_CAUSAL: o->shape.causal = true; return 0;
    case OPT_DTYPE: {
        o->ndtypes = 0;
        char list[64];
        snprintf(list, sizeof list, "%s", arg);
        for (char *save, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            attn_dtype t;
            if (attn_dtype_parse(tok, &t) != 0 || o->ndtypes == 2 ||
                (o->ndtypes == 1 && o->dtypes[0] == t))
                return cli_error(cmd, "--dtype '%s' is not fp32, bf16 or the list fp32,bf16", arg);
            o->dtypes[o->ndtypes++] = t;
        }
        if (o->ndtypes == 0)
            return cli_error(cmd, "--dtype '%s' is not fp32, bf16 or the list fp32,bf16", arg);
        return 0;
    }
    case OPT_REPS:
        if (cli_parse_int(arg, 1, 1000, &x))
            return cli_error(cmd, "--reps '%s' is not an integer in [1, 1000]", arg);
        o->reps = (int)x;
        return 0;
    case OPT_SEED:
        if (cli_parse_int(arg, 0, INT64_MAX, &x))
            return cli_error(cmd, "--seed '%s' is not a non-negative integer", arg);
        o->seed = (unsigned long long)x;
        return 0;
    case OPT_THREADS:
        if (cli_parse_int(arg, 1, PROBE_MAX_THREADS, &x))
            return cli_error(cmd, "--threads '%s' is not an integer in [1, %d]", arg,
                             PROBE_MAX_THREADS);
        o->threads = (int)x;
        o->threads_given = true;
        return 0;
    case OPT_INPUTS:
        if ((o->inputs = inputs_parse(arg)) < 0)
            return cli_error(cmd, "--inputs '%s' is not one of: random, clustered", arg);
        return 0;
    case OPT_ACCURACY: o->accuracy = true; return 0;
    case OPT_BACKWARD: o->backward = true; return 0;
    case OPT_COUNTERS:
        if (probe_counters_expand(arg, o->counters, sizeof o->counters) != 0)
            return cli_error(cmd, "--counters '%s' is not a list of PAPI event names or of the "
                             "groups hw, sw, sde, default, none", arg);
        return 0;
    case OPT_WARMUP:
        if (cli_parse_int(arg, 0, 100, &x))
            return cli_error(cmd, "--warmup '%s' is not an integer in [0, 100]", arg);
        o->warmup = (int)x;
        return 0;
    default: return -1;
    }
}

/* The limits a point runs under: memory, time, and a busy machine. Returns 0, the exit status of a bad value (after one line), or -1 when opt is not
 * one of them. */
static int apply_limit_option(const char *cmd, int opt, const char *arg, options *o)
{
    uint64_t bytes;
    int64_t x;
    double secs;
    switch (opt) {
    case OPT_MEM_LIMIT:
        if (cli_parse_size(arg, &bytes) || bytes == 0)
            return cli_error(cmd, "--mem-limit '%s' is not a size such as 3G or 512M", arg);
        o->limits.mem_limit = bytes;
        snprintf(o->limits.mem_limit_source, sizeof o->limits.mem_limit_source, "--mem-limit");
        return 0;
    case OPT_TIME_LIMIT:
        if (cli_parse_real(arg, &secs) || secs <= 0)
            return cli_error(cmd, "--time-limit '%s' is not a positive number of seconds", arg);
        o->limits.time_limit = secs;
        return 0;
    case OPT_NO_SKIP: o->limits.no_skip = true; return 0;
    case OPT_QUIET_WAIT:
        if (cli_parse_real(arg, &secs))
            return cli_error(cmd, "--quiet-wait '%s' is not a number of seconds", arg);
        o->limits.quiet_wait = secs;
        return 0;
    case OPT_BUSY_RETRIES:
        if (cli_parse_int(arg, 0, 10, &x))
            return cli_error(cmd, "--busy-retries '%s' is not an integer in [0, 10]", arg);
        o->limits.busy_retries = (int)x;
        return 0;
    case OPT_RETRY_WAIT:
        if (cli_parse_real(arg, &secs) || secs < 0)
            return cli_error(cmd, "--retry-wait '%s' is not a number of seconds", arg);
        o->limits.retry_wait = secs;
        return 0;
    default: return -1;
    }
}

/* A training step's stack, and the process counts of a ring. Returns 0, the exit status of a bad value (after one line), or -1 when opt is not
 * one of them. */
static int apply_training_option(const char *cmd, int opt, const char *arg, options *o)
{
    int64_t x;
    switch (opt) {
    case OPT_TRAIN: o->train = true; return 0;
    case OPT_STACK:
        if ((o->stack = stack_kind_parse(arg)) < 0)
            return cli_error(cmd, "--stack '%s' is not one of: standard, reversible", arg);
        o->train = true;
        return 0;
    case OPT_RANKS:
        if ((o->nranks = options_parse_range(arg, o->ranks, 16, 1024)) <= 0)
            return cli_error(cmd, "--ranks '%s' is not a number of MPI processes in [1, 1024] or "
                                  "a list of at most 16", arg);
        return 0;
    case OPT_LAYERS:
        if ((o->nlayers = options_parse_range(arg, o->layers, 64, 1024)) <= 0)
            return cli_error(cmd, "--layers '%s' is not a number of layers in [1, 1024], a range "
                                  "MIN:MAX[:FACTOR] or a list", arg);
        return 0;
    case OPT_D_FF:
        if (cli_parse_int(arg, 1, 1 << 20, &x))
            return cli_error(cmd, "--d-ff '%s' is not an integer in [1, 2^20]", arg);
        o->d_ff = x;
        return 0;
    case OPT_FF_CHUNK:
        if (cli_parse_int(arg, 1, INT64_C(1) << 31, &x))
            return cli_error(cmd, "--ff-chunk '%s' is not a positive integer", arg);
        o->ff_chunk = x;
        return 0;
    default: return -1;
    }
}

int options_apply(const char *cmd, int opt, const char *arg, options *o)
{
    int rc = apply_point_option(cmd, opt, arg, o);
    if (rc < 0)
        rc = apply_limit_option(cmd, opt, arg, o);
    if (rc < 0)
        rc = apply_training_option(cmd, opt, arg, o);
    return rc;
}

int options_parse_range(const char *text, int64_t *vals, int max, int64_t limit)
{
    char buf[256];
    if (strlen(text) >= sizeof buf)
        return -1;
    snprintf(buf, sizeof buf, "%s", text);
    uint64_t lo, hi;
    double factor = 2;
    char *c1 = strchr(buf, ':');
    if (!c1) { /* a list, or one value */
        int count = 0;
        for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (count == max || cli_parse_count(tok, &lo) || lo < 1 || lo > (uint64_t)limit)
                return -1;
            vals[count++] = (int64_t)lo;
        }
        return count;
    }
    *c1 = '\0';
    char *c2 = strchr(c1 + 1, ':');
    if (c2) {
        *c2 = '\0';
        if (cli_parse_real(c2 + 1, &factor) || factor <= 1.0)
            return -1;
    }
    if (cli_parse_count(buf, &lo) || cli_parse_count(c1 + 1, &hi) || lo < 1 || hi < lo ||
        hi > (uint64_t)limit)
        return -1;
    int count = 0;
    for (double v = (double)lo; v <= (double)hi * (1 + 1e-9) && count < max; v *= factor) {
        const int64_t r = (int64_t)llround(v);
        if (count == 0 || r != vals[count - 1])
            vals[count++] = r;
    }
    return count;
}

int options_method(const char *cmd, const char *name, attn_params *p, method_ref *ref)
{
    memset(ref, 0, sizeof *ref);
    if (name && strcmp(name, "reversible") == 0) {
        ref->label = "reversible";
        ref->reversible = true;
        attn_params_default(attn_find("lsh"), p);
        return 0;
    }
    if (name && strncmp(name, "ext:", 4) == 0) {
        char why[1024];
        const external_peer *peer = external_resolve(name, why, sizeof why);
        if (!peer)
            return cli_error(cmd, "%s", why);
        ref->label = peer->name;
        ref->external = peer;
        attn_params_default(attn_find(peer->implements), p);
        return 0;
    }
    if (!name || !attn_find(name))
        return cli_method_error(cmd, name, "reversible, ext:NAME");
    return cli_method(cmd, name, p);
}

void options_spec(const options *o, const attn_params *p, const method_ref *ref, int64_t n,
                  int layers, int ranks, point_spec *s)
{
    memset(s, 0, sizeof *s);
    s->params = *p;
    s->shape = o->shape;
    s->shape.n = n;
    s->shape.dtype = o->dtypes[0];
    s->threads = o->threads;
    /* P ranks started on this machine share its cores, unless told otherwise */
    if (ranks > 0 && !o->threads_given)
        s->threads = o->threads / ranks > 1 ? o->threads / ranks : 1;
    s->reps = o->reps;
    s->warmup = o->warmup;
    s->external = ref->external;
    /* a program is what it says it is: a training step of its stack, or one forward */
    s->train = ref->external ? ref->external->train[0] != '\0' : o->train || ref->reversible;
    s->stack = ref->reversible ? STACK_REVERSIBLE : o->stack;
    if (ref->external && s->train)
        s->stack = strcmp(ref->external->train, "reversible") == 0 ? STACK_REVERSIBLE
                                                                   : STACK_STANDARD;
    s->layers = s->train ? layers : 0;
    s->d_ff = s->train ? o->d_ff : 0;
    s->ff_chunk = s->train ? o->ff_chunk : 0;
    s->label = ref->label;
    s->seed = o->seed;
    s->inputs = o->inputs;
    s->accuracy = o->accuracy;
    s->backward = o->backward && !s->train && !s->external; /* a step has its own backward */
    s->counters = o->counters;
    s->ranks = ranks;
}
