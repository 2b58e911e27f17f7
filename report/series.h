/* series.h: records grouped into series (the same point but for n, or for the depth L), in the
 * one order every table, plot and CSV row follows, and the power-law fits of a series' metrics. */
#ifndef REPORT_SERIES_H
#define REPORT_SERIES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "fit.h"

/* Records that are the same point but for x (n, or layers), sorted by x. */
typedef struct report_series {
    char key[1024];   /* the point key without x */
    char method[64];
    char label[256];  /* the method, plus what sets this series apart from the method's first */
    json_t *points;   /* array of records */
} report_series;

/* Groups records by x ("n" or "layers"; for "layers" only training records) into *out, in
 * report order: ours before the peers, exact attention, its approximations, training steps,
 * then by key in natural order (radius=8 before radius=32). The order depends on the series
 * alone, so merged shards report exactly as the sweep run in one piece. Returns the count;
 * free with report_series_free. */
int report_series_make(json_t *records, const char *xfield, report_series **out);
void report_series_free(report_series *s, int count);
/* The records in report order, series by series, each by n. Consumes records. */
json_t *report_in_order(json_t *records);

/* What a series measures: "exact attention" (full, full_stream and the programs implementing
 * them), "lsh", "block_sparse", "etc", or "training step". */
const char *report_mechanism(const report_series *s);
/* An external program's series (method ext:NAME). */
bool report_is_peer(const report_series *s);
/* Measured at the same shape: d, heads, batch, threads, depth, causal, forward or forward +
 * backward, one forward or a training step of the same stack. Only like meets like. */
bool report_same_shape(const report_series *a, const report_series *b);
/* The first ok record of a series, or NULL. */
const json_t *report_first_ok(const report_series *s);

/* A metric of one record; ctx is the metric's own (a field name, say). */
typedef double (*report_metric)(const json_t *rec, const void *ctx);
double report_metric_field(const json_t *rec, const void *field); /* report_num(rec, field) */
/* Peak RSS less the process's own pages before the inputs existed, and less the code pages it
 * first ran after them (rss_file_growth_bytes, when the record has it): what the point added. */
double report_metric_point_rss(const json_t *rec, const void *ctx);
/* Peak RSS less the weights and gradients: what a training step keeps beyond its parameters. */
double report_metric_activation(const json_t *rec, const void *ctx);

/* The (x, y) of a series' ok points whose metric is finite and positive, in x order: *x and *y
 * are allocated (owned by the caller, freed even when empty). Returns the count. */
size_t report_series_xy(const report_series *s, const char *xfield, report_metric metric,
                        const void *ctx, double **x, double **y);

/* The fitted metrics, in the order of the exponent table: peak_rss, point_rss, heap_peak, time. */
typedef struct report_fit_metric {
    const char *name;    /* as fits.csv and `check --metric exponent:NAME` name it */
    report_metric metric;
    const char *field;   /* the metric's ctx */
} report_fit_metric;
extern const report_fit_metric report_fit_metrics[];
extern const size_t report_fit_metric_count;
enum { REPORT_FIT_PEAK_RSS, REPORT_FIT_POINT_RSS, REPORT_FIT_HEAP_PEAK, REPORT_FIT_TIME };

/* What a fit stands on, beside the fit itself. */
typedef struct report_fit_note {
    size_t busy_excluded; /* ok points timed on a busy machine, left out of a time fit */
    double b_theil_sen;   /* the median pairwise slope over the same points (NAN: none) */
    bool reliable;        /* enough quiet points, R² and standard error within bounds */
    char reason[200];     /* why not, when not reliable */
} report_fit_note;

/* A fit is reliable with at least this many points, R² at least this, and b's standard error
 * at most this (two of them, the ±0.1 a reader would call a different exponent). */
#define REPORT_FIT_MIN_POINTS 3
#define REPORT_FIT_MIN_R2 0.99
#define REPORT_FIT_MAX_SE 0.05

/* The power law metric ~ a n^b over a series' ok points. Fixed costs (the process, the
 * allocator) dominate small n, so it fits the tail n >= n_from, and at least the three largest
 * points. A time fit leaves out the points timed on a busy machine (memory does not care about
 * load). note (may be NULL) receives what the fit stands on and whether it is reliable. */
fit_result report_fit(const report_series *s, const report_fit_metric *m, double n_from,
                      report_fit_note *note);
/* The same by name. Returns 0, or -1 for an unknown metric name. */
int report_fit_metric_named(const report_series *s, const char *metric, double n_from,
                            fit_result *out, report_fit_note *note);
/* The default n_from of the fits. */
#define REPORT_FIT_FROM 16384

#endif
