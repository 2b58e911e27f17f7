/* probe_rusage.c: what the kernel's own accounting (getrusage, every thread of the point) saw
 * during the timed repetitions: CPU time, page faults, context switches. Always available,
 * whatever PAPI can count on the machine (see probe.h). */
#include <sys/resource.h>

#include "probe.h"

typedef struct rusage_state {
    struct rusage before, after;
} rusage_state;

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

static void rusage_start(void *state, probe_point *pt)
{
    (void)pt;
    getrusage(RUSAGE_SELF, &((rusage_state *)state)->before);
}

static void rusage_stop(void *state, probe_point *pt)
{
    (void)pt;
    getrusage(RUSAGE_SELF, &((rusage_state *)state)->after);
}

static void rusage_report(void *state, probe_point *pt, int reps)
{
    const struct rusage *a = &((rusage_state *)state)->before, *b = &((rusage_state *)state)->after;
    json_t *j = json_object();
    const double user = tv_s(b->ru_utime) - tv_s(a->ru_utime);
    const double sys = tv_s(b->ru_stime) - tv_s(a->ru_stime);
    json_object_set_new(j, "cpu_s", json_real((user + sys) / reps));
    json_object_set_new(j, "user_s", json_real(user / reps));
    json_object_set_new(j, "system_s", json_real(sys / reps));
    json_object_set_new(j, "minor_faults", json_real((double)(b->ru_minflt - a->ru_minflt) / reps));
    json_object_set_new(j, "major_faults", json_real((double)(b->ru_majflt - a->ru_majflt) / reps));
    json_object_set_new(j, "voluntary_switches",
                        json_real((double)(b->ru_nvcsw - a->ru_nvcsw) / reps));
    json_object_set_new(j, "involuntary_switches",
                        json_real((double)(b->ru_nivcsw - a->ru_nivcsw) / reps));
    json_object_set_new(pt->record, "rusage", j);
}

const probe_source probe_source_rusage = {
    .name = "rusage",
    .state_bytes = sizeof(rusage_state),
    .start = rusage_start,
    .stop = rusage_stop,
    .report = rusage_report,
};
