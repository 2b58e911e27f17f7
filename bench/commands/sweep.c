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

#include "../launch/external.h"
#include "../measure/context.h"
#include "../measure/yardstick.h"
#include "../record/record.h"
#include "../run/run.h"
#include "../sys/cli.h"
#include "../sys/timing.h"
#include "commands.h"
#include "options.h"
#include "sweep.h"

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
    "  --shard K/N      run only shard K of N (0 <= K < N): whole series spread over the shards\n"
    "                   by predicted cost; default --out of a suite results/<suite>/shard-K-of-N.jsonl\n"
    "  --no-yardstick   skip the sgemm yardstick: by default the sweep measures OpenBLAS sgemm at\n"
    "                   each of its thread counts before its first point, and every record\n"
    "                   carries it (context.yardstick: the report's \"of sgemm\" columns)\n"
    "  --list           print the planned points (shard, id, model bytes, predicted time) and\n"
    "                   each shard's total, run nothing; --shard all/N lists every shard\n"
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
                         const char *const *assign, int nassign, attn_params *out, int max)
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
/* What only the command line sets (a suite line may not): where the records go and which
 * of the points this run takes. */
typedef struct sweep_cmdline {
    const char *out, *suite;
    int resume;
    int list;              /* print the plan, run nothing */
    int no_yardstick;      /* measure no sgemm yardstick (measure/yardstick.h) */
    int shard_k, shard_n;  /* run shard k of n (0 <= k < n; k = -1: all, with --list) */
} sweep_cmdline;

/* "K/N", or "all/N" (only with --list). Returns 0 or -1. */
static int parse_shard(const char *text, int *k, int *n)
{
    int64_t kk, nn;
    const char *slash = strchr(text, '/');
    if (!slash || cli_parse_int(slash + 1, 1, 4096, &nn))
        return -1;
    char head[32];
    snprintf(head, sizeof head, "%.*s", (int)(slash - text), text);
    if (strcmp(head, "all") == 0)
        kk = -1;
    else if (cli_parse_int(head, 0, nn - 1, &kk))
        return -1;
    *k = (int)kk;
    *n = (int)nn;
    return 0;
}

/* A group's own flags: what options_apply does not take. */
typedef struct group_flags {
    const char *methods, *lengths;
    const char *assign[64]; /* --param M.key=value */
    int nassign;
} group_flags;

/* Parses one group's flags (the command line's, cl set; or a suite line's, cl NULL) into o and
 * g. Returns 0 or the command's exit status after one line. */
static int group_flags_parse(const char *cmd, int argc, char **argv, options *o, group_flags *g,
                             sweep_cmdline *cl)
{
    enum { OPT_METHODS = 1, OPT_N, OPT_PARAM, OPT_OUT, OPT_RESUME, OPT_SUITE, OPT_SHARD, OPT_LIST,
           OPT_NO_YARDSTICK, OPT_HELP };
    static const struct option opts[] = {
        {"methods", required_argument, 0, OPT_METHODS}, {"n", required_argument, 0, OPT_N},
        {"param", required_argument, 0, OPT_PARAM},     {"out", required_argument, 0, OPT_OUT},
        {"resume", no_argument, 0, OPT_RESUME},         {"suite", required_argument, 0, OPT_SUITE},
        {"shard", required_argument, 0, OPT_SHARD},     {"list", no_argument, 0, OPT_LIST},
        {"dry-run", no_argument, 0, OPT_LIST},          {"help", no_argument, 0, OPT_HELP},
        {"no-yardstick", no_argument, 0, OPT_NO_YARDSTICK},
        OPTIONS_COMMON_LONG,                            {0, 0, 0, 0},
    };
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
        case OPT_METHODS: g->methods = optarg; break;
        case OPT_N: g->lengths = optarg; break;
        case OPT_PARAM:
            if (g->nassign == 64)
                return cli_error(cmd, "too many --param flags");
            g->assign[g->nassign++] = optarg;
            break;
        case OPT_OUT:
        case OPT_RESUME:
        case OPT_SUITE:
        case OPT_SHARD:
        case OPT_LIST:
        case OPT_NO_YARDSTICK:
            if (!cl) /* suite lines: only the command line chooses the output and the shard */
                return cli_error(cmd, "--out, --resume, --suite, --shard, --list and "
                                      "--no-yardstick belong on the command line");
            if (c == OPT_OUT)
                cl->out = optarg;
            else if (c == OPT_RESUME)
                cl->resume = 1;
            else if (c == OPT_SUITE)
                cl->suite = optarg;
            else if (c == OPT_LIST)
                cl->list = 1;
            else if (c == OPT_NO_YARDSTICK)
                cl->no_yardstick = 1;
            else if (parse_shard(optarg, &cl->shard_k, &cl->shard_n))
                return cli_error(cmd, "--shard '%s' is not K/N with 0 <= K < N <= 4096 (or "
                                      "all/N with --list)", optarg);
            break;
        case OPT_HELP:
            if (!cl) /* a suite line asks for no help: it would end the sweep */
                return cli_error(cmd, "--help belongs on the command line");
            fputs(sweep_usage, stdout);
            exit(0);
        default: return cli_getopt_error(cmd, optopt, argv, optind);
        }
    }
    if (optind < argc)
        return cli_error(cmd, "unexpected argument '%s'", argv[optind]);
    return 0;
}

/* Every --param must name a method of its group. */
static int check_param_methods(const char *cmd, const group_flags *g)
{
    for (int a = 0; a < g->nassign; a++) {
        const char *dot = param_dot(g->assign[a]);
        int found = 0;
        char list[512];
        snprintf(list, sizeof list, "%s", g->methods);
        for (char *s, *m = strtok_r(list, ",", &s); m && dot; m = strtok_r(NULL, ",", &s))
            found |= strlen(m) == (size_t)(dot - g->assign[a]) &&
                     strncmp(m, g->assign[a], strlen(m)) == 0;
        if (!found)
            return cli_error(cmd, "--param '%s' must be M.key=value with M one of --methods %s",
                             g->assign[a], g->methods);
    }
    return 0;
}

/* The points of one method of the group: each parameter set, depth, process count and
 * length. */
static int add_method_points(const char *cmd, const char *name, const options *o,
                             const group_flags *g, const int64_t *ns, int nn, sweep *sw)
{
    attn_params p;
    method_ref ref;
    int rc = options_method(cmd, name, &p, &ref);
    if (rc)
        return rc;
    attn_params sets[256];
    int nsets = expand_params(cmd, name, &p, g->assign, g->nassign, sets, 256);
    if (nsets < 0)
        return -nsets;
    /* depth matters only to training points: one pass otherwise */
    const int trains = ref.external ? ref.external->train[0] != '\0' : o->train || ref.reversible;
    const int nl = trains ? o->nlayers : 1;
    /* process counts matter only to ring, the sequence-parallel method */
    const int ring = !ref.label && strcmp(p.method->name, "ring") == 0;
    const int nr = ring && o->nranks ? o->nranks : 1;
    for (int i = 0; i < nsets; i++)
        for (int l = 0; l < nl; l++)
            for (int rk = 0; rk < nr; rk++)
                for (int t = 0; t < o->ndtypes; t++)
                    for (int j = 0; j < nn; j++) {
                        if (sw->npoints == MAX_POINTS)
                            return cli_error(cmd, "more than %d points", MAX_POINTS);
                        if (sw->npoints == sw->capacity && grow(sw) != 0)
                            return cli_fail(cmd, "out of memory for %d points", sw->npoints);
                        sw->group_of[sw->npoints] = sw->ngroups - 1;
                        point_spec *pt = &sw->points[sw->npoints++];
                        options_spec(o, &sets[i], &ref, ns[j], (int)o->layers[l],
                                     ring && o->nranks ? (int)o->ranks[rk] : 0, pt);
                        pt->shape.dtype = o->dtypes[t];
                    }
    return 0;
}

/* One group of points: the command line's (cl set) or a suite line's (cl NULL), over the
 * defaults; its points are appended to sw. */
static int parse_group(const char *cmd, int argc, char **argv, const options *defaults,
                       sweep *sw, sweep_cmdline *cl)
{
    if (sw->ngroups == (int)(sizeof sw->groups / sizeof sw->groups[0]))
        return cli_error(cmd, "too many point groups");
    options *o = malloc(sizeof *o);
    if (!o)
        return cli_fail(cmd, "out of memory for a point group");
    *o = *defaults;
    sw->groups[sw->ngroups++] = o;
    group_flags g = {0};
    int rc = group_flags_parse(cmd, argc, argv, o, &g, cl);
    if (rc)
        return rc;
    if (cl && cl->suite) {
        if (g.methods || g.lengths || g.nassign)
            return cli_error(cmd, "--suite takes the points from the suite file; give "
                                  "--methods, --n and --param there");
        return 0;
    }
    if (!g.methods)
        return cli_error(cmd, "--methods is required (or --suite)");
    if (!g.lengths)
        return cli_error(cmd, "--n is required, e.g. --n 1K:64K");
    int64_t ns[64];
    int nn = options_parse_range(g.lengths, ns, 64, INT64_C(1) << 31);
    if (nn <= 0)
        return cli_error(cmd, "--n '%s' is not MIN:MAX[:FACTOR] or a list of lengths in "
                              "[1, 2^31] (K/M suffixes allowed)", g.lengths);
    if ((rc = check_param_methods(cmd, &g)))
        return rc;
    char list[512];
    if (strlen(g.methods) >= sizeof list)
        return cli_error(cmd, "--methods list too long");
    snprintf(list, sizeof list, "%s", g.methods);
    for (char *s, *name = strtok_r(list, ",", &s); name; name = strtok_r(NULL, ",", &s))
        if ((rc = add_method_points(cmd, name, o, &g, ns, nn, sw)))
            return rc;
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
        rc = parse_group(cmd, nw + 1, words, defaults, sw, NULL);
    }
    if (!rc && groups == 0)
        rc = cli_error("sweep", "--suite %s: no point groups in the file", path);
    return rc;
}

/* ---- running ------------------------------------------------------------------------- */

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

/* ---- the plan: which points run, in which shard ---------------------------------------- */

/* What a sweep remembers of each series (the same point but for n): its last measured rate
 * and whether a smaller n failed. */
typedef struct series {
    char key[1024];
    double flops, wall; /* last ok point: model FLOPs and median wall time per repetition */
    char failed[128];   /* non-empty: the status of a failed smaller n */
    double cost;        /* predicted seconds of all its points (for the shards) */
    int shard;
} series;

/* The series of every point, found once (a json object key -> index is the hash table). */
typedef struct plan {
    series *all;
    int nseries;
    int *series_of;         /* per point */
    char (*ids)[17];        /* per point */
    unsigned char *skip;    /* per point: 1 done already, 2 a duplicate, 3 another shard's */
    int todo, resumed;
    size_t done_count;      /* records already in the file */
} plan;

static void plan_free(plan *pl)
{
    free(pl->all), free(pl->series_of), free(pl->ids), free(pl->skip);
    memset(pl, 0, sizeof *pl);
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

/* A rate for predicting a point before anything of its series ran: the plan must not depend
 * on the machine or on what earlier shards measured, so every shard computes the same one. */
#define PLAN_NOMINAL_GFLOPS 50.0

/* The seconds a point is predicted to take: its repetitions at the nominal rate, plus its
 * buffers generated and touched (about 1 GB/s); 0 when its model exceeds the memory limit or
 * the prediction its time limit (the sweep skips those without running them). */
static double point_cost(const point_spec *s, const point_limits *lim)
{
    point_model m;
    const char *why;
    char reason[512];
    if (point_model_of(s, &m, &why) != 0 || point_over_memory(s, lim, reason, sizeof reason))
        return 0;
    double t = m.flops * (s->reps + s->warmup) / (PLAN_NOMINAL_GFLOPS * 1e9) + (double)m.bytes / 1e9;
    if (s->accuracy && !s->train) /* the exact reference: full attention once */
        t += 4.0 * (double)(s->shape.B * s->shape.H) * (double)s->shape.n * (double)s->shape.n *
             (double)s->shape.d / (PLAN_NOMINAL_GFLOPS * 1e9);
    return lim->time_limit > 0 && t > lim->time_limit && !lim->no_skip ? 0 : t;
}

static int by_cost(const void *a, const void *b)
{
    const series *x = *(series *const *)a, *y = *(series *const *)b;
    if (x->cost != y->cost)
        return x->cost < y->cost ? 1 : -1;
    return strcmp(x->key, y->key); /* ties in a fixed order: every shard plans alike */
}

/* Series to shards by predicted cost, longest first, each to the least loaded shard (LPT):
 * shards take similar time, and a series stays whole, so its skip rules and time
 * predictions work inside a shard. Depends only on the points, never on the machine. */
static int assign_shards(plan *pl, int nshards)
{
    series **order = malloc((size_t)(pl->nseries + 1) * sizeof *order);
    double *load = calloc((size_t)nshards, sizeof *load);
    if (!order || !load) {
        free(order);
        free(load);
        return -1;
    }
    for (int i = 0; i < pl->nseries; i++)
        order[i] = &pl->all[i];
    qsort(order, (size_t)pl->nseries, sizeof *order, by_cost);
    for (int i = 0; i < pl->nseries; i++) {
        int best = 0;
        for (int k = 1; k < nshards; k++)
            if (load[k] < load[best])
                best = k;
        order[i]->shard = best;
        load[best] += order[i]->cost;
    }
    free(order);
    free(load);
    return 0;
}

/* Ids, series and shards of every point; which of them this run skips (done, duplicate,
 * another shard's). rf: the records already in the results file (or NULL). */
static int plan_points(const sweep *sw, const sweep_cmdline *cl, const record_file *rf, plan *pl)
{
    memset(pl, 0, sizeof *pl);
    const size_t np = (size_t)sw->npoints;
    pl->all = calloc(np + 1, sizeof *pl->all);
    pl->series_of = calloc(np + 1, sizeof *pl->series_of);
    pl->ids = malloc((np + 1) * sizeof *pl->ids);
    pl->skip = calloc(np + 1, 1);
    if (!pl->all || !pl->series_of || !pl->ids || !pl->skip)
        return -1;
    json_t *index = json_object(); /* series key -> its index */
    for (int i = 0; i < sw->npoints; i++) {
        char key[1024], skey[1024];
        point_key(&sw->points[i], key, sizeof key);
        point_id(key, pl->ids[i]);
        record_series_key(key, "n", skey, sizeof skey);
        const json_t *at = json_object_get(index, skey);
        if (!at) {
            at = json_integer(pl->nseries);
            json_object_set_new(index, skey, (json_t *)at);
            snprintf(pl->all[pl->nseries++].key, sizeof pl->all[0].key, "%s", skey);
        }
        pl->series_of[i] = (int)json_integer_value(at);
        pl->all[pl->series_of[i]].cost +=
            point_cost(&sw->points[i], &sw->groups[sw->group_of[i]]->limits);
    }
    json_decref(index);
    if (assign_shards(pl, cl->shard_n > 0 ? cl->shard_n : 1) != 0)
        return -1;

    json_t *done = rf ? record_index(rf->records) : json_object(), *planned = json_object();
    pl->done_count = rf ? json_array_size(rf->records) : 0;
    for (int i = 0; i < sw->npoints; i++) {
        const json_t *rec = json_object_get(done, pl->ids[i]);
        series *x = &pl->all[pl->series_of[i]];
        if (cl->shard_n > 0 && cl->shard_k >= 0 && x->shard != cl->shard_k)
            pl->skip[i] = 3;
        else if (json_object_get(planned, pl->ids[i]))
            pl->skip[i] = 2;
        else if (rec)
            pl->skip[i] = 1, series_learn(x, rec);
        json_object_set_new(planned, pl->ids[i], json_true());
        pl->todo += !pl->skip[i];
        pl->resumed += pl->skip[i] == 1;
    }
    json_decref(done);
    json_decref(planned);
    return 0;
}

/* --list: the planned points of the chosen shard (or all, with their shards), model bytes and
 * predicted time, and each shard's totals; nothing runs. */
static int print_plan(const sweep *sw, const sweep_cmdline *cl, const plan *pl)
{
    const int nshards = cl->shard_n > 0 ? cl->shard_n : 1;
    double *total = calloc((size_t)nshards, sizeof *total);
    int *count = calloc((size_t)nshards, sizeof *count);
    if (!total || !count) {
        free(total);
        free(count);
        return cli_fail("sweep", "out of memory for the plan of %d shards", nshards);
    }
    printf("%-7s %-16s %-28s %9s %11s %11s  %s\n", "shard", "point_id", "method", "n", "model bytes",
           "predicted", "status");
    for (int i = 0; i < sw->npoints; i++) {
        if (pl->skip[i] == 2 || pl->skip[i] == 3)
            continue;
        const point_spec *s = &sw->points[i];
        const point_limits *lim = &sw->groups[sw->group_of[i]]->limits;
        const series *x = &pl->all[pl->series_of[i]];
        point_model m;
        const char *why;
        char bytes[32] = "-", when[32], reason[512], what[64];
        const double t = point_cost(s, lim);
        if (point_model_of(s, &m, &why) == 0)
            record_bytes((double)m.bytes, bytes, sizeof bytes);
        fmt_duration(t, when, sizeof when);
        snprintf(what, sizeof what, "%s", s->label ? s->label : s->params.method->name);
        const char *status = pl->skip[i] == 1                                   ? "done"
                             : point_over_memory(s, lim, reason, sizeof reason) ? "skip: memory"
                             : t == 0                                           ? "skip: time"
                                                                                : "run";
        printf("%d/%-5d %-16s %-28.28s %9lld %11s %11s  %s\n", x->shard, nshards, pl->ids[i],
               what, (long long)s->shape.n, bytes, when, status);
        total[x->shard] += t;
        count[x->shard]++;
    }
    for (int k = 0; k < nshards; k++) {
        if (cl->shard_k >= 0 && cl->shard_n > 0 && k != cl->shard_k)
            continue;
        char when[32];
        fmt_duration(total[k], when, sizeof when);
        printf("shard %d/%d: %d points, predicted %s at a nominal %.0f GFLOP/s\n", k, nshards,
               count[k], when, PLAN_NOMINAL_GFLOPS);
    }
    free(total);
    free(count);
    return 0;
}

/* ---- running ---------------------------------------------------------------------------- */

/* A sweep measures a busy point again this many times by default (--busy-retries), and stops
 * retrying after this many points in a row stayed busy through every attempt. */
#define SWEEP_BUSY_RETRIES 2
#define SWEEP_BUSY_GIVE_UP 3

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

/* The results file, locked for this sweep alone, its records read, a torn tail cut off.
 * Returns 0, or the exit status after one line. */
static int open_results(const sweep_cmdline *cl, record_writer *wr, record_file *rf)
{
    char err[1024];
    /* one writer per results file: the lock first, before the file is read or changed */
    if (record_writer_open(wr, cl->out, err, sizeof err))
        return cli_error("sweep", "--out %s", err);
    if (record_file_read(cl->out, true, rf, err, sizeof err)) {
        record_writer_close(wr);
        return cli_error("sweep", "%s", err);
    }
    if ((json_array_size(rf->records) || rf->torn_line) && !cl->resume) {
        record_file_free(rf);
        record_writer_close(wr);
        return cli_error("sweep", "%s already holds results; continue it with --resume or "
                                  "choose another --out", cl->out);
    }
    if (rf->torn_line) {
        fprintf(stderr, "attnbench sweep: %s:%ld: a torn record (%ld bytes, cut short by a kill "
                        "or crash); removed, its point runs again\n",
                cl->out, rf->torn_line, rf->torn_bytes);
        if (ftruncate(wr->fd, rf->good_bytes) != 0) {
            const int e = errno;
            record_file_free(rf);
            record_writer_close(wr);
            return cli_error("sweep", "%s: cannot remove the torn record: %s", cl->out,
                             strerror(e));
        }
    }
    return 0;
}

/* Why a point is skipped without running (memory first, it is the harder limit; then a
 * failed smaller n of its series; then its time predicted from the series' measured rate),
 * into reason; empty when it runs. */
static void skip_reason(const point_spec *s, const point_limits *lim, const series *x,
                        char *reason, size_t size)
{
    point_model pm;
    const char *why;
    reason[0] = '\0';
    if (point_over_memory(s, lim, reason, size))
        return;
    if (x->failed[0] && !lim->no_skip) {
        snprintf(reason, size, "a smaller n of this series ended with status %s", x->failed);
    } else if (point_model_of(s, &pm, &why) == 0 && x->wall > 0 && lim->time_limit > 0 &&
               !lim->no_skip) {
        const double predicted = x->wall * pm.flops / x->flops * (s->reps + s->warmup);
        if (predicted > lim->time_limit)
            snprintf(reason, size, "predicted %.0f s (%d repetitions and %d warm-up at the rate "
                     "measured at a smaller n) exceeds the time limit of %g s",
                     predicted, s->reps, s->warmup, lim->time_limit);
    }
}

/* One line per finished point: what, status, time and peak RSS (or why not ok). */
static void print_point(const point_spec *s, const json_t *rec, int ran, int todo, int tty)
{
    char peak[32], what[64];
    const char *st = json_string_value(json_object_get(rec, "status"));
    const json_t *reason = json_object_get(rec, "reason");
    snprintf(what, sizeof what, "%s%s", s->label ? s->label : s->params.method->name,
             s->train && !s->label ? (s->stack == STACK_REVERSIBLE ? "/rev" : "/std") : "");
    fprintf(stderr, "%s[%d/%d] %-12s n=%-8lld%-12s", tty ? "\r\033[K" : "", ran + 1, todo, what,
            (long long)s->shape.n, st);
    if (s->train)
        fprintf(stderr, " L=%d", s->layers);
    if (st && strcmp(st, "ok") == 0)
        fprintf(stderr, " %.4g s  peak RSS %s", json_number_value(json_object_get(rec, "wall_s")),
                record_bytes(json_number_value(json_object_get(rec, "peak_rss_bytes")), peak,
                             sizeof peak));
    else if (json_is_string(reason))
        fprintf(stderr, " %s", json_string_value(reason));
    fputc('\n', stderr);
}

static void print_progress(const point_spec *s, int ran, int todo, double t_start)
{
    char eta[32], el[32];
    const double elapsed = timing_now() - t_start;
    fmt_duration(ran ? elapsed / ran * (todo - ran) : NAN, eta, sizeof eta);
    fmt_duration(elapsed, el, sizeof el);
    fprintf(stderr, "\r\033[K[%d/%d] %s n=%lld  elapsed %s  ETA %s", ran + 1, todo,
            s->label ? s->label : s->params.method->name, (long long)s->shape.n, el, eta);
}

/* The sgemm yardstick at each thread count of the points this run takes, measured now, in a
 * child (measure/yardstick.h); NULL, with a warning, when it could not be measured. */
static json_t *sweep_yardstick(const sweep *sw, const plan *pl)
{
    int threads[64], count = 0;
    for (int i = 0; i < sw->npoints; i++) {
        int seen = pl->skip[i];
        for (int k = 0; k < count && !seen; k++)
            seen = threads[k] == sw->points[i].threads;
        if (!seen && count < 64)
            threads[count++] = sw->points[i].threads;
    }
    if (!count)
        return NULL;
    char why[256];
    const double t0 = timing_now();
    json_t *y = yardstick_measure_apart(threads, count, why, sizeof why);
    if (!y)
        fprintf(stderr, "attnbench sweep: warning: no sgemm yardstick (%s); the records carry "
                        "none\n", why);
    else
        fprintf(stderr, "attnbench sweep: sgemm yardstick at %d thread count%s in %.1f s\n",
                count, count > 1 ? "s" : "", timing_now() - t0);
    return y;
}

/* The shard this run takes, and the yardstick, in every record's context (not in the
 * identity: the union of the shards is the unsharded sweep, point for point). */
static json_t *sweep_context(const sweep_cmdline *cl, json_t *sgemm)
{
    json_t *ctx = context_collect();
    if (cl->shard_n > 0)
        json_object_set_new(ctx, "shard", json_sprintf("%d/%d", cl->shard_k, cl->shard_n));
    if (sgemm)
        json_object_set_new(ctx, "yardstick", sgemm);
    return ctx;
}

static int run_points(sweep *sw, const sweep_cmdline *cl)
{
    record_writer wr;
    record_file rf;
    int rc = open_results(cl, &wr, &rf);
    if (rc)
        return rc;
    plan pl;
    /* a result to keep comes from a committed build: say so once the sweep is under way */
    if (context_built_dirty())
        fprintf(stderr, "attnbench sweep: warning: this binary was built from a tree with "
                        "uncommitted changes (git_commit %s is not what ran; every record says "
                        "git_dirty: true)\n", context_git_commit());
    if (plan_points(sw, cl, &rf, &pl) != 0) {
        record_file_free(&rf);
        record_writer_close(&wr);
        plan_free(&pl);
        return cli_fail("sweep", "out of memory for the plan of %d points", sw->npoints);
    }
    /* forked children share the parent's pages: what it holds is in every point's RSS */
    record_file_free(&rf);
    if (cl->resume)
        fprintf(stderr, "attnbench sweep: %s holds %zu records, %d of them points of this sweep%s; "
                        "running the other %d\n", cl->out, pl.done_count, pl.resumed,
                cl->shard_n ? " (shard)" : "", pl.todo);

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGXFSZ, SIG_IGN); /* past RLIMIT_FSIZE a write should fail with EFBIG, not kill */
    json_t *ctx = sweep_context(cl, cl->no_yardstick || !pl.todo ? NULL : sweep_yardstick(sw, &pl));
    const int tty = isatty(STDERR_FILENO);
    const double t_start = timing_now();
    int ran = 0, counts[POINT_NSTATUS] = {0};
    int stayed_busy = 0; /* points in a row whose every attempt was busy */
    for (int i = 0; i < sw->npoints && !rc; i++) {
        if (pl.skip[i])
            continue;
        point_spec *s = &sw->points[i];
        point_limits lim = sw->groups[sw->group_of[i]]->limits;
        lim.stop = &interrupted;
        if (lim.busy_retries < 0)
            lim.busy_retries = SWEEP_BUSY_RETRIES;
        /* a machine that stays busy is not waited out point after point: after a few points
         * whose every attempt was busy, one attempt each until a point finds it quiet again */
        if (stayed_busy >= SWEEP_BUSY_GIVE_UP)
            lim.busy_retries = 0;
        series *x = &pl.all[pl.series_of[i]];
        char reason[768];
        skip_reason(s, &lim, x, reason, sizeof reason);
        if (tty)
            print_progress(s, ran, pl.todo, t_start);
        json_t *rec = reason[0] ? point_record_new(s, ctx, POINT_SKIPPED, reason)
                                : point_run(s, &lim, ctx);
        if (!rec)
            break; /* interrupted while the point ran: it runs again on --resume */
        const int status = point_status_parse(json_string_value(json_object_get(rec, "status")));
        counts[status >= 0 ? status : POINT_ERROR]++;
        if (status == POINT_OK) {
            const int busy = json_is_true(json_object_get(json_object_get(rec, "machine_load"), "busy"));
            stayed_busy = busy ? stayed_busy + 1 : 0;
            if (busy && stayed_busy == SWEEP_BUSY_GIVE_UP && lim.busy_retries > 0)
                fprintf(stderr, "%sattnbench sweep: the machine stayed busy through %d points and "
                                "their retries; measuring each point once until one finds it "
                                "quiet (their records say busy)\n",
                        tty ? "\r\033[K" : "", SWEEP_BUSY_GIVE_UP);
        }
        series_learn(x, rec);
        if (record_append(wr.fd, rec) != 0) {
            const int e = errno;
            rc = cli_fail("sweep", "%s: write failed: %s (%s); the %zu records before it are "
                          "safe (the partial one was removed); free room and continue with "
                          "--resume", cl->out, strerror(e), errno_name(e),
                          pl.done_count + (size_t)ran);
        } else {
            print_point(s, rec, ran, pl.todo, tty);
        }
        json_decref(rec);
        ran++;
        if (interrupted)
            break; /* the point finished before the signal landed: it is recorded */
    }
    record_writer_close(&wr);
    json_decref(ctx);
    plan_free(&pl);
    if (interrupted) {
        fprintf(stderr, "\nattnbench sweep: interrupted; %d points recorded in %s; continue with "
                        "--resume\n", ran, cl->out);
        return 128 + interrupted;
    }
    if (!rc) {
        fprintf(stderr, "attnbench sweep: %d points run in %.0f s into %s:", ran,
                timing_now() - t_start, cl->out);
        for (int k = 0; k < POINT_NSTATUS; k++)
            if (counts[k])
                fprintf(stderr, " %d %s", counts[k], point_status_name(k));
        fputc('\n', stderr);
    }
    return rc;
}

/* results/<suite name>/results.jsonl for scripts/suites/<suite name>.suite; a shard writes
 * results/<suite name>/shard-K-of-N.jsonl (one file per shard: appends from several hosts
 * to one file over NFS are not safe). */
static void suite_out(const char *suite, const sweep_cmdline *cl, char *buf, size_t size)
{
    const char *slash = strrchr(suite, '/');
    const char *base = slash ? slash + 1 : suite;
    size_t len = strcspn(base, ".");
    if (cl->shard_n > 0)
        snprintf(buf, size, "results/%.*s/shard-%d-of-%d.jsonl", (int)len, base, cl->shard_k,
                 cl->shard_n);
    else
        snprintf(buf, size, "results/%.*s/results.jsonl", (int)len, base);
}

int cmd_sweep(int argc, char **argv)
{
    sweep *sw = sweep_new();
    if (!sw)
        return cli_fail("sweep", "out of memory");
    options defaults;
    options_default(&defaults);
    sweep_cmdline cl = {.shard_k = 0, .shard_n = 0};
    char default_out[1024];
    int rc = parse_group("sweep", argc, argv, &defaults, sw, &cl);
    if (!rc && cl.suite) {
        /* the command line's options are every suite line's starting point */
        options cli = *sw->groups[0];
        rc = parse_suite(cl.suite, &cli, sw);
        if (!cl.out) {
            suite_out(cl.suite, &cl, default_out, sizeof default_out);
            cl.out = default_out;
        }
    }
    if (!rc && cl.shard_k < 0 && !cl.list)
        rc = cli_error("sweep", "--shard all/N only lists (with --list); run one shard K/N");
    if (!rc && cl.list) {
        plan pl;
        if (plan_points(sw, &cl, NULL, &pl) != 0)
            rc = cli_fail("sweep", "out of memory for the plan of %d points", sw->npoints);
        else
            rc = print_plan(sw, &cl, &pl);
        plan_free(&pl);
        sweep_free(sw);
        return rc;
    }
    if (!rc && !cl.out)
        rc = cli_error("sweep", "--out FILE.jsonl is required");
    if (!rc && cli_mkdirs_for(cl.out) != 0)
        rc = cli_error("sweep", "cannot create the folder of %s: %s", cl.out, strerror(errno));
    if (!rc)
        rc = run_points(sw, &cl);
    sweep_free(sw);
    return rc;
}
