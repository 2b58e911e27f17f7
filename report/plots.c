/* plots.c: see plots.h. */
#include "plots.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plot.h"
#include "records.h"

/* A plot series from the ok points of a report series: x = xfield, y = metric(record). Returns
 * 1 when it got points; otherwise frees them and returns 0. */
static int series_points(const report_series *s, const char *xfield, report_metric metric,
                         const void *ctx, plot_series *ps)
{
    memset(ps, 0, sizeof *ps);
    snprintf(ps->title, sizeof ps->title, "%s", s->label);
    ps->count = report_series_xy(s, xfield, metric, ctx, &ps->x, &ps->y);
    if (ps->count > 0)
        return 1;
    free(ps->x);
    free(ps->y);
    ps->x = ps->y = NULL;
    return 0;
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
static int unmeasured_points(const report_series *s, plot_series *ps)
{
    const size_t np = json_array_size(s->points);
    memset(ps, 0, sizeof *ps);
    ps->x = malloc((np + 1) * sizeof *ps->x);
    ps->y = malloc((np + 1) * sizeof *ps->y);
    ps->hollow = 1;
    snprintf(ps->title, sizeof ps->title, "%s: model bytes, not run", s->label);
    for (size_t j = 0; ps->x && ps->y && j < np; j++) {
        const json_t *r = json_array_get(s->points, j);
        const double model = report_num(r, "model_bytes");
        if (report_is_ok(r) || !(model > 0))
            continue;
        ps->x[ps->count] = report_num(r, "n");
        ps->y[ps->count++] = model;
    }
    if (ps->count > 0)
        return 1;
    free(ps->x);
    free(ps->y);
    ps->x = ps->y = NULL;
    return 0;
}

void plots_metric(const char *dir, FILE *md, const report_series *s, int ns,
                  const plots_metric_spec *spec, int *failures)
{
    plot_series *ps = calloc(2 * (size_t)ns + 1, sizeof *ps);
    if (!ps) {
        fprintf(md, "\n_%s: out of memory._\n", spec->title);
        (*failures)++;
        return;
    }
    size_t k = 0;
    for (int i = 0; i < ns; i++) {
        if (series_points(&s[i], "n", report_metric_field, spec->field, &ps[k]))
            ps[k++].color = i + 1;
        if (spec->with_model && unmeasured_points(&s[i], &ps[k]))
            ps[k++].color = i + 1;
    }
    plot_spec p = {.name = spec->name, .title = spec->title,
                   .xlabel = "sequence length n (tokens)", .ylabel = spec->ylabel, .logx = 1,
                   .logy = spec->logy, .yformat = spec->yformat, .xpow2 = 1,
                   .ybytes = spec->ybytes, .guides = spec->guides};
    draw(dir, &p, ps, k, "n", md, spec->title, failures);
    free(ps);
}

const char *plots_time_title(json_t *records)
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

static double metric_counter_per_token(const json_t *r, const void *ctx)
{
    const char *name = ctx;
    const double v = strncmp(name, "rusage.", 7) == 0
                         ? report_num(json_object_get(r, "rusage"), name + 7)
                         : report_num(json_object_get(r, "counters"), name);
    return v / report_num(r, "n");
}

/* The set (an object of name: true) of the PAPI counters some record counted (a number, not
 * null), but attn's own work counters, which have their section. */
static json_t *counted_names(json_t *records)
{
    json_t *names = json_object();
    size_t i;
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(rec, "counters"), k, v)
            if (json_is_number(v) && strncmp(k, "sde:::attn::", 12) != 0)
                json_object_set_new(names, k, json_true());
    }
    return names;
}

void plots_counters(const char *dir, FILE *md, const report_series *s, int ns, json_t *records,
                    int *failures)
{
    json_t *names = counted_names(records);
    if (json_object_size(names) == 0) {
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
        if (!ps)
            break;
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

static double metric_work(const json_t *r, const void *ctx)
{
    return report_num(json_object_get(r, "work"), ctx);
}

int plots_scores(const char *dir, FILE *md, const report_series *s, int ns, int *failures)
{
    plot_series *ps = calloc((size_t)ns + 1, sizeof *ps);
    size_t k = 0;
    for (int i = 0; ps && i < ns; i++)
        if (series_points(&s[i], "n", metric_work, "scores_per_token", &ps[k]))
            ps[k++].color = i + 1;
    if (k == 0) {
        free(ps);
        return 0; /* no point counted its work (--counters without sde) */
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
    return 1;
}

/* A metric of the lsh points that measured their error against n_hashes: one series per n and
 * inputs. */
static void plot_lsh_hashes(const char *dir, FILE *md, json_t *records, const char *name,
                            const char *title, const char *ylabel, report_metric metric,
                            const void *ctx, int *failures)
{
    enum { MAX_SERIES = 16, MAX_POINTS = 64 };
    plot_series ps[MAX_SERIES];
    size_t nps = 0;
    size_t i;
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        const json_t *e = json_object_get(rec, "err_vs_exact");
        if (strcmp(report_str(rec, "method"), "lsh") || !isfinite(report_num(e, "mean_rel")) ||
            !report_is_ok(rec))
            continue; /* only lsh points whose reference ran */
        char label[128];
        snprintf(label, sizeof label, "n=%.0f %s inputs", report_num(rec, "n"), report_str(rec, "inputs"));
        size_t k = 0;
        while (k < nps && strcmp(ps[k].title, label) != 0)
            k++;
        if (k == nps) {
            if (nps == MAX_SERIES)
                continue;
            memset(&ps[nps], 0, sizeof ps[nps]);
            snprintf(ps[nps].title, sizeof ps[nps].title, "%s", label);
            ps[nps].x = malloc(MAX_POINTS * sizeof(double));
            ps[nps].y = malloc(MAX_POINTS * sizeof(double));
            if (!ps[nps].x || !ps[nps].y) {
                free(ps[nps].x), free(ps[nps].y);
                continue;
            }
            nps++;
        }
        if (ps[k].count == MAX_POINTS)
            continue;
        const double y = metric(rec, ctx);
        if (!isfinite(y))
            continue;
        ps[k].x[ps[k].count] = report_num(json_object_get(rec, "params"), "n_hashes");
        ps[k].y[ps[k].count++] = y;
    }
    if (nps == 0)
        return; /* no lsh point measured its error */
    for (size_t k = 0; k < nps; k++) /* by n_hashes */
        for (size_t a = 1; a < ps[k].count; a++)
            for (size_t b = a; b > 0 && ps[k].x[b - 1] > ps[k].x[b]; b--) {
                double tx = ps[k].x[b], ty = ps[k].y[b];
                ps[k].x[b] = ps[k].x[b - 1], ps[k].y[b] = ps[k].y[b - 1];
                ps[k].x[b - 1] = tx, ps[k].y[b - 1] = ty;
            }
    plot_spec p = {.name = name, .title = title, .xlabel = "n_hashes", .ylabel = ylabel,
                   .logx = 1, .logy = 0, .yformat = "%g"};
    draw(dir, &p, ps, nps, "n_hashes", md, title, failures);
}

/* One accuracy measure (a field of err_vs_exact) against the work each configuration did,
 * scores per token, one curve per method and inputs: where a knob (n_hashes, n_rand, radius)
 * buys accuracy, and at what cost. */
static void plot_accuracy(const char *dir, FILE *md, json_t *records, const char *name,
                          const char *title, const char *ylabel, const char *field, int logy,
                          int *failures)
{
    enum { MAX_SERIES = 16, MAX_POINTS = 64 };
    plot_series ps[MAX_SERIES];
    size_t nps = 0, i;
    json_t *rec;
    json_array_foreach(records, i, rec)
    {
        const double y = report_num(json_object_get(rec, "err_vs_exact"), field);
        const double x = report_num(json_object_get(rec, "work"), "scores_per_token");
        if (!report_is_ok(rec) || !isfinite(y) || !isfinite(x) || x <= 0)
            continue;
        char label[160];
        snprintf(label, sizeof label, "%s, %s inputs", report_str(rec, "method"),
                 report_str(rec, "inputs"));
        size_t k = 0;
        while (k < nps && strcmp(ps[k].title, label) != 0)
            k++;
        if (k == nps) {
            if (nps == MAX_SERIES)
                continue;
            memset(&ps[nps], 0, sizeof ps[nps]);
            snprintf(ps[nps].title, sizeof ps[nps].title, "%s", label);
            ps[nps].x = malloc(MAX_POINTS * sizeof(double));
            ps[nps].y = malloc(MAX_POINTS * sizeof(double));
            if (!ps[nps].x || !ps[nps].y) {
                free(ps[nps].x), free(ps[nps].y);
                continue;
            }
            nps++;
        }
        if (ps[k].count < MAX_POINTS) {
            ps[k].x[ps[k].count] = x;
            ps[k].y[ps[k].count++] = y;
        }
    }
    if (nps == 0)
        return; /* no point measured its accuracy */
    for (size_t k = 0; k < nps; k++) /* by work */
        for (size_t a = 1; a < ps[k].count; a++)
            for (size_t b = a; b > 0 && ps[k].x[b - 1] > ps[k].x[b]; b--) {
                double tx = ps[k].x[b], ty = ps[k].y[b];
                ps[k].x[b] = ps[k].x[b - 1], ps[k].y[b] = ps[k].y[b - 1];
                ps[k].x[b - 1] = tx, ps[k].y[b - 1] = ty;
            }
    plot_spec p = {.name = name, .title = title, .xlabel = "query-key scores per token",
                   .ylabel = ylabel, .logx = 1, .logy = logy, .yformat = "%g"};
    draw(dir, &p, ps, nps, "configurations", md, title, failures);
}

void plots_lsh(const char *dir, FILE *md, json_t *records, int *failures)
{
    plot_accuracy(dir, md, records, "accuracy_error",
                  "Error against the exact attention, by the work done",
                  "||out - exact||_F / ||exact||_F", "rel_fro", 10, failures);
    plot_accuracy(dir, md, records, "accuracy_recall",
                  "Exact softmax mass on the keys scored, by the work done",
                  "mass recalled (1: all)", "mass_recall", 0, failures);
    /* beside them, why LSH's error stops falling: more rounds, more keys seen twice */
    plot_lsh_hashes(dir, md, records, "lsh_duplicates",
                    "LSH candidates seen again (share of the scores) against n_hashes",
                    "duplicate candidates / scores", metric_work, "duplicates_share", failures);
}

void plots_layers(const char *dir, FILE *md, json_t *records, int *failures)
{
    report_series *s;
    const int ns = report_series_make(records, "layers", &s);
    plot_series *ps = calloc((size_t)ns + 1, sizeof *ps);
    size_t k = 0;
    for (int i = 0; ps && i < ns; i++)
        k += (size_t)series_points(&s[i], "layers", report_metric_activation, NULL, &ps[k]);
    plot_spec p = {.name = "layers", .title = "Training step: activation memory against depth",
                   .xlabel = "layers L", .ylabel = "peak RSS - weights and gradients", .logx = 0,
                   .logy = 0, .ybytes = 1};
    draw(dir, &p, ps, k, "L", md, "Peak memory vs layers", failures);
    free(ps);
    report_series_free(s, ns);
}

void plots_remove_old(const char *dir)
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
