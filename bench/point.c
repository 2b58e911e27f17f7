/* point.c: runs one point in a child process and builds its record (see point.h).
 *
 * The parent stays small: it never allocates a point's buffers and never runs OpenMP or PAPI,
 * so a forked child starts with a few MiB resident and its high-water mark (reset with
 * clear_refs) and wait4's ru_maxrss measure the point alone. The child reports back through a
 * pipe, one JSON object a line: the record, then with --accuracy the error against the exact
 * reference; the parent classifies how the child ended (exit, signal, timeout). */
#include "point.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "context.h"
#include "external.h"
#include "inputs.h"
#include "measure.h"
#include "probe.h" /* the load, for the parent's wait for a quiet machine */
#include "ranks.h"
#include "timing.h"
#include "workload.h"

const char *point_status_name(int status)
{
    static const char *const names[] = {
#define POINT_STATUS_NAME(name, text) text,
        POINT_STATUSES(POINT_STATUS_NAME)
#undef POINT_STATUS_NAME
    };
    return status >= 0 && status < POINT_NSTATUS ? names[status] : "error";
}

int point_status_parse(const char *name)
{
    for (int i = 0; i < POINT_NSTATUS; i++)
        if (strcmp(point_status_name(i), name) == 0)
            return i;
    return -1;
}

void point_key(const point_spec *s, char *buf, size_t size)
{
    const attn_method *m = s->params.method;
    int len = snprintf(buf, size,
                       "method=%s;n=%lld;d=%lld;heads=%lld;batch=%lld;causal=%d;threads=%d;"
                       "seed=%llu;inputs=%s;accuracy=%d;params=",
                       s->external ? s->label : m->name, (long long)s->shape.n, (long long)s->shape.d,
                       (long long)s->shape.H, (long long)s->shape.B, s->shape.causal,
                       s->threads, (unsigned long long)s->seed, inputs_name(s->inputs),
                       s->accuracy);
    for (int i = 0; i < m->n_params && len > 0 && (size_t)len < size; i++) {
        char val[64];
        len += snprintf(buf + len, size - (size_t)len, "%s%s=%s", i ? "," : "",
                        m->params[i].name, attn_param_format(&s->params, i, val, sizeof val));
    }
    if (s->backward && len > 0 && (size_t)len < size) /* so do forward-only points */
        len += snprintf(buf + len, size - (size_t)len, ";backward=1");
    if (s->ranks > 0 && len > 0 && (size_t)len < size) /* and points in one process */
        len += snprintf(buf + len, size - (size_t)len, ";ranks=%d", s->ranks);
    /* a training point adds its stack (attention points keep the keys they always had) */
    if (s->train && len > 0 && (size_t)len < size)
        snprintf(buf + len, size - (size_t)len, ";train=%s;layers=%d;d_ff=%lld;ff_chunk=%lld%s%s",
                 s->stack == STACK_REVERSIBLE ? "reversible" : "standard", s->layers,
                 (long long)s->d_ff, (long long)s->ff_chunk, s->label ? ";label=" : "",
                 s->label ? s->label : "");
}

void point_series_key(const char *key, const char *field, char *buf, size_t size)
{
    const size_t flen = strlen(field);
    size_t len = 0;
    buf[0] = '\0';
    for (const char *p = key; *p;) {
        const size_t tok = strcspn(p, ";");
        const int skip = tok > flen && strncmp(p, field, flen) == 0 && p[flen] == '=';
        if (!skip && len + tok + 2 < size) {
            memcpy(buf + len, p, tok);
            len += tok;
            buf[len++] = ';';
            buf[len] = '\0';
        }
        p += tok + (p[tok] == ';');
    }
}

void point_id(const char *key, char id[17])
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    snprintf(id, 17, "%016llx", (unsigned long long)h);
}

int point_model_of(const point_spec *s, point_model *m, const char **why)
{
    return workload_model(s, m, why);
}

/* The measured fields, in record order; all null until measured. */
static const char *const measured_keys[] = {
    "wall_s", "wall_s_min", "wall_s_max", "wall_s_reps", "gflops", "peak_rss_bytes",
    "rss_before_inputs_bytes", "rss_before_kernel_bytes", "rss_file_growth_bytes",
    "ru_maxrss_bytes", "heap_peak_bytes",
    "heap_kernel_alloc_bytes", "jemalloc", "counters", "counters_unavailable", "rusage",
    "err_vs_exact", "loss", "work",
    "harness", "unavailable", "peer", "ranks", "machine_load", "quiet_wait", "attempts",
};

json_t *point_record_new(const point_spec *s, const json_t *context, int status,
                         const char *reason)
{
    char key[1024], id[17];
    point_key(s, key, sizeof key);
    point_id(key, id);
    const attn_method *m = s->params.method;
    json_t *r = json_object(), *params = json_object();
    json_object_set_new(r, "schema", json_string(RECORD_SCHEMA));
    json_object_set_new(r, "point_id", json_string(id));
    json_object_set_new(r, "point_key", json_string(key));
    json_object_set_new(r, "method", json_string(s->label ? s->label : m->name));
    /* an external program: the attnbench method whose parameters and model it carries */
    json_object_set_new(r, "implements", s->external ? json_string(m->name) : json_null());
    for (int i = 0; i < m->n_params; i++) {
        const attn_param_spec *spec = &m->params[i];
        char val[64];
        if (spec->kind == ATTN_PARAM_CHOICE || (spec->auto_ok && s->params.v[i] == ATTN_AUTO))
            json_object_set_new(params, spec->name,
                                json_string(attn_param_format(&s->params, i, val, sizeof val)));
        else if (spec->kind == ATTN_PARAM_INT)
            json_object_set_new(params, spec->name, json_integer((json_int_t)s->params.v[i]));
        else
            json_object_set_new(params, spec->name, json_real(s->params.v[i]));
    }
    json_object_set_new(r, "params", params);
    json_object_set_new(r, "n", json_integer(s->shape.n));
    json_object_set_new(r, "d", json_integer(s->shape.d));
    json_object_set_new(r, "heads", json_integer(s->shape.H));
    json_object_set_new(r, "batch", json_integer(s->shape.B));
    json_object_set_new(r, "causal", json_boolean(s->shape.causal));
    json_object_set_new(r, "threads", json_integer(s->threads));
    json_object_set_new(r, "reps", json_integer(s->reps));
    json_object_set_new(r, "warmup", json_integer(s->warmup));
    json_object_set_new(r, "seed", json_integer((json_int_t)s->seed));
    json_object_set_new(r, "inputs", json_string(inputs_name(s->inputs)));
    json_object_set_new(r, "backward", json_boolean(s->backward));
    json_object_set_new(r, "status", json_string(point_status_name(status)));
    json_object_set_new(r, "reason", reason ? json_string(reason) : json_null());

    /* the training step's stack (null for an attention forward) */
    point_model pm;
    const char *why;
    const int ok = point_model_of(s, &pm, &why) == 0;
    const int64_t D = s->shape.H * s->shape.d;
    json_object_set_new(r, "stack", s->train ? json_string(s->stack == STACK_REVERSIBLE
                                                                ? "reversible" : "standard")
                                             : json_null());
    json_object_set_new(r, "inner", s->train ? json_string(m->name) : json_null());
    json_object_set_new(r, "layers", s->train ? json_integer(s->layers) : json_null());
    json_object_set_new(r, "d_model", s->train ? json_integer(D) : json_null());
    json_object_set_new(r, "d_ff", s->train && ok ? json_integer(pm.d_ff) : json_null());
    json_object_set_new(r, "ff_chunk", s->train ? json_integer(s->ff_chunk) : json_null());
    json_object_set_new(r, "param_bytes", s->train && ok ? json_integer((json_int_t)pm.param_bytes)
                                                         : json_null());
    json_object_set_new(r, "model_activation_bytes",
                        s->train && ok ? json_integer((json_int_t)pm.activation_bytes) : json_null());
    json_object_set_new(r, "model_flops", ok ? json_real(pm.flops) : json_null());
    json_object_set_new(r, "model_recompute_flops",
                        s->train && ok ? json_real(pm.recompute_flops) : json_null());
    json_object_set_new(r, "model_bytes", ok ? json_integer((json_int_t)pm.bytes) : json_null());
    json_object_set_new(r, "model_io_bytes", ok ? json_integer((json_int_t)pm.io_bytes) : json_null());
    json_object_set_new(r, "model_workspace_bytes",
                        ok ? json_integer((json_int_t)pm.workspace_bytes) : json_null());
    for (size_t i = 0; i < sizeof measured_keys / sizeof measured_keys[0]; i++)
        json_object_set_new(r, measured_keys[i], json_null());
    json_object_set(r, "context", (json_t *)context);
    return r;
}

/* ---- the child ---------------------------------------------------------------------- */

/* Writes the whole string to fd (the pipe to the parent). */
static int write_all(int fd, const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t w = write(fd, s, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Sends one message, a JSON object on one line, to the parent; takes the reference. A message
 * that cannot be sent (the parent gone, out of memory for its text) ends the child: what the
 * parent then reads is an exit without a report, and stderr says why. */
static void child_send(int fd, json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT | JSON_REAL_PRECISION(17));
    const int had_text = text != NULL;
    const int sent = had_text && write_all(fd, text) == 0 && write_all(fd, "\n") == 0;
    const int e = errno;
    free(text);
    json_decref(msg);
    if (!sent) {
        fprintf(stderr, "attnbench: the measured child cannot send its report: %s\n",
                had_text ? strerror(e) : "out of memory");
        _exit(3);
    }
}

/* Sends the point's record with its status: the child's first message. */
static void child_report(int fd, json_t *r, int status, const char *reason)
{
    json_object_set_new(r, "status", json_string(point_status_name(status)));
    if (reason)
        json_object_set_new(r, "reason", json_string(reason));
    child_send(fd, r);
}

static void child_finish(int fd, json_t *r, int status, const char *reason)
{
    child_report(fd, r, status, reason);
    close(fd);
    _exit(0);
}

/* Test hook: ATTNBENCH_FAULT makes the child fail in a chosen way after its buffers exist, so
 * the parent's classification of real process deaths can be tested: segv, sigkill, sleep,
 * exit, unwritten (an output element left as the poison, as a buggy kernel would),
 * inflate:PCT (PCT% more memory than the model, written: a memory regression, for `check`),
 * sleep-reference (hang after the measured record, in --accuracy's exact reference), and
 * papi-busy (the counters' event sets already started by someone else, so the harness's own
 * PAPI_start fails for real). */
static int fault_is(const char *name)
{
    const char *f = getenv("ATTNBENCH_FAULT");
    return f && strcmp(f, name) == 0;
}

static void inject_fault(void)
{
    const char *f = getenv("ATTNBENCH_FAULT");
    if (!f)
        return;
    if (strcmp(f, "segv") == 0)
        raise(SIGSEGV);
    else if (strcmp(f, "sigkill") == 0)
        raise(SIGKILL);
    else if (strcmp(f, "sleep") == 0)
        for (;;)
            pause();
    else if (strcmp(f, "exit") == 0)
        _exit(3);
}

/* Sets e's max_rel and mean_rel: the row-wise relative L2 error of out against ref. */
static void relative_error(json_t *e, const float *out, const float *ref, int64_t rows, int64_t d)
{
    double max = 0, sum = 0, all_num = 0, all_den = 0;
    for (int64_t r = 0; r < rows; r++) {
        double num = 0, den = 0;
        for (int64_t c = 0; c < d; c++) {
            double diff = (double)out[r * d + c] - (double)ref[r * d + c];
            num += diff * diff;
            den += (double)ref[r * d + c] * (double)ref[r * d + c];
        }
        double row = sqrt(num) / (den > 0 ? sqrt(den) : 1.0);
        max = row > max ? row : max;
        sum += row;
        all_num += num;
        all_den += den;
    }
    json_object_set_new(e, "max_rel", json_real(max));
    json_object_set_new(e, "mean_rel", json_real(sum / (double)rows));
    json_object_set_new(e, "metric", json_string("row-wise ||out - exact||_2 / ||exact||_2"));
    /* over the whole output: rows whose exact output is small (a query averaging many random
     * values) weigh by their size, not by their number, as they do in what follows them */
    json_object_set_new(e, "rel_fro", json_real(all_den > 0 ? sqrt(all_num / all_den) : sqrt(all_num)));
}

/* The point's output against its exact counterpart's on the same inputs: the error, the
 * reference's configuration and its time; or {"error": why} when the reference could not run. */
json_t *point_exact_error(const point_spec *s, const float *q, const float *k, const float *v,
                          const float *out, const float *lse_m, const int32_t *structure_m)
{
    attn_params exact;
    attn_exact_params(&s->shape, &s->params, &exact);
    attn_cost c;
    exact.method->cost(&s->shape, &exact, s->threads, &c);
    const size_t elems = attn_tensor_elems(&s->shape), nstruct = attn_structure_elems(&c),
                 rows = (size_t)(s->shape.B * s->shape.H * s->shape.n);
    float *ref = malloc(elems * sizeof *ref), *lse = malloc(rows * sizeof *lse);
    int32_t *structure = nstruct ? malloc(nstruct * sizeof *structure) : NULL;
    json_t *e = json_object();
    const double t0 = timing_now();
    int rc = ATTN_ENOMEM;
    if (ref && lse && (structure || !nstruct)) {
        attn_tensors t = {.q = q, .k = k, .v = v, .out = ref, .lse = lse,
                          .structure = structure};
        rc = attn_forward_alloc(&s->shape, &exact, &t, s->threads);
    }
    if (rc) {
        char why[256];
        snprintf(why, sizeof why, "the exact reference %s failed: %s (%s)", exact.method->name,
                 attn_errname(rc), attn_strerror(rc));
        json_object_set_new(e, "error", json_string(why));
    } else {
        relative_error(e, out, ref, (int64_t)rows, s->shape.d);
        /* what the method's pattern or hash let through of the exact attention: needs its own
         * logsumexp and structure, so our methods only (not an external program's output) */
        double recall;
        const attn_tensors tm = {.q = q, .k = k, .v = v, .out = (float *)out,
                                 .lse = (float *)lse_m, .structure = (int32_t *)structure_m};
        const int have = lse_m && (structure_m || !s->params.method->mass);
        json_object_set_new(e, "mass_recall",
                            have && attn_mass_recall(&s->shape, &s->params, &tm, lse, &recall,
                                                     s->threads) == 0
                                ? json_real(recall)
                                : json_null());
        char text[512];
        int len = snprintf(text, sizeof text, "%s", exact.method->name);
        for (int i = 0; i < exact.method->n_params && len < (int)sizeof text; i++) {
            char val[64];
            len += snprintf(text + len, sizeof text - (size_t)len, " %s=%s",
                            exact.method->params[i].name, attn_param_format(&exact, i, val, sizeof val));
        }
        json_object_set_new(e, "reference", json_string(text));
        json_object_set_new(e, "reference_s", json_real(timing_now() - t0));
    }
    free(ref);
    free(lse);
    free(structure);
    return e;
}

/* Our own kernels in this process, as the pipeline's driver (measure.h): the buffers
 * allocated and touched before anything is timed, warm-up runs on poisoned outputs checked,
 * the repetitions on poisoned outputs checked after. */
typedef struct own_run {
    const point_spec *s;
    workload w;
    void *inflated; /* the inflate:PCT fault's extra memory */
} own_run;

static const char *run_name(const point_spec *s)
{
    return s->train ? "training step" : s->backward ? "forward and backward" : "forward";
}

/* POINT_ERROR unless the run before wrote every output element (and, for training, every
 * gradient) as a finite number. The "unwritten" fault plays a kernel that forgot one. */
static int own_verify(own_run *o, const char *stage, char *why, size_t size)
{
    char bad[256];
    if (fault_is("unwritten")) {
        size_t count;
        workload_output(&o->w, &count)[count / 2] = NAN;
    }
    if (workload_verify(&o->w, bad, sizeof bad) == 0)
        return POINT_OK;
    snprintf(why, size, "after %s: %s", stage, bad);
    return POINT_ERROR;
}

static int own_failed(const own_run *o, int rc, const char *what, char *why, size_t size)
{
    snprintf(why, size, "%s failed: %s (%s)", what ? what : run_name(o->s), attn_errname(rc),
             attn_strerror(rc));
    return rc == ATTN_ENOMEM ? POINT_ALLOC_FAILED : POINT_ERROR;
}

static int own_prepare(void *ctx, attn_stats *work, workload **w, char *why, size_t size)
{
    own_run *o = ctx;
    if (workload_prepare(&o->w, o->s, work) != 0) {
        snprintf(why, size, "allocating %llu bytes (model) failed: %s",
                 (unsigned long long)o->w.model.bytes, strerror(ENOMEM));
        return POINT_ALLOC_FAILED;
    }
    *w = &o->w;
    inject_fault();
    const char *fault = getenv("ATTNBENCH_FAULT");
    if (fault && strncmp(fault, "inflate:", 8) == 0) {
        const size_t extra = (size_t)((double)o->w.model.bytes * atof(fault + 8) / 100);
        if ((o->inflated = malloc(extra ? extra : 1)))
            memset(o->inflated, 1, extra);
    }
    return POINT_OK;
}

static int own_warmup(void *ctx, char *why, size_t size)
{
    own_run *o = ctx;
    for (int i = 0; i < o->s->warmup; i++) {
        workload_poison(&o->w);
        const int rc = workload_run(&o->w);
        if (rc)
            return own_failed(o, rc, NULL, why, size);
    }
    return o->s->warmup > 0 ? own_verify(o, "the warm-up", why, size) : POINT_OK;
}

/* The outputs are poisoned first (every page was touched when the buffers were prepared, so
 * that costs no page faults inside the window) and checked after it (finish). */
static int own_repeat(void *ctx, double *times, char *why, size_t size)
{
    own_run *o = ctx;
    workload_poison(&o->w);
    for (int i = 0; i < o->s->reps; i++) {
        const double a = timing_now();
        const int rc = workload_run(&o->w);
        times[i] = timing_now() - a;
        if (rc)
            return own_failed(o, rc, "a repetition", why, size);
    }
    return POINT_OK;
}

static int own_finish(void *ctx, int status, json_t *record, char *why, size_t size)
{
    own_run *o = ctx;
    if (status != POINT_OK)
        return status;
    workload_report(&o->w, record);
    return own_verify(o, "the timed repetitions", why, size);
}

/* The address-space cap: a runaway allocation fails inside the child instead of waking the
 * OOM killer. */
static void cap_address_space(const point_limits *lim)
{
    /* AddressSanitizer reserves terabytes of shadow address space: no cap in such builds */
#if defined(__SANITIZE_ADDRESS__)
    (void)lim;
#else
    if (lim->mem_limit) {
        struct rlimit rl = {.rlim_cur = lim->mem_limit + POINT_AS_SLACK,
                            .rlim_max = lim->mem_limit + POINT_AS_SLACK};
        if (setrlimit(RLIMIT_AS, &rl) != 0)
            fprintf(stderr, "attnbench: warning: the address space could not be capped (%s); "
                            "an allocation past the memory limit may wake the OOM killer\n",
                    strerror(errno));
    }
#endif
}

/* The death of the parent kills the child; crashes end it by default; stray prints go to
 * stderr so they cannot corrupt `run --json` on stdout. */
static void child_setup(pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a sweep killed with SIGKILL leaves no point behind */
    if (getppid() != parent)
        _exit(1);
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGINT, SIGTERM, SIGPIPE};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], SIG_DFL);
    dup2(STDERR_FILENO, STDOUT_FILENO);
}

/* --accuracy after the measured record: a reference that runs out of time or memory (it is an
 * O(n^2) exact method) cannot take the measurements with it. */
static void child_accuracy(int fd, const point_spec *s, json_t *record, const workload *w)
{
    child_report(fd, record, POINT_OK, NULL);
    if (fault_is("sleep-reference"))
        for (;;)
            pause();
    json_t *msg = json_object();
    json_object_set_new(msg, "err_vs_exact", point_exact_error(s, w->q, w->k, w->v, w->out,
                                                               w->lse, w->structure));
    child_send(fd, msg);
    close(fd);
    _exit(0);
}

/* One point's child: measured by the pipeline (measure.h), our own kernels here, or, through
 * its launcher, someone else's program or the ranks of a ring; sends the record and exits. */
static void child_main(const point_spec *s, const point_limits *lim, int fd, pid_t parent)
{
    const double t_start = timing_now();
    child_setup(parent);
    json_t *r = json_object(), *harness = json_object();
    char why[1024] = "";
    int status;
    if (s->external || s->ranks > 0) { /* someone else's program, or our ring as P MPI
                                          processes: no address-space cap (an interpreter's
                                          or MPI's reservations are not its memory) */
        status = s->external ? external_measure(s, r, harness, why, sizeof why)
                             : ranks_measure(s, r, why, sizeof why);
        json_object_set_new(harness, "child_s", json_real(timing_now() - t_start));
        json_object_set_new(r, "harness", harness);
        child_finish(fd, r, status, status == POINT_OK ? NULL : why);
    }
    cap_address_space(lim);
    own_run o = {.s = s};
    double *times = calloc((size_t)s->reps, sizeof *times);
    const measure_driver d = {.ctx = &o, .prepare = own_prepare, .warmup = own_warmup,
                              .repeat = own_repeat, .finish = own_finish,
                              .window_runs = s->reps};
    status = times ? measure_point(s, &d, r, harness, times, why, sizeof why) : POINT_ALLOC_FAILED;
    if (!times)
        snprintf(why, sizeof why, "out of memory for the repetitions' times");
    json_object_set_new(harness, "child_s", json_real(timing_now() - t_start));
    json_object_set_new(r, "harness", harness);
    free(times);
    free(o.inflated);
    if (status != POINT_OK || !s->accuracy || s->train)
        child_finish(fd, r, status, status == POINT_OK ? NULL : why);
    child_accuracy(fd, s, r, &o.w);
}

/* ---- the parent --------------------------------------------------------------------- */

/* Sets every key of the child's report on the record (the child's keys are a subset). */
static void merge_child(json_t *rec, json_t *child)
{
    const char *key;
    json_t *value;
    json_t *papi = json_object_get(child, "papi");
    json_object_foreach(child, key, value)
    {
        if (strcmp(key, "papi") != 0)
            json_object_set(rec, key, value);
    }
    if (papi) { /* what the child learned about PAPI belongs to the context */
        json_t *ctx = json_deep_copy(json_object_get(rec, "context"));
        json_object_set(ctx, "papi", papi);
        json_object_set_new(rec, "context", ctx);
    }
}

static void set_status(json_t *rec, int status, const char *reason)
{
    json_object_set_new(rec, "status", json_string(point_status_name(status)));
    json_object_set_new(rec, "reason", reason ? json_string(reason) : json_null());
}

/* Waits, up to `limit` seconds, until other processes use less than PROBE_BUSY_SHARE of the
 * machine over a half-second window (nothing of the point runs yet: all of it is theirs).
 * Returns {"waited_s", "quiet", "other_share"}: what the last window saw. */
static json_t *wait_for_quiet(double limit, volatile sig_atomic_t *stop)
{
    const double start = timing_now();
    double share = 1;
    probe_load a, b;
    while (probe_load_read(&a) == 0 && !(stop && *stop)) {
        const struct timespec half = {0, 500000000};
        nanosleep(&half, NULL);
        if (probe_load_read(&b) != 0)
            break;
        share = b.total_s > a.total_s ? (b.busy_s - a.busy_s) / (b.total_s - a.total_s) : 0;
        if (share < PROBE_BUSY_SHARE || timing_now() - start >= limit)
            break;
    }
    json_t *j = json_object();
    json_object_set_new(j, "waited_s", json_real(timing_now() - start));
    json_object_set_new(j, "quiet", json_boolean(share < PROBE_BUSY_SHARE));
    json_object_set_new(j, "other_share", json_real(share));
    return j;
}

void point_record_times(json_t *r, const point_spec *s, const double *times)
{
    json_t *all = json_array();
    double sorted_small[64], median, min, max;
    double *sorted = s->reps <= 64 ? sorted_small : malloc((size_t)s->reps * sizeof *sorted);
    for (int i = 0; i < s->reps; i++)
        json_array_append_new(all, json_real(times[i]));
    json_object_set_new(r, "wall_s_reps", all); /* in run order; the summary sorts a copy */
    if (!sorted) { /* --reps is at most 1000: a few KiB that did not come */
        json_object_set_new(r, "wall_s", json_null());
        return;
    }
    memcpy(sorted, times, (size_t)s->reps * sizeof *sorted);
    timing_summary(sorted, s->reps, &median, &min, &max);
    if (sorted != sorted_small)
        free(sorted);
    json_object_set_new(r, "wall_s", json_real(median));
    json_object_set_new(r, "wall_s_min", json_real(min));
    json_object_set_new(r, "wall_s_max", json_real(max));
    point_model pm;
    const char *why;
    if (point_model_of(s, &pm, &why) == 0)
        json_object_set_new(r, "gflops", json_real(pm.flops / median / 1e9));
}

int point_over_memory(const point_spec *s, const point_limits *lim, char *buf, size_t size)
{
    point_model m;
    const char *why;
    if (point_model_of(s, &m, &why) != 0 || !lim->mem_limit || lim->no_skip)
        return 0;
    /* ranks started here by mpirun share this machine: each is at most the largest */
    const uint64_t model = m.bytes * (uint64_t)(s->ranks > 0 ? s->ranks : 1);
    if (model <= lim->mem_limit)
        return 0;
    snprintf(buf, size, "model needs %llu bytes (%.2f GiB%s), more than the memory limit of %.2f GiB%s%s%s",
             (unsigned long long)model, (double)model / 0x1p30,
             s->ranks > 0 ? " over all ranks" : "", (double)lim->mem_limit / 0x1p30,
             lim->mem_limit_source[0] ? " (" : "", lim->mem_limit_source,
             lim->mem_limit_source[0] ? ")" : "");
    return 1;
}

/* One attempt at the point: a forked child, its record. */
static json_t *point_attempt(const point_spec *s, const point_limits *lim, const json_t *context)
{
    point_model m;
    const char *why;
    char reason[768];
    int rc = point_model_of(s, &m, &why);
    if (rc) {
        snprintf(reason, sizeof reason, "%s: %s", attn_errname(rc), why);
        return point_record_new(s, context, rc == ATTN_EUNSUPPORTED ? POINT_UNSUPPORTED
                                                                    : POINT_ERROR, reason);
    }
    if (point_over_memory(s, lim, reason, sizeof reason))
        return point_record_new(s, context, POINT_SKIPPED, reason);

    json_t *rec = point_record_new(s, context, POINT_ERROR, NULL);
    if (lim->quiet_wait > 0)
        json_object_set_new(rec, "quiet_wait", wait_for_quiet(lim->quiet_wait, lim->stop));
    /* the kernel's OOM-kill counts before the child exists: a SIGKILL is an OOM kill only if
     * one of them rises while it runs */
    oom_watch oom;
    oom_watch_begin(&oom);
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        set_status(rec, POINT_ERROR, "pipe() failed");
        return rec;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid(), pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        set_status(rec, POINT_ERROR, "fork() failed");
        return rec;
    }
    if (pid == 0) {
        close(pipefd[0]);
        child_main(s, lim, pipefd[1], parent);
        _exit(0);
    }
    close(pipefd[1]);

    /* read the messages until EOF, killing the child at the deadline or on a stop request */
    const double deadline = lim->time_limit > 0 ? timing_now() + lim->time_limit : INFINITY;
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    int timed_out = 0, stopped = 0;
    if (!buf) { /* nowhere to read the child's report into: it is no result */
        kill(pid, SIGKILL);
        close(pipefd[0]);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        set_status(rec, POINT_ERROR, "out of memory in the harness for the child's report");
        return rec;
    }
    for (;;) {
        double left = deadline - timing_now();
        stopped = lim->stop && *lim->stop;
        if (left <= 0 || stopped) {
            kill(pid, SIGKILL);
            timed_out = !stopped;
            break;
        }
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        int ms = isinf(left) ? 1000 : (int)fmin(1000.0, ceil(left * 1000));
        int pr = poll(&pfd, 1, ms);
        if (pr < 0 && errno == EINTR)
            continue; /* a signal: the loop's top sees a stop request */
        if (pr < 0) {
            kill(pid, SIGKILL); /* cannot watch it any more: do not wait for it blind */
            break;
        }
        if (pr == 0)
            continue;
        if (len + 4096 > cap) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) { /* the report so far stays; the child cannot finish it */
                kill(pid, SIGKILL);
                break;
            }
            buf = grown;
            cap *= 2;
        }
        ssize_t got = read(pipefd[0], buf + len, cap - len - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            kill(pid, SIGKILL);
        if (got <= 0)
            break; /* EOF: the child is exiting (or died) */
        len += (size_t)got;
    }
    buf[len] = '\0';
    close(pipefd[0]);

    int wstatus = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &wstatus, 0, &ru) < 0 && errno == EINTR)
        ;
    json_object_set_new(rec, "ru_maxrss_bytes", json_integer((json_int_t)ru.ru_maxrss * 1024));

    /* the messages: the record, then (--accuracy) its error against the exact reference; a
     * line cut short by the child's death is not a message */
    json_t *report = NULL;
    int messages = 0;
    for (char *line = buf, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        json_error_t jerr;
        json_t *msg = json_loads(line, 0, &jerr);
        if (!json_is_object(msg)) {
            json_decref(msg);
            break;
        }
        if (messages++ == 0)
            report = msg;
        else
            json_object_update(report, msg), json_decref(msg);
    }
    free(buf);
    const int measured = report != NULL,
              complete = measured &&
                         messages == (s->accuracy && !s->train && !s->external && !s->ranks ? 2 : 1);
    if (stopped || (lim->stop && *lim->stop && !complete)) {
        /* interrupted: what did not finish on its own is not a result; it runs again */
        json_decref(report);
        json_decref(rec);
        return NULL;
    }
    if (report)
        merge_child(rec, report);
    json_decref(report);
    if (complete)
        return rec;

    /* how the child ended before it finished */
    int status;
    if (timed_out) {
        snprintf(reason, sizeof reason, "killed after the time limit of %g s", lim->time_limit);
        status = POINT_TIMEOUT;
    } else if (WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) {
        char evidence[440];
        status = oom_watch_end(&oom, evidence, sizeof evidence) ? POINT_OOM_KILLED : POINT_KILLED;
        snprintf(reason, sizeof reason, "%s (ru_maxrss at death %.2f GiB)", evidence,
                 (double)ru.ru_maxrss / 0x1p20);
    } else if (WIFSIGNALED(wstatus)) {
        snprintf(reason, sizeof reason, "killed by signal %d (%s)", WTERMSIG(wstatus),
                 strsignal(WTERMSIG(wstatus)));
        status = POINT_CRASHED;
    } else {
        snprintf(reason, sizeof reason, "child exited with status %d without a report",
                 WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
        status = POINT_CRASHED;
    }
    if (measured) { /* only the exact reference of --accuracy was lost */
        json_t *e = json_object();
        json_object_set_new(e, "error", json_sprintf("the exact reference did not finish: %s", reason));
        json_object_set_new(rec, "err_vs_exact", e);
    } else {
        set_status(rec, status, reason);
    }
    return rec;
}

/* An ok record whose timed repetitions ran while others used the machine. */
static int timed_busy(const json_t *rec)
{
    const char *st = json_string_value(json_object_get(rec, "status"));
    return st && strcmp(st, "ok") == 0 &&
           json_is_true(json_object_get(json_object_get(rec, "machine_load"), "busy"));
}

static double other_share(const json_t *rec)
{
    const json_t *v = json_object_get(json_object_get(rec, "machine_load"), "other_share");
    return json_is_number(v) ? json_number_value(v) : INFINITY;
}

/* What an attempt measured and how busy the machine was while it did. */
static json_t *attempt_summary(const json_t *rec)
{
    json_t *a = json_object();
    static const char *const keys[] = {"status", "wall_s", "wall_s_min", "wall_s_max"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const json_t *v = json_object_get(rec, keys[i]);
        json_object_set_new(a, keys[i], v ? json_deep_copy(v) : json_null());
    }
    const json_t *load = json_object_get(rec, "machine_load");
    json_object_set_new(a, "other_share", json_is_object(load) && json_object_get(load, "other_share")
                                              ? json_deep_copy(json_object_get(load, "other_share"))
                                              : json_null());
    const json_t *busy = json_object_get(json_object_get(rec, "machine_load"), "busy");
    json_object_set_new(a, "busy", busy ? json_deep_copy(busy) : json_null());
    const json_t *qw = json_object_get(json_object_get(rec, "quiet_wait"), "waited_s");
    json_object_set_new(a, "waited_s", qw ? json_deep_copy(qw) : json_null());
    return a;
}

/* A point whose timed repetitions were busy is measured again, up to lim->busy_retries more
 * times, each after waiting up to lim->retry_wait seconds for a quiet window. The record kept
 * is the first quiet attempt's, or when none was quiet the least loaded one's (then it stays
 * busy); `attempts` lists every attempt's time and load. A retry that fails (out of time, say)
 * ends the retries and the busy record stands. Bounded: a machine that never becomes quiet
 * costs (1 + busy_retries) runs and busy_retries waits. */
json_t *point_run(const point_spec *s, const point_limits *lim, const json_t *context)
{
    json_t *rec = point_attempt(s, lim, context);
    if (!rec || !timed_busy(rec) || lim->busy_retries <= 0)
        return rec;
    json_t *attempts = json_array();
    json_array_append_new(attempts, attempt_summary(rec));
    point_limits again = *lim;
    again.quiet_wait = fmax(lim->quiet_wait, lim->retry_wait);
    for (int a = 0; a < lim->busy_retries && timed_busy(rec); a++) {
        json_t *next = point_attempt(s, &again, context);
        if (!next) { /* interrupted: no result */
            json_decref(rec);
            json_decref(attempts);
            return NULL;
        }
        json_array_append_new(attempts, attempt_summary(next));
        const int ok = strcmp(json_string_value(json_object_get(next, "status")), "ok") == 0;
        if (!ok) {
            json_decref(next);
            break;
        }
        if (!timed_busy(next) || other_share(next) < other_share(rec)) {
            json_decref(rec);
            rec = next;
        } else {
            json_decref(next);
        }
    }
    json_object_set_new(rec, "attempts", attempts);
    return rec;
}
