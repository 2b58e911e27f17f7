/* cmd_sgemm.c: `attnbench sgemm`, the speed yardstick (measure/yardstick.h) at the shell. */
#include <getopt.h>
#include <jansson.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "../measure/yardstick.h"
#include "../sys/blas_env.h"
#include "../sys/cli.h"
#include "commands.h"

int cmd_sgemm(int argc, char **argv)
{
    enum { OPT_N = 1, OPT_THREADS, OPT_REPS, OPT_JSON, OPT_HELP };
    static const struct option opts[] = {
        {"n", required_argument, 0, OPT_N},       {"threads", required_argument, 0, OPT_THREADS},
        {"reps", required_argument, 0, OPT_REPS}, {"json", no_argument, 0, OPT_JSON},
        {"help", no_argument, 0, OPT_HELP},       {0, 0, 0, 0},
    };
    int64_t n = 4096, threads = omp_get_max_threads(), reps = 5;
    int json = 0;
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (c) {
        case OPT_N:
            if (cli_parse_int(optarg, 16, 16384, &n))
                return cli_error("sgemm", "--n '%s' is not an integer in [16, 16384]", optarg);
            break;
        case OPT_THREADS:
            if (cli_parse_int(optarg, 1, 1024, &threads))
                return cli_error("sgemm", "--threads '%s' is not an integer in [1, 1024]", optarg);
            break;
        case OPT_REPS:
            if (cli_parse_int(optarg, 1, 1000, &reps))
                return cli_error("sgemm", "--reps '%s' is not an integer in [1, 1000]", optarg);
            break;
        case OPT_JSON: json = 1; break;
        case OPT_HELP:
            puts("usage: attnbench sgemm [--n 4096] [--threads T] [--reps 5] [--json]\n"
                 "OpenBLAS sgemm C = A B on n x n fp32 matrices: the kernel-speed yardstick.");
            return 0;
        default: return cli_getopt_error("sgemm", optopt, argv, optind);
        }
    }
    if (optind < argc)
        return cli_error("sgemm", "unexpected argument '%s'", argv[optind]);

    yardstick y;
    if (yardstick_sgemm(n, (int)threads, (int)reps, &y) != 0)
        return cli_fail("sgemm", "out of memory for n=%lld", (long long)n);
    if (json) {
        json_t *j = yardstick_json(&y);
        char *text = json_dumps(j, JSON_COMPACT);
        puts(text);
        free(text);
        json_decref(j);
    } else {
        printf("sgemm n=%lld threads=%lld: %.1f GFLOP/s median of %lld (best %.1f); OpenBLAS "
               "core %s (%s)\n",
               (long long)n, (long long)threads, y.gflops_median, (long long)reps, y.gflops_best,
               blas_env_corename(), blas_env_coretype_source());
    }
    return 0;
}
