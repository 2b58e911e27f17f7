/* table_points.c: tables with a row per point: each series' points, a selection of records with
 * chosen columns, the work the kernels counted, the harness's own cost, and two runs point by
 * point. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "records.h"
#include "tables.h"

/* ---- each series, point by point ------------------------------------------------------------ */

int table_series(FILE *md, const report_data *d, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    for (int k = 0; k < d->ns; k++) {
        fprintf(md, "%s### %s\n\n", k ? "\n" : "", d->s[k].label);
        fprintf(md, "| n | status | time (s) | spread | GFLOP/s | of sgemm | peak RSS | heap peak | "
                    "model bytes | RSS / model | machine |\n"
                    "|---|---|---|---|---|---|---|---|---|---|---|\n");
        const size_t np = json_array_size(d->s[k].points);
        for (size_t j = 0; j < np; j++) {
            const json_t *r = json_array_get(d->s[k].points, j);
            char rss[32], heap[32], model[32];
            report_fmt_bytes(report_num(r, "peak_rss_bytes"), rss, sizeof rss);
            report_fmt_bytes(report_num(r, "heap_peak_bytes"), heap, sizeof heap);
            report_fmt_bytes(report_num(r, "model_bytes"), model, sizeof model);
            const double ratio = report_num(r, "peak_rss_bytes") / report_num(r, "model_bytes");
            fprintf(md, "| %.0f | %s | ", report_num(r, "n"), report_str(r, "status"));
            /* a time taken while other processes used the machine is marked, not hidden */
            char machine[64] = "";
            if (report_is_busy(r))
                snprintf(machine, sizeof machine, "**busy**: others %.0f%%",
                         100 * report_num(json_object_get(r, "machine_load"), "other_share"));
            /* the spread of the repetitions about their median, marked where it is large */
            const double spread = (report_num(r, "wall_s_max") - report_num(r, "wall_s_min")) /
                                  report_num(r, "wall_s");
            char sp[32] = "";
            if (isfinite(spread))
                snprintf(sp, sizeof sp, spread > REPORT_LARGE_SPREAD ? "**%.0f%%**" : "%.1f%%",
                         100 * spread);
            /* the kernel's speed against what the machine's sgemm did in the same sweep */
            char share[32] = "";
            const double of_sgemm = report_sgemm_share(r);
            if (isfinite(of_sgemm))
                snprintf(share, sizeof share, "%.0f%%", 100 * of_sgemm);
            if (report_is_ok(r))
                fprintf(md, "%.4g | %s | %.1f | %s | %s | %s | %s | %.2f | %s |\n",
                        report_num(r, "wall_s"), sp, report_num(r, "gflops"), share, rss, heap,
                        model, ratio, machine);
            else
                fprintf(md, " |  |  |  | %s |  | %s |  | %s |\n", rss, model, machine);
        }
    }
    return 0;
}

/* ---- points: chosen columns ----------------------------------------------------------------- */

typedef enum {
    COL_TEXT,    /* a string at path */
    COL_COUNT,   /* an integer-valued number at path */
    COL_NUM,     /* a number at path, with fmt */
    COL_BYTES,   /* bytes at path */
    COL_SHARE,   /* a share at path, as a percentage with fmt */
    COL_YESNO,   /* a flag at path */
    COL_SPECIAL, /* computed by cell_special */
} col_kind;

typedef struct column {
    const char *name, *header;
    col_kind kind;
    const char *path;
    const char *fmt; /* COL_NUM, COL_SHARE: "g4" is %.4g, "f1" %.1f */
} column;

static const column columns[] = {
    {"series", "series", COL_SPECIAL, NULL, NULL},
    {"method", "method", COL_TEXT, "method", NULL},
    {"varies", "parameters", COL_SPECIAL, NULL, NULL},
    {"params", "parameters", COL_SPECIAL, NULL, NULL},
    {"kind", "what ran", COL_SPECIAL, NULL, NULL},
    {"n", "n", COL_SPECIAL, NULL, NULL},
    {"d", "d", COL_COUNT, "d", NULL},
    {"heads", "heads", COL_COUNT, "heads", NULL},
    {"batch", "batch", COL_COUNT, "batch", NULL},
    {"causal", "causal", COL_YESNO, "causal", NULL},
    {"threads", "threads", COL_COUNT, "threads", NULL},
    {"ranks", "ranks", COL_SPECIAL, NULL, NULL},
    {"layers", "L", COL_COUNT, "layers", NULL},
    {"inputs", "inputs", COL_TEXT, "inputs", NULL},
    {"dtype", "dtype", COL_SPECIAL, NULL, NULL},
    {"status", "status", COL_TEXT, "status", NULL},
    {"time", "time (s)", COL_NUM, "wall_s", "g4"},
    {"time_min", "fastest (s)", COL_NUM, "wall_s_min", "g4"},
    {"time_max", "slowest (s)", COL_NUM, "wall_s_max", "g4"},
    {"spread", "spread", COL_SPECIAL, NULL, NULL},
    {"gflops", "GFLOP/s", COL_NUM, "gflops", "f1"},
    {"sgemm_share", "of sgemm", COL_SPECIAL, NULL, NULL},
    {"model_tflop", "model TFLOP", COL_SPECIAL, NULL, NULL},
    {"recompute_tflop", "recomputed TFLOP", COL_SPECIAL, NULL, NULL},
    {"peak_rss", "peak RSS", COL_BYTES, "peak_rss_bytes", NULL},
    {"point_rss", "point RSS", COL_SPECIAL, NULL, NULL},
    {"heap_peak", "heap peak", COL_BYTES, "heap_peak_bytes", NULL},
    {"model_bytes", "model bytes", COL_BYTES, "model_bytes", NULL},
    {"rss_model", "RSS / model", COL_SPECIAL, NULL, NULL},
    {"param_bytes", "weights + gradients", COL_BYTES, "param_bytes", NULL},
    {"activation", "activations", COL_SPECIAL, NULL, NULL},
    {"model_activation", "model activations", COL_BYTES, "model_activation_bytes", NULL},
    {"rss_before_inputs", "RSS before inputs", COL_BYTES, "rss_before_inputs_bytes", NULL},
    {"loss", "loss", COL_NUM, "loss", "g6"},
    {"err_mean", "mean row error", COL_NUM, "err_vs_exact.mean_rel", "f3"},
    {"err_max", "max row error", COL_NUM, "err_vs_exact.max_rel", "f3"},
    {"err_fro", "relative error", COL_NUM, "err_vs_exact.rel_fro", "g3"},
    {"err_fp32", "error vs fp32", COL_NUM, "err_vs_fp32.rel_fro", "g3"},
    {"recall", "mass recalled", COL_NUM, "err_vs_exact.mass_recall", "f4"},
    {"scores_per_token", "scores per token", COL_NUM, "work.scores_per_token", "f0"},
    {"duplicates", "duplicate candidates", COL_SHARE, "work.duplicates_share", "f1"},
    {"rss_vs_fp32", "peak RSS / fp32's", COL_SPECIAL, NULL, NULL},
    {"time_vs_fp32", "time / fp32's", COL_SPECIAL, NULL, NULL},
    {"busy", "machine", COL_SPECIAL, NULL, NULL},
    {"other_share", "others used", COL_SHARE, "machine_load.other_share", "f1"},
    {"probe_fraction", "probes' share", COL_SHARE, "harness.probe_fraction", "g2"},
    {"sent_per_rank", "sent per rank", COL_BYTES, "ranks.bytes_sent_max", NULL},
    {"peak_rss_sum", "peak RSS, all ranks", COL_BYTES, "ranks.peak_rss_bytes_sum", NULL},
    {"wait_share", "waiting", COL_SHARE, "ranks.wait_share_max", "f1"},
    {"commit", "commit", COL_SPECIAL, NULL, NULL},
    {"date", "date", COL_SPECIAL, NULL, NULL},
};

static const column *column_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof columns / sizeof columns[0]; i++)
        if (strlen(columns[i].name) == len && strncmp(columns[i].name, name, len) == 0)
            return &columns[i];
    return NULL;
}

/* The series a record belongs to, or NULL. */
static const report_series *series_of(const report_data *d, const json_t *rec)
{
    for (int k = 0; k < d->ns; k++)
        for (size_t j = 0; j < json_array_size(d->s[k].points); j++)
            if (json_array_get(d->s[k].points, j) == rec)
                return &d->s[k];
    return NULL;
}

/* A parameter's value as --param takes it. */
static void param_text(const json_t *v, char *buf, size_t size)
{
    if (json_is_string(v))
        snprintf(buf, size, "%s", json_string_value(v));
    else if (json_is_number(v))
        snprintf(buf, size, "%.10g", json_number_value(v));
    else
        snprintf(buf, size, "?");
}

/* Whether a parameter of rec takes another value in some selected record of its method. */
static int param_varies(const report_data *d, const json_t *rec, const char *key)
{
    char mine[64], theirs[64];
    param_text(report_path(rec, "params") ? json_object_get(json_object_get(rec, "params"), key)
                                          : NULL, mine, sizeof mine);
    size_t i;
    json_t *r;
    json_array_foreach(d->records, i, r)
    {
        if (strcmp(report_str(r, "method"), report_str(rec, "method")) != 0)
            continue;
        param_text(json_object_get(json_object_get(r, "params"), key), theirs, sizeof theirs);
        if (strcmp(mine, theirs) != 0)
            return 1;
    }
    return 0;
}

static void params_cell(const report_data *d, const json_t *rec, int only_varying, char *buf,
                        size_t size)
{
    buf[0] = '\0';
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get((json_t *)rec, "params"), key, v)
    {
        if (only_varying && !param_varies(d, rec, key))
            continue;
        char val[64];
        param_text(v, val, sizeof val);
        const size_t len = strlen(buf);
        snprintf(buf + len, size - len, "%s%s=%s", len ? " " : "", key, val);
    }
}

/* The fp32 record of the same point as bf16 record r (its key without the dtype), or NULL. */
static const json_t *fp32_twin(const report_data *d, const json_t *r)
{
    const char *key = report_str(r, "point_key"), *at = strstr(key, ";dtype=");
    if (!at || strcmp(report_dtype(r), "fp32") == 0)
        return NULL;
    const size_t head = (size_t)(at - key);
    const char *tail = strchr(at + 1, ';');
    size_t i;
    json_t *t;
    json_array_foreach(d->records, i, t)
    {
        const char *k = report_str(t, "point_key");
        if (strncmp(k, key, head) == 0 && strcmp(k + head, tail ? tail : "") == 0 &&
            report_is_ok(t))
            return t;
    }
    return NULL;
}

static void cell_special(const column *c, const report_data *d, const json_t *r, char *buf,
                         size_t size)
{
    const char *name = c->name;
    char b1[32];
    buf[0] = '\0';
    if (strcmp(name, "series") == 0) {
        const report_series *s = series_of(d, r);
        snprintf(buf, size, "%s", s ? s->label : report_str(r, "method"));
    } else if (strcmp(name, "varies") == 0 || strcmp(name, "params") == 0) {
        params_cell(d, r, name[0] == 'v', buf, size);
    } else if (strcmp(name, "kind") == 0) {
        snprintf(buf, size, "%s", json_is_string(json_object_get(r, "stack")) ? "training step"
                                  : json_is_true(json_object_get(r, "backward")) ? "forward + backward"
                                                                                 : "forward");
    } else if (strcmp(name, "n") == 0) {
        table_fmt_n(report_num(r, "n"), buf, size);
    } else if (strcmp(name, "dtype") == 0) {
        snprintf(buf, size, "%s", report_dtype(r));
    } else if (strcmp(name, "rss_vs_fp32") == 0 || strcmp(name, "time_vs_fp32") == 0) {
        /* a bf16 point against the fp32 point measured beside it (same file, same key) */
        const json_t *twin = report_is_ok(r) ? fp32_twin(d, r) : NULL;
        const char *field = name[0] == 'r' ? "peak_rss_bytes" : "wall_s";
        if (twin)
            snprintf(buf, size, "%.2fx", report_num(r, field) / report_num(twin, field));
    } else if (strcmp(name, "ranks") == 0) {
        const double p = report_num(json_object_get(r, "ranks"), "count");
        snprintf(buf, size, "%.0f", isfinite(p) ? p : 1);
    } else if (!report_is_ok(r)) {
        /* the measured columns of a point that was not measured stay empty */
    } else if (strcmp(name, "spread") == 0) {
        const double w = report_num(r, "wall_s");
        snprintf(buf, size, "%.1f%%", 100 * (report_num(r, "wall_s_max") - report_num(r, "wall_s_min")) / w);
    } else if (strcmp(name, "sgemm_share") == 0) {
        const double share = report_sgemm_share(r);
        if (isfinite(share))
            snprintf(buf, size, "%.0f%%", 100 * share);
    } else if (strcmp(name, "model_tflop") == 0) {
        snprintf(buf, size, "%.1f", report_num(r, "model_flops") / 1e12);
    } else if (strcmp(name, "recompute_tflop") == 0) {
        const double v = report_num(r, "model_recompute_flops");
        if (isfinite(v))
            snprintf(buf, size, "%.1f", v / 1e12);
    } else if (strcmp(name, "point_rss") == 0) {
        report_fmt_bytes(report_metric_point_rss(r, NULL), buf, size);
    } else if (strcmp(name, "activation") == 0) {
        report_fmt_bytes(report_metric_activation(r, NULL), buf, size);
    } else if (strcmp(name, "rss_model") == 0) {
        snprintf(buf, size, "%.2f", report_num(r, "peak_rss_bytes") / report_num(r, "model_bytes"));
    } else if (strcmp(name, "busy") == 0) {
        if (report_is_busy(r))
            snprintf(buf, size, "**busy**: others %.0f%%",
                     100 * report_num(json_object_get(r, "machine_load"), "other_share"));
    } else if (strcmp(name, "commit") == 0) {
        snprintf(b1, sizeof b1, "%.7s", report_str(json_object_get(r, "context"), "git_commit"));
        snprintf(buf, size, "%s", b1);
    } else if (strcmp(name, "date") == 0) {
        snprintf(buf, size, "%.10s", report_str(json_object_get(r, "context"), "date"));
    }
}

static void cell(const column *c, const report_data *d, const json_t *r, char *buf, size_t size)
{
    const json_t *v = c->path ? report_path(r, c->path) : NULL;
    buf[0] = '\0';
    switch (c->kind) {
    case COL_SPECIAL: cell_special(c, d, r, buf, size); break;
    case COL_TEXT: snprintf(buf, size, "%s", json_is_string(v) ? json_string_value(v) : ""); break;
    case COL_YESNO: snprintf(buf, size, "%s", json_is_true(v) ? "yes" : "no"); break;
    case COL_COUNT:
        if (json_is_number(v))
            snprintf(buf, size, "%.0f", json_number_value(v));
        break;
    case COL_NUM:
    case COL_SHARE:
        if (json_is_number(v)) {
            const double x = json_number_value(v) * (c->kind == COL_SHARE ? 100 : 1);
            const int prec = c->fmt[1] - '0';
            snprintf(buf, size, c->fmt[0] == 'g' ? "%.*g%s" : "%.*f%s", prec, x,
                     c->kind == COL_SHARE ? "%" : "");
        }
        break;
    case COL_BYTES:
        if (json_is_number(v))
            report_fmt_bytes(json_number_value(v), buf, size);
        break;
    }
}

int table_points(FILE *md, const report_data *d, char *err, size_t errlen)
{
    if (!d->columns || !*d->columns) {
        snprintf(err, errlen, "points needs columns=NAME,... (attnbench docs --help lists them)");
        return -1;
    }
    const column *cols[64];
    size_t nc = 0;
    for (const char *p = d->columns; *p;) {
        const size_t len = strcspn(p, ",");
        const column *c = column_find(p, len);
        if (!c) {
            char names[1024] = "";
            for (size_t i = 0; i < sizeof columns / sizeof columns[0]; i++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                         columns[i].name);
            snprintf(err, errlen, "unknown column '%.*s' (columns: %s)", (int)len, p, names);
            return -1;
        }
        if (nc == 64) {
            snprintf(err, errlen, "more than 64 columns");
            return -1;
        }
        cols[nc++] = c;
        p += len + (p[len] == ',');
    }
    if (json_array_size(d->records) == 0)
        return 0;
    for (size_t c = 0; c < nc; c++)
        fprintf(md, "| %s ", cols[c]->header);
    fprintf(md, "|\n");
    for (size_t c = 0; c < nc; c++)
        fprintf(md, "|---");
    fprintf(md, "|\n");
    size_t i;
    json_t *r;
    json_array_foreach(d->records, i, r)
    {
        for (size_t c = 0; c < nc; c++) {
            char buf[512];
            cell(cols[c], d, r, buf, sizeof buf);
            fprintf(md, "| %s ", buf);
        }
        fprintf(md, "|\n");
    }
    return 0;
}

void table_points_columns(FILE *f)
{
    for (size_t i = 0; i < sizeof columns / sizeof columns[0]; i++)
        fprintf(f, "%s%s", i ? ", " : "", columns[i].name);
}

/* ---- work: what the kernels counted (sde:::attn::), against the model ---------------------- */

int table_work(FILE *md, const report_data *d, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    int header = 0;
    for (int i = 0; i < d->ns; i++) {
        const json_t *last = NULL;
        for (size_t j = 0; j < json_array_size(d->s[i].points); j++) {
            const json_t *r = json_array_get(d->s[i].points, j);
            if (json_is_object(json_object_get(r, "work")))
                last = r;
        }
        if (!last)
            continue;
        if (!header)
            fprintf(md, "| series | n | scores counted | model's scores | counted / model | "
                        "unmasked / model | duplicate candidates |\n|---|---|---|---|---|---|---|\n");
        header = 1;
        const json_t *w = json_object_get(last, "work");
        char dup[64] = "";
        if (json_is_integer(json_object_get(w, "duplicates")))
            snprintf(dup, sizeof dup, "%.4g (%.2g%%)", report_num(w, "duplicates"),
                     100 * report_num(w, "duplicates_share"));
        if (isfinite(report_num(w, "model_scores")))
            fprintf(md, "| %s | %.0f | %.6g | %.6g | %.4f | %.4f | %s |\n", d->s[i].label,
                    report_num(last, "n"), report_num(json_object_get(w, "counted"), "SCORES"),
                    report_num(w, "model_scores"), report_num(w, "scores_vs_model"),
                    report_num(w, "unmasked_vs_model"), dup);
        else
            fprintf(md, "| %s | %.0f | %.6g | (no model) |  |  | %s |\n", d->s[i].label,
                    report_num(last, "n"), report_num(json_object_get(w, "counted"), "SCORES"), dup);
    }
    return 0;
}

/* ---- harness: what measuring costs ----------------------------------------------------------- */

/* Per n over the ok points: the child's RSS before its inputs (the harness and its libraries)
 * and the largest share of the timed repetitions the probes took (their start and stop). */
int table_harness(FILE *md, const report_data *d, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    json_t *by_n = json_object(); /* "n" -> [points, rss min, rss max, probe max] */
    json_t *order = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(d->records, i, r)
    {
        const double rss = report_num(r, "rss_before_inputs_bytes");
        const double probe = report_num(json_object_get(r, "harness"), "probe_fraction");
        if (!report_is_ok(r) || !isfinite(rss) || !isfinite(probe))
            continue;
        char key[32];
        snprintf(key, sizeof key, "%.0f", report_num(r, "n"));
        json_t *e = json_object_get(by_n, key);
        if (!e) {
            e = json_pack("[i,f,f,f]", 0, rss, rss, probe);
            json_object_set_new(by_n, key, e);
            json_array_append_new(order, json_real(report_num(r, "n")));
        }
        json_array_set_new(e, 0, json_integer(json_integer_value(json_array_get(e, 0)) + 1));
        json_array_set_new(e, 1, json_real(fmin(rss, json_real_value(json_array_get(e, 1)))));
        json_array_set_new(e, 2, json_real(fmax(rss, json_real_value(json_array_get(e, 2)))));
        json_array_set_new(e, 3, json_real(fmax(probe, json_real_value(json_array_get(e, 3)))));
    }
    /* by n, ascending */
    const size_t nn = json_array_size(order);
    double *ns = malloc((nn + 1) * sizeof *ns);
    for (size_t k = 0; ns && k < nn; k++) {
        ns[k] = json_real_value(json_array_get(order, k));
        for (size_t j = k; j > 0 && ns[j - 1] > ns[j]; j--) {
            const double t = ns[j];
            ns[j] = ns[j - 1], ns[j - 1] = t;
        }
    }
    for (size_t k = 0; ns && k < nn; k++) {
        if (k == 0)
            fprintf(md, "| n | points | RSS before inputs | probes' share of the timed repetitions, "
                        "largest |\n|---|---|---|---|\n");
        char key[32], lo[32], hi[32], nbuf[32];
        snprintf(key, sizeof key, "%.0f", ns[k]);
        const json_t *e = json_object_get(by_n, key);
        report_fmt_bytes(json_real_value(json_array_get(e, 1)), lo, sizeof lo);
        report_fmt_bytes(json_real_value(json_array_get(e, 2)), hi, sizeof hi);
        table_fmt_n(ns[k], nbuf, sizeof nbuf);
        if (strcmp(lo, hi) == 0)
            fprintf(md, "| %s | %lld | %s | %.2g%% |\n", nbuf,
                    (long long)json_integer_value(json_array_get(e, 0)), lo,
                    100 * json_real_value(json_array_get(e, 3)));
        else
            fprintf(md, "| %s | %lld | %s to %s | %.2g%% |\n", nbuf,
                    (long long)json_integer_value(json_array_get(e, 0)), lo, hi,
                    100 * json_real_value(json_array_get(e, 3)));
    }
    free(ns);
    json_decref(order);
    json_decref(by_n);
    return 0;
}

/* ---- two runs ------------------------------------------------------------------------------- */

static const json_t *first_context(json_t *records)
{
    size_t i;
    json_t *r;
    json_array_foreach(records, i, r)
        if (report_is_ok(r))
            return json_object_get(r, "context");
    return json_object_get(json_array_get(records, 0), "context");
}

int table_compare_context(FILE *md, const report_data *d, char *err, size_t errlen)
{
    if (!d->reference) {
        snprintf(err, errlen, "compare-context needs reference=FILE");
        return -1;
    }
    const json_t *a = first_context(d->records), *b = first_context(d->reference);
    fprintf(md, "| | this run | reference |\n|---|---|---|\n");
    static const char *const keys[][2] = {
        {"cpu_model", "CPU"},       {"cpu_family", "CPU family"},
        {"cpu_model_number", "CPU model"}, {"kernel_isa", "attnbench's kernels"},
        {"cores", "cores"},         {"mem_total_bytes", "memory"},
        {"openblas_core", "OpenBLAS kernels"}, {"compiler", "compiler"},
        {"git_commit", "commit"},   {"date", "date"},
    };
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        char va[128], vb[128];
        const json_t *side[2] = {a, b};
        char *out[2] = {va, vb};
        for (int s = 0; s < 2; s++) {
            const json_t *v = json_object_get(side[s], keys[k][0]);
            if (strcmp(keys[k][0], "mem_total_bytes") == 0)
                report_fmt_bytes(json_is_number(v) ? json_number_value(v) : NAN, out[s], 128);
            else if (json_is_string(v))
                snprintf(out[s], 128, strcmp(keys[k][0], "git_commit") == 0 ? "%.7s" : "%s",
                         json_string_value(v));
            else if (json_is_number(v))
                snprintf(out[s], 128, "%.0f", json_number_value(v));
            else
                snprintf(out[s], 128, "not recorded");
        }
        fprintf(md, "| %s | %s | %s |\n", keys[k][1], va, vb);
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int table_compare_points(FILE *md, const report_data *d, char *err, size_t errlen)
{
    if (!d->reference) {
        snprintf(err, errlen, "compare-points needs reference=FILE");
        return -1;
    }
    json_t *index = json_object(); /* point_id -> reference record */
    size_t i;
    json_t *r;
    json_array_foreach(d->reference, i, r)
        json_object_set(index, report_str(r, "point_id"), r);
    const size_t cap = json_array_size(d->records) + 1;
    double *tr = malloc(cap * sizeof *tr), *mr = malloc(cap * sizeof *mr);
    size_t nt = 0, nm = 0, rows = 0;
    json_array_foreach(d->records, i, r)
    {
        const json_t *ref = json_object_get(index, report_str(r, "point_id"));
        if (!ref || !tr || !mr)
            continue;
        if (!rows++)
            fprintf(md, "| series | n | time (s) | reference (s) | time ratio | peak RSS | "
                        "reference | RSS ratio |\n|---|---|---|---|---|---|---|---|\n");
        const report_series *s = NULL;
        for (int k = 0; k < d->ns && !s; k++)
            for (size_t j = 0; j < json_array_size(d->s[k].points); j++)
                if (json_array_get(d->s[k].points, j) == r)
                    s = &d->s[k];
        char nbuf[32];
        table_fmt_n(report_num(r, "n"), nbuf, sizeof nbuf);
        fprintf(md, "| %s | %s |", s ? s->label : report_str(r, "method"), nbuf);
        if (!report_is_ok(r) || !report_is_ok(ref)) {
            fprintf(md, " %s | %s |  |  |  |  |\n", report_str(r, "status"), report_str(ref, "status"));
            continue;
        }
        const double t = report_num(r, "wall_s") / report_num(ref, "wall_s");
        const double m = report_num(r, "peak_rss_bytes") / report_num(ref, "peak_rss_bytes");
        const int busy = report_is_busy(r) || report_is_busy(ref);
        char ma[32], mb[32];
        report_fmt_bytes(report_num(r, "peak_rss_bytes"), ma, sizeof ma);
        report_fmt_bytes(report_num(ref, "peak_rss_bytes"), mb, sizeof mb);
        fprintf(md, " %.4g | %.4g | %.2f%s | %s | %s | %.3f |\n", report_num(r, "wall_s"),
                report_num(ref, "wall_s"), t, busy ? " (busy)" : "", ma, mb, m);
        if (!busy && isfinite(t))
            tr[nt++] = t;
        if (isfinite(m))
            mr[nm++] = m;
    }
    if (rows)
        fprintf(md, "| median of %zu points |  |  |  | %.2f (%zu quiet) |  |  | %.3f |\n", rows,
                median(tr, nt), nt, median(mr, nm));
    free(tr);
    free(mr);
    json_decref(index);
    return 0;
}

/* Two runs in a few numbers: the points each has, those both measured, statuses that differ,
 * and the median ratios of time (quiet points only) and of peak RSS. */
int table_compare_summary(FILE *md, const report_data *d, char *err, size_t errlen)
{
    if (!d->reference) {
        snprintf(err, errlen, "compare-summary needs reference=FILE");
        return -1;
    }
    json_t *index = json_object();
    size_t i;
    json_t *r;
    json_array_foreach(d->reference, i, r)
        json_object_set(index, report_str(r, "point_id"), r);
    const size_t cap = json_array_size(d->records) + 1;
    double *tr = malloc(cap * sizeof *tr), *mr = malloc(cap * sizeof *mr);
    size_t both = 0, same_status = 0, nt = 0, nm = 0;
    json_array_foreach(d->records, i, r)
    {
        const json_t *ref = json_object_get(index, report_str(r, "point_id"));
        if (!ref || !tr || !mr)
            continue;
        both++;
        same_status += strcmp(report_str(r, "status"), report_str(ref, "status")) == 0;
        if (!report_is_ok(r) || !report_is_ok(ref))
            continue;
        const double t = report_num(r, "wall_s") / report_num(ref, "wall_s");
        const double m = report_num(r, "peak_rss_bytes") / report_num(ref, "peak_rss_bytes");
        if (!report_is_busy(r) && !report_is_busy(ref) && isfinite(t))
            tr[nt++] = t;
        if (isfinite(m))
            mr[nm++] = m;
    }
    fprintf(md, "| points: this run | reference | in both | same status | median time ratio "
                "(quiet points) | median peak RSS ratio |\n|---|---|---|---|---|---|\n");
    fprintf(md, "| %zu | %zu | %zu | %zu | %.2f (%zu) | %.3f (%zu) |\n",
            json_array_size(d->records), json_array_size(d->reference), both, same_status,
            median(tr, nt), nt, median(mr, nm), nm);
    free(tr);
    free(mr);
    json_decref(index);
    return 0;
}
