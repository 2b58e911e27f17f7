/* cmd_run.c: `attnbench run`, one point in an isolated child, printed as a table or as one
 * JSON object. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../measure/context.h"
#include "../record/record.h"
#include "../run/run.h"
#include "../sys/cli.h"
#include "commands.h"
#include "options.h"

static const char run_usage[] =
    "usage: attnbench run --method M --n N [--param key=value]... [--json] [options]\n"
    "Runs one point in a child process and reports time, peak memory, jemalloc and PAPI.\n"
    "M is any method of `attnbench list`, or `reversible` (a reversible-stack training step\n"
    "over lsh: the Reformer).\n"
    OPTIONS_COMMON_HELP
    "  --json           print exactly one JSON object (the record) on stdout\n";

int cmd_run(int argc, char **argv)
{
    enum { OPT_METHOD = 1, OPT_N, OPT_PARAM, OPT_JSON, OPT_HELP };
    static const struct option opts[] = {
        {"method", required_argument, 0, OPT_METHOD}, {"n", required_argument, 0, OPT_N},
        {"param", required_argument, 0, OPT_PARAM},   {"json", no_argument, 0, OPT_JSON},
        {"help", no_argument, 0, OPT_HELP},           OPTIONS_COMMON_LONG,
        {0, 0, 0, 0},
    };
    options o;
    options_default(&o);
    const char *method = NULL, *params[64];
    int nparams = 0, json = 0;
    int64_t n = 0;
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        int rc = options_apply("run", c, optarg, &o);
        if (rc >= 0) {
            if (rc)
                return rc;
            continue;
        }
        switch (c) {
        case OPT_METHOD: method = optarg; break;
        case OPT_N: {
            uint64_t v; /* K and M count 1024s, as in sweeps: 64K, 1M */
            if (cli_parse_count(optarg, &v) || v < 1 || v > (UINT64_C(1) << 31))
                return cli_error("run", "--n '%s' is not a length in [1, 2^31] (K/M suffixes "
                                        "allowed)", optarg);
            n = (int64_t)v;
            break;
        }
        case OPT_PARAM:
            if (nparams == 64)
                return cli_error("run", "too many --param flags");
            params[nparams++] = optarg;
            break;
        case OPT_JSON: json = 1; break;
        case OPT_HELP: fputs(run_usage, stdout); return 0;
        default: return cli_getopt_error("run", optopt, argv, optind);
        }
    }
    if (optind < argc)
        return cli_error("run", "unexpected argument '%s'", argv[optind]);
    attn_params p;
    method_ref ref;
    int rc = options_method("run", method, &p, &ref);
    for (int i = 0; !rc && i < nparams; i++)
        rc = cli_param("run", &p, params[i]);
    if (rc)
        return rc;
    if (n == 0)
        return cli_error("run", "--n is required");
    if (o.nlayers != 1)
        return cli_error("run", "--layers takes one number of layers here (a sweep takes more)");
    if (o.ndtypes != 1)
        return cli_error("run", "--dtype takes one type here (a sweep takes more)");

    point_spec s;
    if (o.nranks > 1)
        return cli_error("run", "--ranks takes one number of processes here (a sweep takes more)");
    if (o.nranks && (ref.label || strcmp(p.method->name, "ring") != 0))
        return cli_error("run", "--ranks runs the ring method over MPI processes; %s runs in one "
                                "process", method);
    options_spec(&o, &p, &ref, n, (int)o.layers[0], o.nranks ? (int)o.ranks[0] : 0, &s);
    const char *why;
    point_model model;
    if ((rc = point_model_of(&s, &model, &why)) && rc != ATTN_EUNSUPPORTED)
        return cli_check_error("run", &p, rc, why);

    json_t *ctx = context_collect();
    json_t *rec = point_run(&s, &o.limits, ctx);
    if (json)
        record_print_json(stdout, rec);
    else
        record_print_table(stdout, rec);
    const char *status = json_string_value(json_object_get(rec, "status"));
    int ok = status && strcmp(status, "ok") == 0;
    json_decref(rec);
    json_decref(ctx);
    return ok ? 0 : 1;
}
