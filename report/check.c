/* check.c: `attnbench check --baseline BASE.jsonl CURRENT.jsonl [--metric NAME:rtol=5%,atol=1MiB]...
 * [--update]`, the memory-regression gate CI runs.
 *
 * Points are matched by point_id. A gated metric regresses when current > baseline +
 * max(atol, rtol * baseline): only growth is a regression, a drop is reported as such.
 * Exit 0: every gated metric within tolerance; 1: a regression; 2: incomplete (a point missing
 * on either side, a point that failed where the baseline measured it, a schema mismatch,
 * nothing compared at all) or a usage error. Memory is gated by default (it is nearly deterministic); time only when asked,
 * since shared machines are noisy. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../bench/commands/commands.h"
#include "../bench/record/record.h"
#include "../bench/sys/cli.h"
#include "check.h"
#include "records.h"
#include "series.h"

typedef struct gate {
    const char *field;  /* record field */
    const char *alias;  /* short name accepted by --metric */
    int bytes;          /* atol takes size suffixes */
    int on;
    double rtol, atol;
} gate;

static gate gates[] = {
    {"heap_peak_bytes", "heap_peak", 1, 1, 0.02, 256 * 1024.0},
    {"peak_rss_bytes", "peak_rss", 1, 1, 0.05, 4 * 1048576.0},
    {"wall_s", "time", 0, 0, 0.10, 0.001},
    {"ru_maxrss_bytes", "ru_maxrss", 1, 0, 0.05, 4 * 1048576.0},
};
#define NGATES (sizeof gates / sizeof gates[0])

/* Gates on a series' scaling exponent (`--metric exponent:peak_rss:atol=0.05`): the exponent
 * regresses when the current fit's b exceeds the baseline's by more than atol, e.g. memory
 * that was linear in n turning superlinear; off unless named. */
static struct exponent_gate {
    const char *metric; /* as report_fit_metric names it */
    int on;
    double atol;
} exponent_gates[] = {{"peak_rss", 0, 0.05}, {"point_rss", 0, 0.05}, {"heap_peak", 0, 0.05}, {"time", 0, 0.10}};
#define NEXPONENT_GATES (sizeof exponent_gates / sizeof exponent_gates[0])

static int parse_exponent_metric(const char *spec)
{
    const char *name = spec + strlen("exponent:"), *colon = strchr(name, ':');
    const size_t len = colon ? (size_t)(colon - name) : strlen(name);
    struct exponent_gate *g = NULL;
    for (size_t i = 0; i < NEXPONENT_GATES; i++)
        if (strlen(exponent_gates[i].metric) == len && strncmp(exponent_gates[i].metric, name, len) == 0)
            g = &exponent_gates[i];
    if (!g)
        return cli_error("check", "--metric '%s': unknown exponent '%.*s' (exponent:peak_rss, "
                                  "exponent:point_rss, exponent:heap_peak, exponent:time)",
                         spec, (int)len, name);
    g->on = 1;
    if (!colon)
        return 0;
    if (strcmp(colon + 1, "off") == 0) {
        g->on = 0;
        return 0;
    }
    double x;
    if (strncmp(colon + 1, "atol=", 5) != 0 || cli_parse_real(colon + 6, &x) || !(x >= 0))
        return cli_error("check", "--metric '%s': an exponent takes atol=X (a non-negative "
                                  "number: how much b may grow), or off", spec);
    g->atol = x;
    return 0;
}

/* Parses "NAME:rtol=5%,atol=1MiB", "NAME:off" or "exponent:NAME:atol=0.05" into the gates. */
int check_parse_metric(const char *spec)
{
    if (strncmp(spec, "exponent:", 9) == 0)
        return parse_exponent_metric(spec);
    const char *colon = strchr(spec, ':');
    size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
    gate *g = NULL;
    for (size_t i = 0; i < NGATES; i++)
        if ((strlen(gates[i].field) == len && strncmp(gates[i].field, spec, len) == 0) ||
            (strlen(gates[i].alias) == len && strncmp(gates[i].alias, spec, len) == 0))
            g = &gates[i];
    if (!g)
        return cli_error("check", "--metric '%s': unknown metric '%.*s' (metrics: heap_peak, "
                                  "peak_rss, time, ru_maxrss)", spec, (int)len, spec);
    g->on = 1;
    if (!colon)
        return 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", colon + 1);
    if (strcmp(buf, "off") == 0) {
        g->on = 0;
        return 0;
    }
    for (char *s, *kv = strtok_r(buf, ",", &s); kv; kv = strtok_r(NULL, ",", &s)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            return cli_error("check", "--metric '%s': '%s' is not key=value", spec, kv);
        *eq = '\0';
        const char *val = eq + 1;
        if (strcmp(kv, "rtol") == 0) {
            char num[64];
            snprintf(num, sizeof num, "%s", val);
            size_t l = strlen(num);
            int pct = l && num[l - 1] == '%';
            if (pct)
                num[l - 1] = '\0';
            double x;
            if (cli_parse_real(num, &x))
                return cli_error("check", "--metric '%s': rtol '%s' is not a number or a "
                                          "percentage", spec, val);
            if (!pct && x > 1) /* "rtol=5" is far likelier to mean 5% than 500% */
                return cli_error("check", "--metric '%s': rtol %s is %g%%; write %s%% or %g", spec,
                                 val, 100 * x, val, x / 100);
            g->rtol = pct ? x / 100 : x;
        } else if (strcmp(kv, "atol") == 0) {
            uint64_t bytes;
            double x;
            if (g->bytes ? cli_parse_size(val, &bytes) : cli_parse_real(val, &x))
                return cli_error("check", "--metric '%s': atol '%s' is not %s", spec, val,
                                 g->bytes ? "a size such as 1MiB" : "a number of seconds");
            g->atol = g->bytes ? (double)bytes : x;
        } else {
            return cli_error("check", "--metric '%s': unknown tolerance '%s' (rtol, atol)", spec,
                             kv);
        }
    }
    return 0;
}

/* A record of `records` that is the same point as rec but for its thread count, or NULL: a
 * baseline made on a machine with another core count, when suites leave threads to default. */
static const json_t *find_with_other_threads(json_t *records, const json_t *rec)
{
    char want[1200], key[1200];
    record_series_key(report_str(rec, "point_key"), "threads", want, sizeof want);
    size_t i;
    json_t *r;
    json_array_foreach(records, i, r)
    {
        record_series_key(report_str(r, "point_key"), "threads", key, sizeof key);
        if (strcmp(key, want) == 0)
            return r;
    }
    return NULL;
}

static void fmt(double v, int bytes, char *buf, size_t size)
{
    if (bytes)
        record_bytes(v, buf, size);
    else
        snprintf(buf, size, "%.4g s", v);
}

/* Context fields whose difference makes a comparison suspect. */
static void warn_context(json_t *base, json_t *cur)
{
    static const char *const keys[] = {"cpu_model", "cores", "compiler", "cflags", "kernel",
                                       "jemalloc_version", "papi_version", "openblas_core",
                                       "thp_enabled"};
    const json_t *a = json_object_get(json_array_get(base, 0), "context");
    const json_t *b = json_object_get(json_array_get(cur, 0), "context");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const json_t *x = json_object_get(a, keys[i]), *y = json_object_get(b, keys[i]);
        if (x && y && !json_equal(x, y)) {
            char *tx = json_dumps(x, JSON_ENCODE_ANY), *ty = json_dumps(y, JSON_ENCODE_ANY);
            fprintf(stderr, "attnbench check: warning: context differs: %s %s (baseline) vs %s "
                            "(current)\n", keys[i], tx, ty);
            free(tx);
            free(ty);
        }
    }
}

/* The exponent gates: each series of the baseline against the same series (the same point
 * key but n) of the current run, fitted the same way. */
static void compare_exponents(json_t *base, json_t *cur, int *compared, int *regressions,
                              int *incomplete)
{
    int any = 0;
    for (size_t g = 0; g < NEXPONENT_GATES; g++)
        any |= exponent_gates[g].on;
    if (!any)
        return;
    report_series *bs, *cs;
    const int nb = report_series_make(base, "n", &bs), nc = report_series_make(cur, "n", &cs);
    for (int i = 0; i < nb; i++) {
        int j = 0;
        while (j < nc && strcmp(bs[i].key, cs[j].key) != 0)
            j++;
        for (size_t g = 0; g < NEXPONENT_GATES; g++) {
            if (!exponent_gates[g].on)
                continue;
            char what[80];
            snprintf(what, sizeof what, "exponent:%s", exponent_gates[g].metric);
            fit_result fb, fc;
            report_fit_note nb_, nc_;
            report_fit_metric_named(&bs[i], exponent_gates[g].metric, REPORT_FIT_FROM, &fb, &nb_);
            if (!fb.ok)
                continue; /* nothing to gate against */
            if (j == nc) {
                printf("%-44.44s %-16s %12.3f %12s %9s  MISSING: no such series\n", bs[i].label,
                       what, fb.b, "-", "-");
                (*incomplete)++;
                continue;
            }
            report_fit_metric_named(&cs[j], exponent_gates[g].metric, REPORT_FIT_FROM, &fc, &nc_);
            if (!fc.ok) {
                printf("%-44.44s %-16s %12.3f %12s %9s  not fitted: fewer than two ok points\n",
                       bs[i].label, what, fb.b, "-", "-");
                (*incomplete)++;
                continue;
            }
            /* an exponent that does not stand (busy points left out, too few points, a poor
             * fit) is no ground for a verdict either way */
            if (!nb_.reliable || !nc_.reliable) {
                printf("%-44.44s %-16s %12.3f %12.3f %9s  NOT GATED: the %s fit is unreliable "
                       "(%s)\n", bs[i].label, what, fb.b, fc.b, "-",
                       !nb_.reliable ? "baseline's" : "current", !nb_.reliable ? nb_.reason : nc_.reason);
                (*incomplete)++;
                continue;
            }
            (*compared)++;
            const int bad = fc.b > fb.b + exponent_gates[g].atol;
            *regressions += bad;
            printf("%-44.44s %-16s %12.3f %12.3f %+9.3f  %s\n", bs[i].label, what, fb.b, fc.b,
                   fc.b - fb.b,
                   bad ? "REGRESSION" : fc.b < fb.b - exponent_gates[g].atol ? "improved" : "ok");
        }
    }
    report_series_free(bs, nb);
    report_series_free(cs, nc);
}

/* The gate itself (report.h): point by point, then series by series for the exponents. */
/* A schema mismatch makes every comparison void. Returns 0 or the exit status. */
static int check_schemas(json_t *base, json_t *cur, const char *baseline, const char *current)
{
    size_t i;
    json_t *rec;
    for (int side = 0; side < 2; side++)
        json_array_foreach(side ? cur : base, i, rec)
        {
            if (strcmp(report_str(rec, "schema"), RECORD_SCHEMA) != 0)
                return cli_error("check", "%s: records of schema %s; this build reads %s",
                                 side ? current : baseline, report_str(rec, "schema"),
                                 RECORD_SCHEMA);
        }
    return 0;
}

/* Says which current points the baseline lacks, and why when it is only their thread count.
 * Returns their number. */
static int report_unmatched(json_t *base, json_t *cur, json_t *base_index)
{
    int missing = 0;
    size_t i;
    json_t *rec;
    json_array_foreach(cur, i, rec)
    {
        if (json_object_get(base_index, report_str(rec, "point_id")))
            continue;
        const json_t *other = find_with_other_threads(base, rec);
        if (other)
            fprintf(stderr, "attnbench check: %s n=%.0f (%s) is not in the baseline: the "
                    "baseline measured it with threads=%.0f, this run with threads=%.0f "
                    "(threads are part of a point's identity; set --threads in the suite)\n",
                    report_str(rec, "method"), report_num(rec, "n"),
                    report_str(rec, "point_id"), report_num(other, "threads"),
                    report_num(rec, "threads"));
        else
            fprintf(stderr, "attnbench check: %s n=%.0f (%s) is not in the baseline\n",
                    report_str(rec, "method"), report_num(rec, "n"),
                    report_str(rec, "point_id"));
        missing++;
    }
    return missing;
}

/* The counts of a comparison. */
typedef struct tally {
    int compared, regressions, incomplete;
} tally;

/* One gate of one point, baseline rec against current now: a line of the table. */
static void compare_gate(const gate *g, const char *point, const json_t *rec,
                         const json_t *now, tally *t)
{
    const double b = report_num(rec, g->field), c = report_num(now, g->field);
    if (!isfinite(b) || !isfinite(c)) {
        if (isfinite(b) != isfinite(c)) {
            printf("%-44s %-16s %12s %12s %9s  not measured on one side\n", point, g->alias, "-",
                   "-", "-");
            t->incomplete++;
        }
        return;
    }
    /* a time measured while other processes used the machine says nothing about the code:
     * refuse to gate on it rather than pass or fail it */
    const json_t *busy_side = NULL;
    if (strcmp(g->field, "wall_s") == 0)
        busy_side = json_is_true(json_object_get(json_object_get(now, "machine_load"), "busy"))
                        ? now
                    : json_is_true(json_object_get(json_object_get(rec, "machine_load"), "busy"))
                        ? rec
                        : NULL;
    if (busy_side) {
        printf("%-44s %-16s %12s %12s %9s  NOT GATED: the %s was timed on a busy machine "
               "(others used %.0f%% of it)\n", point, g->alias, "-", "-", "-",
               busy_side == now ? "current point" : "baseline point",
               100 * report_num(json_object_get(busy_side, "machine_load"), "other_share"));
        t->incomplete++;
        return;
    }
    t->compared++;
    const double slack = fmax(g->atol, g->rtol * fabs(b));
    const int bad = c > b + slack;
    t->regressions += bad;
    char bt[32], ct[32];
    fmt(b, g->bytes, bt, sizeof bt);
    fmt(c, g->bytes, ct, sizeof ct);
    printf("%-44s %-16s %12s %12s %+8.1f%%  %s\n", point, g->alias, bt, ct,
           b != 0 ? 100 * (c - b) / fabs(b) : 0.0,
           bad ? "REGRESSION" : c < b - slack ? "improved" : "ok");
}

/* One baseline point against the current one of its id (or NULL): lines of the table. */
static void compare_point(const json_t *rec, const json_t *now, tally *t)
{
    const char *id = report_str(rec, "point_id");
    char point[128];
    snprintf(point, sizeof point, "%s n=%.0f %.12s", report_str(rec, "method"),
             report_num(rec, "n"), id);
    if (!now) {
        printf("%-44s %-16s %12s %12s %9s  MISSING\n", point, "-", "-", "-", "-");
        t->incomplete++;
        return;
    }
    const char *bs = report_str(rec, "status"), *cs = report_str(now, "status");
    if (strcmp(bs, "ok") != 0) { /* nothing measured to gate against */
        if (strcmp(bs, cs) != 0)
            printf("%-44s %-16s %12s %12s %9s  status %s -> %s\n", point, "status", bs, cs,
                   "-", bs, cs);
        return;
    }
    if (strcmp(cs, "ok") != 0) {
        printf("%-44s %-16s %12s %12s %9s  FAILED: %s\n", point, "status", bs, cs, "-",
               report_str(now, "reason"));
        t->incomplete++;
        return;
    }
    for (size_t g = 0; g < NGATES; g++)
        if (gates[g].on)
            compare_gate(&gates[g], point, rec, now, t);
}

int check_compare(json_t *base, json_t *cur, const char *baseline, const char *current)
{
    int rc = check_schemas(base, cur, baseline, current);
    if (rc)
        return rc;
    tally t = {0, 0, 0};
    json_t *base_index = record_index(base), *cur_index = record_index(cur);
    t.incomplete = report_unmatched(base, cur, base_index);
    if (!t.incomplete)
        warn_context(base, cur);
    printf("%-44s %-16s %12s %12s %9s  %s\n", "point", "metric", "baseline", "current", "change",
           "verdict");
    size_t i;
    json_t *rec;
    json_array_foreach(base, i, rec)
        compare_point(rec, json_object_get(cur_index, report_str(rec, "point_id")), &t);
    json_decref(base_index);
    json_decref(cur_index);
    compare_exponents(base, cur, &t.compared, &t.regressions, &t.incomplete);
    if (!t.compared && !t.incomplete) {
        fprintf(stderr, "attnbench check: incomplete: no gated metric was measured on both sides "
                        "(points the baseline did not measure, or every gate off)\n");
        return 2;
    }
    if (t.incomplete) {
        fprintf(stderr, "attnbench check: incomplete: %d problem(s) above; %d comparisons, %d "
                        "regressions\n", t.incomplete, t.compared, t.regressions);
        return 2;
    }
    if (t.regressions) {
        fprintf(stderr, "attnbench check: %d regression(s) in %d comparisons\n", t.regressions,
                t.compared);
        return 1;
    }
    fprintf(stderr, "attnbench check: %d comparisons within tolerance\n", t.compared);
    return 0;
}

int cmd_check(int argc, char **argv)
{
    enum { OPT_BASELINE = 1, OPT_METRIC, OPT_UPDATE, OPT_HELP };
    static const struct option opts[] = {
        {"baseline", required_argument, 0, OPT_BASELINE}, {"metric", required_argument, 0, OPT_METRIC},
        {"update", no_argument, 0, OPT_UPDATE},           {"help", no_argument, 0, OPT_HELP},
        {0, 0, 0, 0},
    };
    const char *baseline = NULL;
    int update = 0;
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        switch (c) {
        case OPT_BASELINE: baseline = optarg; break;
        case OPT_METRIC: {
            int rc = check_parse_metric(optarg);
            if (rc)
                return rc;
            break;
        }
        case OPT_UPDATE: update = 1; break;
        case OPT_HELP:
            puts("usage: attnbench check --baseline BASE.jsonl CURRENT.jsonl...\n"
                 "                       [--metric NAME:rtol=5%,atol=1MiB | NAME:off]...\n"
                 "                       [--metric exponent:NAME:atol=0.05]... [--update]\n"
                 "Gates memory against a baseline: exit 0 within tolerance, 1 regression,\n"
                 "2 incomplete (missing or failed points, schema mismatch) or usage error.\n"
                 "Defaults: heap_peak rtol 2% atol 256KiB, peak_rss rtol 5% atol 4MiB; time and\n"
                 "ru_maxrss only when named. exponent:peak_rss|point_rss|heap_peak|time gates\n"
                 "a series' fitted exponent b (fails when b grows by more than atol; 0.05, time\n"
                 "0.10). --update rewrites the baseline from CURRENT.");
            return 0;
        default: return cli_getopt_error("check", optopt, argv, optind);
        }
    }
    if (!baseline)
        return cli_error("check", "--baseline BASE.jsonl is required");
    if (optind >= argc)
        return cli_error("check", "no CURRENT results file given");
    /* several current files are one result: the shards of a sweep, merged by point_id */
    char current[1100];
    if (argc - optind == 1)
        snprintf(current, sizeof current, "%s", argv[optind]);
    else
        snprintf(current, sizeof current, "%s and %d more", argv[optind], argc - optind - 1);

    json_t *base = NULL, *cur = NULL;
    char err[1024];
    char *bfiles[] = {(char *)baseline};
    if (report_load(argc - optind, argv + optind, &cur, err, sizeof err))
        return cli_error("check", "%s", err);
    if (update) {
        if (report_write_records(baseline, cur) != 0) {
            json_decref(cur);
            return cli_error("check", "--update: cannot write %s: %s", baseline, strerror(errno));
        }
        fprintf(stderr, "attnbench check: baseline %s updated from %s (%zu points)\n", baseline,
                current, json_array_size(cur));
        json_decref(cur);
        return 0;
    }
    if (report_load(1, bfiles, &base, err, sizeof err)) {
        json_decref(cur);
        return cli_error("check", "--baseline %s", err);
    }
    int rc = check_compare(base, cur, baseline, current);
    json_decref(base);
    json_decref(cur);
    return rc;
}
