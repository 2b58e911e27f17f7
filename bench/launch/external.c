/* external.c: someone else's program as a workload (see external.h). */
#include "external.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../attn/stack.h"
#include "../measure/measure.h"
#include "../point/accuracy.h"
#include "../point/inputs.h"
#include "../point/workload.h"
#include "../sys/cgroup.h"
#include "../sys/npy.h"
#include "../sys/timing.h"

/* ---- finding the program ------------------------------------------------------------------ */

/* scripts/peers of the tree this binary was built in: the nearest folder above the binary
 * that holds one (build/attnbench, build/asan/attnbench and build/fuzz/... all find the
 * tree's), else scripts/peers under the current folder; or $ATTNBENCH_PEERS. */
static void peers_dir(char *buf, size_t size)
{
    const char *env = getenv("ATTNBENCH_PEERS");
    if (env && *env) {
        snprintf(buf, size, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    snprintf(buf, size, "scripts/peers");
    if (len <= 0)
        return;
    exe[len] = '\0';
    for (char *slash; (slash = strrchr(exe, '/')) != NULL && slash != exe;) {
        *slash = '\0'; /* one folder up */
        char candidate[PATH_MAX + 16];
        snprintf(candidate, sizeof candidate, "%s/scripts/peers", exe);
        struct stat st;
        if (stat(candidate, &st) == 0 && S_ISDIR(st.st_mode)) {
            snprintf(buf, size, "%.*s", (int)(size - 1), candidate);
            return;
        }
    }
}

/* Runs argv with stdout to a pipe and returns what it printed (at most size - 1 bytes), or
 * -1 when it could not run, did not end within `seconds`, or exited non-zero. */
static int capture(char *const argv[], char *out, size_t size, double seconds)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]), close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        if (dup2(fds[1], STDOUT_FILENO) < 0)
            _exit(126); /* its answer would go elsewhere: no answer (the caller's -1) */
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0;
    const double deadline = timing_now() + seconds;
    for (;;) {
        const double left = deadline - timing_now();
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        if (left <= 0 || (poll(&pfd, 1, (int)(left * 1000) + 1) == 0)) {
            kill(pid, SIGKILL);
            break;
        }
        ssize_t got = read(fds[0], out + len, size - 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0 || (len += (size_t)got) == size - 1)
            break;
    }
    out[len] = '\0';
    close(fds[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

const external_peer *external_resolve(const char *method, char *why, size_t size)
{
    static external_peer known[32];
    static int nknown;
    for (int i = 0; i < nknown; i++)
        if (strcmp(known[i].name, method) == 0)
            return &known[i];
    if (nknown == 32) {
        snprintf(why, size, "more than 32 external programs in one command");
        return NULL;
    }
    external_peer p;
    memset(&p, 0, sizeof p);
    snprintf(p.name, sizeof p.name, "%s", method);
    const char *name = method + 4; /* after "ext:" */
    if (strchr(name, '/')) {
        if (!realpath(name, p.path)) {
            snprintf(why, size, "%s: %s", name, strerror(errno));
            return NULL;
        }
    } else {
        char dir[PATH_MAX];
        peers_dir(dir, sizeof dir);
        snprintf(p.path, sizeof p.path, "%.500s/%.500s", dir, name);
    }
    if (!*name || access(p.path, X_OK) != 0) {
        snprintf(why, size, "%s: no executable program at %s", method, p.path);
        return NULL;
    }
    char text[4096];
    char *argv[] = {p.path, "--describe", NULL};
    json_error_t jerr;
    json_t *d = capture(argv, text, sizeof text, 120) == 0 ? json_loads(text, 0, &jerr) : NULL;
    const char *impl = json_string_value(json_object_get(d, "implements"));
    if (!impl || !attn_find(impl)) {
        snprintf(why, size, "%s: `%s --describe` did not print {\"implements\": METHOD, ...} "
                 "with METHOD one of attnbench's", method, p.path);
        json_decref(d);
        return NULL;
    }
    snprintf(p.implements, sizeof p.implements, "%s", impl);
    const char *train = json_string_value(json_object_get(d, "train"));
    if (train && strcmp(train, "standard") != 0 && strcmp(train, "reversible") != 0) {
        snprintf(why, size, "%s: --describe's \"train\" is '%s', not standard or reversible",
                 method, train);
        json_decref(d);
        return NULL;
    }
    snprintf(p.train, sizeof p.train, "%s", train ? train : "");
    const char *summary = json_string_value(json_object_get(d, "summary"));
    snprintf(p.summary, sizeof p.summary, "%s", summary ? summary : "");
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(d, "dtypes"), i, t)
        p.bf16 |= json_is_string(t) && strcmp(json_string_value(t), "bf16") == 0;
    json_decref(d);
    known[nknown] = p;
    return &known[nknown++];
}

/* ---- the run ------------------------------------------------------------------------------ */

/* CPU seconds (user + system, every thread) and page faults of a process, from /proc. */
/* The inputs, as the program will read them: attnbench's own q, k, v of the point. */
static int write_inputs(const point_spec *s, const char *dir, char *why, size_t size)
{
    const size_t elems = attn_tensor_elems(&s->shape);
    float *x[3] = {malloc(elems * 4), malloc(elems * 4), malloc(elems * 4)};
    int rc = -1;
    if (!x[0] || !x[1] || !x[2]) {
        snprintf(why, size, "allocating the inputs (%zu bytes) failed", 3 * elems * 4);
        goto done;
    }
    inputs_generate(&s->shape, s->inputs, s->seed, x[0], x[1], x[2], s->threads);
    if (s->shape.dtype == ATTN_BF16) /* the values attnbench's own bf16 point computes on */
        for (int i = 0; i < 3; i++)
            for (size_t e = 0; e < elems; e++)
                x[i][e] = attn_bf16_to_f32(attn_f32_to_bf16(x[i][e]));
    const int64_t shape[4] = {s->shape.B, s->shape.H, s->shape.n, s->shape.d};
    static const char *const names[3] = {"q", "k", "v"};
    for (int i = 0; i < 3; i++) {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/%s.npy", dir, names[i]);
        if (npy_write(path, "<f4", 4, shape, x[i], sizeof(float), why, size))
            goto done;
    }
    rc = 0;
done:
    for (int i = 0; i < 3; i++)
        free(x[i]);
    return rc;
}

static void set_env_int(const char *name, long long v)
{
    char text[32];
    snprintf(text, sizeof text, "%lld", v);
    setenv(name, text, 1);
}

/* In the forked child: the point in the environment, the pipes at the fds it names, then the
 * program. Never returns. */
static void exec_program(const point_spec *s, const char *dir, const char *output, int report,
                         int control)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a killed point takes its program with it */
    const attn_shape *sh = &s->shape;
    set_env_int("ATTNBENCH_N", sh->n);
    set_env_int("ATTNBENCH_D", sh->d);
    set_env_int("ATTNBENCH_HEADS", sh->H);
    set_env_int("ATTNBENCH_BATCH", sh->B);
    set_env_int("ATTNBENCH_CAUSAL", sh->causal);
    setenv("ATTNBENCH_DTYPE", attn_dtype_name(sh->dtype), 1);
    set_env_int("ATTNBENCH_SEED", (long long)s->seed);
    set_env_int("ATTNBENCH_REPS", s->reps);
    set_env_int("ATTNBENCH_WARMUP", s->warmup);
    set_env_int("ATTNBENCH_THREADS", s->threads);
    set_env_int("ATTNBENCH_REPORT_FD", report);
    set_env_int("ATTNBENCH_CONTROL_FD", control);
    char params[1024] = "";
    const attn_method *m = s->params.method;
    for (int i = 0, len = 0; i < m->n_params && len < (int)sizeof params; i++) {
        char val[64];
        len += snprintf(params + len, sizeof params - (size_t)len, "%s%s=%s", i ? "," : "",
                        m->params[i].name, attn_param_format(&s->params, i, val, sizeof val));
    }
    setenv("ATTNBENCH_PARAMS", params, 1);
    if (s->train) {
        setenv("ATTNBENCH_STACK", stack_kind_name(s->stack), 1);
        set_env_int("ATTNBENCH_LAYERS", s->layers);
        set_env_int("ATTNBENCH_D_FF", s->d_ff > 0 ? s->d_ff : 4 * sh->H * sh->d);
        set_env_int("ATTNBENCH_FF_CHUNK", s->ff_chunk);
    }
    setenv("ATTNBENCH_INPUTS", dir, 1);
    setenv("ATTNBENCH_OUTPUT", output, 1);
    /* the pipes are inherited at their numbers; everything else closes on exec */
    fcntl(report, F_SETFD, 0);
    fcntl(control, F_SETFD, 0);
    execl(s->external->path, s->external->path, (char *)NULL);
    fprintf(stderr, "attnbench: cannot run %s: %s\n", s->external->path, strerror(errno));
    _exit(127);
}

static void remove_dir(const char *dir)
{
    static const char *const files[] = {"q.npy", "k.npy", "v.npy", "out.npy"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* The program as the pipeline's driver (measure.h): started and heard from over the report
 * pipe, let go by a byte on the control pipe, and reaped. */
typedef struct ext_run {
    const point_spec *s;
    char dir[PATH_MAX], output[PATH_MAX + 16];
    int report, control; /* our ends of the pipes, or -1 */
    pid_t pid;
    oom_watch oom;       /* a SIGKILL is the OOM killer's only if the kernel counts one */
    char buf[65536];     /* the report pipe's text not yet read as lines */
    size_t len;
    int eof;
    int broken;          /* the program broke the protocol (garbage, a message out of turn) */
    const char *heard;   /* the last event heard: "start", "ready", "done" */
    int nreps;           /* repetitions reported */
    json_t *context;     /* the program's "done" */
} ext_run;

/* The program's next message (a new reference), or NULL with why: the pipe closed (the
 * program ended or died: why empty), a line too long, or not a JSON object with an event. */
static json_t *next_message(ext_run *e, char *why, size_t size)
{
    why[0] = '\0';
    for (;;) {
        char *nl = memchr(e->buf, '\n', e->len);
        if (nl) {
            *nl = '\0';
            json_error_t jerr;
            json_t *msg = json_loads(e->buf, 0, &jerr);
            const size_t used = (size_t)(nl - e->buf) + 1;
            if (!json_is_string(json_object_get(msg, "event"))) {
                snprintf(why, size, "the program's report is not {\"event\": ...}: %.120s", e->buf);
                json_decref(msg);
                msg = NULL;
                e->broken = 1;
            }
            memmove(e->buf, e->buf + used, e->len - used);
            e->len -= used;
            if (msg || why[0])
                return msg;
            continue;
        }
        if (e->eof)
            return NULL;
        if (e->len == sizeof e->buf - 1) {
            snprintf(why, size, "a report line longer than %zu bytes", sizeof e->buf - 1);
            e->broken = 1;
            return NULL;
        }
        const ssize_t got = read(e->report, e->buf + e->len, sizeof e->buf - 1 - e->len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            e->eof = 1;
        else
            e->len += (size_t)got;
    }
}

/* Reads messages until `event`; POINT_OK, or the program broke the protocol or ended first. */
static int expect(ext_run *e, const char *event, char *why, size_t size)
{
    json_t *msg = next_message(e, why, size);
    const char *got = json_string_value(json_object_get(msg, "event"));
    const int ok = got && strcmp(got, event) == 0;
    if (msg && !ok) {
        snprintf(why, size, "the program reported '%s' where '%s' was due", got, event);
        e->broken = 1;
    }
    if (ok)
        e->heard = event;
    json_decref(msg);
    return ok ? POINT_OK : POINT_ERROR;
}

static int ext_launch(void *ctx, pid_t *pid, char *why, size_t size)
{
    ext_run *e = ctx;
    const point_spec *s = e->s;
    if (!s->train && write_inputs(s, e->dir, why, size) != 0) /* a training step makes its own */
        return POINT_ERROR;
    if (s->accuracy)
        snprintf(e->output, sizeof e->output, "%s/out.npy", e->dir);
    int report[2], control[2];
    if (pipe2(report, O_CLOEXEC) != 0 || pipe2(control, O_CLOEXEC) != 0) {
        snprintf(why, size, "pipe() failed: %s", strerror(errno));
        return POINT_ERROR;
    }
    oom_watch_begin(&e->oom);
    fflush(NULL);
    if ((e->pid = fork()) < 0) {
        snprintf(why, size, "fork() failed: %s", strerror(errno));
        return POINT_ERROR;
    }
    if (e->pid == 0) {
        close(report[0]);
        close(control[1]);
        exec_program(s, e->dir, e->output, report[1], control[0]);
    }
    close(report[1]);
    close(control[0]);
    e->report = report[0], e->control = control[1];
    signal(SIGPIPE, SIG_IGN); /* a program that died before reading "go" is an EPIPE, not our death */
    *pid = e->pid;
    return expect(e, "start", why, size); /* imported: the baseline is now */
}

static int ext_prepare(void *ctx, attn_stats *work, workload **w, char *why, size_t size)
{
    (void)work;
    *w = NULL;
    return expect(ctx, "ready", why, size);
}

/* Lets the program go (its warm-up and repetitions follow, in the window) and collects the
 * repetitions' times until "done", while the program is alive to be read. */
static int ext_repeat(void *ctx, double *times, char *why, size_t size)
{
    ext_run *e = ctx;
    if (write(e->control, "g", 1) != 1) {
        snprintf(why, size, "cannot let the program go after ready: %s", strerror(errno));
        return POINT_ERROR;
    }
    for (;;) {
        json_t *msg = next_message(e, why, size);
        const char *event = json_string_value(json_object_get(msg, "event"));
        const json_t *t = json_object_get(msg, "wall_s");
        int rc = POINT_OK, done = 0;
        if (!msg) {
            rc = POINT_ERROR; /* the program ended, or broke the protocol: finish tells */
        } else if (strcmp(event, "rep") == 0 && e->nreps < e->s->reps && json_is_number(t) &&
                   json_number_value(t) > 0) {
            times[e->nreps++] = json_number_value(t);
        } else if (strcmp(event, "done") == 0) {
            e->heard = "done";
            e->context = json_incref(json_object_get(msg, "context"));
            done = 1;
            rc = e->nreps == e->s->reps ? POINT_OK : POINT_ERROR; /* too few: finish tells */
        } else {
            char *text = json_dumps(msg, JSON_COMPACT);
            snprintf(why, size, "a repetition reported out of turn or without a positive "
                     "wall_s: %.120s", text ? text : event);
            free(text);
            e->broken = 1;
            rc = POINT_ERROR;
        }
        json_decref(msg);
        if (rc != POINT_OK || done)
            return rc;
    }
}

/* The program is let go (the control pipe closed) and reaped; how it ended decides. */
static int ext_finish(void *ctx, int status, json_t *record, char *why, size_t size)
{
    ext_run *e = ctx;
    const int protocol_broken = e->broken;
    if (e->control >= 0)
        close(e->control), e->control = -1;
    if (protocol_broken && e->pid > 0)
        kill(e->pid, SIGKILL);
    while (!e->eof) { /* what it says after done, or before dying, is not read */
        char tmp[4096];
        const ssize_t got = read(e->report, tmp, sizeof tmp);
        if (got < 0 && errno == EINTR)
            continue;
        e->eof = got <= 0;
    }
    int wstatus = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (e->pid > 0 && wait4(e->pid, &wstatus, 0, &ru) < 0 && errno == EINTR)
        ;
    e->pid = -1;
    json_object_set_new(record, "ru_maxrss_bytes", json_real((double)ru.ru_maxrss * 1024));
    if (WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL && !protocol_broken) {
        char evidence[600]; /* the OOM killer's, if the kernel counted one */
        const int oom = oom_watch_end(&e->oom, evidence, sizeof evidence);
        snprintf(why, size, "the program was %s (ru_maxrss at death %.2f GiB)", evidence,
                 (double)ru.ru_maxrss / 0x1p20);
        return oom ? POINT_OOM_KILLED : POINT_KILLED;
    }
    if (WIFSIGNALED(wstatus) && !protocol_broken) {
        snprintf(why, size, "the program was killed by signal %d (%s)", WTERMSIG(wstatus),
                 strsignal(WTERMSIG(wstatus)));
        return POINT_CRASHED;
    }
    if (protocol_broken)
        return POINT_ERROR; /* why says how */
    if (status == POINT_OK && WEXITSTATUS(wstatus) == 0)
        return POINT_OK;
    snprintf(why, size, "the program exited with status %d after %s%s (%d of %d repetitions "
             "reported)", WEXITSTATUS(wstatus), e->heard ? "reporting " : "no report",
             e->heard ? e->heard : "", e->nreps, e->s->reps);
    return WEXITSTATUS(wstatus) == 127 ? POINT_ERROR : POINT_CRASHED;
}

/* The program's output against the exact reference, on the same inputs. */
static json_t *ext_accuracy(const ext_run *e)
{
    const point_spec *s = e->s;
    npy_array out;
    char err[512];
    memset(&out, 0, sizeof out);
    json_t *result;
    if (npy_read(e->output, "<f4", &out, err, sizeof err) != 0 ||
        out.count != attn_tensor_elems(&s->shape)) {
        result = json_object();
        json_object_set_new(result, "error", json_sprintf("the program's output: %s",
                                                          out.data ? "wrong size" : err));
    } else {
        const size_t elems = attn_tensor_elems(&s->shape);
        float *q = malloc(elems * 4), *k = malloc(elems * 4), *v = malloc(elems * 4);
        if (q && k && v) {
            inputs_generate(&s->shape, s->inputs, s->seed, q, k, v, s->threads);
            attn_shape f32 = s->shape; /* the bf16 values, as the program read them */
            f32.dtype = ATTN_FP32;
            for (size_t i = 0; s->shape.dtype == ATTN_BF16 && i < elems; i++) {
                q[i] = attn_bf16_to_f32(attn_f32_to_bf16(q[i]));
                k[i] = attn_bf16_to_f32(attn_f32_to_bf16(k[i]));
                v[i] = attn_bf16_to_f32(attn_f32_to_bf16(v[i]));
            }
            point_spec sf = *s;
            sf.shape = f32;
            result = point_exact_error(&sf, q, k, v, out.data, NULL, NULL);
        } else {
            result = json_pack("{s:s}", "error", "out of memory for the exact reference's inputs");
        }
        free(q), free(k), free(v);
    }
    npy_free(&out);
    return result;
}

int external_measure(const point_spec *s, json_t *r, json_t *harness, char *why, size_t size)
{
    ext_run e = {.s = s, .report = -1, .control = -1, .pid = -1};
    const char *tmp = getenv("TMPDIR");
    snprintf(e.dir, sizeof e.dir, "%s/attnbench-ext-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(e.dir)) {
        snprintf(why, size, "cannot make a folder for the inputs: %s", strerror(errno));
        return POINT_ERROR;
    }
    /* nothing of this process stands for the program's memory, even when it fails */
    json_object_set_new(r, "peak_rss_bytes", json_null());
    double *times = calloc((size_t)s->reps, sizeof *times);
    const measure_driver d = {.ctx = &e, .launch = ext_launch, .prepare = ext_prepare,
                              .repeat = ext_repeat, .finish = ext_finish,
                              .window_runs = s->reps + s->warmup};
    int status = POINT_ERROR;
    if (!times)
        snprintf(why, size, "out of memory for the %d repetition times", s->reps);
    else
        status = measure_point(s, &d, r, harness, times, why, size);
    if (e.pid > 0) { /* a step failed before finish could reap it */
        kill(e.pid, SIGKILL);
        while (waitpid(e.pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (status == POINT_OK) {
        json_t *peer = json_object();
        json_object_set_new(peer, "program", json_string(s->external->path));
        json_object_set_new(peer, "implements", json_string(s->external->implements));
        json_object_set_new(peer, "context", e.context ? json_incref(e.context) : json_null());
        json_object_set_new(peer, "measured", json_string("from outside: wall time per "
                                                          "repetition as the program timed it; "
                                                          "memory and CPU of its process"));
        json_object_set_new(r, "peer", peer);
        if (s->accuracy)
            json_object_set_new(r, "err_vs_exact", ext_accuracy(&e));
    }
    if (e.report >= 0)
        close(e.report);
    if (e.control >= 0)
        close(e.control);
    json_decref(e.context);
    free(times);
    remove_dir(e.dir);
    return status;
}
