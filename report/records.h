/* records.h: results records as report/ reads them: fields by name or dotted path, the
 * statuses a table needs, and results files loaded into one array, one record per point_id.
 * The record's format is bench/record.h's; this is the reading side of it. */
#ifndef REPORT_RECORDS_H
#define REPORT_RECORDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* A field as a number (NAN when missing or null) or as a string ("" when missing). */
double report_num(const json_t *o, const char *key);
const char *report_str(const json_t *o, const char *key);
/* How a record's tensors were stored: its dtype, "fp32" for records that predate the field. */
const char *report_dtype(const json_t *rec);
/* The value at a dotted path ("machine_load.busy"), or NULL. */
const json_t *report_path(const json_t *rec, const char *path);
/* status ok; timed while other processes used the machine (machine_load.busy). */
bool report_is_ok(const json_t *rec);
bool report_is_busy(const json_t *rec);
/* The record's GFLOP/s as a share of the sgemm yardstick its sweep measured at the same thread
 * count (context.yardstick, bench/measure/yardstick.h); NAN when it carries none. */
double report_sgemm_share(const json_t *rec);
/* A byte count with a binary unit ("31.2 MiB"); "" for NAN. */
void report_fmt_bytes(double v, char *buf, size_t size);
/* A duration in the unit a reader takes in at once ("0.131 s", "3.2 min", "6.9 h", "24.5
 * days"); "n/a" for NAN. */
void report_fmt_seconds(double s, char *buf, size_t size);

/* Loads results files into one array, one record per point_id: an ok record over one that
 * did not measure, the newer of two ok ones (a warning when several files are read). A torn
 * last line is left out with a warning. Returns 0, or -1 with one line in err (a file missing
 * or not ours). */
int report_load(int nfiles, char **files, json_t **records, char *err, size_t errlen);
/* The same with `strict`: a torn line or a record of another schema is an error (merge
 * refuses to write a whole from broken parts); `quiet`: no warning on points measured twice. */
int report_merge(int nfiles, char **files, bool strict, bool quiet, json_t **records, char *err,
                 size_t errlen);
/* Writes records as a results file, whole: a temporary file, fsynced, renamed over path.
 * Returns 0 or -1 with errno. */
int report_write_records(const char *path, json_t *records);

#endif
