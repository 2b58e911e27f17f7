/* report.h: what report.c and check.c share: loading results files (merging shards by
 * point_id) and grouping records into series. */
#ifndef REPORT_REPORT_H
#define REPORT_REPORT_H

#include <jansson.h>
#include <stddef.h>

/* A field as a number (NAN when missing or null) or as a string ("" when missing). */
double report_num(const json_t *o, const char *key);
const char *report_str(const json_t *o, const char *key);

/* Loads results files into one array; a later record of the same point_id replaces an
 * earlier one. Returns 0, or -1 with one line in err (a file missing or not ours). */
int report_load(int nfiles, char **files, json_t **records, char *err, size_t errlen);

/* Records that are the same point but for x (n, or layers), sorted by x. */
typedef struct report_series_t {
    char key[1024];   /* the point key without x */
    char method[64];
    char label[256];  /* the method, plus what sets this series apart from the method's first */
    json_t *points;   /* array of records */
} report_series_t;

int report_series(json_t *records, const char *xfield, report_series_t **out);
void report_series_free(report_series_t *s, int count);

#endif
