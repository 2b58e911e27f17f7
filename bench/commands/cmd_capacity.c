/* cmd_capacity.c: `attnbench capacity`: for each method, the longest sequence whose predicted
 * peak memory (and time) fits a budget, from the method's model calibrated by measured records
 * (report/capacity.h); with --verify, the predicted boundary is run and the next length is
 * shown to be refused. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../report/capacity.h"
#include "../../report/records.h"
#include "../../report/series.h"
#include "../measure/context.h"
#include "../record/record.h"
#include "../run/run.h"
#include "../sys/cli.h"
#include "commands.h"
#include "options.h"

static const char usage[] =
    "usage: attnbench capacity --mem SIZE [--time SECONDS] [--methods M1,M2,...]\n"
    "                          [--param [M.]key=value]... [--lengths granule|pow2]\n"
    "                          [--from RESULTS.jsonl]... [--verify] [--out F.jsonl] [--json]\n"
    "                          [options]\n"
    "For each method, the largest n whose predicted peak RSS fits SIZE (K/M/G/T suffixes:\n"
    "512MiB, 16G) and, with --time, whose predicted time fits SECONDS. The prediction is the\n"
    "method's model at n (the bytes and flops every record carries), calibrated by measured\n"
    "records: peak RSS = base + ratio x model bytes through the largest points, seconds per\n"
    "flop as a power of n. The records come from --from (for each method, the series closest\n"
    "to the asked shape), or from a small sweep on this machine when none is given.\n"
    "  --methods       default full,full_stream,lsh,block_sparse,etc (with --ranks: ring);\n"
    "                  `reversible` is --train --stack reversible over lsh\n"
    "  --lengths       granule (default): multiples of the method's own step (lsh chunk_len,\n"
    "                  block_sparse block, else 1); pow2: powers of two\n"
    "  --train         the training step of a --layers L stack (--stack, --d-ff) instead of\n"
    "                  one forward; --ranks P: ring over P processes, memory per process\n"
    "  --verify        run the predicted n_max as any point is run, memory limit SIZE, and\n"
    "                  the next length, which must be skipped as over the budget\n"
    "  --out F.jsonl   append the calibration and verification records (a results file)\n"
    "  --json          one JSON object per method: method, n_max, limited_by,\n"
    "                  predicted_peak_rss_bytes, predicted_time_s, calibration, verified\n"
    "Options as for run: --d --heads --batch --causal --dtype --threads --seed --reps\n"
    "--layers ... (--dtype bf16: calibrated by bf16 records only, and predicted in bf16)\n";

enum { MAX_METHODS = 16 };

/* One method's question and answer. */
typedef struct question {
    const char *name;
    attn_params p;
    method_ref ref;
    point_spec spec; /* n 0 */
    capacity_calibration cal;
    char source[96];
    capacity_answer answer;
    json_t *verified; /* the record at n_max, or NULL */
    json_t *next;     /* the record at the next length, or NULL */
} question;

typedef struct capacity_args {
    options o;
    double mem, time;
    point_limits machine; /* what a point may use here (the harness's default limit) */
    enum capacity_lengths lengths;
    char *from[64];
    int nfrom;
    const char *params[64];
    int nparams;
    const char *out;
    bool verify, json, reps_given;
    question q[MAX_METHODS];
    int nq;
} capacity_args;

/* Applies --param [M.]key=value to the methods it names (all that have the key when
 * unqualified). */
static int apply_params(capacity_args *a)
{
    for (int i = 0; i < a->nparams; i++) {
        const char *text = a->params[i], *dot = strchr(text, '.'), *eq = strchr(text, '=');
        int applied = 0;
        for (int m = 0; m < a->nq; m++) {
            question *q = &a->q[m];
            if (dot && eq && dot < eq) {
                if (strncmp(text, q->name, (size_t)(dot - text)) != 0 ||
                    strlen(q->name) != (size_t)(dot - text))
                    continue;
                int rc = cli_param("capacity", &q->p, dot + 1);
                if (rc)
                    return rc;
                applied++;
                continue;
            }
            attn_params probe = q->p;
            if (attn_params_parse(&probe, text) == ATTN_EUNKNOWN_PARAM)
                continue;
            int rc = cli_param("capacity", &q->p, text);
            if (rc)
                return rc;
            applied++;
        }
        if (!applied)
            return cli_error("capacity", "--param %s: no method asked has that parameter", text);
    }
    return 0;
}

static int parse(int argc, char **argv, capacity_args *a)
{
    enum { O_MEM = 1, O_TIME, O_METHODS, O_PARAM, O_LENGTHS, O_FROM, O_VERIFY, O_OUT, O_JSON,
           O_HELP };
    static const struct option opts[] = {
        {"mem", required_argument, 0, O_MEM},         {"time", required_argument, 0, O_TIME},
        {"methods", required_argument, 0, O_METHODS}, {"param", required_argument, 0, O_PARAM},
        {"lengths", required_argument, 0, O_LENGTHS}, {"from", required_argument, 0, O_FROM},
        {"verify", no_argument, 0, O_VERIFY},         {"out", required_argument, 0, O_OUT},
        {"json", no_argument, 0, O_JSON},             {"help", no_argument, 0, O_HELP},
        OPTIONS_COMMON_LONG,                          {0, 0, 0, 0},
    };
    const char *cmd = "capacity", *methods = NULL;
    static char methods_copy[1024];
    memset(a, 0, sizeof *a);
    options_default(&a->o);
    a->o.counters[0] = '\0'; /* counters cost time and say nothing about capacity */
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        if (c == OPT_MEM_LIMIT)
            return cli_error(cmd, "--mem-limit: capacity's memory budget is --mem SIZE");
        if (c == OPT_REPS)
            a->reps_given = true;
        int rc = options_apply(cmd, c, optarg, &a->o);
        if (rc >= 0) {
            if (rc)
                return rc;
            continue;
        }
        uint64_t bytes;
        switch (c) {
        case O_MEM:
            if (cli_parse_size(optarg, &bytes) || bytes < (1u << 20))
                return cli_error(cmd, "--mem '%s' is not a size of at least 1MiB (K/M/G/T "
                                      "suffixes)", optarg);
            a->mem = (double)bytes;
            break;
        case O_TIME:
            if (cli_parse_real(optarg, &a->time) || !(a->time > 0))
                return cli_error(cmd, "--time '%s' is not a positive number of seconds", optarg);
            break;
        case O_METHODS: methods = optarg; break;
        case O_PARAM:
            if (a->nparams == 64)
                return cli_error(cmd, "too many --param flags");
            a->params[a->nparams++] = optarg;
            break;
        case O_LENGTHS:
            if (strcmp(optarg, "granule") == 0)
                a->lengths = CAPACITY_GRANULE;
            else if (strcmp(optarg, "pow2") == 0)
                a->lengths = CAPACITY_POW2;
            else
                return cli_error(cmd, "--lengths '%s' is not one of: granule, pow2", optarg);
            break;
        case O_FROM:
            if (a->nfrom == 64)
                return cli_error(cmd, "too many --from files");
            a->from[a->nfrom++] = optarg;
            break;
        case O_VERIFY: a->verify = true; break;
        case O_OUT: a->out = optarg; break;
        case O_JSON: a->json = true; break;
        case O_HELP: fputs(usage, stdout); return -1;
        default: return cli_getopt_error(cmd, optopt, argv, optind);
        }
    }
    if (optind < argc)
        return cli_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (a->mem == 0)
        return cli_error(cmd, "--mem is required");
    if (a->o.nlayers != 1 || a->o.nranks > 1 || a->o.ndtypes != 1)
        return cli_error(cmd, "--layers, --ranks and --dtype take one value here");
    if (!methods)
        methods = a->o.nranks ? "ring" : "full,full_stream,lsh,block_sparse,etc";
    snprintf(methods_copy, sizeof methods_copy, "%s", methods);
    for (char *save, *t = strtok_r(methods_copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (a->nq == MAX_METHODS)
            return cli_error(cmd, "more than %d methods", MAX_METHODS);
        question *q = &a->q[a->nq++];
        q->name = t;
        int rc = options_method(cmd, t, &q->p, &q->ref);
        if (rc)
            return rc;
        if (q->ref.external)
            return cli_error(cmd, "%s: capacity predicts attnbench's own methods", t);
        if (a->o.nranks && strcmp(q->p.method->name, "ring") != 0)
            return cli_error(cmd, "--ranks: only ring runs over processes, not %s", t);
    }
    int rc = apply_params(a);
    if (rc)
        return rc;
    a->machine = a->o.limits;
    /* a boundary run really takes the budget: not more than a point may use here */
    if (a->verify && a->mem > (double)a->o.limits.mem_limit)
        return cli_error(cmd, "--verify: a budget of %.1f GiB is more than a point may use on "
                         "this machine (%.1f GiB, %s); its boundary cannot be run here",
                         a->mem / 0x1p30, (double)a->o.limits.mem_limit / 0x1p30,
                         a->o.limits.mem_limit_source);
    /* what a verified point is run with: the budget, and the calibrated prediction decides
     * what is skipped */
    a->o.limits.mem_limit = (uint64_t)a->mem;
    snprintf(a->o.limits.mem_limit_source, sizeof a->o.limits.mem_limit_source,
             "capacity --mem");
    for (int m = 0; m < a->nq; m++) {
        question *q = &a->q[m];
        options_spec(&a->o, &q->p, &q->ref, 0, (int)a->o.layers[0],
                     a->o.nranks ? (int)a->o.ranks[0] : 0, &q->spec);
    }
    return 0;
}

/* ---- calibration ---------------------------------------------------------------------------- */

/* How close a measured point is to the question: the same kind of point (method, forward or
 * step, stack, and dtype, which halves the bytes) is required (-1 otherwise); each matching
 * field adds. */
static int closeness(const point_spec *want, const point_spec *got)
{
    if (got->params.method != want->params.method || got->train != want->train ||
        got->backward != want->backward || got->ranks != want->ranks ||
        got->shape.dtype != want->shape.dtype || (want->train && got->stack != want->stack))
        return -1;
    int score = 0;
    score += 8 * (memcmp(got->params.v, want->params.v, sizeof got->params.v) == 0);
    score += 4 * (got->shape.d == want->shape.d && got->shape.H == want->shape.H &&
                  got->shape.B == want->shape.B);
    score += 2 * (got->shape.causal == want->shape.causal);
    score += 2 * (got->threads == want->threads);
    score += 2 * (got->layers == want->layers && got->d_ff == want->d_ff);
    return score;
}

/* The question's calibration: the closest series of the records. */
static int calibrate_from(const capacity_args *a, question *q, json_t *records,
                          const char *source)
{
    report_series *s;
    const int ns = report_series_make(records, "n", &s);
    int rc = 0, best = -1, best_score = -1;
    size_t best_points = 0;
    for (int k = 0; k < ns; k++) {
        const json_t *first = report_first_ok(&s[k]);
        point_spec got;
        if (!first || capacity_spec_of(first, &got) != 0)
            continue;
        const int score = closeness(&q->spec, &got);
        const size_t points = json_array_size(s[k].points);
        if (score > best_score || (score == best_score && score >= 0 && points > best_points))
            best = k, best_score = score, best_points = points;
    }
    if (best < 0 || capacity_calibrate(&s[best], &q->cal) != 0)
        rc = cli_error("capacity", "%s: the records have no measured %s %s of %s to calibrate "
                       "its model with", source, attn_dtype_name(q->spec.shape.dtype),
                       q->spec.train ? "training step" : "forward", q->name);
    else if (a->time > 0 && q->cal.time_points == 0)
        rc = cli_error("capacity", "--time: the records of %s were all timed on a busy machine; "
                       "no time curve to predict with", q->name);
    snprintf(q->source, sizeof q->source, "%s", source);
    report_series_free(s, ns);
    return rc;
}

/* A point of this run (calibration or verification), with the question's settings. */
static point_spec spec_at(const question *q, int64_t n)
{
    point_spec s = q->spec;
    s.shape.n = n;
    return s;
}

/* A calibration point runs while its model needs at most half the budget (or of what a point
 * may use here, when the budget is larger), so the longest is within a factor of about two of
 * the answer in memory, and while its runs take at most
 * CALIBRATION_SECONDS, so a quadratic method stops where time does. */
#define CALIBRATION_SECONDS 20.0

/* No records given: a sweep of the question's method on this machine, powers of two
 * (multiples of the granule) from 2^8 up, each next length run while it fits half the budget
 * and its runs, predicted from the rate of the last, fit the time. Run just before the
 * question's own verification, so both see the machine at nearly the same speed (a shared
 * machine's speed drifts by tens of percent over minutes). */
static int calibrate_here(const capacity_args *a, question *q, json_t *ctx, json_t *all)
{
    json_t *records = json_array();
    int rc = 0, count = 0;
    const int64_t g = capacity_granule(&q->spec);
    double last_wall = 0, last_flops = 0;
    fprintf(stderr, "capacity: calibrating %s on this machine:", q->name);
    for (int k = 8; k <= 24; k++) {
        point_spec s = spec_at(q, ((INT64_C(1) << k) + g - 1) / g * g);
        if (!a->reps_given)
            s.reps = 3;
        point_model model;
        const char *why;
        if (point_model_of(&s, &model, &why) != 0)
            continue;
        const double runs = s.reps + s.warmup;
        const double cap = fmin(a->mem, (double)a->machine.mem_limit) / 2;
        if (count >= 2 && ((double)model.bytes > cap ||
                           last_wall * model.flops / last_flops * runs > CALIBRATION_SECONDS))
            break;
        point_limits lim = a->o.limits;
        lim.mem_limit = a->machine.mem_limit; /* the first two run whatever the budget */
        snprintf(lim.mem_limit_source, sizeof lim.mem_limit_source, "%s",
                 a->machine.mem_limit_source);
        fprintf(stderr, " %lld", (long long)s.shape.n);
        json_t *rec = point_run(&s, &lim, ctx);
        if (!rec) {
            rc = 1;
            break;
        }
        json_array_append(records, rec);
        json_array_append_new(all, rec);
        if (!report_is_ok(rec)) {
            fprintf(stderr, " (%s)", report_str(rec, "status"));
            break;
        }
        count++;
        last_wall = report_num(rec, "wall_s");
        last_flops = model.flops;
    }
    fputc('\n', stderr);
    if (!rc && count < 2)
        rc = cli_fail("capacity", "%s: fewer than two lengths measured to calibrate with",
                      q->name);
    if (!rc)
        rc = calibrate_from(a, q, records, "a calibration sweep on this machine");
    json_decref(records);
    return rc;
}

/* ---- verification --------------------------------------------------------------------------- */

static json_t *prediction_json(const capacity_prediction *p)
{
    json_t *j = json_object();
    json_object_set_new(j, "n", json_integer(p->n));
    json_object_set_new(j, "model_bytes", json_real(p->model_bytes));
    json_object_set_new(j, "predicted_peak_rss_bytes", json_real(p->peak_rss_bytes));
    json_object_set_new(j, "predicted_time_s", isnan(p->time_s) ? json_null()
                                                                  : json_real(p->time_s));
    return j;
}

/* Runs the point of prediction p, its record's `capacity` field saying what was predicted. */
static json_t *verify_point(const capacity_args *a, const question *q, const capacity_prediction *p,
                            const char *role, json_t *ctx)
{
    point_spec s = spec_at(q, p->n);
    point_limits lim = a->o.limits;
    lim.mem_base = q->cal.mem_base;
    lim.mem_ratio = q->cal.mem_ratio;
    if (lim.busy_retries < 0)
        lim.busy_retries = 0;
    /* three timed runs after the warm-up, as the calibration's, unless that would not finish
     * in the time limit; then one */
    if (!a->reps_given)
        s.reps = 3;
    if (!isnan(p->time_s) && lim.time_limit > 0 && p->time_s * (s.reps + s.warmup) > lim.time_limit / 2)
        s.reps = 1;
    fprintf(stderr, "capacity: verifying %s at n = %lld (%s)\n", q->name, (long long)p->n, role);
    json_t *rec;
    if (!isnan(p->time_s) && lim.time_limit > 0 &&
        p->time_s * (s.reps + s.warmup) > lim.time_limit && strcmp(role, "next") != 0) {
        char why[200];
        snprintf(why, sizeof why, "predicted %.0f s for %d runs, more than the time limit of "
                 "%.0f s (--time-limit)", p->time_s * (s.reps + s.warmup), s.reps + s.warmup,
                 lim.time_limit);
        rec = point_record_new(&s, ctx, POINT_SKIPPED, why);
    } else if (!(rec = point_run(&s, &lim, ctx))) {
        return NULL;
    }
    json_t *c = prediction_json(p);
    json_object_set_new(c, "role", json_string(role));
    json_object_set_new(c, "budget_bytes", json_real(a->mem));
    json_object_set_new(c, "time_budget_s", a->time > 0 ? json_real(a->time) : json_null());
    const double peak = report_num(rec, "peak_rss_bytes"), wall = report_num(rec, "wall_s");
    json_object_set_new(c, "peak_error", peak > 0 ? json_real(p->peak_rss_bytes / peak - 1)
                                                  : json_null());
    json_object_set_new(c, "time_error", wall > 0 && !isnan(p->time_s)
                                             ? json_real(p->time_s / wall - 1) : json_null());
    json_object_set_new(c, "calibration", capacity_calibration_json(&q->cal, q->source));
    json_object_set_new(rec, "capacity", c);
    return rec;
}

/* ---- output --------------------------------------------------------------------------------- */

static json_t *answer_json(const capacity_args *a, const question *q)
{
    const capacity_answer *an = &q->answer;
    json_t *j = json_object();
    json_object_set_new(j, "method", json_string(q->name));
    json_object_set_new(j, "params", record_params(&q->p));
    json_object_set_new(j, "train", json_boolean(q->spec.train));
    json_object_set_new(j, "budget_bytes", json_real(a->mem));
    json_object_set_new(j, "time_budget_s", a->time > 0 ? json_real(a->time) : json_null());
    json_object_set_new(j, "n_max", json_integer(an->at.n));
    json_object_set_new(j, "granule", json_integer(an->granule));
    json_object_set_new(j, "limited_by", json_string(an->limited_by));
    json_object_set_new(j, "predicted_peak_rss_bytes",
                        an->at.n ? json_real(an->at.peak_rss_bytes) : json_null());
    json_object_set_new(j, "predicted_time_s",
                        an->at.n && !isnan(an->at.time_s) ? json_real(an->at.time_s) : json_null());
    json_object_set_new(j, "model_bytes", an->at.n ? json_real(an->at.model_bytes) : json_null());
    json_object_set_new(j, "next", prediction_json(&an->next));
    json_object_set_new(j, "calibration", capacity_calibration_json(&q->cal, q->source));
    json_t *v = json_null();
    if (q->verified) {
        v = json_object();
        const json_t *c = json_object_get(q->verified, "capacity");
        json_object_set(v, "status", json_object_get(q->verified, "status"));
        json_object_set(v, "peak_rss_bytes", json_object_get(q->verified, "peak_rss_bytes"));
        json_object_set(v, "wall_s", json_object_get(q->verified, "wall_s"));
        json_object_set(v, "peak_error", json_object_get(c, "peak_error"));
        json_object_set(v, "time_error", json_object_get(c, "time_error"));
        json_object_set_new(v, "next_n", json_integer(an->next.n));
        json_object_set(v, "next_status", q->next ? json_object_get(q->next, "status")
                                                  : json_null());
        json_object_set(v, "next_reason", q->next ? json_object_get(q->next, "reason")
                                                  : json_null());
    }
    json_object_set_new(j, "verified", v);
    return j;
}

static void print_table(const capacity_args *a)
{
    char mem[32];
    report_fmt_bytes(a->mem, mem, sizeof mem);
    char ranks[64] = "", time[64] = "";
    if (a->o.nranks)
        snprintf(ranks, sizeof ranks, " per process of a ring over %lld", (long long)a->o.ranks[0]);
    if (a->time > 0)
        snprintf(time, sizeof time, " and %g s", a->time);
    printf("capacity in %s of memory%s%s%s:\n", mem, ranks, time,
           a->o.train ? ", a training step" : "");
    printf("%-14s %12s %-9s %12s %10s  %s\n", "method", "n_max", "limit", "peak (pred)",
           "time (pred)", "calibration");
    for (int m = 0; m < a->nq; m++) {
        const question *q = &a->q[m];
        const capacity_answer *an = &q->answer;
        char peak[32] = "-", t[32] = "-", base[32];
        if (an->at.n) {
            report_fmt_bytes(an->at.peak_rss_bytes, peak, sizeof peak);
            report_fmt_seconds(an->at.time_s, t, sizeof t);
        }
        report_fmt_bytes(q->cal.mem_base, base, sizeof base);
        printf("%-14s %12lld %-9s %12s %10s  %d points to n=%.0f: %s + %.4f x model\n", q->name,
               (long long)an->at.n, an->limited_by, peak, t, q->cal.mem_points,
               q->cal.n_measured, base, q->cal.mem_ratio);
        if (q->verified) {
            char got[32];
            report_fmt_bytes(report_num(q->verified, "peak_rss_bytes"), got, sizeof got);
            const json_t *c = json_object_get(q->verified, "capacity");
            printf("%-14s verified: %s, peak %s (prediction %+.2f%%), %.3g s (prediction "
                   "%+.1f%%); n=%lld: %s\n", "", report_str(q->verified, "status"), got,
                   100 * report_num(c, "peak_error"), report_num(q->verified, "wall_s"),
                   100 * report_num(c, "time_error"), (long long)an->next.n,
                   q->next ? report_str(q->next, "status") : "not run");
        }
    }
}

int cmd_capacity(int argc, char **argv)
{
    static capacity_args a;
    int rc = parse(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    json_t *ctx = context_collect(), *run = json_array(), *records = NULL;
    char err[512];
    if (a.nfrom && report_load(a.nfrom, a.from, &records, err, sizeof err))
        rc = cli_error("capacity", "%s", err);
    /* question by question: calibrate, search, verify */
    for (int m = 0; m < a.nq && !rc; m++) {
        question *q = &a.q[m];
        rc = records ? calibrate_from(&a, q, records, "--from") : calibrate_here(&a, q, ctx, run);
        if (rc)
            break;
        capacity_search(&q->spec, &q->cal, a.mem, a.time, a.lengths, &q->answer);
        if (!a.verify || !q->answer.at.n)
            continue;
        if (!(q->verified = verify_point(&a, q, &q->answer.at, "n_max", ctx)))
            rc = 1;
        else if (q->answer.next.runs &&
                 !(q->next = verify_point(&a, q, &q->answer.next, "next", ctx)))
            rc = 1;
        if (q->verified)
            json_array_append(run, q->verified);
        if (q->next)
            json_array_append(run, q->next);
    }
    json_decref(records);
    if (!rc && a.out) {
        record_writer w;
        if (record_writer_open(&w, a.out, err, sizeof err)) {
            rc = cli_error("capacity", "%s", err);
        } else {
            size_t i;
            json_t *rec;
            json_array_foreach(run, i, rec) {
                if (!rc && record_append(w.fd, rec) != 0)
                    rc = cli_fail("capacity", "cannot append to %s", a.out);
            }
            record_writer_close(&w);
        }
    }
    if (!rc) {
        if (a.json) {
            for (int m = 0; m < a.nq; m++) {
                json_t *j = answer_json(&a, &a.q[m]);
                record_print_json(stdout, j);
                json_decref(j);
            }
        } else {
            print_table(&a);
        }
    }
    for (int m = 0; m < a.nq; m++) {
        json_decref(a.q[m].verified);
        json_decref(a.q[m].next);
    }
    json_decref(run);
    json_decref(ctx);
    return rc;
}
