/* probes.c: the list of probe sources and the one way a point runs them (see probe.h). */
#include <stdlib.h>
#include <string.h>

#include "probe.h"

extern const probe_source probe_source_sde, probe_source_load, probe_source_rusage,
    probe_source_papi, probe_source_rss, probe_source_jemalloc, probe_source_test;

/* Open order: sde registers its counters before PAPI looks their names up; PAPI initializes
 * before rss reads the baseline (its memory is part of it); jemalloc resets its peak last,
 * just before the inputs are allocated. Start order is the same and stop the reverse: the
 * load and getrusage readings enclose PAPI's, and PAPI's the allocator's. */
const probe_source *const probe_sources[] = {
    &probe_source_sde,  &probe_source_load, &probe_source_rusage,
    &probe_source_papi, &probe_source_rss,  &probe_source_jemalloc,
    &probe_source_test, /* the tests' (ATTNBENCH_TEST_PROBE): a new source reaches every kind */
    NULL,
};

void probes_open(probe_set *ps, const probe_point *at)
{
    memset(ps, 0, sizeof *ps);
    ps->point = *at;
    ps->point.unavailable = json_object();
    for (int i = 0; probe_sources[i] && i < (int)(sizeof ps->state / sizeof ps->state[0]); i++) {
        const probe_source *src = probe_sources[i];
        ps->state[i] = calloc(1, src->state_bytes ? src->state_bytes : 1);
        ps->count = i + 1;
        if (ps->state[i] && src->open)
            src->open(ps->state[i], &ps->point);
        else if (!ps->state[i])
            json_object_set_new(ps->point.unavailable, src->name,
                                json_string("the probe's state could not be allocated"));
    }
}

void probes_prepared(probe_set *ps, struct workload *w)
{
    ps->point.workload = w;
    for (int i = 0; i < ps->count; i++)
        if (ps->state[i] && probe_sources[i]->prepared)
            probe_sources[i]->prepared(ps->state[i], &ps->point);
}

void probes_start(probe_set *ps)
{
    for (int i = 0; i < ps->count; i++)
        if (ps->state[i] && probe_sources[i]->start)
            probe_sources[i]->start(ps->state[i], &ps->point);
}

void probes_stop(probe_set *ps)
{
    for (int i = ps->count - 1; i >= 0; i--)
        if (ps->state[i] && probe_sources[i]->stop)
            probe_sources[i]->stop(ps->state[i], &ps->point);
}

void probes_report(probe_set *ps, int runs)
{
    for (int i = 0; i < ps->count; i++)
        if (ps->state[i])
            probe_sources[i]->report(ps->state[i], &ps->point, runs);
    json_object_set(ps->point.record, "unavailable", ps->point.unavailable);
}

void probes_failed(probe_set *ps)
{
    for (int i = 0; i < ps->count; i++)
        if (ps->state[i] && probe_sources[i]->failed)
            probe_sources[i]->failed(ps->state[i], &ps->point);
}

void probes_close(probe_set *ps)
{
    for (int i = ps->count - 1; i >= 0; i--) {
        if (ps->state[i] && probe_sources[i]->close)
            probe_sources[i]->close(ps->state[i]);
        free(ps->state[i]);
        ps->state[i] = NULL;
    }
    json_decref(ps->point.unavailable);
    ps->point.unavailable = NULL;
    ps->count = 0;
}
