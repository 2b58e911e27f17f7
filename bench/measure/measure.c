/* measure.c: the one sequence every kind of workload is measured by (see measure.h). */
#include "measure.h"

#include "../point/workload.h"
#include "../probes/probe.h"
#include "../sys/timing.h"

/* What the probes are told of the point and of the process they measure. */
static probe_point probe_target(const point_spec *s, const measure_driver *d, pid_t pid,
                                json_t *record)
{
    point_model m;
    const char *why;
    const int modelled = point_model_of(s, &m, &why) == 0 && !s->train;
    return (probe_point){.pid = pid, .siblings = d->siblings, .threads = s->threads,
                         .counters = s->counters ? s->counters : "",
                         .model_scores = modelled ? m.scores : 0,
                         .tokens = (double)(s->shape.B * s->shape.H * s->shape.n),
                         .record = record};
}

int measure_point(const point_spec *s, const measure_driver *d, json_t *record, json_t *harness,
                  double *times, char *why, size_t size)
{
    pid_t pid = 0;
    int rc = d->launch ? d->launch(d->ctx, &pid, why, size) : POINT_OK;
    if (rc != POINT_OK) /* a program that never came up still has an end to tell */
        return d->finish ? d->finish(d->ctx, rc, record, why, size) : rc;
    probe_set probes;
    double t0 = timing_now();
    const probe_point at = probe_target(s, d, pid, record);
    probes_open(&probes, &at);
    json_object_set_new(harness, "probes_open_s", json_real(timing_now() - t0));

    struct workload *w = NULL;
    t0 = timing_now();
    rc = d->prepare(d->ctx, probes.point.work, &w, why, size);
    json_object_set_new(harness, "inputs_s", json_real(timing_now() - t0));
    if (rc == POINT_OK) {
        probes_prepared(&probes, w);
        if (d->warmup) { /* an external program warms up inside the window, after ready */
            t0 = timing_now();
            rc = d->warmup(d->ctx, why, size);
            json_object_set_new(harness, "warmup_s", json_real(timing_now() - t0));
        }
    }
    if (rc == POINT_OK) {
        /* the window: the probes' start and stop around the timed runs, and nothing else */
        t0 = timing_now();
        probes_start(&probes);
        double probe_s = timing_now() - t0;
        rc = d->repeat(d->ctx, times, why, size);
        t0 = timing_now();
        probes_stop(&probes);
        probe_s += timing_now() - t0;
        double runs_s = 0;
        for (int i = 0; rc == POINT_OK && i < s->reps; i++)
            runs_s += times[i];
        json_object_set_new(harness, "probe_s", json_real(probe_s));
        if (rc == POINT_OK)
            json_object_set_new(harness, "probe_fraction", json_real(probe_s / runs_s));
    }
    if (d->finish)
        rc = d->finish(d->ctx, rc, record, why, size);
    if (rc == POINT_OK) { /* no fields from runs that did not all run or check out */
        point_record_times(record, s, times);
        probes_report(&probes, d->window_runs);
    } else {
        probes_failed(&probes);
    }
    probes_close(&probes);
    return rc;
}
