/* merge.c: many results files as one, one record per point. The rule `report`, `check` and
 * `attnbench merge` share: shards of a sweep (or a point measured again) come together by
 * point_id; an ok record wins over one that did not measure; of two ok records the newer
 * (context.date) wins, with a warning, since a point measured twice is worth knowing of.
 *
 *   attnbench merge --out ALL.jsonl SHARD.jsonl...
 * writes the merged records (atomically: a temporary file renamed), refusing torn lines and
 * files that are not attnbench's (exit 2), and warns when the shards ran on different CPUs or
 * builds (every record's context says which). */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../bench/cli.h"
#include "../bench/commands.h"
#include "../bench/context.h"
#include "../bench/record.h"
#include "report.h"

static bool is_ok(const json_t *rec)
{
    return strcmp(report_str(rec, "status"), "ok") == 0;
}

static const char *date_of(const json_t *rec)
{
    return report_str(json_object_get(rec, "context"), "date");
}

/* Whether `rec` replaces `old`, the record of the same point seen before it. */
static bool replaces(const json_t *old, const json_t *rec, const char *file, bool quiet)
{
    if (is_ok(old) != is_ok(rec))
        return is_ok(rec);
    if (!is_ok(rec))
        return true; /* neither measured: the later one's reason */
    const bool newer = strcmp(date_of(rec), date_of(old)) >= 0;
    if (!quiet)
        fprintf(stderr, "attnbench: warning: %s n=%.0f (%s) was measured twice; keeping the "
                "newer (%s, %s)\n", report_str(rec, "method"), report_num(rec, "n"),
                report_str(rec, "point_id"), newer ? date_of(rec) : date_of(old),
                newer ? file : "the earlier file");
    return newer;
}

int report_merge(int nfiles, char **files, bool strict, bool quiet, json_t **records, char *err,
                 size_t errlen)
{
    *records = json_array();
    json_t *where = json_object(); /* point_id -> its position in *records */
    int rc = 0;
    for (int f = 0; f < nfiles && !rc; f++) {
        record_file rf;
        if (record_file_read(files[f], false, &rf, err, errlen)) {
            rc = -1;
            break;
        }
        char who[512];
        if (record_file_busy(files[f], who, sizeof who))
            fprintf(stderr, "attnbench: warning: %s is being written by %s; reading the %zu "
                            "records it holds so far\n", files[f], who,
                    json_array_size(rf.records));
        if (rf.torn_line && strict) {
            cli_errf(err, errlen, "%s:%ld: a torn record (%ld bytes, a write cut short); resume "
                     "that sweep (--resume) before merging it", files[f], rf.torn_line,
                     rf.torn_bytes);
            record_file_free(&rf);
            rc = -1;
            break;
        }
        if (rf.torn_line)
            fprintf(stderr, "attnbench: %s:%ld: a torn last record (%ld bytes), left out\n",
                    files[f], rf.torn_line, rf.torn_bytes);
        size_t i;
        json_t *rec;
        json_array_foreach(rf.records, i, rec)
        {
            if (strcmp(report_str(rec, "schema"), RECORD_SCHEMA) != 0 && strict) {
                cli_errf(err, errlen, "%s: a record of schema %s; this build reads %s", files[f],
                         report_str(rec, "schema"), RECORD_SCHEMA);
                rc = -1;
                break;
            }
            const char *id = report_str(rec, "point_id");
            const json_t *at = json_object_get(where, id);
            if (!at) {
                json_object_set_new(where, id, json_integer((json_int_t)json_array_size(*records)));
                json_array_append(*records, rec);
            } else {
                const size_t pos = (size_t)json_integer_value(at);
                if (replaces(json_array_get(*records, pos), rec, files[f], quiet))
                    json_array_set(*records, pos, rec);
            }
        }
        record_file_free(&rf);
    }
    json_decref(where);
    if (rc) {
        json_decref(*records);
        *records = NULL;
    }
    return rc;
}

int report_load(int nfiles, char **files, json_t **records, char *err, size_t errlen)
{
    return report_merge(nfiles, files, false, nfiles == 1, records, err, errlen);
}

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

int report_write_records(const char *path, json_t *records)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *out = fopen(tmp, "w");
    if (!out)
        return -1;
    size_t i;
    json_t *rec;
    json_array_foreach(records, i, rec)
        record_print_json(out, rec);
    int bad = ferror(out);
    bad |= fflush(out) != 0 || fsync(fileno(out)) != 0;
    bad |= fclose(out);
    if (bad || rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
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
        ok += is_ok(rec);
    fprintf(stderr, "attnbench merge: %zu points (%zu ok) from %d files into %s\n",
            json_array_size(records), ok, argc - optind, out);
    json_decref(records);
    return 0;
}
