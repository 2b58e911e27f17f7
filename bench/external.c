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

#include "../attn/stack.h"
#include "cgroup.h"
#include "inputs.h"
#include "npy.h"
#include "probe.h"
#include "timing.h"

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
    json_decref(d);
    known[nknown] = p;
    return &known[nknown++];
}

/* ---- the run ------------------------------------------------------------------------------ */

/* CPU seconds (user + system, every thread) and page faults of a process, from /proc. */
typedef struct proc_usage {
    double user_s, system_s;
    double minor_faults, major_faults;
} proc_usage;

static int proc_usage_read(pid_t pid, proc_usage *u)
{
    char path[64], text[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    const char *p = strrchr(text, ')'); /* the command name may hold spaces */
    unsigned long long minflt, majflt, utime, stime;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %llu %*u %llu %*u %llu %llu", &minflt,
                     &majflt, &utime, &stime) != 4)
        return -1;
    const double tick = (double)sysconf(_SC_CLK_TCK);
    *u = (proc_usage){.user_s = (double)utime / tick, .system_s = (double)stime / tick,
                      .minor_faults = (double)minflt, .major_faults = (double)majflt};
    return 0;
}

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
        setenv("ATTNBENCH_STACK", s->stack == STACK_REVERSIBLE ? "reversible" : "standard", 1);
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

/* What the harness saw of one run. */
typedef struct observed {
    int started, ready, done;
    double *times;
    int nreps;
    uint64_t rss_start, rss_ready, hwm;
    int rss_ok;
    proc_usage u0, u1;
    int usage_ok;
    probe_papi papi;         /* counters attached to the program's threads at ready */
    int papi_open;
    probe_load load0, load1; /* the machine, from ready to done */
    double self0, self1;     /* the harness's own CPU seconds meanwhile */
    int load_ok;
    json_t *context;
} observed;

/* One message of the program; returns -1 when it breaks the protocol (why set). */
static int on_message(pid_t pid, const char *line, observed *o, int control, int reps,
                      const char *counters, char *why, size_t size)
{
    json_error_t jerr;
    json_t *msg = json_loads(line, 0, &jerr);
    const char *event = json_string_value(json_object_get(msg, "event"));
    int rc = 0;
    uint64_t rss, hwm;
    if (!event) {
        snprintf(why, size, "the program's report is not {\"event\": ...}: %.120s", line);
        rc = -1;
    } else if (strcmp(event, "start") == 0) {
        o->started = 1;
        if (probe_rss_read_pid(pid, &rss, &hwm) == 0)
            o->rss_start = rss, o->rss_ok |= 1;
    } else if (strcmp(event, "ready") == 0) {
        o->ready = 1;
        if (probe_rss_read_pid(pid, &rss, &hwm) == 0)
            o->rss_ready = rss, o->rss_ok |= 2;
        if (probe_rss_reset_peak_pid(pid) != 0)
            o->rss_ok &= ~4;
        o->usage_ok = proc_usage_read(pid, &o->u0) == 0;
        o->load_ok = probe_load_read(&o->load0) == 0;
        o->self0 = probe_load_self_cpu_s();
        if (counters && *counters) { /* before it may start its first call */
            probe_papi_attach(&o->papi, counters, pid);
            probe_papi_start(&o->papi);
            o->papi_open = 1;
        }
        /* the program waits for this before its first call, so what it touches after ready
         * is never in rss_before_kernel nor before the peak's reset */
        if (write(control, "g", 1) != 1) {
            snprintf(why, size, "cannot let the program go after ready: %s", strerror(errno));
            rc = -1;
        }
    } else if (strcmp(event, "rep") == 0) {
        const json_t *t = json_object_get(msg, "wall_s");
        if (!o->ready || o->nreps == reps || !json_is_number(t) ||
            !(json_number_value(t) > 0)) {
            snprintf(why, size, "a repetition reported out of turn or without a positive "
                     "wall_s: %.120s", line);
            rc = -1;
        } else {
            o->times[o->nreps++] = json_number_value(t);
        }
    } else if (strcmp(event, "done") == 0) {
        o->done = 1;
        /* read before the program may go: a zombie has no VmHWM */
        if (probe_rss_read_pid(pid, &rss, &hwm) == 0)
            o->hwm = hwm, o->rss_ok |= 8;
        o->usage_ok = o->usage_ok && proc_usage_read(pid, &o->u1) == 0;
        if (o->papi_open)
            probe_papi_stop(&o->papi);
        o->self1 = probe_load_self_cpu_s();
        o->load_ok = o->load_ok && probe_load_read(&o->load1) == 0;
        o->context = json_incref(json_object_get(msg, "context"));
        close(control); /* the program may exit now */
    } else {
        snprintf(why, size, "unknown event '%s' in the program's report", event);
        rc = -1;
    }
    json_decref(msg);
    return rc;
}

static json_t *number_or_null(int ok, double v)
{
    return ok ? json_real(v) : json_null();
}

int external_measure(const point_spec *s, json_t *r, char *reason, size_t size)
{
    char dir[PATH_MAX], output[PATH_MAX + 16] = "";
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/attnbench-ext-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        snprintf(reason, size, "cannot make a folder for the inputs: %s", strerror(errno));
        return POINT_ERROR;
    }
    int status = POINT_ERROR;
    observed o = {.rss_ok = 4, .times = calloc((size_t)s->reps, sizeof(double))};
    /* nothing of this process stands for the program's memory, even when it fails */
    json_object_set_new(r, "peak_rss_bytes", json_null());
    int report[2] = {-1, -1}, control[2] = {-1, -1};
    pid_t pid = -1;
    if (!o.times) {
        snprintf(reason, size, "out of memory for the %d repetition times", s->reps);
        goto done;
    }
    if (!s->train && write_inputs(s, dir, reason, size) != 0) /* a training step makes its own */
        goto done;
    if (s->accuracy)
        snprintf(output, sizeof output, "%s/out.npy", dir);
    if (pipe2(report, O_CLOEXEC) != 0 || pipe2(control, O_CLOEXEC) != 0) {
        snprintf(reason, size, "pipe() failed");
        goto done;
    }
    oom_watch oom; /* a SIGKILL is the OOM killer's only if the kernel counts one meanwhile */
    oom_watch_begin(&oom);
    fflush(NULL);
    if ((pid = fork()) < 0) {
        snprintf(reason, size, "fork() failed");
        goto done;
    }
    if (pid == 0) {
        close(report[0]);
        close(control[1]);
        exec_program(s, dir, output, report[1], control[0]);
    }
    close(report[1]), report[1] = -1;
    close(control[0]), control[0] = -1;
    signal(SIGPIPE, SIG_IGN); /* a program that died before reading "go" is an EPIPE, not our death */

    /* the reports, a line at a time, until the program closes its end */
    char buf[65536];
    size_t len = 0;
    int broken = 0;
    for (;;) {
        ssize_t got = read(report[0], buf + len, sizeof buf - 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        len += (size_t)got;
        buf[len] = '\0';
        char *line = buf, *nl;
        while (!broken && (nl = strchr(line, '\n'))) {
            *nl = '\0';
            if (*line && on_message(pid, line, &o, control[1], s->reps, s->counters, reason, size) != 0)
                broken = 1;
            if (o.done)
                control[1] = -1; /* closed by on_message */
            line = nl + 1;
        }
        len -= (size_t)(line - buf);
        memmove(buf, line, len);
        if (broken || len == sizeof buf - 1) {
            if (!broken)
                snprintf(reason, size, "a report line longer than %zu bytes", sizeof buf - 1);
            broken = 1;
            kill(pid, SIGKILL);
            break;
        }
    }
    int wstatus = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &wstatus, 0, &ru) < 0 && errno == EINTR)
        ;
    if (broken)
        goto done;
    if (WIFSIGNALED(wstatus)) {
        if (WTERMSIG(wstatus) == SIGKILL) { /* the OOM killer's, if the kernel counted one */
            char evidence[600];
            status = oom_watch_end(&oom, evidence, sizeof evidence) ? POINT_OOM_KILLED : POINT_KILLED;
            snprintf(reason, size, "the program was %s (ru_maxrss at death %.2f GiB)", evidence,
                     (double)ru.ru_maxrss / 0x1p20);
        } else {
            snprintf(reason, size, "the program was killed by signal %d (%s)", WTERMSIG(wstatus),
                     strsignal(WTERMSIG(wstatus)));
            status = POINT_CRASHED;
        }
        goto done;
    }
    if (!o.done || o.nreps != s->reps || WEXITSTATUS(wstatus) != 0) {
        snprintf(reason, size, "the program exited with status %d after %s (%d of %d "
                 "repetitions reported)", WEXITSTATUS(wstatus),
                 o.done ? "reporting done" : o.ready ? "reporting ready" : o.started
                                                                   ? "reporting start"
                                                                   : "no report",
                 o.nreps, s->reps);
        status = WEXITSTATUS(wstatus) == 127 ? POINT_ERROR : POINT_CRASHED;
        goto done;
    }

    /* the record: measured from outside */
    point_record_times(r, s, o.times);
    const int hwm_ok = (o.rss_ok & 12) == 12; /* reset at ready, read at done */
    json_object_set_new(r, "peak_rss_bytes", number_or_null(hwm_ok, (double)o.hwm));
    json_object_set_new(r, "rss_before_inputs_bytes", number_or_null(o.rss_ok & 1, (double)o.rss_start));
    json_object_set_new(r, "rss_before_kernel_bytes", number_or_null(o.rss_ok & 2, (double)o.rss_ready));
    json_object_set_new(r, "ru_maxrss_bytes", json_real((double)ru.ru_maxrss * 1024));
    json_t *unavailable = json_object();
    static const char *const heap[] = {"heap_peak_bytes", "heap_kernel_alloc_bytes", "jemalloc"};
    for (size_t i = 0; i < sizeof heap / sizeof heap[0]; i++)
        json_object_set_new(unavailable, heap[i],
                            json_string("an external program: jemalloc is attnbench's allocator"));
    if (!hwm_ok)
        json_object_set_new(unavailable, "peak_rss_bytes",
                            json_string("/proc/PID/clear_refs or status unreadable"));
    json_object_set_new(r, "unavailable", unavailable);
    /* counters: PAPI event sets attached to the program's threads from ready to done (the
     * window the program reports in, warm-up included), per run as for our own points */
    json_t *counters = json_object(), *why_not = json_object();
    const int runs = s->reps + s->warmup;
    for (int i = 0; o.papi_open && i < o.papi.nevents; i++) {
        const probe_papi_event *e = &o.papi.events[i];
        json_object_set_new(counters, e->name, e->ok ? json_real((double)e->value / runs) : json_null());
        if (!e->ok)
            json_object_set_new(why_not, e->name, json_string(e->reason));
    }
    json_object_set_new(r, "counters", counters);
    json_object_set_new(r, "counters_unavailable", why_not);
    if (o.usage_ok) {
        const double reps = s->reps + s->warmup; /* the window holds the warm-up too */
        json_t *j = json_object();
        const double user = o.u1.user_s - o.u0.user_s, sys = o.u1.system_s - o.u0.system_s;
        json_object_set_new(j, "cpu_s", json_real((user + sys) / reps));
        json_object_set_new(j, "user_s", json_real(user / reps));
        json_object_set_new(j, "system_s", json_real(sys / reps));
        json_object_set_new(j, "minor_faults", json_real((o.u1.minor_faults - o.u0.minor_faults) / reps));
        json_object_set_new(j, "major_faults", json_real((o.u1.major_faults - o.u0.major_faults) / reps));
        json_object_set_new(j, "source", json_string("/proc/PID/stat from ready to done (warm-up "
                                                     "included), per run"));
        json_object_set_new(r, "rusage", j);
    }
    /* the busy-machine check, as for our own points: the program's CPU time and ours are the
     * point's own (over warm-up and repetitions: the window the program reports in) */
    if (o.usage_ok && o.load_ok) {
        const double own = (o.u1.user_s - o.u0.user_s) + (o.u1.system_s - o.u0.system_s) +
                           (o.self1 - o.self0);
        json_object_set_new(r, "machine_load", probe_load_record(&o.load0, &o.load1, own));
    } else {
        json_object_set_new(unavailable, "machine_load", json_string("/proc/stat or the "
                                                                     "program's /proc unreadable"));
    }
    json_t *peer = json_object();
    json_object_set_new(peer, "program", json_string(s->external->path));
    json_object_set_new(peer, "implements", json_string(s->external->implements));
    json_object_set_new(peer, "context", o.context ? json_incref(o.context) : json_null());
    json_object_set_new(peer, "measured", json_string("from outside: wall time per repetition as "
                                                      "the program timed it; memory and CPU of "
                                                      "its process"));
    json_object_set_new(r, "peer", peer);
    if (s->accuracy) { /* the program's output against the exact reference, on the same inputs */
        npy_array out[4];
        char err[512];
        memset(out, 0, sizeof out);
        if (npy_read(output, "<f4", &out[3], err, sizeof err) != 0 ||
            out[3].count != attn_tensor_elems(&s->shape)) {
            json_t *e = json_object();
            json_object_set_new(e, "error", json_sprintf("the program's output: %s",
                                                         out[3].data ? "wrong size" : err));
            json_object_set_new(r, "err_vs_exact", e);
        } else {
            const size_t elems = attn_tensor_elems(&s->shape);
            float *q = malloc(elems * 4), *k = malloc(elems * 4), *v = malloc(elems * 4);
            if (q && k && v) {
                inputs_generate(&s->shape, s->inputs, s->seed, q, k, v, s->threads);
                json_object_set_new(r, "err_vs_exact", point_exact_error(s, q, k, v, out[3].data, NULL, NULL));
            }
            free(q), free(k), free(v);
        }
        npy_free(&out[3]);
    }
    status = POINT_OK;
done:
    if (report[0] >= 0)
        close(report[0]);
    if (control[1] >= 0)
        close(control[1]);
    json_decref(o.context);
    if (o.papi_open)
        probe_papi_free(&o.papi);
    free(o.times);
    remove_dir(dir);
    return status;
}
