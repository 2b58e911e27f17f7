/* probe_rusage.c: what the kernel's own accounting saw of the measured process during the
 * timed runs, every thread: CPU time, page faults, context switches; getrusage for this process,
 * /proc/PID/stat for another (in clock ticks, and without the switches). Always available,
 * whatever PAPI can count on the machine (see probe.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "probe.h"

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

int probe_usage_read(pid_t pid, probe_usage *u)
{
    if (pid == 0) {
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) != 0)
            return -1;
        *u = (probe_usage){.user_s = tv_s(ru.ru_utime), .system_s = tv_s(ru.ru_stime),
                           .minor_faults = (double)ru.ru_minflt,
                           .major_faults = (double)ru.ru_majflt,
                           .voluntary_switches = (double)ru.ru_nvcsw,
                           .involuntary_switches = (double)ru.ru_nivcsw};
        return 0;
    }
    char path[64], text[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    const size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    const char *p = strrchr(text, ')'); /* the command name may hold spaces */
    unsigned long long minflt, majflt, utime, stime;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %llu %*u %llu %*u %llu %llu", &minflt,
                     &majflt, &utime, &stime) != 4)
        return -1;
    const double tick = (double)sysconf(_SC_CLK_TCK);
    *u = (probe_usage){.user_s = (double)utime / tick, .system_s = (double)stime / tick,
                       .minor_faults = (double)minflt, .major_faults = (double)majflt,
                       .voluntary_switches = NAN, .involuntary_switches = NAN};
    return 0;
}

typedef struct rusage_state {
    bool ok;
    probe_usage before, after;
} rusage_state;

static void rusage_start(void *state, probe_point *pt)
{
    rusage_state *st = state;
    st->ok = probe_usage_read(pt->pid, &st->before) == 0;
}

static void rusage_stop(void *state, probe_point *pt)
{
    rusage_state *st = state;
    st->ok = st->ok && probe_usage_read(pt->pid, &st->after) == 0;
}

static void rusage_report(void *state, probe_point *pt, int runs)
{
    const rusage_state *st = state;
    if (!st->ok) {
        json_object_set_new(pt->unavailable, "rusage",
                            json_string(pt->pid ? "the program's /proc/PID/stat unreadable"
                                                : "getrusage failed"));
        return;
    }
    const probe_usage *a = &st->before, *b = &st->after;
    json_t *j = json_object();
    const double user = b->user_s - a->user_s, sys = b->system_s - a->system_s;
    json_object_set_new(j, "cpu_s", json_real((user + sys) / runs));
    json_object_set_new(j, "user_s", json_real(user / runs));
    json_object_set_new(j, "system_s", json_real(sys / runs));
    json_object_set_new(j, "minor_faults", json_real((b->minor_faults - a->minor_faults) / runs));
    json_object_set_new(j, "major_faults", json_real((b->major_faults - a->major_faults) / runs));
    if (pt->pid) {
        json_object_set_new(j, "source", json_string("/proc/PID/stat from ready to done (warm-up "
                                                     "included), per run"));
    } else {
        json_object_set_new(j, "voluntary_switches",
                            json_real((b->voluntary_switches - a->voluntary_switches) / runs));
        json_object_set_new(j, "involuntary_switches",
                            json_real((b->involuntary_switches - a->involuntary_switches) / runs));
    }
    json_object_set_new(pt->record, "rusage", j);
}

const probe_source probe_source_rusage = {
    .name = "rusage",
    .state_bytes = sizeof(rusage_state),
    .start = rusage_start,
    .stop = rusage_stop,
    .report = rusage_report,
};
