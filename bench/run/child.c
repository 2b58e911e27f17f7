/* child.c: the forked child of one point (see child.h). */
#include "child.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../launch/external.h"
#include "../launch/own.h"
#include "../launch/ranks.h"
#include "../point/accuracy.h"
#include "../sys/timing.h"

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

_Noreturn static void child_finish(int fd, json_t *r, int status, const char *reason)
{
    child_report(fd, r, status, reason);
    close(fd);
    _exit(0);
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
_Noreturn static void child_accuracy(int fd, const point_spec *s, json_t *record, const workload *w)
{
    child_report(fd, record, POINT_OK, NULL);
    if (point_fault("sleep-reference"))
        for (;;)
            pause();
    json_t *msg = json_object(), *vs_fp32;
    json_object_set_new(msg, "err_vs_exact", point_accuracy(s, w->q, w->k, w->v, w->out, w->lse,
                                                            w->structure, &vs_fp32));
    if (vs_fp32)
        json_object_set_new(msg, "err_vs_fp32", vs_fp32);
    child_send(fd, msg);
    close(fd);
    _exit(0);
}

_Noreturn void run_child(const point_spec *s, const point_limits *lim, int fd, pid_t parent)
{
    const double t_start = timing_now();
    child_setup(parent);
    json_t *r = json_object(), *harness = json_object();
    char why[1024] = "";
    own_run o = {.s = s};
    int status;
    /* only our own kernels get the address-space cap: an interpreter's or MPI's reservations
     * are not the memory of someone else's program or of the ranks */
    if (s->external) {
        status = external_measure(s, r, harness, why, sizeof why);
    } else if (s->ranks > 0) {
        status = ranks_measure(s, r, why, sizeof why);
    } else {
        cap_address_space(lim);
        status = own_measure(&o, r, harness, why, sizeof why);
    }
    json_object_set_new(harness, "child_s", json_real(timing_now() - t_start));
    json_object_set_new(r, "harness", harness);
    const bool own = !s->external && s->ranks == 0;
    if (status != POINT_OK || !s->accuracy || s->train || !own)
        child_finish(fd, r, status, status == POINT_OK ? NULL : why);
    child_accuracy(fd, s, r, &o.w); /* ours: an external program's is in its record (external.c) */
}
