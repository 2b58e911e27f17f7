/* report.h: what report.c and check.c share: loading results files (merging shards by
 * point_id) and grouping records into series. */
#ifndef REPORT_REPORT_H
#define REPORT_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "fit.h"

/* A field as a number (NAN when missing or null) or as a string ("" when missing). */
double report_num(const json_t *o, const char *key);
const char *report_str(const json_t *o, const char *key);

/* Loads results files into one array, one record per point_id (merge.c): an ok record over
 * one that did not measure, the newer of two ok ones (a warning when several files are read).
 * A torn last line is left out with a warning. Returns 0, or -1 with one line in err (a file
 * missing or not ours). */
int report_load(int nfiles, char **files, json_t **records, char *err, size_t errlen);
/* The same with `strict`: a torn line or a record of another schema is an error (merge
 * refuses to write a whole from broken parts); `quiet`: no warning on points measured twice. */
int report_merge(int nfiles, char **files, bool strict, bool quiet, json_t **records, char *err,
                 size_t errlen);
/* Writes records as a results file, whole: a temporary file, fsynced, renamed over path.
 * Returns 0 or -1 with errno. */
int report_write_records(const char *path, json_t *records);

/* Records that are the same point but for x (n, or layers), sorted by x. */
typedef struct report_series_t {
    char key[1024];   /* the point key without x */
    char method[64];
    char label[256];  /* the method, plus what sets this series apart from the method's first */
    json_t *points;   /* array of records */
} report_series_t;

int report_series(json_t *records, const char *xfield, report_series_t **out);
void report_series_free(report_series_t *s, int count);

/* The scaling exponent of one metric of a series ("peak_rss", "point_rss", "heap_peak" or
 * "time"), fitted as report.md and fits.csv fit it: over n >= n_from, or the three largest
 * points. Returns 0, or -1 for an unknown metric name. */
int report_fit_metric(const report_series_t *s, const char *metric, double n_from, fit_result *out);
/* The default n_from of the fits. */
#define REPORT_FIT_FROM 16384

/* Writes results.csv: one row per record, fixed columns, empty cells where a value is
 * missing. Returns 0 or -1 with err. */
int report_write_csv(const char *path, json_t *records, char *err, size_t errlen);

/* check: parses one --metric "NAME:rtol=5%,atol=1MiB" or "NAME:off" into the gates. Returns 0
 * or CLI_EUSAGE after one line. */
int check_parse_metric(const char *spec);
/* check: compares current records with the baseline's point by point (table on stdout,
 * problems on stderr). Returns the exit status: 0 within tolerance, 1 a regression, 2
 * incomplete. The file names are for messages. */
int check_compare(json_t *base, json_t *cur, const char *baseline, const char *current);

#endif
