/* series.c: see series.h. */
#include "series.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bench/record/record.h"
#include "records.h"

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

static void sort_points(report_series *s, const char *xfield)
{
    size_t np = json_array_size(s->points);
    by_x *arr = malloc((np + 1) * sizeof *arr);
    if (!arr)
        return; /* left in file order */
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

const char *report_mechanism(const report_series *s)
{
    const json_t *r = json_array_get(s->points, 0);
    if (json_is_string(json_object_get(r, "stack")))
        return "training step";
    const char *m = json_is_string(json_object_get(r, "implements")) ? report_str(r, "implements")
                                                                      : report_str(r, "method");
    return strcmp(m, "full") == 0 || strcmp(m, "full_stream") == 0 ? "exact attention" : m;
}

bool report_is_peer(const report_series *s)
{
    return strncmp(s->method, "ext:", 4) == 0;
}

bool report_same_shape(const report_series *a, const report_series *b)
{
    const json_t *x = json_array_get(a->points, 0), *y = json_array_get(b->points, 0);
    static const char *const keys[] = {"d", "heads", "batch", "threads", "layers"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const double u = report_num(x, keys[i]), v = report_num(y, keys[i]);
        if (u != v && !(isnan(u) && isnan(v)))
            return false;
    }
    return json_is_true(json_object_get(x, "causal")) == json_is_true(json_object_get(y, "causal")) &&
           json_is_true(json_object_get(x, "backward")) == json_is_true(json_object_get(y, "backward")) &&
           strcmp(report_str(x, "stack"), report_str(y, "stack")) == 0 &&
           strcmp(report_dtype(x), report_dtype(y)) == 0;
}

const json_t *report_first_ok(const report_series *s)
{
    for (size_t j = 0; j < json_array_size(s->points); j++)
        if (report_is_ok(json_array_get(s->points, j)))
            return json_array_get(s->points, j);
    return NULL;
}

/* Where a series' mechanism comes in the report: exact attention, the methods that approximate
 * it, training steps. */
static int mechanism_rank(const report_series *s)
{
    const char *m = report_mechanism(s);
    return strcmp(m, "exact attention") == 0 ? 0 : strcmp(m, "training step") == 0 ? 2 : 1;
}

static int cmp_series(const void *a, const void *b)
{
    const report_series *p = a, *q = b;
    if (report_is_peer(p) != report_is_peer(q))
        return report_is_peer(p) - report_is_peer(q);
    if (mechanism_rank(p) != mechanism_rank(q))
        return mechanism_rank(p) - mechanism_rank(q);
    return strverscmp(p->key, q->key); /* numbers in the key in numeric order: 8 < 32 < 256 */
}

/* The label: the method (a training series: its stack, over which attention), what sets the
 * series apart from the method's first one, and the depth unless it is x. */
static void make_label(report_series *s, int k, const char *xfield)
{
    const json_t *r0 = json_array_get(s[k].points, 0);
    const char *stack = report_str(r0, "stack"), *inner = report_str(r0, "inner");
    if (!*stack)
        snprintf(s[k].label, sizeof s[k].label, "%s", s[k].method);
    else if (strcmp(s[k].method, inner) != 0) /* a named stack: reversible is the Reformer */
        snprintf(s[k].label, sizeof s[k].label, "%s (%s)", s[k].method, inner);
    else
        snprintf(s[k].label, sizeof s[k].label, "%s, %s stack", s[k].method, stack);
    int first = 0;
    while (strcmp(s[first].method, s[k].method) != 0)
        first++;
    append_differences(s[k].key, s[first].key, s[k].label, sizeof s[k].label);
    if (*stack && strcmp(xfield, "layers") != 0) {
        size_t len = strlen(s[k].label);
        snprintf(s[k].label + len, sizeof s[k].label - len, " L=%.0f", report_num(r0, "layers"));
    }
}

int report_series_make(json_t *records, const char *xfield, report_series **out)
{
    size_t count = json_array_size(records), ns = 0;
    report_series *s = calloc(count + 1, sizeof *s);
    if (!s) {
        *out = NULL;
        return 0;
    }
    char key[1024];
    size_t i;
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        if (strcmp(xfield, "layers") == 0 && !json_is_number(json_object_get(rec, "layers")))
            continue;
        record_series_key(report_str(rec, "point_key"), xfield, key, sizeof key);
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
    for (size_t k = 0; k < ns; k++)
        make_label(s, (int)k, xfield);
    *out = s;
    return (int)ns;
}

json_t *report_in_order(json_t *records)
{
    report_series *s;
    const int ns = report_series_make(records, "n", &s);
    json_t *ordered = json_array();
    for (int k = 0; k < ns; k++)
        json_array_extend(ordered, s[k].points);
    report_series_free(s, ns);
    json_decref(records);
    return ordered;
}

void report_series_free(report_series *s, int count)
{
    for (int k = 0; k < count; k++)
        json_decref(s[k].points);
    free(s);
}

double report_metric_field(const json_t *rec, const void *field)
{
    return report_num(rec, field);
}

double report_metric_point_rss(const json_t *rec, const void *ctx)
{
    (void)ctx;
    /* and the code pages first run after the baseline, where the record has them (older
     * records and external programs do not) */
    const double code = report_num(rec, "rss_file_growth_bytes");
    return report_num(rec, "peak_rss_bytes") - report_num(rec, "rss_before_inputs_bytes") -
           (isfinite(code) ? code : 0);
}

double report_metric_activation(const json_t *rec, const void *ctx)
{
    (void)ctx;
    return report_num(rec, "peak_rss_bytes") - report_num(rec, "param_bytes");
}

size_t report_series_xy(const report_series *s, const char *xfield, report_metric metric,
                        const void *ctx, double **x, double **y)
{
    const size_t np = json_array_size(s->points);
    *x = malloc((np + 1) * sizeof **x);
    *y = malloc((np + 1) * sizeof **y);
    size_t count = 0;
    for (size_t j = 0; *x && *y && j < np; j++) {
        const json_t *r = json_array_get(s->points, j);
        if (!report_is_ok(r))
            continue;
        const double v = metric(r, ctx);
        if (!isfinite(v) || v <= 0)
            continue;
        (*x)[count] = report_num(r, xfield);
        (*y)[count++] = v;
    }
    return count;
}

const report_fit_metric report_fit_metrics[] = {
    {"peak_rss", report_metric_field, "peak_rss_bytes"},
    {"point_rss", report_metric_point_rss, NULL},
    {"heap_peak", report_metric_field, "heap_peak_bytes"},
    {"time", report_metric_field, "wall_s"},
};
const size_t report_fit_metric_count = sizeof report_fit_metrics / sizeof report_fit_metrics[0];

/* The points a fit of metric m takes: ok, metric finite and positive, and for time not timed on
 * a busy machine (counted in *busy). x and y have room for every point. */
static size_t fit_points(const report_series *s, const report_fit_metric *m, double *x,
                         double *y, size_t *busy)
{
    const int is_time = m == &report_fit_metrics[REPORT_FIT_TIME];
    size_t count = 0;
    *busy = 0;
    for (size_t j = 0; j < json_array_size(s->points); j++) {
        const json_t *r = json_array_get(s->points, j);
        const double v = m->metric(r, m->field);
        if (!report_is_ok(r) || !isfinite(v) || v <= 0)
            continue;
        if (is_time && report_is_busy(r)) {
            x[count + *busy] = -report_num(r, "n"); /* kept aside, negated, for the count */
            (*busy)++;
            continue;
        }
        x[count] = report_num(r, "n");
        y[count++] = v;
    }
    return count;
}

static void judge(const fit_result *f, report_fit_note *note, int is_time)
{
    char *w = note->reason;
    const size_t size = sizeof note->reason;
    w[0] = '\0';
#define WHY(...) snprintf(w + strlen(w), size - strlen(w), __VA_ARGS__)
    if (!f->ok || f->k < REPORT_FIT_MIN_POINTS)
        WHY("%s%zu %spoints", *w ? "; " : "", f->ok ? f->k : 0, is_time ? "quiet " : "");
    if (note->busy_excluded)
        WHY("%s%zu busy point%s left out", *w ? "; " : "", note->busy_excluded,
            note->busy_excluded > 1 ? "s" : "");
    if (f->ok && isfinite(f->r2) && f->r2 < REPORT_FIT_MIN_R2)
        WHY("%sR² %.3f below %.2f", *w ? "; " : "", f->r2, REPORT_FIT_MIN_R2);
    if (f->ok && isfinite(f->se_b) && f->se_b > REPORT_FIT_MAX_SE)
        WHY("%sstandard error %.2f above %.2f", *w ? "; " : "", f->se_b, REPORT_FIT_MAX_SE);
#undef WHY
    note->reliable = w[0] == '\0';
}

fit_result report_fit(const report_series *s, const report_fit_metric *m, double n_from,
                      report_fit_note *note)
{
    const size_t np = json_array_size(s->points);
    double *x = malloc((np + 1) * sizeof *x), *y = malloc((np + 1) * sizeof *y);
    size_t count = 0, busy = 0;
    if (x && y)
        count = fit_points(s, m, x, y, &busy);
    size_t above = 0;
    for (size_t j = 0; j < count; j++)
        above += x[j] >= n_from;
    const double from = above < 3 && count >= 2 ? x[count >= 3 ? count - 3 : 0] : n_from;
    const fit_result f = fit_power(x, y, count, from);
    if (note) {
        memset(note, 0, sizeof *note);
        for (size_t j = 0; j < busy; j++) /* the busy ones within the range fitted */
            note->busy_excluded += -x[count + j] >= from;
        note->b_theil_sen = fit_theil_sen(x, y, count, from);
        judge(&f, note, m == &report_fit_metrics[REPORT_FIT_TIME]);
    }
    free(x);
    free(y);
    return f;
}

int report_fit_metric_named(const report_series *s, const char *metric, double n_from,
                            fit_result *out, report_fit_note *note)
{
    for (size_t m = 0; m < report_fit_metric_count; m++)
        if (strcmp(report_fit_metrics[m].name, metric) == 0) {
            *out = report_fit(s, &report_fit_metrics[m], n_from, note);
            return 0;
        }
    return -1;
}
