/* run.c: one point in a forked child, and its record (see run.h). */
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../probes/probe.h" /* the load, for the wait for a quiet machine */
#include "../sys/cgroup.h"
#include "../sys/timing.h"
#include "child.h"

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

/* A forked child and what the parent learns of it. */
typedef struct child_watch {
    pid_t pid;
    int fd;            /* the pipe's read end */
    char *text;        /* what the child sent, NUL-terminated; NULL: no memory to read it */
    bool timed_out;    /* killed at the time limit */
    bool stopped;      /* killed on a stop request */
    int wstatus;
    struct rusage ru;  /* wait4's: ru_maxrss is the child's peak */
} child_watch;

/* Forks the point's child. Returns 0, or -1 with what failed in why. */
static int child_spawn(const point_spec *s, const point_limits *lim, child_watch *c,
                       const char **why)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        *why = "pipe() failed";
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    const pid_t parent = getpid();
    c->pid = fork();
    if (c->pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        *why = "fork() failed";
        return -1;
    }
    if (c->pid == 0) {
        close(pipefd[0]);
        run_child(s, lim, pipefd[1], parent);
    }
    close(pipefd[1]);
    c->fd = pipefd[0];
    return 0;
}

/* Reads the child's messages until EOF, killing it at the deadline or on a stop request, then
 * reaps it. */
static void child_wait(child_watch *c, const point_limits *lim)
{
    const double deadline = lim->time_limit > 0 ? timing_now() + lim->time_limit : INFINITY;
    size_t len = 0, cap = 1 << 16;
    c->text = malloc(cap);
    if (!c->text) /* nowhere to read the child's report into: it is no result */
        kill(c->pid, SIGKILL);
    while (c->text) {
        const double left = deadline - timing_now();
        c->stopped = lim->stop && *lim->stop;
        if (left <= 0 || c->stopped) {
            kill(c->pid, SIGKILL);
            c->timed_out = !c->stopped;
            break;
        }
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        const int ms = isinf(left) ? 1000 : (int)fmin(1000.0, ceil(left * 1000));
        const int pr = poll(&pfd, 1, ms);
        if (pr < 0 && errno == EINTR)
            continue; /* a signal: the loop's top sees a stop request */
        if (pr < 0) {
            kill(c->pid, SIGKILL); /* cannot watch it any more: do not wait for it blind */
            break;
        }
        if (pr == 0)
            continue;
        if (len + 4096 > cap) {
            char *grown = realloc(c->text, cap * 2);
            if (!grown) { /* the report so far stays; the child cannot finish it */
                kill(c->pid, SIGKILL);
                break;
            }
            c->text = grown;
            cap *= 2;
        }
        const ssize_t got = read(c->fd, c->text + len, cap - len - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            kill(c->pid, SIGKILL);
        if (got <= 0)
            break; /* EOF: the child is exiting (or died) */
        len += (size_t)got;
    }
    if (c->text)
        c->text[len] = '\0';
    close(c->fd);
    memset(&c->ru, 0, sizeof c->ru);
    while (wait4(c->pid, &c->wstatus, 0, &c->ru) < 0 && errno == EINTR)
        ;
}

/* The child's messages merged into one object: the record, then (--accuracy) its error against
 * the exact reference; a line cut short by the child's death is not a message. Returns NULL
 * when there was none; *messages counts them. */
static json_t *child_messages(char *text, int *messages)
{
    json_t *report = NULL;
    *messages = 0;
    for (char *line = text, *nl; line && (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        json_error_t jerr;
        json_t *msg = json_loads(line, 0, &jerr);
        if (!json_is_object(msg)) {
            json_decref(msg);
            break;
        }
        if ((*messages)++ == 0)
            report = msg;
        else
            json_object_update(report, msg), json_decref(msg);
    }
    return report;
}

/* How a child that did not finish its report ended: the point's status, with the reason. */
static int child_ending(const child_watch *c, const point_limits *lim, const oom_watch *oom,
                        char *reason, size_t size)
{
    if (c->timed_out) {
        snprintf(reason, size, "killed after the time limit of %g s", lim->time_limit);
        return POINT_TIMEOUT;
    }
    if (WIFSIGNALED(c->wstatus) && WTERMSIG(c->wstatus) == SIGKILL) {
        char evidence[440];
        const int status = oom_watch_end(oom, evidence, sizeof evidence) ? POINT_OOM_KILLED
                                                                         : POINT_KILLED;
        snprintf(reason, size, "%s (ru_maxrss at death %.2f GiB)", evidence,
                 (double)c->ru.ru_maxrss / 0x1p20);
        return status;
    }
    if (WIFSIGNALED(c->wstatus)) {
        snprintf(reason, size, "killed by signal %d (%s)", WTERMSIG(c->wstatus),
                 strsignal(WTERMSIG(c->wstatus)));
        return POINT_CRASHED;
    }
    snprintf(reason, size, "child exited with status %d without a report",
             WIFEXITED(c->wstatus) ? WEXITSTATUS(c->wstatus) : -1);
    return POINT_CRASHED;
}

/* The record of a point that does not run: its model fails, or exceeds the memory limit.
 * NULL when it runs. */
static json_t *record_not_run(const point_spec *s, const point_limits *lim, const json_t *context)
{
    point_model m;
    const char *why;
    char reason[768];
    const int rc = point_model_of(s, &m, &why);
    if (rc) {
        snprintf(reason, sizeof reason, "%s: %s", attn_errname(rc), why);
        return point_record_new(s, context, rc == ATTN_EUNSUPPORTED ? POINT_UNSUPPORTED
                                                                    : POINT_ERROR, reason);
    }
    if (point_over_memory(s, lim, reason, sizeof reason))
        return point_record_new(s, context, POINT_SKIPPED, reason);
    return NULL;
}

/* One attempt at the point: a forked child, its record; NULL when interrupted. */
static json_t *point_attempt(const point_spec *s, const point_limits *lim, const json_t *context)
{
    json_t *rec = record_not_run(s, lim, context);
    if (rec)
        return rec;
    rec = point_record_new(s, context, POINT_ERROR, NULL);
    if (lim->quiet_wait > 0)
        json_object_set_new(rec, "quiet_wait", wait_for_quiet(lim->quiet_wait, lim->stop));
    /* the kernel's OOM-kill counts before the child exists: a SIGKILL is an OOM kill only if
     * one of them rises while it runs */
    oom_watch oom;
    oom_watch_begin(&oom);
    child_watch c = {0};
    const char *failed;
    if (child_spawn(s, lim, &c, &failed) != 0) {
        set_status(rec, POINT_ERROR, failed);
        return rec;
    }
    child_wait(&c, lim);
    json_object_set_new(rec, "ru_maxrss_bytes", json_integer((json_int_t)c.ru.ru_maxrss * 1024));
    if (!c.text) {
        set_status(rec, POINT_ERROR, "out of memory in the harness for the child's report");
        return rec;
    }
    int messages;
    json_t *report = child_messages(c.text, &messages);
    free(c.text);
    const bool own = !s->external && s->ranks == 0;
    const bool measured = report != NULL,
               complete = measured && messages == (s->accuracy && !s->train && own ? 2 : 1);
    if (c.stopped || (lim->stop && *lim->stop && !complete)) {
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
    char reason[768];
    const int status = child_ending(&c, lim, &oom, reason, sizeof reason);
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

