/* capacity.c: see capacity.h. */
#include "capacity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fit.h"
#include "records.h"

int capacity_spec_of(const json_t *rec, point_spec *s)
{
    memset(s, 0, sizeof *s);
    if (!json_is_null(json_object_get(rec, "implements")))
        return -1;
    /* a ring over ranks: its model_bytes and peak_rss_bytes are the largest rank's */
    const double ranks = report_num(json_object_get(rec, "ranks"), "count");
    s->ranks = ranks > 0 ? (int)ranks : 0;
    const char *method = report_str(rec, "method"), *stack = report_str(rec, "stack");
    const bool train = *stack != '\0';
    const attn_method *m = attn_find(train ? report_str(rec, "inner") : method);
    if (!m)
        return -1;
    attn_params_default(m, &s->params);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)json_object_get(rec, "params"), key, v) {
        char text[160];
        if (json_is_string(v))
            snprintf(text, sizeof text, "%s=%s", key, json_string_value(v));
        else if (json_is_integer(v))
            snprintf(text, sizeof text, "%s=%lld", key, (long long)json_integer_value(v));
        else if (json_is_number(v))
            snprintf(text, sizeof text, "%s=%.17g", key, json_number_value(v));
        else
            return -1;
        if (attn_params_parse(&s->params, text) != 0)
            return -1;
    }
    s->shape = (attn_shape){.B = (int64_t)report_num(rec, "batch"),
                            .H = (int64_t)report_num(rec, "heads"),
                            .n = (int64_t)report_num(rec, "n"),
                            .d = (int64_t)report_num(rec, "d"),
                            .causal = json_is_true(json_object_get(rec, "causal"))};
    if (attn_dtype_parse(report_dtype(rec), &s->shape.dtype) != 0)
        return -1;
    s->threads = (int)report_num(rec, "threads");
    s->reps = 1;
    s->backward = json_is_true(json_object_get(rec, "backward"));
    s->train = train;
    if (train) {
        s->stack = stack_kind_parse(stack) == STACK_REVERSIBLE ? STACK_REVERSIBLE : STACK_STANDARD;
        s->layers = (int)report_num(rec, "layers");
        s->d_ff = (int64_t)report_num(rec, "d_ff");
        s->ff_chunk = (int64_t)report_num(rec, "ff_chunk");
        s->label = strcmp(method, "reversible") == 0 ? "reversible" : NULL;
    }
    if (s->shape.B < 1 || s->shape.H < 1 || s->shape.d < 1 || s->threads < 1 ||
        (train && (s->layers < 1 || s->ff_chunk < 1)))
        return -1;
    return 0;
}

/* The memory line through the series' largest points; one point gives a line through the
 * process's own memory before its inputs (rss_before_inputs_bytes) instead. */
static void calibrate_memory(const report_series *s, capacity_calibration *c)
{
    const size_t np = json_array_size(s->points);
    double *x = malloc((np + 1) * sizeof *x), *y = malloc((np + 1) * sizeof *y);
    double x_max = 0;
    for (size_t i = 0; i < np; i++) {
        const json_t *r = json_array_get(s->points, i);
        if (report_is_ok(r) && report_num(r, "model_bytes") > x_max)
            x_max = report_num(r, "model_bytes");
    }
    size_t k = 0, distinct = 0;
    const json_t *largest = NULL;
    for (size_t i = 0; i < np; i++) {
        const json_t *r = json_array_get(s->points, i);
        const double mb = report_num(r, "model_bytes"), peak = report_num(r, "peak_rss_bytes");
        if (!report_is_ok(r) || !(mb >= x_max / 64) || !(peak > 0))
            continue;
        distinct += k == 0 || mb != x[k - 1];
        x[k] = mb;
        y[k++] = peak;
        if (mb == x_max)
            largest = r;
    }
    c->mem_points = (int)k;
    fit_result f = {0};
    if (distinct >= 2)
        f = fit_linear(x, y, k);
    if (f.ok && f.b > 0) {
        c->mem_base = f.a;
        c->mem_ratio = f.b;
    } else if (largest) {
        const double before = report_num(largest, "rss_before_inputs_bytes");
        c->mem_base = before > 0 ? before : 0;
        c->mem_ratio = (report_num(largest, "peak_rss_bytes") - c->mem_base) / x_max;
        c->mem_points = 1;
    }
    free(x);
    free(y);
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Seconds per model flop against n, through the four largest points timed on a quiet machine:
 * the Theil-Sen exponent (the median of the pairwise slopes: one point timed in a noisy moment
 * bends it little, where a least-squares slope over a short range, extrapolated, swings by
 * tens of percent) and the median of the points' own coefficients at that exponent. */
static void calibrate_time(const report_series *s, capacity_calibration *c)
{
    enum { LAST = 4 };
    const size_t np = json_array_size(s->points);
    double n[LAST], y[LAST], coef[LAST];
    int k = 0;
    for (size_t i = np; i-- > 0 && k < LAST;) { /* points are in n order */
        const json_t *r = json_array_get(s->points, i);
        const double wall = report_num(r, "wall_s"), flops = report_num(r, "model_flops");
        if (!report_is_ok(r) || report_is_busy(r) || !(wall > 0) || !(flops > 0))
            continue;
        n[k] = report_num(r, "n");
        y[k++] = wall / flops;
    }
    c->time_points = k;
    if (!k)
        return;
    const double b = fit_theil_sen(n, y, (size_t)k, 0);
    /* NAN: one length, timed once or more. A flop getting cheaper with n is fixed costs being
     * amortized, which saturates: extrapolated, it promised full_stream at 2^19 a third less
     * time than it took, so the curve is never taken to fall beyond what was measured */
    c->time_b = isnan(b) || b < 0 ? 0 : b;
    for (int i = 0; i < k; i++)
        coef[i] = y[i] / pow(n[i], c->time_b);
    qsort(coef, (size_t)k, sizeof coef[0], cmp_double);
    c->time_a = k % 2 ? coef[k / 2] : 0.5 * (coef[k / 2 - 1] + coef[k / 2]);
}

int capacity_calibrate(const report_series *s, capacity_calibration *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->series, sizeof c->series, "%s", s->key);
    for (size_t i = 0; i < json_array_size(s->points); i++) {
        const json_t *r = json_array_get(s->points, i);
        if (report_is_ok(r) && report_num(r, "n") > c->n_measured)
            c->n_measured = report_num(r, "n");
    }
    if (c->n_measured == 0)
        return -1;
    calibrate_memory(s, c);
    calibrate_time(s, c);
    return c->mem_points > 0 ? 0 : -1;
}

void capacity_predict(const point_spec *s, int64_t n, const capacity_calibration *c,
                      capacity_prediction *p)
{
    memset(p, 0, sizeof *p);
    p->n = n;
    p->time_s = NAN;
    point_spec at = *s;
    at.shape.n = n;
    point_model m;
    const char *why;
    if (n < 1 || n > CAPACITY_MAX_N || point_model_of(&at, &m, &why) != 0)
        return;
    p->runs = true;
    p->model_bytes = (double)m.bytes;
    p->peak_rss_bytes = c->mem_base + c->mem_ratio * (double)m.bytes;
    p->flops = m.flops;
    if (c->time_points > 0) /* ranks share the work */
        p->time_s = m.flops / (s->ranks > 0 ? s->ranks : 1) * c->time_a * pow((double)n, c->time_b);
}

int64_t capacity_granule(const point_spec *s)
{
    const attn_method *m = s->params.method;
    const int64_t g = m->granule ? m->granule(&s->params) : 1;
    return g > 0 ? g : 1;
}

/* The length of the k-th candidate (k >= 1), 0 past the last. */
static int64_t candidate(enum capacity_lengths lengths, int64_t granule, int64_t k)
{
    if (lengths == CAPACITY_POW2)
        return k <= 31 ? INT64_C(1) << (k - 1) : 0;
    return k <= CAPACITY_MAX_N / granule ? k * granule : 0;
}

static bool fits(const capacity_prediction *p, double mem_budget, double time_budget)
{
    return p->runs && p->peak_rss_bytes <= mem_budget &&
           (time_budget <= 0 || !(p->time_s > time_budget));
}

void capacity_search(const point_spec *s, const capacity_calibration *c, double mem_budget,
                     double time_budget, enum capacity_lengths lengths, capacity_answer *a)
{
    memset(a, 0, sizeof *a);
    a->granule = lengths == CAPACITY_POW2 ? 1 : capacity_granule(s);
    const int64_t g = a->granule;
    const int64_t k_last = lengths == CAPACITY_POW2 ? 31 : CAPACITY_MAX_N / g;
    /* the shortest lengths a method refuses (shorter than its globals, say) are skipped; from
     * the first it runs, a longer length needs more memory and time: bisect */
    int64_t first = 1;
    capacity_prediction p;
    for (int64_t k = 1; k <= k_last && k <= 64; k++) {
        capacity_predict(s, candidate(lengths, g, k), c, &p);
        if (p.runs) {
            first = k;
            break;
        }
    }
    int64_t lo = first - 1, hi = k_last + 1; /* lo fits (or is before the first), hi does not */
    while (hi - lo > 1) {
        const int64_t mid = lo + (hi - lo) / 2;
        capacity_predict(s, candidate(lengths, g, mid), c, &p);
        if (fits(&p, mem_budget, time_budget))
            lo = mid;
        else
            hi = mid;
    }
    if (lo >= first)
        capacity_predict(s, candidate(lengths, g, lo), c, &a->at);
    capacity_predict(s, hi <= k_last ? candidate(lengths, g, hi) : 0, c, &a->next);
    if (hi > k_last || !a->next.runs)
        a->limited_by = "length";
    else if (a->next.peak_rss_bytes > mem_budget)
        a->limited_by = "memory";
    else
        a->limited_by = "time";
}

json_t *capacity_calibration_json(const capacity_calibration *c, const char *source)
{
    json_t *j = json_object();
    json_object_set_new(j, "source", json_string(source));
    json_object_set_new(j, "series", json_string(c->series));
    json_object_set_new(j, "n_measured", json_integer((json_int_t)c->n_measured));
    json_object_set_new(j, "memory_points", json_integer(c->mem_points));
    json_object_set_new(j, "memory_base_bytes", json_real(c->mem_base));
    json_object_set_new(j, "memory_ratio", json_real(c->mem_ratio));
    json_object_set_new(j, "time_points", json_integer(c->time_points));
    json_object_set_new(j, "time_s_per_flop_a", c->time_points ? json_real(c->time_a) : json_null());
    json_object_set_new(j, "time_s_per_flop_b", c->time_points ? json_real(c->time_b) : json_null());
    return j;
}
