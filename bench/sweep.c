/* sweep.c: `attnbench sweep`, many points, one at a time, each in its own child, appended to a
 * JSON Lines file the moment it ends.
 *
 *   attnbench sweep --methods M1,M2 --n MIN:MAX[:FACTOR] [--param M.key=v1,v2]... --out F.jsonl
 *   attnbench sweep --suite scripts/suites/NAME.suite [--out F.jsonl]
 *
 * The results file is a journal: --resume keeps every record in it and runs only the points
 * whose point_id is missing; a torn last line (a write cut short by a kill) is reported and
 * removed. Points are skipped, not run, when their model exceeds the memory limit, when their
 * time predicted from the same series' measured rate exceeds the time limit, or when a smaller
 * n of the same series already failed. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "context.h"
#include "external.h"
#include "options.h"
#include "record.h"
#include "sweep.h"
#include "timing.h"

#define MAX_POINTS 100000

static const char sweep_usage[] =
    "usage: attnbench sweep --methods M1,M2,... --n MIN:MAX[:FACTOR] --out FILE.jsonl [options]\n"
    "       attnbench sweep --suite FILE [--out FILE.jsonl] [options]\n"
    "Runs every point (method x parameter values x n) in its own child, one at a time, and\n"
    "appends one JSON record per point to the output as soon as it ends.\n"
    "  --methods LIST   methods, comma-separated (see attnbench list)\n"
    "  --n RANGE        MIN:MAX[:FACTOR] (geometric, factor 2 by default) or a list a,b,c;\n"
    "                   K/M suffixes count 1024s: 1K:1M is 2^10 to 2^20\n"
    "  --param M.k=v    parameter k of method M; v may be a list v1,v2 (one series each)\n"
    "  --out FILE       results file (JSON Lines); never truncated\n"
    "  --resume         keep the records in FILE and run only the missing points\n"
    "  --suite FILE     run the point groups of a suite file: one group of the flags above per\n"
    "                   line, # comments; default --out results/<suite name>/results.jsonl\n"
    OPTIONS_COMMON_HELP;

/* ---- building the list of points ------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = sig;
}

/* The dot between M and key in "M.key=value": the last one before '=', since M may hold dots
 * of its own (ext:./mine.py). NULL when there is none. */
static const char *param_dot(const char *assign)
{
    const char *eq = strchr(assign, '=');
    const char *dot = NULL;
    for (const char *p = assign; *p && (!eq || p < eq); p++)
        if (*p == '.')
            dot = p;
    return dot;
}

/* Expands `--param M.k=v1,v2` assignments of one method into the Cartesian product of its
 * values, appending each parameter set to out. Returns the count or CLI_EUSAGE (negated). */
static int expand_params(const char *cmd, const char *name, const attn_params *base,
                         char **assign, int nassign, attn_params *out, int max)
{
    int count = 1;
    out[0] = *base;
    for (int a = 0; a < nassign; a++) {
        const char *dot = param_dot(assign[a]);
        if ((size_t)(dot - assign[a]) != strlen(name) || strncmp(assign[a], name, strlen(name)) != 0)
            continue;
        const char *kv = dot + 1, *eq = strchr(kv, '=');
        char key[64], vals[512];
        if (!eq || (size_t)(eq - kv) >= sizeof key || strlen(eq + 1) >= sizeof vals)
            return -cli_error(cmd, "--param '%s' is not of the form M.key=value", assign[a]);
        snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
        snprintf(vals, sizeof vals, "%s", eq + 1);
        int nvals = 0;
        char *save;
        attn_params next[256];
        for (char *v = strtok_r(vals, ",", &save); v; v = strtok_r(NULL, ",", &save), nvals++)
            ;
        if (nvals == 0 || count * nvals > max || count * nvals > 256)
            return -cli_error(cmd, "--param '%s': no value, or too many combinations", assign[a]);
        snprintf(vals, sizeof vals, "%s", eq + 1);
        int k = 0;
        for (char *v = strtok_r(vals, ",", &save); v; v = strtok_r(NULL, ",", &save))
            for (int i = 0; i < count; i++) {
                char one[160];
                snprintf(one, sizeof one, "%s=%s", key, v);
                next[k] = out[i];
                if (cli_param(cmd, &next[k], one))
                    return -CLI_EUSAGE;
                k++;
            }
        memcpy(out, next, (size_t)k * sizeof *out);
        count = k;
    }
    return count;
}

/* Doubles the room for points. Returns 0 or -1. */
static int grow(sweep *sw)
{
    const int cap = sw->capacity ? 2 * sw->capacity : 64;
    point_spec *points = realloc(sw->points, (size_t)cap * sizeof *points);
    if (points)
        sw->points = points;
    int *group_of = realloc(sw->group_of, (size_t)cap * sizeof *group_of);
    if (group_of)
        sw->group_of = group_of;
    if (!points || !group_of)
        return -1;
    sw->capacity = cap;
    return 0;
}

/* Parses one group of sweep flags (a command line or a suite line) and appends its points.
 * `defaults` are the options the group starts from. */
static int parse_group(const char *cmd, int argc, char **argv, const options *defaults,
                       sweep *sw, const char **out, int *resume, const char **suite)
{
    enum { OPT_METHODS = 1, OPT_N, OPT_PARAM, OPT_OUT, OPT_RESUME, OPT_SUITE, OPT_HELP };
    static const struct option opts[] = {
        {"methods", required_argument, 0, OPT_METHODS}, {"n", required_argument, 0, OPT_N},
        {"param", required_argument, 0, OPT_PARAM},     {"out", required_argument, 0, OPT_OUT},
        {"resume", no_argument, 0, OPT_RESUME},         {"suite", required_argument, 0, OPT_SUITE},
        {"help", no_argument, 0, OPT_HELP},             OPTIONS_COMMON_LONG,
        {0, 0, 0, 0},
    };
    if (sw->ngroups == (int)(sizeof sw->groups / sizeof sw->groups[0]))
        return cli_error(cmd, "too many point groups");
    options *o = malloc(sizeof *o);
    *o = *defaults;
    sw->groups[sw->ngroups++] = o;
    const char *methods = NULL, *lengths = NULL;
    char *assign[64];
    int nassign = 0;
    optind = 0; /* GNU getopt: full reinitialization, so each group parses afresh */
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        int rc = options_apply(cmd, c, optarg, o);
        if (rc >= 0) {
            if (rc)
                return rc;
            continue;
        }
        switch (c) {
        case OPT_METHODS: methods = optarg; break;
        case OPT_N: lengths = optarg; break;
        case OPT_PARAM:
            if (nassign == 64)
                return cli_error(cmd, "too many --param flags");
            assign[nassign++] = optarg;
            break;
        case OPT_OUT:
        case OPT_RESUME:
        case OPT_SUITE:
            if (!out) /* suite lines: only the command line chooses the output */
                return cli_error(cmd, "--out, --resume and --suite belong on the command line");
            if (c == OPT_OUT)
                *out = optarg;
            else if (c == OPT_RESUME)
                *resume = 1;
            else
                *suite = optarg;
            break;
        case OPT_HELP:
            if (!out) /* a suite line asks for no help: it would end the sweep */
                return cli_error(cmd, "--help belongs on the command line");
            fputs(sweep_usage, stdout);
            exit(0);
        default: return cli_getopt_error(cmd, optopt, argv, optind);
        }
    }
    if (optind < argc)
        return cli_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (suite && *suite) {
        if (methods || lengths || nassign)
            return cli_error(cmd, "--suite takes the points from the suite file; give "
                                  "--methods, --n and --param there");
        return 0;
    }
    if (!methods)
        return cli_error(cmd, "--methods is required (or --suite)");
    if (!lengths)
        return cli_error(cmd, "--n is required, e.g. --n 1K:64K");
    int64_t ns[64];
    int nn = options_parse_range(lengths, ns, 64, INT64_C(1) << 31);
    if (nn <= 0)
        return cli_error(cmd, "--n '%s' is not MIN:MAX[:FACTOR] or a list of lengths in "
                              "[1, 2^31] (K/M suffixes allowed)", lengths);

    /* every --param must name a method of this group */
    for (int a = 0; a < nassign; a++) {
        const char *dot = param_dot(assign[a]);
        int found = 0;
        char list[512];
        snprintf(list, sizeof list, "%s", methods);
        for (char *s, *m = strtok_r(list, ",", &s); m && dot; m = strtok_r(NULL, ",", &s))
            found |= strlen(m) == (size_t)(dot - assign[a]) && strncmp(m, assign[a], strlen(m)) == 0;
        if (!found)
            return cli_error(cmd, "--param '%s' must be M.key=value with M one of --methods %s",
                             assign[a], methods);
    }
    char list[512];
    if (strlen(methods) >= sizeof list)
        return cli_error(cmd, "--methods list too long");
    snprintf(list, sizeof list, "%s", methods);
    for (char *s, *name = strtok_r(list, ",", &s); name; name = strtok_r(NULL, ",", &s)) {
        attn_params p;
        method_ref ref;
        int rc = options_method(cmd, name, &p, &ref);
        if (rc)
            return rc;
        attn_params sets[256];
        int nsets = expand_params(cmd, name, &p, assign, nassign, sets, 256);
        if (nsets < 0)
            return -nsets;
        /* depth matters only to training points: one pass otherwise */
        const int trains = ref.external ? ref.external->train[0] != '\0' : o->train || ref.reversible;
        const int nl = trains ? o->nlayers : 1;
        for (int i = 0; i < nsets; i++)
            for (int l = 0; l < nl; l++)
                for (int j = 0; j < nn; j++) {
                    if (sw->npoints == MAX_POINTS)
                        return cli_error(cmd, "more than %d points", MAX_POINTS);
                    if (sw->npoints == sw->capacity && grow(sw) != 0)
                        return cli_fail(cmd, "out of memory for %d points", sw->npoints);
                    sw->group_of[sw->npoints] = sw->ngroups - 1;
                    options_spec(o, &sets[i], &ref, ns[j], (int)o->layers[l],
                                 &sw->points[sw->npoints++]);
                }
    }
    return 0;
}

/* Splits a suite line into words (no quoting: suite values never contain spaces). */
static int split_words(char *line, char **words, int max)
{
    int count = 0;
    for (char *s, *w = strtok_r(line, " \t\r\n", &s); w; w = strtok_r(NULL, " \t\r\n", &s)) {
        if (count + 1 == max)
            return -1;
        words[count++] = w;
    }
    words[count] = NULL;
    return count;
}

static int parse_suite(const char *path, const options *defaults, sweep *sw)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return cli_error("sweep", "--suite %s: %s", path, strerror(errno));
    int rc = sweep_add_suite(sw, f, path, defaults);
    fclose(f);
    return rc;
}

sweep *sweep_new(void)
{
    return calloc(1, sizeof(sweep));
}

void sweep_free(sweep *sw)
{
    if (!sw)
        return;
    for (int g = 0; g < sw->ngroups; g++)
        free(sw->groups[g]);
    free(sw->points);
    free(sw->group_of);
    free(sw);
}

int sweep_add_suite(sweep *sw, FILE *f, const char *path, const options *defaults)
{
    char line[4096];
    int lineno = 0, rc = 0, groups = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        char cmd[512];
        snprintf(cmd, sizeof cmd, "sweep: %s:%d", path, lineno);
        if (!strchr(line, '\n') && !feof(f)) {
            rc = cli_error(cmd, "line longer than %zu characters", sizeof line - 1);
            break;
        }
        *strchrnul(line, '#') = '\0';
        char *words[128]; /* point into line, which the group's points do not keep */
        words[0] = "suite";
        int nw = split_words(line, words + 1, 127);
        if (nw < 0) {
            rc = cli_error(cmd, "too many words");
            break;
        }
        if (nw == 0)
            continue;
        groups++;
        rc = parse_group(cmd, nw + 1, words, defaults, sw, NULL, NULL, NULL);
    }
    if (!rc && groups == 0)
        rc = cli_error("sweep", "--suite %s: no point groups in the file", path);
    return rc;
}

/* ---- running ------------------------------------------------------------------------- */

/* What a sweep remembers of each series (the same point but for n): its last measured rate
 * and whether a smaller n failed. */
typedef struct series {
    char key[1024];
    double flops, wall; /* last ok point: model FLOPs and median wall time per repetition */
    char failed[128];   /* non-empty: the status of a failed smaller n */
} series;

static series *series_find(series *all, int *count, const point_spec *s)
{
    point_spec tmp = *s;
    tmp.shape.n = 0;
    char key[1024];
    point_key(&tmp, key, sizeof key);
    for (int i = 0; i < *count; i++)
        if (strcmp(all[i].key, key) == 0)
            return &all[i];
    series *x = &all[(*count)++];
    memset(x, 0, sizeof *x);
    snprintf(x->key, sizeof x->key, "%s", key);
    return x;
}

/* What a series learns from one of its records, measured now or found in the file. */
static void series_learn(series *x, const json_t *rec)
{
    const char *st = json_string_value(json_object_get(rec, "status"));
    const int status = st ? point_status_parse(st) : -1;
    if (status == POINT_OK) {
        x->flops = json_number_value(json_object_get(rec, "model_flops"));
        x->wall = json_number_value(json_object_get(rec, "wall_s"));
    } else if (status != POINT_SKIPPED && status != POINT_UNSUPPORTED) {
        snprintf(x->failed, sizeof x->failed, "%s", st ? st : "unknown");
    }
}

static void fmt_duration(double s, char *buf, size_t size)
{
    if (!isfinite(s))
        snprintf(buf, size, "?");
    else if (s < 60)
        snprintf(buf, size, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, size, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(buf, size, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

/* The symbolic name of the errors a results file's write can meet. */
static const char *errno_name(int e)
{
    switch (e) {
    case ENOSPC: return "ENOSPC";
    case EDQUOT: return "EDQUOT";
    case EFBIG: return "EFBIG";
    case EIO: return "EIO";
    case EROFS: return "EROFS";
    default: return "errno";
    }
}

static int run_points(sweep *sw, const char *out, int resume)
{
    char err[1024];
    /* one writer per results file: the lock first, before the file is read or changed */
    record_writer wr;
    if (record_writer_open(&wr, out, err, sizeof err))
        return cli_error("sweep", "--out %s", err);
    const int fd = wr.fd;
    record_file rf;
    if (record_file_read(out, true, &rf, err, sizeof err)) {
        record_writer_close(&wr);
        return cli_error("sweep", "%s", err);
    }
    size_t done_count = json_array_size(rf.records);
    if ((done_count || rf.torn_line) && !resume) {
        record_file_free(&rf);
        record_writer_close(&wr);
        return cli_error("sweep", "%s already holds results; continue it with --resume or "
                                  "choose another --out", out);
    }
    if (rf.torn_line) {
        fprintf(stderr, "attnbench sweep: %s:%ld: a torn record (%ld bytes, cut short by a kill "
                        "or crash); removed, its point runs again\n",
                out, rf.torn_line, rf.torn_bytes);
        if (ftruncate(fd, rf.good_bytes) != 0) {
            record_file_free(&rf);
            record_writer_close(&wr);
            return cli_error("sweep", "%s: cannot remove the torn record: %s", out,
                             strerror(errno));
        }
    }

    /* which points are done; what the series learned from them */
    series *all = calloc((size_t)sw->npoints + 1, sizeof *all);
    int nseries = 0;
    char (*ids)[17] = malloc((size_t)sw->npoints * 17);
    int todo = 0;
    for (int i = 0; i < sw->npoints; i++) {
        char key[1024];
        point_key(&sw->points[i], key, sizeof key);
        point_id(key, ids[i]);
    }
    unsigned char *skip = calloc((size_t)sw->npoints, 1); /* 1 done already, 2 duplicate */
    for (int i = 0; i < sw->npoints; i++) {
        for (int j = 0; j < i && !skip[i]; j++)
            if (strcmp(ids[i], ids[j]) == 0)
                skip[i] = 2;
        for (size_t r = 0; r < done_count && !skip[i]; r++)
            if (strcmp(json_string_value(json_object_get(json_array_get(rf.records, r),
                                                         "point_id")),
                       ids[i]) == 0) {
                skip[i] = 1;
                series_learn(series_find(all, &nseries, &sw->points[i]),
                             json_array_get(rf.records, r));
            }
        todo += !skip[i];
    }
    int resumed = 0;
    for (int i = 0; i < sw->npoints; i++)
        resumed += skip[i] == 1;
    if (resume)
        fprintf(stderr, "attnbench sweep: %s holds %zu records, %d of them points of this sweep; "
                        "running the other %d\n", out, done_count, resumed, todo);
    /* forked children share the parent's pages: what it holds is in every point's RSS */
    record_file_free(&rf);
    free(ids);

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGXFSZ, SIG_IGN); /* past RLIMIT_FSIZE a write should fail with EFBIG, not kill */
    json_t *ctx = context_collect();
    const int tty = isatty(STDERR_FILENO);
    const double t_start = timing_now();
    int ran = 0, rc = 0, counts[POINT_NSTATUS] = {0};
    for (int i = 0; i < sw->npoints && !rc; i++) {
        if (skip[i])
            continue;
        point_spec *s = &sw->points[i];
        point_limits lim = sw->groups[sw->group_of[i]]->limits;
        lim.stop = &interrupted;
        series *x = series_find(all, &nseries, s);
        point_model pm;
        const char *why;
        char reason[768] = "";
        json_t *rec = NULL;
        if (point_over_memory(s, &lim, reason, sizeof reason)) {
            /* the reason is in place; memory comes first, it is the harder limit */
        } else if (x->failed[0] && !lim.no_skip) {
            snprintf(reason, sizeof reason, "a smaller n of this series ended with status %s",
                     x->failed);
        } else if (point_model_of(s, &pm, &why) == 0 && x->wall > 0 && lim.time_limit > 0 &&
                   !lim.no_skip) {
            double per_rep = x->wall * pm.flops / x->flops;
            double predicted = per_rep * (s->reps + s->warmup);
            if (predicted > lim.time_limit)
                snprintf(reason, sizeof reason,
                         "predicted %.0f s (%d repetitions and %d warm-up at the rate "
                         "measured at a smaller n) exceeds the time limit of %g s",
                         predicted, s->reps, s->warmup, lim.time_limit);
        }
        if (tty) {
            char eta[32], el[32];
            double elapsed = timing_now() - t_start;
            fmt_duration(ran ? elapsed / ran * (todo - ran) : NAN, eta, sizeof eta);
            fmt_duration(elapsed, el, sizeof el);
            fprintf(stderr, "\r\033[K[%d/%d] %s n=%lld  elapsed %s  ETA %s", ran + 1, todo,
                    s->label ? s->label : s->params.method->name, (long long)s->shape.n, el, eta);
        }
        rec = reason[0] ? point_record_new(s, ctx, POINT_SKIPPED, reason)
                        : point_run(s, &lim, ctx);
        if (!rec)
            break; /* interrupted while the point ran: it runs again on --resume */
        const char *st = json_string_value(json_object_get(rec, "status"));
        int status = point_status_parse(st);
        counts[status >= 0 ? status : POINT_ERROR]++;
        series_learn(x, rec);
        if (record_append(fd, rec) != 0) {
            const int e = errno;
            rc = cli_fail("sweep", "%s: write failed: %s (%s); the %zu records before it are "
                          "safe (the partial one was removed); free room and continue with "
                          "--resume", out, strerror(e), errno_name(e), done_count + (size_t)ran);
        } else {
            char peak[32];
            const json_t *reason_j = json_object_get(rec, "reason");
            double wall = json_number_value(json_object_get(rec, "wall_s"));
            char what[64];
            snprintf(what, sizeof what, "%s%s", s->label ? s->label : s->params.method->name,
                     s->train && !s->label ? (s->stack == STACK_REVERSIBLE ? "/rev" : "/std") : "");
            fprintf(stderr, "%s[%d/%d] %-12s n=%-8lld%-12s", tty ? "\r\033[K" : "", ran + 1,
                    todo, what, (long long)s->shape.n, st);
            if (s->train)
                fprintf(stderr, " L=%d", s->layers);
            if (status == POINT_OK)
                fprintf(stderr, " %.4g s  peak RSS %s", wall,
                        record_bytes(json_number_value(json_object_get(rec, "peak_rss_bytes")),
                                     peak, sizeof peak));
            else if (json_is_string(reason_j))
                fprintf(stderr, " %s", json_string_value(reason_j));
            fputc('\n', stderr);
        }
        json_decref(rec);
        ran++;
        if (interrupted)
            break; /* the point finished before the signal landed: it is recorded */
    }
    record_writer_close(&wr);
    json_decref(ctx);
    free(all);
    free(skip);
    if (interrupted) {
        fprintf(stderr, "\nattnbench sweep: interrupted; %d points recorded in %s; continue with "
                        "--resume\n", ran, out);
        return 128 + interrupted;
    }
    if (!rc) {
        fprintf(stderr, "attnbench sweep: %d points run in %.0f s into %s:", ran,
                timing_now() - t_start, out);
        for (int k = 0; k < POINT_NSTATUS; k++)
            if (counts[k])
                fprintf(stderr, " %d %s", counts[k], point_status_name(k));
        fputc('\n', stderr);
    }
    return rc;
}

/* The default results file of a suite: results/<basename without .suite>/results.jsonl. */
static void suite_out(const char *suite, char *buf, size_t size)
{
    const char *base = strrchr(suite, '/');
    base = base ? base + 1 : suite;
    size_t len = strcspn(base, ".");
    snprintf(buf, size, "results/%.*s/results.jsonl", (int)len, base);
}


int cmd_sweep(int argc, char **argv)
{
    sweep *sw = sweep_new();
    if (!sw)
        return cli_fail("sweep", "out of memory");
    options defaults;
    options_default(&defaults);
    const char *out = NULL, *suite = NULL;
    int resume = 0;
    char default_out[1024];
    int rc = parse_group("sweep", argc, argv, &defaults, sw, &out, &resume, &suite);
    if (!rc && suite) {
        /* the command line's options are every suite line's starting point */
        options cli = *sw->groups[0];
        rc = parse_suite(suite, &cli, sw);
        if (!out) {
            suite_out(suite, default_out, sizeof default_out);
            out = default_out;
        }
    }
    if (!rc && !out)
        rc = cli_error("sweep", "--out FILE.jsonl is required");
    if (!rc && cli_mkdirs_for(out) != 0)
        rc = cli_error("sweep", "cannot create the folder of %s: %s", out, strerror(errno));
    if (!rc)
        rc = run_points(sw, out, resume);
    sweep_free(sw);
    return rc;
}
