/* tables.h: the measured tables, each written as markdown from records. report.md and the
 * generated blocks of the docs (docs.c) call the same writers, so a number in the docs is a
 * number of the report, computed the same way from the same files.
 *
 * A table takes the records (already filtered), their series and its options; it writes
 * nothing when the records hold nothing for it. */
#ifndef REPORT_TABLES_H
#define REPORT_TABLES_H

#include <jansson.h>
#include <stdio.h>

#include "series.h"

typedef struct report_data {
    json_t *records;         /* in report order */
    report_series *s;        /* the records' series by n */
    int ns;
    double fit_from;         /* smallest n of the fits */
    /* options; a table that needs one it was not given says so */
    json_t *reference;       /* compare-*: the reference run's records */
    const char *columns;     /* points: comma-separated column names */
    const char *mechanism;   /* peers: only this mechanism's pairs */
    int largest_only;        /* peers: one row per pair, at the largest n both measured */
    const char *metric;      /* fits: only this fitted metric (peak_rss, point_rss, ...) */
} report_data;

/* The spread of a point's repetitions, (slowest - fastest) / median, above which the tables
 * mark it: the median still stands, but the point was not timed steadily. */
#define REPORT_LARGE_SPREAD 0.10

/* Takes records (consumed) into d in report order, with their series; options zeroed. */
void report_data_init(report_data *d, json_t *records, double fit_from);
void report_data_free(report_data *d);

typedef struct report_table {
    const char *name;
    const char *summary;
    /* Writes the table. Returns 0, or -1 with one line in err (a missing option, an unknown
     * column). */
    int (*write)(FILE *md, const report_data *d, char *err, size_t errlen);
} report_table;

/* The table of that name, or NULL. */
const report_table *report_table_find(const char *name);
/* Every table, for --help and messages. */
const report_table *report_tables(size_t *count);

/* The writers (tables.c, table_fits.c, table_points.c, table_peers.c, table_capacity.c). */
int table_machine(FILE *md, const report_data *d, char *err, size_t errlen);
int table_record(FILE *md, const report_data *d, char *err, size_t errlen);
int table_not_measured(FILE *md, const report_data *d, char *err, size_t errlen);
int table_exponents(FILE *md, const report_data *d, char *err, size_t errlen);
int table_crossovers(FILE *md, const report_data *d, char *err, size_t errlen);
int table_depth(FILE *md, const report_data *d, char *err, size_t errlen);
int table_compare_fits(FILE *md, const report_data *d, char *err, size_t errlen);
int table_fits(FILE *md, const report_data *d, char *err, size_t errlen);
int table_series(FILE *md, const report_data *d, char *err, size_t errlen);
int table_points(FILE *md, const report_data *d, char *err, size_t errlen);
int table_work(FILE *md, const report_data *d, char *err, size_t errlen);
int table_harness(FILE *md, const report_data *d, char *err, size_t errlen);
int table_compare_context(FILE *md, const report_data *d, char *err, size_t errlen);
int table_compare_points(FILE *md, const report_data *d, char *err, size_t errlen);
int table_peers(FILE *md, const report_data *d, char *err, size_t errlen);
int table_peer_context(FILE *md, const report_data *d, char *err, size_t errlen);
int table_compare_summary(FILE *md, const report_data *d, char *err, size_t errlen);
int table_ranks(FILE *md, const report_data *d, char *err, size_t errlen);
int table_ring_model(FILE *md, const report_data *d, char *err, size_t errlen);
int table_capacity(FILE *md, const report_data *d, char *err, size_t errlen);
int table_million(FILE *md, const report_data *d, char *err, size_t errlen);
int table_capacity_verified(FILE *md, const report_data *d, char *err, size_t errlen);

/* The column names `points` takes, comma-separated, for --help. */
void table_points_columns(FILE *f);

/* Shared formatting: a fit as "1.99 ± 0.01 (R² 0.999)", "n/a" or "(2 points)"; n as 2^k when
 * it is a power of two, else the integer; a short commit. */
void table_fmt_fit(fit_result f, char *buf, size_t size);
void table_fmt_n(double n, char *buf, size_t size);

#endif
