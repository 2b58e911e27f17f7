/* merge.c: `attnbench merge --out ALL.jsonl SHARD.jsonl...`: many results files as one, one
 * record per point (the rule of records.h). Writes the merged records atomically (a temporary
 * file renamed), refusing torn lines and files that are not attnbench's (exit 2), and warns when
 * the shards ran on different CPUs or builds (every record's context says which). */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bench/commands/commands.h"
#include "../bench/record/record.h"
#include "../bench/sys/cli.h"
#include "records.h"

/* Warns when the records ran on more than one CPU model or build. */
static void warn_mixed(json_t *records)
{
    static const char *const keys[][2] = {{"cpu_model", "CPUs"}, {"git_commit", "builds"},
                                          {"cflags", "compiler flags"}};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        json_t *seen = json_object();
        size_t i;
        json_t *rec;
        json_array_foreach(records, i, rec)
            json_object_set_new(seen, report_str(json_object_get(rec, "context"), keys[k][0]),
                                json_true());
        if (json_object_size(seen) > 1) {
            fprintf(stderr, "attnbench merge: warning: the records ran on %zu different %s:",
                    json_object_size(seen), keys[k][1]);
            const char *name;
            json_t *v;
            json_object_foreach(seen, name, v)
                fprintf(stderr, " \"%s\"", name);
            fputc('\n', stderr);
        }
        json_decref(seen);
    }
}

int cmd_merge(int argc, char **argv)
{
    enum { OPT_OUT = 1, OPT_HELP };
    static const struct option opts[] = {
        {"out", required_argument, 0, OPT_OUT}, {"help", no_argument, 0, OPT_HELP}, {0, 0, 0, 0}};
    const char *out = NULL;
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (c) {
        case OPT_OUT: out = optarg; break;
        case OPT_HELP:
            puts("usage: attnbench merge --out ALL.jsonl SHARD.jsonl...\n"
                 "One record per point_id from the shards of a sweep: an ok record over one that\n"
                 "did not measure, the newer of two ok ones (with a warning). Refuses torn lines\n"
                 "and files that are not attnbench's (exit 2); warns when the shards ran on\n"
                 "different CPUs or builds. The output is written whole, then renamed.");
            return 0;
        default: return cli_getopt_error("merge", optopt, argv, optind);
        }
    }
    if (!out)
        return cli_error("merge", "--out ALL.jsonl is required");
    if (optind >= argc)
        return cli_error("merge", "no results file given");
    char who[512], err[1024];
    if (record_file_busy(out, who, sizeof who))
        return cli_error("merge", "--out %s is being written by %s", out, who);
    json_t *records;
    if (report_merge(argc - optind, argv + optind, true, false, &records, err, sizeof err))
        return cli_error("merge", "%s", err);
    warn_mixed(records);
    if (cli_mkdirs_for(out) != 0 || report_write_records(out, records) != 0) {
        const int e = errno;
        json_decref(records);
        return cli_fail("merge", "cannot write %s: %s", out, strerror(e));
    }
    size_t ok = 0, i;
    json_t *rec;
    json_array_foreach(records, i, rec)
        ok += report_is_ok(rec);
    fprintf(stderr, "attnbench merge: %zu points (%zu ok) from %d files into %s\n",
            json_array_size(records), ok, argc - optind, out);
    json_decref(records);
    return 0;
}
