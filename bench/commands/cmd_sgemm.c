/* cmd_sgemm.c: `attnbench sgemm`, the speed yardstick: OpenBLAS sgemm GFLOP/s on this machine,
 * measured with the same OpenBLAS kernels the attention methods use (blas_env.c), so "x% of
 * sgemm" compares like with like. */
#include <cblas.h>
#include <getopt.h>
#include <jansson.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "../point/inputs.h"
#include "../sys/blas_env.h"
#include "../sys/cli.h"
#include "../sys/timing.h"
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

    size_t count = (size_t)(n * n);
    float *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b),
          *c = malloc(count * sizeof *c);
    double *times = malloc((size_t)reps * sizeof *times);
    if (!a || !b || !c || !times) {
        free(a), free(b), free(c), free(times);
        return cli_fail("sgemm", "out of memory for n=%lld", (long long)n);
    }
    inputs_normal(a, count, 1, 1, 1.0f, (int)threads);
    inputs_normal(b, count, 1, 2, 1.0f, (int)threads);
    omp_set_num_threads((int)threads); /* the OpenMP OpenBLAS sizes its team from this */
    const int in = (int)n;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, in, in, in, 1, a, in, b, in, 0, c, in);
    for (int r = 0; r < reps; r++) {
        double t = timing_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, in, in, in, 1, a, in, b, in, 0, c,
                    in);
        times[r] = timing_now() - t;
    }
    double median, best, worst;
    timing_summary(times, (int)reps, &median, &best, &worst);
    double flops = 2.0 * (double)n * (double)n * (double)n;
    if (json) {
        json_t *j = json_object();
        json_object_set_new(j, "n", json_integer(n));
        json_object_set_new(j, "threads", json_integer(threads));
        json_object_set_new(j, "reps", json_integer(reps));
        json_object_set_new(j, "gflops_median", json_real(flops / median / 1e9));
        json_object_set_new(j, "gflops_best", json_real(flops / best / 1e9));
        json_object_set_new(j, "openblas_core", json_string(blas_env_corename()));
        json_object_set_new(j, "openblas_core_source", json_string(blas_env_coretype_source()));
        char *text = json_dumps(j, JSON_COMPACT);
        puts(text);
        free(text);
        json_decref(j);
    } else {
        printf("sgemm n=%lld threads=%lld: %.1f GFLOP/s median of %lld (best %.1f); OpenBLAS "
               "core %s (%s)\n",
               (long long)n, (long long)threads, flops / median / 1e9, (long long)reps,
               flops / best / 1e9, blas_env_corename(), blas_env_coretype_source());
    }
    free(a);
    free(b);
    free(c);
    free(times);
    return 0;
}
