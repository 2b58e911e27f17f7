/* table_capacity.c: how long a sequence fits (capacity.h), from the records of a report: the
 * longest n of each series in the machine's memory and in 16 GiB, 80 GiB and 1 TiB; what one
 * million tokens (2^20) takes, for one head and for a 12-layer, 16-head model's training
 * step; and `capacity --verify`'s predictions beside what the verified points measured. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "capacity.h"
#include "records.h"
#include "tables.h"

/* The budgets every capacity table lists beside the machine's own. */
static const struct {
    const char *name;
    double bytes;
} budgets[] = {{"16 GiB", 0x1p34}, {"80 GiB", 80 * 0x1p30}, {"1 TiB", 0x1p40}};
#define NBUDGETS (sizeof budgets / sizeof budgets[0])

/* A series the tables can predict for: ours, in one process, calibrated; its spec is its
 * first ok record's. */
static bool predictable(const report_series *s, point_spec *spec, capacity_calibration *cal)
{
    const json_t *first = report_first_ok(s);
    return first && !report_is_peer(s) && capacity_spec_of(first, spec) == 0 &&
           capacity_calibrate(s, cal) == 0;
}

static double machine_bytes(const report_series *s)
{
    const json_t *b = report_path(report_first_ok(s), "context.memory_bound.bytes");
    return b ? json_number_value(b) : NAN;
}

static void fmt_answer(const capacity_answer *a, char *buf, size_t size)
{
    if (!a->at.n)
        snprintf(buf, size, "none");
    else if (strcmp(a->limited_by, "length") == 0)
        snprintf(buf, size, "%lld (the longest n run)", (long long)a->at.n);
    else
        snprintf(buf, size, "%lld", (long long)a->at.n);
}

static void fmt_calibration(const capacity_calibration *c, char *buf, size_t size)
{
    char base[32], n[32];
    report_fmt_bytes(c->mem_base, base, sizeof base);
    table_fmt_n(c->n_measured, n, sizeof n);
    snprintf(buf, size, "%d point%s to n = %s: %s + %.4f x model", c->mem_points,
             c->mem_points == 1 ? "" : "s", n, base, c->mem_ratio);
}

static const char *kind_of(const point_spec *s, char *buf, size_t size)
{
    if (s->ranks > 0)
        snprintf(buf, size, "%s over %d ranks (memory per rank)",
                 s->backward ? "forward + backward" : "forward", s->ranks);
    else if (!s->train)
        snprintf(buf, size, "%s", s->backward ? "forward + backward" : "forward");
    else
        snprintf(buf, size, "training step, %s, L = %d",
                 stack_kind_name(s->stack), s->layers);
    return buf;
}

int table_capacity(FILE *md, const report_data *d, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    int header = 0;
    for (int i = 0; i < d->ns; i++) {
        point_spec spec;
        capacity_calibration cal;
        if (!predictable(&d->s[i], &spec, &cal))
            continue;
        if (!header)
            fprintf(md, "| series | kind | this machine | %s | %s | %s | calibration |\n"
                        "|---|---|---|---|---|---|---|\n",
                    budgets[0].name, budgets[1].name, budgets[2].name);
        header = 1;
        char kind[96], cell[64], mem[32], calib[160];
        fprintf(md, "| %s | %s |", d->s[i].label, kind_of(&spec, kind, sizeof kind));
        capacity_answer a;
        const double here = machine_bytes(&d->s[i]);
        if (isnan(here)) {
            fprintf(md, " n/a |");
        } else {
            capacity_search(&spec, &cal, here, 0, CAPACITY_GRANULE, &a);
            fmt_answer(&a, cell, sizeof cell);
            report_fmt_bytes(here, mem, sizeof mem);
            fprintf(md, " %s in %s |", cell, mem);
        }
        for (size_t b = 0; b < NBUDGETS; b++) {
            capacity_search(&spec, &cal, budgets[b].bytes, 0, CAPACITY_GRANULE, &a);
            fmt_answer(&a, cell, sizeof cell);
            fprintf(md, " %s |", cell);
        }
        fmt_calibration(&cal, calib, sizeof calib);
        fprintf(md, " %s |\n", calib);
    }
    return 0;
}

/* ---- one million tokens ------------------------------------------------------------------- */

/* The training series of the records closest to a model over `inner` with this stack, if any:
 * the model is calibrated by a step's records when there are some. */
static int training_series(const report_data *d, const attn_method *inner, int stack)
{
    for (int i = 0; i < d->ns; i++) {
        point_spec s;
        const json_t *first = report_first_ok(&d->s[i]);
        if (first && !report_is_peer(&d->s[i]) && capacity_spec_of(first, &s) == 0 &&
            s.train && s.stack == stack && s.params.method == inner)
            return i;
    }
    return -1;
}

/* The smallest listed budget that holds `bytes`, or what it would take. */
static void fmt_fits(double bytes, double here, char *buf, size_t size)
{
    char need[32], mem[32];
    report_fmt_bytes(bytes, need, sizeof need);
    if (!isnan(here) && bytes <= here) {
        report_fmt_bytes(here, mem, sizeof mem);
        snprintf(buf, size, "this machine (%s)", mem);
        return;
    }
    for (size_t b = 0; b < NBUDGETS; b++)
        if (bytes <= budgets[b].bytes) {
            snprintf(buf, size, "%s", budgets[b].name);
            return;
        }
    snprintf(buf, size, "none listed: needs %s", need);
}

/* The model of the 12-layer, 16-head question: d_model 1024 (d 64), d_ff 4096, the stack the
 * series' method is used in (reversible for the Reformer's lsh row), at n = 2^20. */
enum { MODEL_LAYERS = 12, MODEL_HEADS = 16, MODEL_D = 64 };

static void million_row(FILE *md, const report_data *d, const report_series *s,
                        const point_spec *spec, const capacity_calibration *cal, int stack)
{
    const int64_t n = INT64_C(1) << 20;
    const double here = machine_bytes(s);
    capacity_prediction one, step;
    capacity_predict(spec, n, cal, &one);
    point_spec model = *spec;
    model.train = true;
    model.backward = false;
    model.stack = stack;
    model.layers = MODEL_LAYERS;
    model.shape.H = MODEL_HEADS;
    model.shape.d = MODEL_D;
    model.shape.B = 1;
    model.d_ff = 4 * MODEL_HEADS * MODEL_D;
    model.ff_chunk = 1024;
    const int t = training_series(d, spec->params.method, stack);
    capacity_calibration step_cal = *cal;
    point_spec ignored;
    const bool own = t >= 0 && predictable(&d->s[t], &ignored, &step_cal);
    capacity_predict(&model, n, own ? &step_cal : cal, &step);
    char a[32], b[32], c[32], e[32], f1[96], f2[96];
    report_fmt_bytes(one.peak_rss_bytes, a, sizeof a);
    report_fmt_seconds(one.time_s, b, sizeof b);
    report_fmt_bytes(step.peak_rss_bytes, c, sizeof c);
    report_fmt_seconds(step.time_s, e, sizeof e);
    fmt_fits(one.peak_rss_bytes, here, f1, sizeof f1);
    fmt_fits(step.peak_rss_bytes, here, f2, sizeof f2);
    if (!one.runs || !step.runs) {
        fprintf(md, "| %s | the method does not run n = 2^20 with these parameters | | | | | | |\n",
                s->label);
        return;
    }
    fprintf(md, "| %s | %s | %s | %s | %s %s | %s | %s | %s |\n", s->label, a, b, f1,
            stack_kind_name(stack), own ? "(step records)"
                                                                      : "(forward records)",
            c, e, f2);
}

int table_million(FILE *md, const report_data *d, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    int header = 0;
    for (int i = 0; i < d->ns; i++) {
        point_spec spec;
        capacity_calibration cal;
        if (!predictable(&d->s[i], &spec, &cal) || spec.train || spec.backward)
            continue;
        if (!header)
            fprintf(md, "| method | one head: peak RSS | time | fits in | 12 layers x 16 heads: "
                        "stack (calibrated by) | peak RSS | time of a training step | fits in |\n"
                        "|---|---|---|---|---|---|---|---|\n");
        header = 1;
        million_row(md, d, &d->s[i], &spec, &cal, STACK_STANDARD);
        if (spec.params.method->shared_qk) /* the Reformer: lsh in a reversible stack */
            million_row(md, d, &d->s[i], &spec, &cal, STACK_REVERSIBLE);
    }
    return 0;
}

/* ---- capacity --verify ---------------------------------------------------------------------- */

int table_capacity_verified(FILE *md, const report_data *d, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    int header = 0;
    size_t i;
    const json_t *r;
    json_array_foreach(d->records, i, r) {
        const json_t *c = json_object_get(r, "capacity");
        if (!json_is_object(c))
            continue;
        if (!header)
            fprintf(md, "| method | kind | budget | role | n | status | peak RSS predicted | "
                        "measured | error | time predicted | measured | error |\n"
                        "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        header = 1;
        point_spec spec;
        char kind[96] = "", budget[32], pp[32], pm[32], tp[32], tm[32], pe[32] = "", te[32] = "";
        if (capacity_spec_of(r, &spec) == 0)
            kind_of(&spec, kind, sizeof kind);
        report_fmt_bytes(report_num(c, "budget_bytes"), budget, sizeof budget);
        report_fmt_bytes(report_num(c, "predicted_peak_rss_bytes"), pp, sizeof pp);
        report_fmt_bytes(report_num(r, "peak_rss_bytes"), pm, sizeof pm);
        report_fmt_seconds(report_num(c, "predicted_time_s"), tp, sizeof tp);
        report_fmt_seconds(report_num(r, "wall_s"), tm, sizeof tm);
        if (!isnan(report_num(c, "peak_error")))
            snprintf(pe, sizeof pe, "%+.2f%%", 100 * report_num(c, "peak_error"));
        if (!isnan(report_num(c, "time_error")))
            snprintf(te, sizeof te, "%+.1f%%", 100 * report_num(c, "time_error"));
        const bool measured = report_is_ok(r);
        fprintf(md, "| %s | %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s |\n",
                report_str(r, "method"), kind, budget, report_str(c, "role"),
                report_num(r, "n"), report_str(r, "status"), pp, measured ? pm : "",
                pe, tp, measured ? tm : "", te);
    }
    return 0;
}
