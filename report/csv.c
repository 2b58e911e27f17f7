/* csv.c: see csv.h. */
#include "csv.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "records.h"

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
    {"rss_before_kernel_bytes", "rss_before_kernel_bytes"},
    {"rss_file_growth_bytes", "rss_file_growth_bytes"}, {"ru_maxrss_bytes", "ru_maxrss_bytes"},
    {"heap_peak_bytes", "heap_peak_bytes"}, {"heap_kernel_alloc_bytes", "heap_kernel_alloc_bytes"},
    {"jemalloc_allocated", "jemalloc.allocated"}, {"jemalloc_active", "jemalloc.active"},
    {"jemalloc_resident", "jemalloc.resident"}, {"jemalloc_mapped", "jemalloc.mapped"},
    {"jemalloc_retained", "jemalloc.retained"}, {"jemalloc_metadata", "jemalloc.metadata"},
    {"loss", "loss"}, {"err_max_rel", "err_vs_exact.max_rel"},
    {"err_mean_rel", "err_vs_exact.mean_rel"}, {"err_rel_fro", "err_vs_exact.rel_fro"},
    {"err_mass_recall", "err_vs_exact.mass_recall"}, {"err_reference_s", "err_vs_exact.reference_s"},
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
            csv_value(f, report_path(rec, csv_fixed[c].path));
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

static json_t *real_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* DIR/fits.csv and DIR/fits.json: one row per series and metric (the exponent b of
 * metric ~ a n^b, its standard error, a, R^2, the points and n range fitted), for plotting
 * tools and gates. A metric a series cannot fit (fewer than two points) has empty cells. */
int report_write_fits(const char *dir, const report_series *s, int ns, double n_from)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/fits.csv", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    json_t *all = json_array();
    fprintf(f, "series,method,series_key,metric,b,se_b,a,r2,points,n_min,n_max,b_theil_sen,"
               "busy_excluded,reliable,reason\n");
    for (int k = 0; k < ns; k++) {
        for (size_t m = 0; m < report_fit_metric_count; m++) {
            report_fit_note note;
            const fit_result fr = report_fit(&s[k], &report_fit_metrics[m], n_from, &note);
            csv_cell(f, s[k].label);
            fputc(',', f);
            csv_cell(f, s[k].method);
            fputc(',', f);
            csv_cell(f, s[k].key);
            fprintf(f, ",%s", report_fit_metrics[m].name);
            json_t *row = json_pack("{s:s, s:s, s:s, s:s}", "series", s[k].label, "method",
                                    s[k].method, "series_key", s[k].key, "metric",
                                    report_fit_metrics[m].name);
            if (fr.ok) {
                fprintf(f, ",%.6g,", fr.b);
                if (isfinite(fr.se_b))
                    fprintf(f, "%.6g", fr.se_b);
                fprintf(f, ",%.6g,%.6g,%zu,%.0f,%.0f,", fr.a, fr.r2, fr.k, fr.n_min, fr.n_max);
                if (isfinite(note.b_theil_sen))
                    fprintf(f, "%.6g", note.b_theil_sen);
            } else {
                fprintf(f, ",,,,,,,,");
            }
            fprintf(f, ",%zu,%s,", note.busy_excluded, note.reliable ? "true" : "false");
            csv_cell(f, note.reason);
            fputc('\n', f);
            json_object_set_new(row, "b", fr.ok ? json_real(fr.b) : json_null());
            json_object_set_new(row, "se_b", fr.ok ? real_or_null(fr.se_b) : json_null());
            json_object_set_new(row, "a", fr.ok ? json_real(fr.a) : json_null());
            json_object_set_new(row, "r2", fr.ok ? real_or_null(fr.r2) : json_null());
            json_object_set_new(row, "points", json_integer(fr.ok ? (json_int_t)fr.k : 0));
            json_object_set_new(row, "n_min", fr.ok ? json_real(fr.n_min) : json_null());
            json_object_set_new(row, "n_max", fr.ok ? json_real(fr.n_max) : json_null());
            json_object_set_new(row, "b_theil_sen", real_or_null(note.b_theil_sen));
            json_object_set_new(row, "busy_excluded", json_integer((json_int_t)note.busy_excluded));
            json_object_set_new(row, "reliable", json_boolean(note.reliable));
            json_object_set_new(row, "reason", note.reliable ? json_null() : json_string(note.reason));
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
