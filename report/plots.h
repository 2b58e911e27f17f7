/* plots.h: the report's plots. Each draws through plot.h into DIR (PNG, SVG, its gnuplot
 * script and data) and writes its image and caption into report.md, or a line saying why there
 * is no plot; a plot that failed counts in *failures. */
#ifndef REPORT_PLOTS_H
#define REPORT_PLOTS_H

#include <jansson.h>
#include <stdio.h>

#include "series.h"

/* One metric (a record field) over n for every series that has points; ybytes: binary-prefix
 * ticks; guides: dashed n and n^2 lines; logy: the y axis' log base or 0; with_model adds the
 * points that were not run at the bytes their model needed. */
typedef struct plots_metric_spec {
    const char *name, *title, *ylabel, *field, *yformat;
    int ybytes, guides, logy, with_model;
} plots_metric_spec;
void plots_metric(const char *dir, FILE *md, const report_series *s, int ns,
                  const plots_metric_spec *spec, int *failures);
/* The time plot's title: what its points timed (a forward, forward + backward, a step). */
const char *plots_time_title(json_t *records);
/* Counters per token: every PAPI counter some point counted, else getrusage's. */
void plots_counters(const char *dir, FILE *md, const report_series *s, int ns, json_t *records,
                    int *failures);
/* Query-key scores per token as the kernels counted them. Returns 0 when no point counted. */
int plots_scores(const char *dir, FILE *md, const report_series *s, int ns, int *failures);
/* Accuracy (the whole output's relative error, the exact mass recalled) against the work done,
 * per method and inputs, and LSH's share of duplicate candidates against n_hashes. */
void plots_lsh(const char *dir, FILE *md, json_t *records, int *failures);
/* Activation memory against depth, for series over several L. */
void plots_layers(const char *dir, FILE *md, json_t *records, int *failures);
/* Removes the plots an earlier report wrote into dir, so none outlives its data. */
void plots_remove_old(const char *dir);

#endif
