/* own.c: attnbench's own kernels as a workload of the measuring pipeline (see own.h). */
#include "own.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../measure/measure.h"
#include "../sys/timing.h"

/* The faults that end the child once its buffers exist (point_fault). */
static void inject_fault(void)
{
    if (point_fault("segv"))
        raise(SIGSEGV);
    else if (point_fault("sigkill"))
        raise(SIGKILL);
    else if (point_fault("sleep"))
        for (;;)
            pause();
    else if (point_fault("exit"))
        _exit(3);
}

static const char *run_name(const point_spec *s)
{
    return s->train ? "training step" : s->backward ? "forward and backward" : "forward";
}

/* POINT_ERROR unless the run before wrote every output element (and, for training, every
 * gradient) as a finite number. The "unwritten" fault plays a kernel that forgot one. */
static int own_verify(own_run *o, const char *stage, char *why, size_t size)
{
    char bad[256];
    if (point_fault("unwritten")) {
        size_t count;
        attn_dtype dtype;
        void *out = workload_output(&o->w, &count, &dtype);
        if (dtype == ATTN_BF16)
            ((attn_bf16 *)out)[count / 2] = attn_f32_to_bf16(NAN);
        else
            ((float *)out)[count / 2] = NAN;
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

int own_measure(own_run *o, json_t *record, json_t *harness, char *why, size_t size)
{
    const point_spec *s = o->s;
    double *times = calloc((size_t)s->reps, sizeof *times);
    if (!times) {
        snprintf(why, size, "out of memory for the repetitions' times");
        return POINT_ALLOC_FAILED;
    }
    const measure_driver d = {.ctx = o, .prepare = own_prepare, .warmup = own_warmup,
                              .repeat = own_repeat, .finish = own_finish,
                              .window_runs = s->reps};
    const int status = measure_point(s, &d, record, harness, times, why, size);
    free(times);
    free(o->inflated);
    o->inflated = NULL;
    return status;
}
