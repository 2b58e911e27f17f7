/* main.c: build/attnbench, the one command-line program. Dispatches to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "commands/commands.h"
#include "measure/context.h"
#include "record/record.h"
#include "sys/blas_env.h"
#include "sys/cli.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"list", cmd_list, "list the attention methods, their parameters and defaults"},
    {"forward", cmd_forward, "run one method on .npy inputs and write its output"},
    {"backward", cmd_backward, "gradients of one method on .npy inputs (for outside checks)"},
    {"train-step", cmd_train_step, "one training step of a layer stack on .npy data: loss, every gradient"},
    {"run", cmd_run, "measure one point in an isolated child (time, memory, counters)"},
    {"sweep", cmd_sweep, "measure many points (methods x parameters x n) into a results file"},
    {"report", cmd_report, "fit scaling exponents, plot with gnuplot, write report.md and a CSV"},
    {"check", cmd_check, "gate memory against a baseline results file (CI's regression check)"},
    {"merge", cmd_merge, "merge the shards of a sweep into one results file, one record a point"},
    {"capacity", cmd_capacity, "the longest n each method fits in a memory (and time) budget, predicted and verified"},
    {"sgemm", cmd_sgemm, "the speed yardstick: OpenBLAS sgemm GFLOP/s on this machine"},
    {"table", cmd_table, "one measured table from results files, as the report and docs hold it"},
    {"docs", cmd_docs, "rewrite (or --check) the generated tables of the docs from results"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: attnbench <command> [options]   (attnbench <command> --help)\n"
               "       attnbench --version\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
    blas_env_fix_coretype(argv);
    if (argc < 2) {
        fprintf(stderr, "attnbench: missing command (see 'attnbench --help')\n");
        return CLI_EUSAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("attnbench %s (commit %s%s, record schema %s)\n", ATTNBENCH_VERSION,
               context_git_commit(), context_built_dirty() ? ", built with uncommitted changes" : "",
               RECORD_SCHEMA);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "attnbench: unknown command '%s' (see 'attnbench --help')\n", argv[1]);
    return CLI_EUSAGE;
}
