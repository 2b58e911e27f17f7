/* report.c: `attnbench report RESULTS.jsonl... --out DIR`.
 *
 * Reads results files (never attn/), groups the records into series (the same point but for
 * n), fits the scaling exponent of peak RSS, heap peak and time per series, draws the plots
 * through gnuplot, and writes DIR/report.md and DIR/results.csv. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../bench/cli.h"
#include "../bench/commands.h"
#include "../bench/point.h"
#include "../bench/record.h"
#include "fit.h"
#include "plot.h"
#include "report.h"

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

/* ---- series ------------------------------------------------------------------------------ */

/* The series key: the point key without the token of its x axis ("n=..." or "layers=..."). */
/* A key's tokens ("k=v;..." with params split on commas) that a label never shows: the
 * method is the label's start, and a training point's stack and depth are written out. */
static int label_hides(const char *token)
{
    static const char *const hidden[] = {"method=", "train=", "layers=", "label="};
    for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++)
        if (strncmp(token, hidden[i], strlen(hidden[i])) == 0)
            return 1;
    return 0;
}

/* Appends to buf the tokens of key a that key b does not have. */
static void append_differences(const char *a, const char *b, char *buf, size_t size)
{
    char ta[1024];
    snprintf(ta, sizeof ta, "%s", a);
    for (char *s1, *t = strtok_r(ta, ";,", &s1); t; t = strtok_r(NULL, ";,", &s1)) {
        if (strncmp(t, "params=", 7) == 0)
            t += 7;
        int found = 0;
        char tb[1024];
        snprintf(tb, sizeof tb, "%s", b);
        for (char *s2, *u = strtok_r(tb, ";,", &s2); u && !found; u = strtok_r(NULL, ";,", &s2))
            found = strcmp(strncmp(u, "params=", 7) == 0 ? u + 7 : u, t) == 0;
        if (!found && !label_hides(t)) {
            size_t len = strlen(buf);
            snprintf(buf + len, size - len, " %s", t);
        }
    }
}

/* A series' points in order of xfield (file order among equal x). */
typedef struct by_x {
    double x;
    size_t order;
    json_t *rec;
} by_x;

static int cmp_by_x(const void *a, const void *b)
{
    const by_x *p = a, *q = b;
    if (p->x != q->x)
        return (p->x > q->x) - (p->x < q->x);
    return (p->order > q->order) - (p->order < q->order);
}

static void sort_points(report_series_t *s, const char *xfield)
{
    size_t np = json_array_size(s->points);
    by_x *arr = malloc((np + 1) * sizeof *arr);
    for (size_t j = 0; j < np; j++) {
        json_t *r = json_array_get(s->points, j);
        arr[j] = (by_x){.x = report_num(r, xfield), .order = j, .rec = r};
    }
    qsort(arr, np, sizeof *arr, cmp_by_x);
    json_t *sorted = json_array();
    for (size_t j = 0; j < np; j++)
        json_array_append(sorted, arr[j].rec);
    json_decref(s->points);
    s->points = sorted;
    free(arr);
}

static const char *mechanism(const report_series_t *s);
static int is_peer(const report_series_t *s);

/* Where a series' mechanism comes in the report: exact attention, the methods that approximate
 * it, training steps. */
static int mechanism_rank(const report_series_t *s)
{
    const char *m = mechanism(s);
    return strcmp(m, "exact attention") == 0 ? 0 : strcmp(m, "training step") == 0 ? 2 : 1;
}

/* The series' order in tables and plots: ours before the peers, by mechanism, then by key. It
 * depends on the series alone, never on the order of the records, so the shards of a sweep
 * merged in any order report exactly as the sweep run in one piece. */
static int cmp_series(const void *a, const void *b)
{
    const report_series_t *p = a, *q = b;
    if (is_peer(p) != is_peer(q))
        return is_peer(p) - is_peer(q);
    if (mechanism_rank(p) != mechanism_rank(q))
        return mechanism_rank(p) - mechanism_rank(q);
    return strverscmp(p->key, q->key); /* numbers in the key in numeric order: 8 < 32 < 256 */
}

int report_series(json_t *records, const char *xfield, report_series_t **out)
{
    size_t count = json_array_size(records), ns = 0;
    report_series_t *s = calloc(count + 1, sizeof *s);
    char key[1024];
    size_t i;
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        if (strcmp(xfield, "layers") == 0 && !json_is_number(json_object_get(rec, "layers")))
            continue;
        point_series_key(report_str(rec, "point_key"), xfield, key, sizeof key);
        size_t k = 0;
        while (k < ns && strcmp(s[k].key, key) != 0)
            k++;
        if (k == ns) {
            snprintf(s[ns].key, sizeof s[ns].key, "%s", key);
            snprintf(s[ns].method, sizeof s[ns].method, "%s", report_str(rec, "method"));
            s[ns].points = json_array();
            ns++;
        }
        json_array_append(s[k].points, rec);
    }
    for (size_t k = 0; k < ns; k++)
        sort_points(&s[k], xfield);
    qsort(s, ns, sizeof *s, cmp_series);
    for (size_t k = 0; k < ns; k++) {
        /* the label: the method (a training series: its stack, over which attention), what
         * sets the series apart from the method's first one, and the depth unless it is x */
        const json_t *r0 = json_array_get(s[k].points, 0);
        const char *stack = report_str(r0, "stack"), *inner = report_str(r0, "inner");
        if (!*stack)
            snprintf(s[k].label, sizeof s[k].label, "%s", s[k].method);
        else if (strcmp(s[k].method, inner) != 0) /* a named stack: reversible is the Reformer */
            snprintf(s[k].label, sizeof s[k].label, "%s (%s)", s[k].method, inner);
        else
            snprintf(s[k].label, sizeof s[k].label, "%s, %s stack", s[k].method, stack);
        size_t first = 0;
        while (strcmp(s[first].method, s[k].method) != 0)
            first++;
        append_differences(s[k].key, s[first].key, s[k].label, sizeof s[k].label);
        if (*stack && strcmp(xfield, "layers") != 0) {
            size_t len = strlen(s[k].label);
            snprintf(s[k].label + len, sizeof s[k].label - len, " L=%.0f", report_num(r0, "layers"));
        }
    }
    *out = s;
    return (int)ns;
}

/* The records in the report's order: series by series (cmp_series), each by n. Taking it
 * once, before anything is written, makes every table, CSV row and plot independent of the
 * order of the records in the files. Consumes records. */
static json_t *in_report_order(json_t *records)
{
    report_series_t *s;
    const int ns = report_series(records, "n", &s);
    json_t *ordered = json_array();
    for (int k = 0; k < ns; k++)
        json_array_extend(ordered, s[k].points);
    report_series_free(s, ns);
    json_decref(records);
    return ordered;
}

void report_series_free(report_series_t *s, int count)
{
    for (int k = 0; k < count; k++)
        json_decref(s[k].points);
    free(s);
}

/* ---- plots ------------------------------------------------------------------------------- */

/* Room for up to np points in ps. */
static void points_begin(plot_series *ps, size_t np)
{
    memset(ps, 0, sizeof *ps);
    ps->x = malloc((np + 1) * sizeof *ps->x);
    ps->y = malloc((np + 1) * sizeof *ps->y);
}

/* 1 when ps got points; otherwise frees it and returns 0, so callers keep only the series
 * they return 1 for. */
static int points_end(plot_series *ps)
{
    if (ps->count > 0)
        return 1;
    free(ps->x);
    free(ps->y);
    ps->x = ps->y = NULL;
    return 0;
}

/* A plot series from the ok points of a report series: x = xfield, y = f(record). */
static int series_points(const report_series_t *s, const char *xfield,
                         double (*metric)(const json_t *, const void *), const void *ctx,
                         plot_series *ps)
{
    size_t np = json_array_size(s->points);
    points_begin(ps, np);
    snprintf(ps->title, sizeof ps->title, "%s", s->label);
    for (size_t j = 0; j < np; j++) {
        const json_t *r = json_array_get(s->points, j);
        if (strcmp(report_str(r, "status"), "ok") != 0)
            continue;
        double y = metric(r, ctx);
        if (!isfinite(y) || y <= 0)
            continue;
        ps->x[ps->count] = report_num(r, xfield);
        ps->y[ps->count++] = y;
    }
    return points_end(ps);
}

static double metric_field(const json_t *r, const void *ctx)
{
    return report_num(r, ctx);
}

static double activation_bytes(const json_t *r, const void *ctx);

static double metric_counter_per_token(const json_t *r, const void *ctx)
{
    const json_t *c = json_object_get(r, "counters");
    const json_t *ru = json_object_get(r, "rusage");
    const char *name = ctx;
    double v = strncmp(name, "rusage.", 7) == 0 ? report_num(ru, name + 7) : report_num(c, name);
    return v / report_num(r, "n");
}

/* Draws the nps series (and frees their points) when one measured series has two points or
 * more, a curve against xname; otherwise says in md why there is no plot. */
static void draw(const char *dir, plot_spec *p, plot_series *ps, size_t nps, const char *xname,
                 FILE *md, const char *caption, int *failures)
{
    char err[1024];
    p->series = ps;
    p->nseries = nps;
    int curve = 0;
    for (size_t i = 0; i < nps; i++)
        curve |= !ps[i].hollow && ps[i].count >= 2;
    if (nps == 0) {
        fprintf(md, "\n_%s: no points to plot._\n", caption);
    } else if (!curve) {
        fprintf(md, "\n_%s: no series runs over several %s._\n", caption, xname);
    } else if (plot_draw(dir, p, err, sizeof err)) {
        fprintf(stderr, "attnbench report: %s\n", err);
        fprintf(md, "\n_%s: the plot failed: %s_\n", caption, err);
        (*failures)++;
    } else {
        fprintf(md, "\n![%s](%s.png)\n\n%s ([svg](%s.svg), [gnuplot script](%s.gp), [data](%s.dat))\n",
                caption, p->name, caption, p->name, p->name, p->name);
    }
    for (size_t i = 0; i < nps; i++) {
        free(ps[i].x);
        free(ps[i].y);
    }
}

/* The points of a series that were not measured (skipped, failed), at their model bytes. */
static int unmeasured_points(const report_series_t *s, plot_series *ps)
{
    points_begin(ps, json_array_size(s->points));
    ps->hollow = 1;
    snprintf(ps->title, sizeof ps->title, "%s: model bytes, not run", s->label);
    for (size_t j = 0; j < json_array_size(s->points); j++) {
        const json_t *r = json_array_get(s->points, j);
        const double model = report_num(r, "model_bytes");
        if (strcmp(report_str(r, "status"), "ok") == 0 || !(model > 0))
            continue;
        ps->x[ps->count] = report_num(r, "n");
        ps->y[ps->count++] = model;
    }
    return points_end(ps);
}

/* One plot of one metric over n for every series that has points; with_model adds the points
 * that were not run, at the bytes their model needed (what ran out of memory, and by how much). */
static void plot_metric(const char *dir, FILE *md, report_series_t *s, int ns, const char *name,
                        const char *title, const char *ylabel, const char *field, int ybytes,
                        int guides, int logy, const char *yformat, int with_model, int *failures)
{
    plot_series *ps = calloc(2 * (size_t)ns + 1, sizeof *ps);
    size_t k = 0;
    for (int i = 0; i < ns; i++) {
        if (series_points(&s[i], "n", metric_field, field, &ps[k]))
            ps[k++].color = i + 1;
        if (with_model && unmeasured_points(&s[i], &ps[k]))
            ps[k++].color = i + 1;
    }
    plot_spec p = {.name = name, .title = title, .xlabel = "sequence length n (tokens)",
                   .ylabel = ylabel, .logx = 1, .logy = logy, .yformat = yformat, .xpow2 = 1,
                   .ybytes = ybytes, .guides = guides};
    draw(dir, &p, ps, k, "n", md, title, failures);
    free(ps);
}

/* ---- the report ---------------------------------------------------------------------------- */

static void fmt_bytes(double v, char *buf, size_t size)
{
    if (!isfinite(v))
        buf[0] = '\0';
    else
        record_bytes(v, buf, size);
}

static void fmt_fit(fit_result f, char *buf, size_t size)
{
    if (!f.ok)
        snprintf(buf, size, "n/a");
    else if (isnan(f.se_b))
        snprintf(buf, size, "%.2f (2 points)", f.b);
    else
        snprintf(buf, size, "%.2f ± %.2f (R² %.3f)", f.b, f.se_b, f.r2);
}

/* peak RSS less the process's own pages before the inputs: the memory the point added */
/* Peak RSS less the process's own pages before the inputs existed: what the point added. */
static double point_rss(const json_t *r, const void *ctx)
{
    (void)ctx;
    return report_num(r, "peak_rss_bytes") - report_num(r, "rss_before_inputs_bytes");
}

/* The power law of a metric over a series' ok points. Fixed costs (the process, the allocator)
 * dominate small n, so it fits the tail n >= n_from, and at least the three largest points. */
static fit_result fit_series(const report_series_t *s,
                             double (*metric)(const json_t *, const void *), const void *ctx,
                             double n_from)
{
    plot_series ps;
    if (!series_points(s, "n", metric, ctx, &ps))
        return fit_power(NULL, NULL, 0, n_from);
    size_t above = 0;
    for (size_t j = 0; j < ps.count; j++)
        above += ps.x[j] >= n_from;
    const double from = above < 3 && ps.count >= 2 ? ps.x[ps.count >= 3 ? ps.count - 3 : 0] : n_from;
    fit_result f = fit_power(ps.x, ps.y, ps.count, from);
    free(ps.x);
    free(ps.y);
    return f;
}

static void write_context(FILE *md, const json_t *ctx, const json_t *any)
{
    fprintf(md, "## Context\n\n| | |\n|---|---|\n");
    static const char *const keys[] = {"host", "cpu_model", "cores", "mem_total_bytes", "kernel",
                                       "compiler", "cflags", "git_commit", "git_dirty",
                                       "openblas_core", "openblas_core_source", "jemalloc_version",
                                       "papi_version", "thp_enabled", "overcommit_memory",
                                       "perf_event_paranoid", "cgroup", "date"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const json_t *v = json_object_get(ctx, keys[i]);
        if (!v)
            continue;
        char *t = json_dumps(v, JSON_ENCODE_ANY);
        fprintf(md, "| %s | `%s` |\n", keys[i], t);
        free(t);
    }
    const json_t *papi = json_object_get(ctx, "papi");
    if (papi) {
        fprintf(md, "| PAPI runtime | %s, perf_event component %s, VM: %s |\n",
                report_str(papi, "version"), report_str(papi, "perf_event_component"),
                json_is_true(json_object_get(papi, "virtualized")) ? report_str(papi, "vm_vendor")
                                                                   : "no");
    }
    const json_t *un = json_object_get(any, "counters_unavailable");
    if (json_object_size(un)) {
        fprintf(md, "\nCounters that could not be counted on this machine (recorded as null, "
                    "never as 0):\n\n");
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)un, k, v)
            fprintf(md, "- `%s`: %s\n", k, json_string_value(v));
    }
}

/* results.csv's fixed columns: every value of a record that is a number, a flag or a short
 * text, by its path in the record ("rusage.cpu_s"); nested objects flatten to a_b names. */
static const struct csv_column {
    const char *name, *path;
} csv_fixed[] = {
    {"point_id", "point_id"}, {"method", "method"}, {"implements", "implements"},
    {"params", "params"}, {"n", "n"}, {"d", "d"}, {"heads", "heads"}, {"batch", "batch"},
    {"causal", "causal"}, {"threads", "threads"}, {"reps", "reps"}, {"warmup", "warmup"},
    {"seed", "seed"}, {"inputs", "inputs"}, {"backward", "backward"}, {"stack", "stack"},
    {"inner", "inner"}, {"layers", "layers"}, {"d_model", "d_model"}, {"d_ff", "d_ff"},
    {"ff_chunk", "ff_chunk"}, {"status", "status"}, {"reason", "reason"},
    {"wall_s", "wall_s"}, {"wall_s_min", "wall_s_min"}, {"wall_s_max", "wall_s_max"},
    {"gflops", "gflops"}, {"model_flops", "model_flops"},
    {"model_recompute_flops", "model_recompute_flops"}, {"model_bytes", "model_bytes"},
    {"model_io_bytes", "model_io_bytes"}, {"model_workspace_bytes", "model_workspace_bytes"},
    {"model_activation_bytes", "model_activation_bytes"}, {"param_bytes", "param_bytes"},
    {"peak_rss_bytes", "peak_rss_bytes"}, {"rss_before_inputs_bytes", "rss_before_inputs_bytes"},
    {"rss_before_kernel_bytes", "rss_before_kernel_bytes"}, {"ru_maxrss_bytes", "ru_maxrss_bytes"},
    {"heap_peak_bytes", "heap_peak_bytes"}, {"heap_kernel_alloc_bytes", "heap_kernel_alloc_bytes"},
    {"jemalloc_allocated", "jemalloc.allocated"}, {"jemalloc_active", "jemalloc.active"},
    {"jemalloc_resident", "jemalloc.resident"}, {"jemalloc_mapped", "jemalloc.mapped"},
    {"jemalloc_retained", "jemalloc.retained"}, {"jemalloc_metadata", "jemalloc.metadata"},
    {"loss", "loss"}, {"err_max_rel", "err_vs_exact.max_rel"},
    {"err_mean_rel", "err_vs_exact.mean_rel"}, {"err_reference_s", "err_vs_exact.reference_s"},
    {"cpu_s", "rusage.cpu_s"}, {"user_s", "rusage.user_s"}, {"system_s", "rusage.system_s"},
    {"minor_faults", "rusage.minor_faults"}, {"major_faults", "rusage.major_faults"},
    {"voluntary_switches", "rusage.voluntary_switches"},
    {"involuntary_switches", "rusage.involuntary_switches"},
    {"work_scores_per_token", "work.scores_per_token"}, {"work_model_scores", "work.model_scores"},
    {"work_scores_vs_model", "work.scores_vs_model"},
    {"work_duplicates_share", "work.duplicates_share"},
    {"machine_other_share", "machine_load.other_share"}, {"machine_busy", "machine_load.busy"},
    {"shard", "context.shard"}, {"cpu_model", "context.cpu_model"},
    {"git_commit", "context.git_commit"}, {"date", "context.date"},
};

/* The value at a dotted path of a record, or NULL. */
static const json_t *record_path(const json_t *rec, const char *path)
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

static void csv_cell(FILE *f, const char *text)
{
    if (strpbrk(text, ",\"\n")) {
        fputc('"', f);
        for (const char *p = text; *p; p++) {
            if (*p == '"')
                fputc('"', f);
            fputc(*p, f);
        }
        fputc('"', f);
    } else {
        fputs(text, f);
    }
}

static void csv_value(FILE *f, const json_t *v)
{
    if (!v || json_is_null(v))
        return; /* empty cell */
    if (json_is_string(v)) {
        csv_cell(f, json_string_value(v));
    } else if (json_is_object(v)) { /* params: k=v;k=v */
        char buf[1024] = "";
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            char *t = json_dumps(x, JSON_ENCODE_ANY);
            size_t len = strlen(buf);
            snprintf(buf + len, sizeof buf - len, "%s%s=%s", len ? ";" : "", k,
                     json_is_string(x) ? json_string_value(x) : t);
            free(t);
        }
        csv_cell(f, buf);
    } else if (json_is_integer(v)) {
        fprintf(f, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        fprintf(f, "%.10g", json_real_value(v));
    } else if (json_is_boolean(v)) {
        fputs(json_is_true(v) ? "true" : "false", f);
    }
}

/* The set (an object of name: true) of the PAPI counters the records name; with counted_only,
 * only those some record counted (a number, not null). */
static json_t *counter_names(json_t *records, int counted_only)
{
    json_t *names = json_object();
    size_t i;
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(rec, "counters"), k, v)
            /* attn's own work counters have their section (write_work) */
            if ((!counted_only || json_is_number(v)) && strncmp(k, "sde:::attn::", 12) != 0)
                json_object_set_new(names, k, json_true());
    }
    return names;
}

int report_write_csv(const char *path, json_t *records, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, errlen, "%.900s: %s", path, strerror(errno));
        return -1;
    }
    /* every counter any record has, as extra fixed columns (empty where unavailable) */
    json_t *counters = counter_names(records, 0);
    size_t i;
    json_t *rec;
    const size_t nfixed = sizeof csv_fixed / sizeof csv_fixed[0];
    for (size_t c = 0; c < nfixed; c++)
        fprintf(f, "%s%s", c ? "," : "", csv_fixed[c].name);
    const char *k;
    json_t *v;
    json_object_foreach(counters, k, v)
    {
        fputc(',', f);
        csv_cell(f, k);
    }
    fputc('\n', f);
    json_array_foreach(records, i, rec)
    {
        for (size_t c = 0; c < nfixed; c++) {
            if (c)
                fputc(',', f);
            csv_value(f, record_path(rec, csv_fixed[c].path));
        }
        json_object_foreach(counters, k, v)
        {
            fputc(',', f);
            csv_value(f, json_object_get(json_object_get(rec, "counters"), k));
        }
        fputc('\n', f);
    }
    json_decref(counters);
    if (fclose(f) != 0) {
        snprintf(err, errlen, "%.900s: write failed", path);
        return -1;
    }
    return 0;
}

/* The fitted metrics, in the order of report.md's exponent table. */
static const struct fit_metric {
    const char *name, *field; /* field NULL: point RSS */
} fit_metrics[] = {
    {"peak_rss", "peak_rss_bytes"},
    {"point_rss", NULL},
    {"heap_peak", "heap_peak_bytes"},
    {"time", "wall_s"},
};

static fit_result fit_metric_of(const report_series_t *s, const struct fit_metric *m, double n_from)
{
    return m->field ? fit_series(s, metric_field, m->field, n_from)
                    : fit_series(s, point_rss, NULL, n_from);
}

int report_fit_metric(const report_series_t *s, const char *metric, double n_from, fit_result *out)
{
    for (size_t m = 0; m < sizeof fit_metrics / sizeof fit_metrics[0]; m++)
        if (strcmp(fit_metrics[m].name, metric) == 0) {
            *out = fit_metric_of(s, &fit_metrics[m], n_from);
            return 0;
        }
    return -1;
}

static json_t *real_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* DIR/fits.csv and DIR/fits.json: one row per series and metric (the exponent b of
 * metric ~ a n^b, its standard error, a, R^2, the points and n range fitted), for plotting
 * tools and gates. A metric a series cannot fit (fewer than two points) has empty cells. */
static int write_fits(const char *dir, report_series_t *s, int ns, double n_from)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/fits.csv", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    json_t *all = json_array();
    fprintf(f, "series,method,series_key,metric,b,se_b,a,r2,points,n_min,n_max\n");
    for (int k = 0; k < ns; k++) {
        for (size_t m = 0; m < sizeof fit_metrics / sizeof fit_metrics[0]; m++) {
            const fit_result fr = fit_metric_of(&s[k], &fit_metrics[m], n_from);
            csv_cell(f, s[k].label);
            fputc(',', f);
            csv_cell(f, s[k].method);
            fputc(',', f);
            csv_cell(f, s[k].key);
            fprintf(f, ",%s", fit_metrics[m].name);
            json_t *row = json_pack("{s:s, s:s, s:s, s:s}", "series", s[k].label, "method",
                                    s[k].method, "series_key", s[k].key, "metric",
                                    fit_metrics[m].name);
            if (fr.ok) {
                fprintf(f, ",%.6g,", fr.b);
                if (isfinite(fr.se_b))
                    fprintf(f, "%.6g", fr.se_b);
                fprintf(f, ",%.6g,%.6g,%zu,%.0f,%.0f\n", fr.a, fr.r2, fr.k, fr.n_min, fr.n_max);
            } else {
                fprintf(f, ",,,,,,,\n");
            }
            json_object_set_new(row, "b", fr.ok ? json_real(fr.b) : json_null());
            json_object_set_new(row, "se_b", fr.ok ? real_or_null(fr.se_b) : json_null());
            json_object_set_new(row, "a", fr.ok ? json_real(fr.a) : json_null());
            json_object_set_new(row, "r2", fr.ok ? real_or_null(fr.r2) : json_null());
            json_object_set_new(row, "points", json_integer(fr.ok ? (json_int_t)fr.k : 0));
            json_object_set_new(row, "n_min", fr.ok ? json_real(fr.n_min) : json_null());
            json_object_set_new(row, "n_max", fr.ok ? json_real(fr.n_max) : json_null());
            json_array_append_new(all, row);
        }
    }
    int rc = fclose(f) == 0 ? 0 : -1;
    snprintf(path, sizeof path, "%s/fits.json", dir);
    if (json_dump_file(all, path, JSON_INDENT(1)) != 0)
        rc = -1;
    json_decref(all);
    return rc;
}

/* ---- crossovers: from which n a sparse method is cheaper than exact attention ------------- */

/* Whether two series were measured at the same shape, so only like meets like: d, heads,
 * batch, threads, depth, causal, forward or forward + backward, one forward or a training
 * step of the same kind of stack. */
static int same_shape(const report_series_t *a, const report_series_t *b)
{
    const json_t *x = json_array_get(a->points, 0), *y = json_array_get(b->points, 0);
    static const char *const keys[] = {"d", "heads", "batch", "threads", "layers"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const double u = report_num(x, keys[i]), v = report_num(y, keys[i]);
        if (u != v && !(isnan(u) && isnan(v)))
            return 0;
    }
    return json_is_true(json_object_get(x, "causal")) == json_is_true(json_object_get(y, "causal")) &&
           json_is_true(json_object_get(x, "backward")) == json_is_true(json_object_get(y, "backward")) &&
           strcmp(report_str(x, "stack"), report_str(y, "stack")) == 0;
}

/* The n from which sparse is cheaper than dense in one metric. From the measured points at
 * the n both series ran: where the ratio sparse/dense last crosses 1, interpolated on log-log
 * axes between the two measured n that bracket it. When it does not cross where both ran,
 * from the two fits: the n where a_s n^b_s = a_d n^b_d, pivoting on the middle of the fitted
 * ranges, with the range the exponents' standard errors allow; said to be extrapolated. */
static void crossover(FILE *md, const report_series_t *sp, const report_series_t *dn,
                      const struct fit_metric *m, double n_from)
{
    plot_series a, b;
    const int ok_a = m->field ? series_points(sp, "n", metric_field, m->field, &a)
                              : series_points(sp, "n", point_rss, NULL, &a);
    const int ok_b = m->field ? series_points(dn, "n", metric_field, m->field, &b)
                              : series_points(dn, "n", point_rss, NULL, &b);
    char what[160] = "no common points";
    double first_n = NAN, prev_n = NAN, prev_r = NAN, cross = NAN;
    int common = 0;
    for (size_t i = 0; ok_a && ok_b && i < a.count; i++)
        for (size_t j = 0; j < b.count; j++) {
            if (a.x[i] != b.x[j])
                continue;
            const double r = log(a.y[i] / b.y[j]); /* < 0: sparse is cheaper here */
            if (common && (prev_r < 0) != (r < 0)) /* crossed between prev_n and this n */
                cross = exp(log(prev_n) + (log(a.x[i]) - log(prev_n)) * prev_r / (prev_r - r));
            if (!common)
                first_n = a.x[i];
            prev_n = a.x[i], prev_r = r, common++;
        }
    if (common && prev_r < 0 && !isfinite(cross)) {
        snprintf(what, sizeof what, "cheaper at every n both ran (%.0f..%.0f)", first_n, prev_n);
    } else if (common && prev_r < 0) {
        snprintf(what, sizeof what, "n ≈ %.0f (2^%.1f), measured", cross, log2(cross));
    } else if (common) {
        const fit_result fs = fit_metric_of(sp, m, n_from), fd = fit_metric_of(dn, m, n_from);
        const double slope = fs.b - fd.b;
        const double se = sqrt((isfinite(fs.se_b) ? fs.se_b * fs.se_b : 0) +
                               (isfinite(fd.se_b) ? fd.se_b * fd.se_b : 0));
        if (fs.ok && fd.ok && slope < 0) {
            /* ln(ratio) at the pivot, the middle of both fitted ranges (in log n) */
            const double lc = 0.25 * (log(fs.n_min) + log(fs.n_max) + log(fd.n_min) + log(fd.n_max));
            const double rc = log(fs.a / fd.a) + slope * lc;
            const double n_star = exp(lc - rc / slope);
            if (slope + se < 0)
                snprintf(what, sizeof what, "n ≈ 2^%.1f (2^%.1f..2^%.1f), extrapolated from the fits",
                         log2(n_star), log2(exp(lc - rc / (slope - se))), log2(exp(lc - rc / (slope + se))));
            else
                snprintf(what, sizeof what, "n ≈ 2^%.1f, extrapolated from the fits (the exponents "
                         "differ by less than their standard errors)", log2(n_star));
        } else {
            snprintf(what, sizeof what, "not cheaper where both ran (up to %.0f), and its "
                     "exponent is not smaller", prev_n);
        }
    }
    fprintf(md, " %s |", what);
    if (ok_a)
        free(a.x), free(a.y);
    if (ok_b)
        free(b.x), free(b.y);
}

/* For each sparse series against each exact one of the same shape: from which n it is
 * cheaper in time and in peak RSS, the question a reader asks first. */
static void write_crossovers(FILE *md, report_series_t *s, int ns, double n_from)
{
    int header = 0;
    for (int i = 0; i < ns; i++) {
        if (strcmp(mechanism(&s[i]), "exact attention") == 0 || strcmp(mechanism(&s[i]), "training step") == 0)
            continue;
        for (int j = 0; j < ns; j++) {
            if (strcmp(mechanism(&s[j]), "exact attention") != 0 || !same_shape(&s[i], &s[j]))
                continue;
            if (!header) {
                fprintf(md, "\n## Crossovers\n\nFrom which n each approximate method is cheaper "
                            "than exact attention, at the same shape and threads: where the "
                            "measured ratio crosses 1, interpolated between the two measured n "
                            "around it; when it does not cross where both ran, where the fitted "
                            "power laws meet, with the range the exponents' standard errors "
                            "allow.\n\n| method | against | time | peak RSS |\n|---|---|---|---|\n");
                header = 1;
            }
            fprintf(md, "| %s | %s |", s[i].label, s[j].label);
            crossover(md, &s[i], &s[j], &fit_metrics[3], n_from);
            crossover(md, &s[i], &s[j], &fit_metrics[0], n_from);
            fputc('\n', md);
        }
    }
}

static void write_method_tables(FILE *md, report_series_t *s, int ns, double n_from)
{
    fprintf(md, "\n## Scaling exponents\n\nb in `metric ~ a n^b`, least squares on log-log axes "
                "over the ok points with n >= %.0f (or the three largest), ± its standard "
                "error. Quadratic memory shows as b near 2, linear as b near 1. The process's "
                "own pages (a few MiB) bend peak RSS at small n; point RSS, peak RSS less the "
                "RSS before the inputs were allocated, is the memory the point itself added.\n\n",
            n_from);
    fprintf(md, "| series | largest n ok | n range fitted | peak RSS b | point RSS b | heap peak b "
                "| time b |\n");
    fprintf(md, "|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < ns; k++) {
        double largest = NAN;
        size_t np = json_array_size(s[k].points);
        for (size_t j = 0; j < np; j++) {
            const json_t *r = json_array_get(s[k].points, j);
            if (strcmp(report_str(r, "status"), "ok") == 0)
                largest = report_num(r, "n");
        }
        fit_result fr = fit_metric_of(&s[k], &fit_metrics[0], n_from);
        fit_result fp = fit_metric_of(&s[k], &fit_metrics[1], n_from);
        fit_result fh = fit_metric_of(&s[k], &fit_metrics[2], n_from);
        fit_result ft = fit_metric_of(&s[k], &fit_metrics[3], n_from);
        char a[96], p[96], b[96], c[96], range[64] = "n/a", big[32] = "none";
        fmt_fit(fr, a, sizeof a);
        fmt_fit(fp, p, sizeof p);
        fmt_fit(fh, b, sizeof b);
        fmt_fit(ft, c, sizeof c);
        if (fr.ok)
            snprintf(range, sizeof range, "%.0f..%.0f (%zu points)", fr.n_min, fr.n_max, fr.k);
        if (!isnan(largest))
            snprintf(big, sizeof big, "%.0f", largest);
        fprintf(md, "| %s | %s | %s | %s | %s | %s | %s |\n", s[k].label, big, range, a, p, b, c);
    }
    for (int k = 0; k < ns; k++) {
        fprintf(md, "\n### %s\n\n", s[k].label);
        fprintf(md, "| n | status | time (s) | GFLOP/s | peak RSS | heap peak | model bytes | "
                    "RSS / model | machine |\n|---|---|---|---|---|---|---|---|---|\n");
        size_t np = json_array_size(s[k].points);
        for (size_t j = 0; j < np; j++) {
            const json_t *r = json_array_get(s[k].points, j);
            char rss[32], heap[32], model[32];
            fmt_bytes(report_num(r, "peak_rss_bytes"), rss, sizeof rss);
            fmt_bytes(report_num(r, "heap_peak_bytes"), heap, sizeof heap);
            fmt_bytes(report_num(r, "model_bytes"), model, sizeof model);
            const int ok = strcmp(report_str(r, "status"), "ok") == 0;
            double ratio = report_num(r, "peak_rss_bytes") / report_num(r, "model_bytes");
            fprintf(md, "| %.0f | %s | ", report_num(r, "n"), report_str(r, "status"));
            /* a time taken while other processes used the machine is marked, not hidden */
            const json_t *load = json_object_get(r, "machine_load");
            char machine[64] = "";
            if (json_is_true(json_object_get(load, "busy")))
                snprintf(machine, sizeof machine, "**busy**: others %.0f%%",
                         100 * report_num(load, "other_share"));
            if (ok)
                fprintf(md, "%.4g | %.1f | %s | %s | %s | %.2f | %s |\n", report_num(r, "wall_s"),
                        report_num(r, "gflops"), rss, heap, model, ratio, machine);
            else
                fprintf(md, " |  | %s |  | %s |  | %s |\n", rss, model, machine);
        }
    }
}

/* ---- peers: ours beside external programs ---------------------------------------------------- */

/* The mechanism a series measures, so a peer meets the methods it competes with: exact
 * attention (full, full_stream and the programs implementing them), lsh, block_sparse, etc,
 * and training steps. */
static const char *mechanism(const report_series_t *s)
{
    const json_t *r = json_array_get(s->points, 0);
    if (json_is_string(json_object_get(r, "stack")))
        return "training step";
    const char *m = json_is_string(json_object_get(r, "implements")) ? report_str(r, "implements")
                                                                      : report_str(r, "method");
    return strcmp(m, "full") == 0 || strcmp(m, "full_stream") == 0 ? "exact attention" : m;
}

static int is_peer(const report_series_t *s)
{
    return strncmp(s->method, "ext:", 4) == 0;
}

/* What a side ran on: ours (OpenBLAS kernels, threads) or a peer's own report. */
static void describe_side(FILE *md, const report_series_t *s)
{
    const json_t *r = NULL;
    for (size_t j = 0; j < json_array_size(s->points) && !r; j++)
        if (strcmp(report_str(json_array_get(s->points, j), "status"), "ok") == 0)
            r = json_array_get(s->points, j);
    if (!r)
        return;
    if (is_peer(s)) {
        char *ctx = json_dumps(json_object_get(json_object_get(r, "peer"), "context"),
                               JSON_COMPACT | JSON_ENCODE_ANY);
        fprintf(md, "- **%s** (%s): %s. Times: each repetition as the program timed it, after "
                    "its imports and input loading; memory: its whole process (interpreter and "
                    "libraries included), from outside.\n",
                s->label, report_str(json_object_get(r, "peer"), "program"), ctx ? ctx : "?");
        free(ctx);
    } else {
        const json_t *c = json_object_get(r, "context");
        fprintf(md, "- **%s**: attnbench, %.0f threads, OpenBLAS `%s` kernels (%s), float32. "
                    "Times: each repetition of the kernel call; memory: its child process.\n",
                s->label, report_num(r, "threads"), report_str(c, "openblas_core"),
                report_str(c, "openblas_core_source"));
    }
}

/* For each mechanism that has a peer: its memory and time plots with ours and the peers'
 * curves, and at every n the ratios ours / theirs. */
static void write_peers(const char *dir, FILE *md, report_series_t *s, int ns, int *failures)
{
    int any = 0;
    for (int i = 0; i < ns; i++)
        any |= is_peer(&s[i]);
    if (!any)
        return;
    fprintf(md, "\n## Beside the peers\n\nEach mechanism with the external programs that "
                "implement it (`--method ext:NAME`), measured by the same harness, same inputs, "
                "threads and shapes. Ratios are ours / theirs: below 1, ours is faster or "
                "smaller; (busy): one side was timed while other processes used the machine.\n");
    const char *done[64];
    int ndone = 0;
    for (int i = 0; i < ns && ndone < 64; i++) {
        const char *mech = mechanism(&s[i]);
        int seen = 0;
        for (int j = 0; j < ndone; j++)
            seen |= strcmp(done[j], mech) == 0;
        int has_peer = 0;
        for (int j = 0; j < ns; j++)
            has_peer |= is_peer(&s[j]) && strcmp(mechanism(&s[j]), mech) == 0;
        if (seen || !has_peer)
            continue;
        done[ndone++] = mech;
        report_series_t group[64];
        int ng = 0;
        for (int j = 0; j < ns && ng < 64; j++)
            if (strcmp(mechanism(&s[j]), mech) == 0)
                group[ng++] = s[j];
        fprintf(md, "\n### %s\n\nWhat each side ran:\n\n", mech);
        for (int j = 0; j < ng; j++)
            describe_side(md, &group[j]);
        char name[96], title[160];
        snprintf(name, sizeof name, "peers_%d_memory", ndone);
        snprintf(title, sizeof title, "%s: peak memory (RSS), ours and the peers", mech);
        plot_metric(dir, md, group, ng, name, title, "peak RSS", "peak_rss_bytes", 1, 1, 2, NULL,
                    0, failures);
        snprintf(name, sizeof name, "peers_%d_time", ndone);
        snprintf(title, sizeof title, "%s: time per run, ours and the peers", mech);
        plot_metric(dir, md, group, ng, name, title, "wall time (median)", "wall_s", 0, 1, 10,
                    "%.0s %cs", 0, failures);
        fprintf(md, "\n| ours | peer | n | time ours (s) | time theirs (s) | time ratio | peak RSS "
                    "ours | peak RSS theirs | RSS ratio |\n|---|---|---|---|---|---|---|---|---|\n");
        for (int a = 0; a < ng; a++)
            for (int b = 0; b < ng; b++) {
                if (is_peer(&group[a]) || !is_peer(&group[b]) || !same_shape(&group[a], &group[b]))
                    continue;
                for (size_t x = 0; x < json_array_size(group[a].points); x++) {
                    const json_t *ra = json_array_get(group[a].points, x);
                    const json_t *rb = NULL;
                    for (size_t y = 0; y < json_array_size(group[b].points); y++)
                        if (report_num(json_array_get(group[b].points, y), "n") ==
                            report_num(ra, "n"))
                            rb = json_array_get(group[b].points, y);
                    if (!rb || strcmp(report_str(ra, "status"), "ok") != 0 ||
                        strcmp(report_str(rb, "status"), "ok") != 0)
                        continue;
                    char ma[32], mb[32];
                    fmt_bytes(report_num(ra, "peak_rss_bytes"), ma, sizeof ma);
                    fmt_bytes(report_num(rb, "peak_rss_bytes"), mb, sizeof mb);
                    const int busy = json_is_true(json_object_get(json_object_get(ra, "machine_load"), "busy")) ||
                                     json_is_true(json_object_get(json_object_get(rb, "machine_load"), "busy"));
                    fprintf(md, "| %s | %s | %.0f | %.4g | %.4g | %.3g%s | %s | %s | %.3g |\n",
                            group[a].label, group[b].label, report_num(ra, "n"),
                            report_num(ra, "wall_s"), report_num(rb, "wall_s"),
                            report_num(ra, "wall_s") / report_num(rb, "wall_s"),
                            busy ? " (busy)" : "", ma, mb,
                            report_num(ra, "peak_rss_bytes") / report_num(rb, "peak_rss_bytes"));
                }
            }
    }
}

static void write_not_ok(FILE *md, json_t *records)
{
    fprintf(md, "\n## Points not measured, and why\n\n");
    size_t i, count = 0;
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        if (strcmp(report_str(rec, "status"), "ok") == 0)
            continue;
        if (!count++)
            fprintf(md, "| point | status | reason |\n|---|---|---|\n");
        fprintf(md, "| %s n=%.0f | %s | %s |\n", report_str(rec, "method"), report_num(rec, "n"),
                report_str(rec, "status"), report_str(rec, "reason"));
    }
    if (!count)
        fprintf(md, "Every point was measured (status ok).\n");
}

/* Ring points over MPI processes: each rank's memory, what it sent and how long it waited,
 * against the single-process points of the same n (the question: does memory fall as 1/P?). */
static void write_ranks(FILE *md, json_t *records)
{
    size_t i, count = 0;
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        const json_t *rk = json_object_get(rec, "ranks");
        if (!json_is_object(rk) || strcmp(report_str(rec, "status"), "ok") != 0)
            continue;
        if (!count++)
            fprintf(md, "\n## Ranks\n\nRing attention over P MPI processes (`--ranks`): the "
                        "slowest rank's time, the largest rank's peak RSS and model, the sum over "
                        "ranks, bytes each rank sent per run (all equal to the model's when "
                        "marked =), and the largest share of a rank's run spent waiting for a "
                        "block.\n\n| n | causal | P | threads/rank | time (s) | peak RSS / rank "
                        "| model / rank | peak RSS, sum | sent / rank | waiting |\n"
                        "|---|---|---|---|---|---|---|---|---|---|\n");
        char a[32], b[32], c[32], d[32];
        fmt_bytes(report_num(rec, "peak_rss_bytes"), a, sizeof a);
        fmt_bytes(report_num(rec, "model_bytes"), b, sizeof b);
        fmt_bytes(report_num(rk, "peak_rss_bytes_sum"), c, sizeof c);
        fmt_bytes(report_num(rk, "bytes_sent_max"), d, sizeof d);
        size_t r;
        json_t *per;
        int as_model = 1;
        json_array_foreach(json_object_get(rk, "per_rank"), r, per)
            as_model &= report_num(per, "bytes_sent") == report_num(per, "model_bytes_sent");
        fprintf(md, "| %.0f | %s | %.0f | %.0f | %.4g | %s | %s | %s | %s%s | %.1f%% |\n",
                report_num(rec, "n"), json_is_true(json_object_get(rec, "causal")) ? "yes" : "no",
                report_num(rk, "count"), report_num(rec, "threads"), report_num(rec, "wall_s"), a,
                b, c, d, as_model ? " =" : " (model differs)", 100 * report_num(rk, "wait_share_max"));
    }
}

/* Counters per token: every PAPI counter some point could count, else getrusage's. */
static void plot_counters(const char *dir, FILE *md, report_series_t *s, int ns, json_t *records,
                          int *failures)
{
    json_t *names = counter_names(records, 1);
    const int papi = json_object_size(names) > 0;
    if (!papi) {
        fprintf(md, "\nNo PAPI counter could be counted on this machine (see Context); the "
                    "counter plots show what getrusage saw instead.\n");
        json_object_set_new(names, "rusage.cpu_s", json_true());
        json_object_set_new(names, "rusage.minor_faults", json_true());
    }
    const char *k;
    json_t *v;
    int idx = 0;
    json_object_foreach(names, k, v)
    {
        plot_series *ps = calloc((size_t)ns + 1, sizeof *ps);
        size_t n = 0;
        for (int j = 0; j < ns; j++)
            n += (size_t)series_points(&s[j], "n", metric_counter_per_token, k, &ps[n]);
        char name[64], title[160];
        snprintf(name, sizeof name, "counter_%d", idx++);
        snprintf(title, sizeof title, "%s per token and repetition", k);
        plot_spec p = {.name = name, .title = title, .xlabel = "sequence length n (tokens)",
                       .ylabel = k, .logx = 1, .logy = 10, .yformat = "%g", .xpow2 = 1};
        draw(dir, &p, ps, n, "n", md, title, failures);
        free(ps);
    }
    json_decref(names);
}

/* ---- work: what the kernels counted (sde:::attn::), against the model ---------------------- */

static double metric_work(const json_t *r, const void *ctx)
{
    return report_num(json_object_get(r, "work"), ctx);
}

/* Scores per token against n, and per series the counted scores beside the model's at the
 * largest n measured. */
static void write_work(const char *dir, FILE *md, report_series_t *s, int ns, int *failures)
{
    plot_series *ps = calloc((size_t)ns + 1, sizeof *ps);
    size_t k = 0;
    for (int i = 0; i < ns; i++)
        if (series_points(&s[i], "n", metric_work, "scores_per_token", &ps[k]))
            ps[k++].color = i + 1;
    if (k == 0) {
        free(ps);
        return; /* no point counted its work (--counters without sde) */
    }
    fprintf(md, "\n### Work counted by the kernels\n\nQuery-key scores each token's query "
                "computed, counted by the attention kernels as they ran and read through PAPI "
                "as software-defined events (`sde:::attn::SCORES`; they count on any machine, "
                "a VM's too). Exact attention's grow with n; a sparse method's stay flat.\n");
    plot_spec p = {.name = "scores_per_token",
                   .title = "Query-key scores per token (counted by the kernels)",
                   .xlabel = "sequence length n (tokens)", .ylabel = "scores per token",
                   .logx = 1, .logy = 2, .yformat = "%g", .xpow2 = 1};
    draw(dir, &p, ps, k, "n", md, p.title, failures);
    free(ps);
    fprintf(md, "\n| series | n | scores counted | model's scores | counted / model | unmasked "
                "/ model | duplicate candidates |\n|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < ns; i++) {
        const json_t *last = NULL;
        for (size_t j = 0; j < json_array_size(s[i].points); j++) {
            const json_t *r = json_array_get(s[i].points, j);
            if (json_is_object(json_object_get(r, "work")))
                last = r;
        }
        if (!last)
            continue;
        const json_t *w = json_object_get(last, "work");
        char dup[64] = "";
        if (json_is_integer(json_object_get(w, "duplicates")))
            snprintf(dup, sizeof dup, "%.4g (%.2g%%)", report_num(w, "duplicates"),
                     100 * report_num(w, "duplicates_share"));
        if (isfinite(report_num(w, "model_scores")))
            fprintf(md, "| %s | %.0f | %.6g | %.6g | %.4f | %.4f | %s |\n", s[i].label,
                    report_num(last, "n"), report_num(json_object_get(w, "counted"), "SCORES"),
                    report_num(w, "model_scores"), report_num(w, "scores_vs_model"),
                    report_num(w, "unmasked_vs_model"), dup);
        else
            fprintf(md, "| %s | %.0f | %.6g | (no model) |  |  | %s |\n", s[i].label,
                    report_num(last, "n"), report_num(json_object_get(w, "counted"), "SCORES"), dup);
    }
    fprintf(md, "\nThe model charges 4 d flops per score; where counted / model is above 1 the "
                "kernel computed scores it then masked (a causal diagonal tile, the edge of a "
                "local window), and a training "
                "step's scores (every layer, recomputations included) have no model of their own.\n");
}

static double metric_err(const json_t *r, const void *ctx)
{
    (void)ctx;
    return report_num(json_object_get(r, "err_vs_exact"), "mean_rel");
}

/* LSH error (or another metric) against n_hashes, for the lsh points that measured their
 * error: one series per n and inputs. */
static void plot_lsh_hashes(const char *dir, FILE *md, json_t *records, const char *name,
                            const char *title, const char *ylabel,
                            double (*metric)(const json_t *, const void *), const void *ctx,
                            int *failures)
{
    /* one series per n (and inputs), x = n_hashes */
    plot_series ps[16];
    size_t nps = 0;
    size_t i;
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        const json_t *e = json_object_get(rec, "err_vs_exact");
        if (strcmp(report_str(rec, "method"), "lsh") || !isfinite(report_num(e, "mean_rel")) ||
            strcmp(report_str(rec, "status"), "ok"))
            continue; /* only lsh points whose reference ran */
        char label[128];
        snprintf(label, sizeof label, "n=%.0f %s inputs", report_num(rec, "n"), report_str(rec, "inputs"));
        size_t k = 0;
        while (k < nps && strcmp(ps[k].title, label) != 0)
            k++;
        if (k == nps) {
            if (nps == 16)
                continue;
            memset(&ps[nps], 0, sizeof ps[nps]);
            snprintf(ps[nps].title, sizeof ps[nps].title, "%s", label);
            ps[nps].x = malloc(64 * sizeof(double));
            ps[nps].y = malloc(64 * sizeof(double));
            nps++;
        }
        if (ps[k].count == 64)
            continue;
        const double y = metric(rec, ctx);
        if (!isfinite(y))
            continue;
        ps[k].x[ps[k].count] = report_num(json_object_get(rec, "params"), "n_hashes");
        ps[k].y[ps[k].count++] = y;
    }
    if (nps == 0)
        return; /* no lsh point measured its error */
    for (size_t k = 0; k < nps; k++) { /* by n_hashes */
        for (size_t a = 1; a < ps[k].count; a++)
            for (size_t b = a; b > 0 && ps[k].x[b - 1] > ps[k].x[b]; b--) {
                double tx = ps[k].x[b], ty = ps[k].y[b];
                ps[k].x[b] = ps[k].x[b - 1], ps[k].y[b] = ps[k].y[b - 1];
                ps[k].x[b - 1] = tx, ps[k].y[b - 1] = ty;
            }
    }
    plot_spec p = {.name = name, .title = title, .xlabel = "n_hashes", .ylabel = ylabel,
                   .logx = 1, .logy = 0, .yformat = "%g"};
    draw(dir, &p, ps, nps, "n_hashes", md, title, failures);
}

/* peak RSS less the weights and gradients: what a training step keeps beyond its parameters */
static double activation_bytes(const json_t *r, const void *ctx)
{
    (void)ctx;
    return report_num(r, "peak_rss_bytes") - report_num(r, "param_bytes");
}

/* Depth: per training series over several L, memory at each L and the fitted bytes per layer. */
static void depth_table(FILE *md, report_series_t *s, int ns)
{
    fprintf(md, "\n## Depth\n\nTraining steps against the number of layers L. Activation memory "
                "is peak RSS less `param_bytes` (the weights and their gradients, which grow with "
                "L for any stack); the slope is the least-squares bytes per added layer.\n\n");
    for (int k = 0; k < ns; k++) {
        size_t np = json_array_size(s[k].points), m = 0;
        if (np < 2)
            continue;
        double *x = malloc(np * sizeof *x), *y = malloc(np * sizeof *y), base = NAN;
        fprintf(md, "### %s (n = %.0f)\n\n| L | status | time (s) | peak RSS | param bytes | "
                    "activation memory | vs smallest L |\n|---|---|---|---|---|---|---|\n",
                s[k].label, report_num(json_array_get(s[k].points, 0), "n"));
        for (size_t j = 0; j < np; j++) {
            const json_t *r = json_array_get(s[k].points, j);
            const int ok = strcmp(report_str(r, "status"), "ok") == 0;
            char rss[32], par[32], act[32];
            fmt_bytes(report_num(r, "peak_rss_bytes"), rss, sizeof rss);
            fmt_bytes(report_num(r, "param_bytes"), par, sizeof par);
            const double a = activation_bytes(r, NULL);
            fmt_bytes(ok ? a : NAN, act, sizeof act);
            if (ok && isnan(base))
                base = a;
            fprintf(md, "| %.0f | %s | %.4g | %s | %s | %s | %s%.1f%% |\n", report_num(r, "layers"),
                    report_str(r, "status"), report_num(r, "wall_s"), rss, par, act,
                    ok && a >= base ? "+" : "", ok ? 100 * (a - base) / base : NAN);
            if (ok) {
                x[m] = report_num(r, "layers");
                y[m++] = a;
            }
        }
        fit_result f = fit_linear(x, y, m);
        char slope[32], se[32];
        fmt_bytes(f.b, slope, sizeof slope);
        fmt_bytes(f.se_b, se, sizeof se);
        if (f.ok)
            fprintf(md, "\nFitted: %s per layer%s%s (R² %.3f) over L = %.0f..%.0f.\n\n", slope,
                    isnan(f.se_b) ? "" : " ± ", isnan(f.se_b) ? "" : se, f.r2, f.n_min, f.n_max);
        free(x);
        free(y);
    }
}

/* Peak memory against depth for training sweeps (records with a `layers` field). */
static void plot_layers(const char *dir, FILE *md, json_t *records, int *failures)
{
    report_series_t *s;
    int ns = report_series(records, "layers", &s);
    int depth_sweep = 0; /* a series over several depths, not training points at one L */
    for (int k = 0; k < ns; k++)
        depth_sweep |= json_array_size(s[k].points) >= 2;
    if (!depth_sweep) {
        report_series_free(s, ns);
        return;
    }
    depth_table(md, s, ns);
    plot_series *ps = calloc((size_t)ns + 1, sizeof *ps);
    size_t k = 0;
    for (int i = 0; i < ns; i++)
        k += (size_t)series_points(&s[i], "layers", activation_bytes, NULL, &ps[k]);
    plot_spec p = {.name = "layers", .title = "Training step: activation memory against depth",
                   .xlabel = "layers L", .ylabel = "peak RSS - weights and gradients", .logx = 0,
                   .logy = 0, .ybytes = 1};
    draw(dir, &p, ps, k, "L", md, "Peak memory vs layers", failures);
    free(ps);
    report_series_free(s, ns);
}

/* Removes the plots an earlier report wrote into dir, so none outlives its data: every NAME.gp
 * that says it was written by `attnbench report`, with its .png, .svg, .dat and .err. */
static void remove_old_plots(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    static const char *const exts[] = {"png", "svg", "dat", "err", "gp"}; /* .gp last */
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".gp") != 0 || len > 200)
            continue;
        char path[1200], line[256] = "";
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        const int ours = fgets(line, sizeof line, f) && strstr(line, "written by `attnbench report`");
        fclose(f);
        for (size_t i = 0; ours && i < sizeof exts / sizeof exts[0]; i++) {
            snprintf(path, sizeof path, "%s/%.*s.%s", dir, (int)(len - 3), e->d_name, exts[i]);
            unlink(path);
        }
    }
    closedir(d);
}

/* The time plot's title says what its points timed: one forward, one forward and backward
 * (run --backward), one training step of a stack, or a mix of them. */
static const char *time_title(json_t *records)
{
    int forward = 0, backward = 0, train = 0;
    size_t i;
    json_t *r;
    json_array_foreach(records, i, r)
    {
        if (json_is_string(json_object_get(r, "stack")))
            train = 1;
        else if (json_is_true(json_object_get(r, "backward")))
            backward = 1;
        else
            forward = 1;
    }
    if (forward + backward + train > 1)
        return "Time per point against sequence length (one forward, forward + backward, or "
               "one training step)";
    return train      ? "Time per training step against sequence length"
           : backward ? "Time per forward + backward against sequence length"
                      : "Time per forward pass against sequence length";
}

int cmd_report(int argc, char **argv)
{
    enum { OPT_OUT = 1, OPT_FIT_FROM, OPT_HELP };
    static const struct option opts[] = {
        {"out", required_argument, 0, OPT_OUT}, {"fit-from", required_argument, 0, OPT_FIT_FROM},
        {"help", no_argument, 0, OPT_HELP},     {0, 0, 0, 0},
    };
    const char *dir = NULL;
    int64_t fit_from = REPORT_FIT_FROM;
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (c) {
        case OPT_OUT: dir = optarg; break;
        case OPT_FIT_FROM:
            if (cli_parse_int(optarg, 1, INT64_C(1) << 40, &fit_from))
                return cli_error("report", "--fit-from '%s' is not a positive integer", optarg);
            break;
        case OPT_HELP:
            puts("usage: attnbench report RESULTS.jsonl... --out DIR [--fit-from N]\n"
                 "Fits scaling exponents, draws the plots with gnuplot, writes DIR/report.md and\n"
                 "DIR/results.csv, DIR/fits.csv and DIR/fits.json (one row per series and\n"
                 "metric). --fit-from: smallest n of the fits (default 16384).");
            return 0;
        default: return cli_getopt_error("report", optopt, argv, optind);
        }
    }
    if (optind >= argc)
        return cli_error("report", "no results file given");
    if (!dir)
        return cli_error("report", "--out DIR is required");
    json_t *records;
    char err[1024];
    if (report_load(argc - optind, argv + optind, &records, err, sizeof err))
        return cli_error("report", "%s", err);
    if (json_array_size(records) == 0) {
        json_decref(records);
        return cli_error("report", "the results files hold no records");
    }
    records = in_report_order(records);
    if (cli_mkdirs(dir) != 0) {
        json_decref(records);
        return cli_error("report", "--out %s: %s", dir, strerror(errno));
    }
    char path[1024];
    remove_old_plots(dir);
    snprintf(path, sizeof path, "%s/results.csv", dir);
    if (report_write_csv(path, records, err, sizeof err)) {
        json_decref(records);
        return cli_error("report", "%s", err);
    }
    snprintf(path, sizeof path, "%s/report.md", dir);
    FILE *md = fopen(path, "w");
    if (!md) {
        json_decref(records);
        return cli_error("report", "%s: %s", path, strerror(errno));
    }
    report_series_t *s;
    const int ns = report_series(records, "n", &s);
    const json_t *first = json_array_get(records, 0);
    fprintf(md, "# attnbench report\n\n%zu points from", json_array_size(records));
    for (int f = optind; f < argc; f++)
        fprintf(md, " `%s`", argv[f]);
    fprintf(md, ", in %d series. Written by `attnbench report`; every number below is a "
                "measurement from those files.\n\n", ns);
    write_context(md, json_object_get(first, "context"), first);
    int failures = 0;
    fprintf(md, "\n## Plots\n");
    plot_metric(dir, md, s, ns, "memory", "Peak memory (RSS) against sequence length",
                "peak RSS", "peak_rss_bytes", 1, 1, 2, NULL, 1, &failures);
    plot_metric(dir, md, s, ns, "heap", "Heap peak (jemalloc thread.peak) against sequence length",
                "heap peak", "heap_peak_bytes", 1, 1, 2, NULL, 0, &failures);
    plot_metric(dir, md, s, ns, "time", time_title(records),
                "wall time (median)", "wall_s", 0, 1, 10, "%.0s %cs", 0, &failures);
    plot_metric(dir, md, s, ns, "gflops", "Achieved GFLOP/s (the method's model FLOPs)",
                "GFLOP/s", "gflops", 0, 0, 0, NULL, 0, &failures);
    plot_counters(dir, md, s, ns, records, &failures);
    write_work(dir, md, s, ns, &failures);
    plot_lsh_hashes(dir, md, records, "lsh_error", "LSH error against exact shared-QK attention",
                    "mean row-wise relative error", metric_err, NULL, &failures);
    /* beside it, why the error stops falling: more rounds, more keys seen twice */
    plot_lsh_hashes(dir, md, records, "lsh_duplicates",
                    "LSH candidates seen again (share of the scores) against n_hashes",
                    "duplicate candidates / scores", metric_work, "duplicates_share", &failures);
    plot_layers(dir, md, records, &failures);
    write_peers(dir, md, s, ns, &failures);
    write_ranks(md, records);
    write_crossovers(md, s, ns, (double)fit_from);
    write_method_tables(md, s, ns, (double)fit_from);
    if (write_fits(dir, s, ns, (double)fit_from) != 0) {
        fprintf(stderr, "attnbench report: cannot write %s/fits.csv or fits.json\n", dir);
        failures++;
    }
    write_not_ok(md, records);
    report_series_free(s, ns);
    json_decref(records);
    if (fclose(md) != 0)
        return cli_error("report", "%s: write failed", path);
    fprintf(stderr, "attnbench report: wrote %s/report.md, results.csv, fits.csv, fits.json and "
                    "the plots%s\n", dir,
            failures ? " (some plots failed, see above)" : "");
    return failures ? 1 : 0;
}
