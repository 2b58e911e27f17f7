/* options.c: see options.h. */
#include "options.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "context.h"
#include "inputs.h"
#include "probe.h"

void options_default(options *o)
{
    memset(o, 0, sizeof *o);
    o->shape = (attn_shape){.B = 1, .H = 1, .n = 0, .d = 64};
    o->threads = omp_get_max_threads();
    o->reps = 5;
    o->seed = 1;
    o->inputs = INPUTS_RANDOM;
    snprintf(o->counters, sizeof o->counters, "%s,%s", probe_papi_default_hw,
             probe_papi_default_sw);
    o->limits.mem_limit = context_mem_total() / 5 * 4;
    o->limits.time_limit = 600;
}

int options_apply(const char *cmd, int opt, const char *arg, options *o)
{
    int64_t x;
    uint64_t bytes;
    double secs;
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
        return 0;
    case OPT_INPUTS:
        if ((o->inputs = inputs_parse(arg)) < 0)
            return cli_error(cmd, "--inputs '%s' is not one of: random, clustered", arg);
        return 0;
    case OPT_ACCURACY: o->accuracy = true; return 0;
    case OPT_COUNTERS:
        if (strcmp(arg, "none") == 0)
            o->counters[0] = '\0';
        else if (strcmp(arg, "default") == 0)
            snprintf(o->counters, sizeof o->counters, "%s,%s", probe_papi_default_hw,
                     probe_papi_default_sw);
        else if (strcmp(arg, "hw") == 0)
            snprintf(o->counters, sizeof o->counters, "%s", probe_papi_default_hw);
        else if (strcmp(arg, "sw") == 0)
            snprintf(o->counters, sizeof o->counters, "%s", probe_papi_default_sw);
        else if (strlen(arg) >= sizeof o->counters || strspn(arg, ",") == strlen(arg))
            return cli_error(cmd, "--counters '%s' is not a list of PAPI event names", arg);
        else
            snprintf(o->counters, sizeof o->counters, "%s", arg);
        return 0;
    case OPT_MEM_LIMIT:
        if (cli_parse_size(arg, &bytes) || bytes == 0)
            return cli_error(cmd, "--mem-limit '%s' is not a size such as 3G or 512M", arg);
        o->limits.mem_limit = bytes;
        return 0;
    case OPT_TIME_LIMIT:
        if (cli_parse_real(arg, &secs) || secs <= 0)
            return cli_error(cmd, "--time-limit '%s' is not a positive number of seconds", arg);
        o->limits.time_limit = secs;
        return 0;
    case OPT_NO_SKIP: o->limits.no_skip = true; return 0;
    default: return -1;
    }
}

void options_spec(const options *o, const attn_params *p, int64_t n, point_spec *s)
{
    memset(s, 0, sizeof *s);
    s->params = *p;
    s->shape = o->shape;
    s->shape.n = n;
    s->threads = o->threads;
    s->reps = o->reps;
    s->seed = o->seed;
    s->inputs = o->inputs;
    s->accuracy = o->accuracy;
    s->counters = o->counters;
}
