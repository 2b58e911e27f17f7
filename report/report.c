/* report.c: `attnbench report RESULTS.jsonl... --out DIR [--reference REF.jsonl...]`.
 *
 * Reads results files (never attn/), and writes DIR/report.md with its plots, results.csv,
 * fits.csv and fits.json. report.md is composed here from the tables (tables.h: the same
 * writers the docs' generated blocks call) and the plots (plots.h); this file holds only the
 * order of the sections and the words around them. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bench/commands/commands.h"
#include "../bench/sys/cli.h"
#include "csv.h"
#include "plots.h"
#include "records.h"
#include "tables.h"

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

/* What a side ran on: ours (OpenBLAS kernels, threads) or a peer's own report. */
static void describe_side(FILE *md, const report_series *s)
{
    const json_t *r = NULL;
    for (size_t j = 0; j < json_array_size(s->points) && !r; j++)
        if (report_is_ok(json_array_get(s->points, j)))
            r = json_array_get(s->points, j);
    if (!r)
        return;
    if (report_is_peer(s)) {
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

/* Writes intro and then the table, when the table has something to say; returns whether it
 * did. A table that fails (it never should here: report.md passes every option it needs)
 * writes its error in place. */
static int section(FILE *md, const char *intro, const report_table *t, const report_data *d)
{
    char *buf = NULL, err[512] = "";
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (!mem)
        return 0;
    const int rc = t->write(mem, d, err, sizeof err);
    fclose(mem);
    if (rc)
        fprintf(md, "%s_%s: %s_\n", intro, t->name, err);
    else if (len)
        fprintf(md, "%s%s", intro, buf);
    free(buf);
    return rc || len;
}

static int table(FILE *md, const char *intro, const char *name, const report_data *d)
{
    return section(md, intro, report_table_find(name), d);
}

/* Each mechanism that has a peer: what each side ran, memory and time plots with ours and the
 * peers' curves, and at every n the ratios ours / theirs. */
static void write_peers(const char *dir, FILE *md, const report_data *d, int *failures)
{
    int any = 0;
    for (int i = 0; i < d->ns; i++)
        any |= report_is_peer(&d->s[i]);
    if (!any)
        return;
    fprintf(md, "\n## Beside the peers\n\nEach mechanism with the external programs that "
                "implement it (`--method ext:NAME`), measured by the same harness, same inputs, "
                "threads and shapes. Ratios are ours / theirs: below 1, ours is faster or "
                "smaller; (busy): one side was timed while other processes used the machine.\n");
    const char *done[64];
    int ndone = 0;
    for (int i = 0; i < d->ns && ndone < 64; i++) {
        const char *mech = report_mechanism(&d->s[i]);
        int seen = 0, has_peer = 0;
        for (int j = 0; j < ndone; j++)
            seen |= strcmp(done[j], mech) == 0;
        for (int j = 0; j < d->ns; j++)
            has_peer |= report_is_peer(&d->s[j]) && strcmp(report_mechanism(&d->s[j]), mech) == 0;
        if (seen || !has_peer)
            continue;
        done[ndone++] = mech;
        report_series group[64];
        int ng = 0;
        for (int j = 0; j < d->ns && ng < 64; j++)
            if (strcmp(report_mechanism(&d->s[j]), mech) == 0)
                group[ng++] = d->s[j];
        fprintf(md, "\n### %s\n\nWhat each side ran:\n\n", mech);
        for (int j = 0; j < ng; j++)
            describe_side(md, &group[j]);
        char name[96], title[160];
        snprintf(name, sizeof name, "peers_%d_memory", ndone);
        snprintf(title, sizeof title, "%s: peak memory (RSS), ours and the peers", mech);
        plots_metric(dir, md, group, ng,
                     &(plots_metric_spec){.name = name, .title = title, .ylabel = "peak RSS",
                                          .field = "peak_rss_bytes", .ybytes = 1, .guides = 1,
                                          .logy = 2},
                     failures);
        snprintf(name, sizeof name, "peers_%d_time", ndone);
        snprintf(title, sizeof title, "%s: time per run, ours and the peers", mech);
        plots_metric(dir, md, group, ng,
                     &(plots_metric_spec){.name = name, .title = title,
                                          .ylabel = "wall time (median)", .field = "wall_s",
                                          .guides = 1, .logy = 10, .yformat = "%.0s %cs"},
                     failures);
        report_data mine = *d;
        mine.mechanism = mech;
        fputc('\n', md);
        table_peers(md, &mine, NULL, 0);
    }
}

/* The report's sections, in order. */
static void write_report(const char *dir, FILE *md, const report_data *d, int nfiles,
                         char **files, int *failures)
{
    const json_t *first = json_array_get(d->records, 0);
    fprintf(md, "# attnbench report\n\n%zu points from", json_array_size(d->records));
    for (int f = 0; f < nfiles; f++)
        fprintf(md, " `%s`", files[f]);
    fprintf(md, ", in %d series. Written by `attnbench report`; every number below is a "
                "measurement from those files.\n\n", d->ns);
    if (d->reference) {
        fprintf(md, "## Beside the reference run\n\nThese points beside the same points of the "
                    "reference run (`--reference`), matched by point id. A ratio above 1: this "
                    "run took longer or held more. Times from different machines differ by "
                    "their speed; memory should not, beyond the process's own pages.\n\n");
        table(md, "", "compare-context", d);
        table(md, "\n", "compare-summary", d);
        table(md, "\n", "compare-points", d);
        table(md, "\nThe scaling exponents of both runs:\n\n", "compare-fits", d);
        fputc('\n', md);
    }
    write_context(md, json_object_get(first, "context"), first);
    fprintf(md, "\n## Plots\n");
    plots_metric(dir, md, d->s, d->ns,
                 &(plots_metric_spec){.name = "memory",
                                      .title = "Peak memory (RSS) against sequence length",
                                      .ylabel = "peak RSS", .field = "peak_rss_bytes",
                                      .ybytes = 1, .guides = 1, .logy = 2, .with_model = 1},
                 failures);
    plots_metric(dir, md, d->s, d->ns,
                 &(plots_metric_spec){.name = "heap",
                                      .title = "Heap peak (jemalloc thread.peak) against "
                                               "sequence length",
                                      .ylabel = "heap peak", .field = "heap_peak_bytes",
                                      .ybytes = 1, .guides = 1, .logy = 2},
                 failures);
    plots_metric(dir, md, d->s, d->ns,
                 &(plots_metric_spec){.name = "time", .title = plots_time_title(d->records),
                                      .ylabel = "wall time (median)", .field = "wall_s",
                                      .guides = 1, .logy = 10, .yformat = "%.0s %cs"},
                 failures);
    plots_metric(dir, md, d->s, d->ns,
                 &(plots_metric_spec){.name = "gflops",
                                      .title = "Achieved GFLOP/s (the method's model FLOPs)",
                                      .ylabel = "GFLOP/s", .field = "gflops"},
                 failures);
    plots_counters(dir, md, d->s, d->ns, d->records, failures);
    if (plots_scores(dir, md, d->s, d->ns, failures)) {
        table(md, "\n", "work", d);
        fprintf(md, "\nThe model charges 4 d flops per score; where counted / model is above 1 "
                    "the kernel computed scores it then masked (a causal diagonal tile, the edge "
                    "of a local window), and a training step's scores (every layer, "
                    "recomputations included) have no model of their own.\n");
    }
    plots_lsh(dir, md, d->records, failures);
    if (table(md, "\n## Depth\n\nTraining steps against the number of layers L. Activation "
                  "memory is peak RSS less `param_bytes` (the weights and their gradients, which "
                  "grow with L for any stack); the slope is the least-squares bytes per added "
                  "layer.\n\n", "depth", d))
        plots_layers(dir, md, d->records, failures);
    write_peers(dir, md, d, failures);
    table(md, "\n## Ranks\n\nRing attention over P MPI processes (`--ranks`): the slowest "
              "rank's time, the largest rank's peak RSS and model, the sum over ranks, bytes "
              "each rank sent per run (all equal to the model's when marked =), and the largest "
              "share of a rank's run spent waiting for a block.\n\n", "ranks", d);
    table(md, "\n## Crossovers\n\nFrom which n each approximate method is cheaper than exact "
              "attention, at the same shape and threads: where the measured ratio crosses 1, "
              "interpolated between the two measured n around it; when it does not cross where "
              "both ran, where the fitted power laws meet, with the range the exponents' "
              "standard errors allow.\n\n", "crossovers", d);
    table(md, "\n## Capacity\n\nThe longest n each series fits in this machine's memory bound "
              "(context.memory_bound) and in 16 GiB, 80 GiB and 1 TiB, at the series' own shape: "
              "its model's bytes at n, calibrated by its own records (peak RSS = base + ratio x "
              "model bytes, a line through its largest points). `attnbench capacity` answers "
              "the same for any shape and budget, and runs the boundary with --verify.\n\n",
          "capacity", d);
    table(md, "\n### One million tokens\n\nWhat n = 2^20 takes: the series' own shape (one "
              "head), and one training step of a 12-layer model with 16 heads of 64 (d_model "
              "1024, d_ff 4096) over the method, calibrated by the records of such a step when "
              "there are some, else by the forward's (its bytes and flops from the stack's "
              "model, its rate the forward's). Time is the model's flops at the rate the "
              "records measured, extrapolated as a power of n.\n\n", "million", d);
    table(md, "\n### Predictions checked\n\n`capacity --verify`: the predicted longest n run "
              "with the budget as its memory limit (role n_max), and the next length, which "
              "must be refused (role next); errors are predicted / measured - 1.\n\n",
          "capacity-verified", d);
    fprintf(md, "\n## Scaling exponents\n\nb in `metric ~ a n^b`, least squares on log-log axes "
                "over the ok points with n >= %.0f (or the three largest), ± its standard "
                "error. Quadratic memory shows as b near 2, linear as b near 1. The process's "
                "own pages (a few MiB) bend peak RSS at small n; point RSS, peak RSS less the "
                "RSS before the inputs were allocated, is the memory the point itself added. "
                "Time is the median of each point's timed repetitions; a time fit leaves out "
                "the points timed while other processes used the machine (busy). A fit is "
                "marked **unreliable**, with the reason, when it stands on fewer than %d "
                "(quiet) points, when busy points were left out of its range, when R² is below "
                "%.2f, or when b's standard error is above %.2f. fits.csv and fits.json give "
                "the same verdict (`reliable`, `reason`) and, beside b, the Theil-Sen exponent "
                "of the same points (the median pairwise slope, which one bad point moves "
                "little).\n\n",
            d->fit_from, REPORT_FIT_MIN_POINTS, REPORT_FIT_MIN_R2, REPORT_FIT_MAX_SE);
    table(md, "", "exponents", d);
    table(md, "\nEach series point by point. Time is the median of the timed repetitions; "
              "spread is (slowest - fastest) / median, in bold above 10%; of sgemm: GFLOP/s "
              "as a share of OpenBLAS sgemm at the same thread count, measured by the same "
              "sweep (context.yardstick; empty for records without one); busy: other "
              "processes used more than 10% of the machine while it was timed.\n\n",
          "series", d);
    if (report_write_fits(dir, d->s, d->ns, d->fit_from) != 0) {
        fprintf(stderr, "attnbench report: cannot write %s/fits.csv or fits.json\n", dir);
        (*failures)++;
    }
    table(md, "\n## Points not measured, and why\n\n", "not-measured", d);
}

static const char report_usage[] =
    "usage: attnbench report RESULTS.jsonl... --out DIR [--fit-from N] [--reference REF.jsonl]...\n"
    "Fits scaling exponents, draws the plots with gnuplot, writes DIR/report.md and\n"
    "DIR/results.csv, DIR/fits.csv and DIR/fits.json (one row per series and\n"
    "metric). --fit-from: smallest n of the fits (default 16384). --reference: a run to put\n"
    "these points beside, point by point (time and memory ratios, both machines).\n";

int cmd_report(int argc, char **argv)
{
    enum { OPT_OUT = 1, OPT_FIT_FROM, OPT_REFERENCE, OPT_HELP };
    static const struct option opts[] = {
        {"out", required_argument, 0, OPT_OUT}, {"fit-from", required_argument, 0, OPT_FIT_FROM},
        {"reference", required_argument, 0, OPT_REFERENCE},
        {"help", no_argument, 0, OPT_HELP},     {0, 0, 0, 0},
    };
    const char *dir = NULL;
    char *refs[64];
    int nrefs = 0;
    int64_t fit_from = REPORT_FIT_FROM;
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (c) {
        case OPT_OUT: dir = optarg; break;
        case OPT_FIT_FROM:
            if (cli_parse_int(optarg, 1, INT64_C(1) << 40, &fit_from))
                return cli_error("report", "--fit-from '%s' is not a positive integer", optarg);
            break;
        case OPT_REFERENCE:
            if (nrefs == 64)
                return cli_error("report", "more than 64 --reference files");
            refs[nrefs++] = optarg;
            break;
        case OPT_HELP: fputs(report_usage, stdout); return 0;
        default: return cli_getopt_error("report", optopt, argv, optind);
        }
    }
    if (optind >= argc)
        return cli_error("report", "no results file given");
    if (!dir)
        return cli_error("report", "--out DIR is required");
    json_t *records, *reference = NULL;
    char err[1024];
    if (report_load(argc - optind, argv + optind, &records, err, sizeof err))
        return cli_error("report", "%s", err);
    if (json_array_size(records) == 0) {
        json_decref(records);
        return cli_error("report", "the results files hold no records");
    }
    if (nrefs && report_load(nrefs, refs, &reference, err, sizeof err)) {
        json_decref(records);
        return cli_error("report", "--reference: %s", err);
    }
    report_data d;
    report_data_init(&d, records, (double)fit_from);
    d.reference = reference;
    int rc = 0;
    char path[1024];
    FILE *md = NULL;
    if (cli_mkdirs(dir) != 0) {
        rc = cli_error("report", "--out %s: %s", dir, strerror(errno));
        goto done;
    }
    plots_remove_old(dir);
    snprintf(path, sizeof path, "%s/results.csv", dir);
    if (report_write_csv(path, d.records, err, sizeof err)) {
        rc = cli_error("report", "%s", err);
        goto done;
    }
    snprintf(path, sizeof path, "%s/report.md", dir);
    if (!(md = fopen(path, "w"))) {
        rc = cli_error("report", "%s: %s", path, strerror(errno));
        goto done;
    }
    int failures = 0;
    write_report(dir, md, &d, argc - optind, argv + optind, &failures);
    if (fclose(md) != 0) {
        rc = cli_error("report", "%s: write failed", path);
        goto done;
    }
    fprintf(stderr, "attnbench report: wrote %s/report.md, results.csv, fits.csv, fits.json and "
                    "the plots%s\n", dir,
            failures ? " (some plots failed, see above)" : "");
    rc = failures ? 1 : 0;
done:
    report_data_free(&d);
    json_decref(reference);
    return rc;
}
