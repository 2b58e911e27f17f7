/* records.c: see records.h. The merge rule is the one `report`, `check` and `attnbench merge`
 * share: shards of a sweep (or a point measured again) come together by point_id; an ok record
 * wins over one that did not measure; of two ok records the newer (context.date) wins, with a
 * warning, since a point measured twice is worth knowing of. */
#include "records.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../bench/record/record.h"
#include "../bench/sys/cli.h"

double report_num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

const char *report_str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

const char *report_dtype(const json_t *rec)
{
    const char *t = json_string_value(json_object_get(rec, "dtype"));
    return t ? t : "fp32"; /* records from before bf16 were all fp32 */
}

const json_t *report_path(const json_t *rec, const char *path)
{
    char part[64];
    while (rec && *path) {
        const size_t len = strcspn(path, ".");
        snprintf(part, sizeof part, "%.*s", (int)len, path);
        rec = json_object_get(rec, part);
        path += len + (path[len] == '.');
    }
    return rec;
}

bool report_is_ok(const json_t *rec)
{
    return strcmp(report_str(rec, "status"), "ok") == 0;
}

bool report_is_busy(const json_t *rec)
{
    return json_is_true(report_path(rec, "machine_load.busy"));
}

double report_sgemm_share(const json_t *rec)
{
    const double threads = report_num(rec, "threads");
    size_t i;
    const json_t *y;
    json_array_foreach(report_path(rec, "context.yardstick.sgemm"), i, y)
        if (report_num(y, "threads") == threads)
            return report_num(rec, "gflops") / report_num(y, "gflops_median");
    return NAN;
}

void report_fmt_bytes(double v, char *buf, size_t size)
{
    if (!isfinite(v))
        buf[0] = '\0';
    else
        record_bytes(v, buf, size);
}

void report_fmt_seconds(double s, char *buf, size_t size)
{
    if (isnan(s))
        snprintf(buf, size, "n/a");
    else if (s < 120)
        snprintf(buf, size, "%.3g s", s);
    else if (s < 2 * 3600)
        snprintf(buf, size, "%.3g min", s / 60);
    else if (s < 2 * 86400)
        snprintf(buf, size, "%.3g h", s / 3600);
    else
        snprintf(buf, size, "%.3g days", s / 86400);
}

static const char *date_of(const json_t *rec)
{
    return report_str(json_object_get(rec, "context"), "date");
}

/* Whether `rec` replaces `old`, the record of the same point seen before it. */
static bool replaces(const json_t *old, const json_t *rec, const char *file, bool quiet)
{
    if (report_is_ok(old) != report_is_ok(rec))
        return report_is_ok(rec);
    if (!report_is_ok(rec))
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
