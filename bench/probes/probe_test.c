/* probe_test.c: a probe source for the tests, off unless ATTNBENCH_TEST_PROBE=1. It stands for
 * the next source someone adds: being one more line in probe_sources[], it must reach every
 * kind of workload (our own point, an external program, each rank of a ring) through the one
 * measuring pipeline, and its field shows that it did. For another process it says, as a real
 * source would, that it measures only this one. */
#include <stdlib.h>
#include <string.h>

#include "probe.h"

typedef struct test_state {
    bool on;
    json_t *phases;
} test_state;

static void phase(test_state *st, const char *name)
{
    if (st->on)
        json_array_append_new(st->phases, json_string(name));
}

static void test_open(void *state, probe_point *pt)
{
    (void)pt;
    test_state *st = state;
    const char *on = getenv("ATTNBENCH_TEST_PROBE");
    st->on = on && strcmp(on, "1") == 0;
    st->phases = st->on ? json_array() : NULL;
    phase(st, "open");
}

static void test_prepared(void *state, probe_point *pt)
{
    (void)pt;
    phase(state, "prepared");
}

static void test_start(void *state, probe_point *pt)
{
    (void)pt;
    phase(state, "start");
}

static void test_stop(void *state, probe_point *pt)
{
    (void)pt;
    phase(state, "stop");
}

static void test_report(void *state, probe_point *pt, int runs)
{
    test_state *st = state;
    if (!st->on)
        return;
    phase(st, "report");
    if (pt->pid) {
        json_object_set_new(pt->record, "test_probe", json_null());
        json_object_set_new(pt->unavailable, "test_probe",
                            json_string("the test probe measures only its own process"));
        return;
    }
    json_object_set_new(pt->record, "test_probe",
                        json_pack("{s:O, s:i, s:i}", "phases", st->phases, "runs", runs,
                                  "threads", pt->threads));
}

static void test_close(void *state)
{
    json_decref(((test_state *)state)->phases);
}

const probe_source probe_source_test = {
    .name = "test",
    .state_bytes = sizeof(test_state),
    .open = test_open,
    .prepared = test_prepared,
    .start = test_start,
    .stop = test_stop,
    .report = test_report,
    .close = test_close,
};
