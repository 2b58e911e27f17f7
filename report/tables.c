/* tables.c: the registry of tables, the data they share, and the tables about the run rather
 * than its measurements: which machine and build (machine), one record as `run` prints it
 * (record), and the points that were not measured. */
#include "tables.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../bench/record/record.h"
#include "records.h"

static const report_table tables[] = {
    {"machine", "which machine and build measured the records", table_machine},
    {"exponents", "the scaling exponent of each metric per series", table_exponents},
    {"fits", "every fit: least squares and Theil-Sen, points, busy left out, reliable "
     "(metric=NAME: one metric)", table_fits},
    {"series", "per series, every point: time, GFLOP/s, memory, model, load", table_series},
    {"points", "selected records, one row each, columns=NAME,... (see --help)", table_points},
    {"crossovers", "from which n each approximate method is cheaper than exact", table_crossovers},
    {"depth", "training steps against depth: activation memory and bytes per layer", table_depth},
    {"work", "the scores the kernels counted against the model's", table_work},
    {"harness", "the harness's own memory and the probes' share of the timed time", table_harness},
    {"peers", "ours beside the external programs: time and memory ratios", table_peers},
    {"peer-context", "what each peer reported of itself: versions, threads, kernels",
     table_peer_context},
    {"ranks", "ring points over MPI ranks: memory, bytes sent and waiting per rank", table_ranks},
    {"ring-model", "ring attention on a cluster, from the measured rate", table_ring_model},
    {"capacity", "the longest n of each series in this machine's memory, 16 GiB, 80 GiB, 1 TiB",
     table_capacity},
    {"million", "what n = 2^20 takes: one head, and a 12-layer 16-head model's training step",
     table_million},
    {"capacity-verified", "capacity --verify: predicted against measured at the boundary",
     table_capacity_verified},
    {"compare-context", "the machines of two runs side by side (reference=FILE)",
     table_compare_context},
    {"compare-points", "two runs point by point: time and memory ratios (reference=FILE)",
     table_compare_points},
    {"compare-fits", "two runs' exponents side by side (reference=FILE)", table_compare_fits},
    {"compare-summary", "two runs in a line: points in both, statuses, median ratios "
     "(reference=FILE)", table_compare_summary},
    {"not-measured", "the points that were not measured, and why", table_not_measured},
    {"record", "one record as `attnbench run` prints it", table_record},
};

const report_table *report_table_find(const char *name)
{
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        if (strcmp(tables[i].name, name) == 0)
            return &tables[i];
    return NULL;
}

const report_table *report_tables(size_t *count)
{
    *count = sizeof tables / sizeof tables[0];
    return tables;
}

void report_data_init(report_data *d, json_t *records, double fit_from)
{
    memset(d, 0, sizeof *d);
    d->records = report_in_order(records);
    d->ns = report_series_make(d->records, "n", &d->s);
    d->fit_from = fit_from;
}

void report_data_free(report_data *d)
{
    report_series_free(d->s, d->ns);
    json_decref(d->records);
    d->s = NULL;
    d->records = NULL;
}

void table_fmt_fit(fit_result f, char *buf, size_t size)
{
    if (!f.ok)
        snprintf(buf, size, "n/a");
    else if (isnan(f.se_b))
        snprintf(buf, size, "%.2f (2 points)", f.b);
    else
        snprintf(buf, size, "%.2f ± %.2f (R² %.3f)", f.b, f.se_b, f.r2);
}

void table_fmt_n(double n, char *buf, size_t size)
{
    const double e = log2(n);
    if (n >= 1024 && e == floor(e))
        snprintf(buf, size, "2^%.0f", e);
    else
        snprintf(buf, size, "%.0f", n);
}

/* ---- machine ------------------------------------------------------------------------------- */

/* What tells one machine and build from another, as one line. */
static void describe_machine(const json_t *ctx, char *buf, size_t size)
{
    char mem[32], cpu[160] = "", isa[64] = "";
    report_fmt_bytes(report_num(ctx, "mem_total_bytes"), mem, sizeof mem);
    snprintf(cpu, sizeof cpu, "%s", report_str(ctx, "cpu_model"));
    if (isfinite(report_num(ctx, "cpu_family")))
        snprintf(cpu + strlen(cpu), sizeof cpu - strlen(cpu), " (family %.0f, model %.0f)",
                 report_num(ctx, "cpu_family"), report_num(ctx, "cpu_model_number"));
    if (*report_str(ctx, "kernel_isa"))
        snprintf(isa, sizeof isa, ", attnbench's %s kernels", report_str(ctx, "kernel_isa"));
    const char *commit = report_str(ctx, "git_commit");
    snprintf(buf, size, "%s, %.0f cores, %s; OpenBLAS %s kernels%s; %s; commit %.7s%s", cpu,
             report_num(ctx, "cores"), mem, report_str(ctx, "openblas_core"), isa,
             report_str(ctx, "compiler"), *commit ? commit : "unknown",
             json_is_true(json_object_get(ctx, "git_dirty")) ? " with uncommitted changes" : "");
}

int table_machine(FILE *md, const report_data *d, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    /* machine line -> {count, first date, last date, methods} in order of first appearance */
    json_t *groups = json_object(), *order = json_array();
    size_t i;
    json_t *rec;
    json_array_foreach(d->records, i, rec)
    {
        const json_t *ctx = json_object_get(rec, "context");
        char line[1024];
        describe_machine(ctx, line, sizeof line);
        json_t *g = json_object_get(groups, line);
        if (!g) {
            g = json_pack("{s:i, s:s, s:s, s:o}", "count", 0, "first", "", "last", "", "methods",
                          json_object());
            json_object_set_new(groups, line, g);
            json_array_append_new(order, json_string(line));
        }
        json_object_set_new(g, "count", json_integer(json_integer_value(json_object_get(g, "count")) + 1));
        char day[16];
        snprintf(day, sizeof day, "%.10s", report_str(ctx, "date"));
        if (!*report_str(g, "first") || strcmp(day, report_str(g, "first")) < 0)
            json_object_set_new(g, "first", json_string(day));
        if (strcmp(day, report_str(g, "last")) > 0)
            json_object_set_new(g, "last", json_string(day));
        json_object_set_new(json_object_get(g, "methods"), report_str(rec, "method"), json_true());
    }
    const size_t ng = json_array_size(order);
    for (size_t k = 0; k < ng; k++) {
        const char *line = json_string_value(json_array_get(order, k));
        const json_t *g = json_object_get(groups, line);
        char dates[40];
        if (strcmp(report_str(g, "first"), report_str(g, "last")) == 0)
            snprintf(dates, sizeof dates, "%s", report_str(g, "first"));
        else
            snprintf(dates, sizeof dates, "%s to %s", report_str(g, "first"), report_str(g, "last"));
        if (ng == 1) {
            fprintf(md, "Measured on %s; %s.\n", line, dates);
            continue;
        }
        if (k == 0)
            fprintf(md, "Measured on %zu machines or builds:\n\n", ng);
        fprintf(md, "- %.0f points (", report_num(g, "count"));
        const char *m;
        json_t *v;
        int first = 1;
        json_object_foreach(json_object_get(g, "methods"), m, v)
        {
            fprintf(md, "%s%s", first ? "" : ", ", m);
            first = 0;
        }
        fprintf(md, "): %s; %s.\n", line, dates);
    }
    json_decref(order);
    json_decref(groups);
    return 0;
}

/* ---- record -------------------------------------------------------------------------------- */

int table_record(FILE *md, const report_data *d, char *err, size_t errlen)
{
    const size_t n = json_array_size(d->records);
    if (n != 1) {
        snprintf(err, errlen, "the selection holds %zu records; a record table shows one", n);
        return -1;
    }
    fprintf(md, "```\n");
    record_print_table(md, json_array_get(d->records, 0));
    fprintf(md, "```\n");
    return 0;
}

/* ---- not measured -------------------------------------------------------------------------- */

int table_not_measured(FILE *md, const report_data *d, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    size_t i, count = 0;
    json_t *rec;
    json_array_foreach(d->records, i, rec)
    {
        if (report_is_ok(rec))
            continue;
        if (!count++)
            fprintf(md, "| point | status | reason |\n|---|---|---|\n");
        fprintf(md, "| %s n=%.0f | %s | %s |\n", report_str(rec, "method"), report_num(rec, "n"),
                report_str(rec, "status"), report_str(rec, "reason"));
    }
    if (!count)
        fprintf(md, "Every point was measured (status ok).\n");
    return 0;
}
