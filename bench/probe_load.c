/* probe_load.c: how busy the rest of the machine was while a point was timed (see probe.h).
 * /proc/stat's first line counts every CPU's time in jiffies since boot; the busy part of it
 * over the timed repetitions, less the point's own CPU time (getrusage), is what other
 * processes took; procs_running is the number of runnable tasks at the moment of reading.
 * Jiffies are coarse (10 ms on Debian's kernels), so a window of a few milliseconds cannot be
 * judged from them: the verdict allows for that resolution and says when it cannot tell. */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"

int probe_load_read(probe_load *l)
{
    memset(l, 0, sizeof *l);
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long v[10] = {0};
        if (strncmp(line, "cpu ", 4) == 0 &&
            sscanf(line + 4, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) >= 8) {
            /* user nice system idle iowait irq softirq steal (guest time is inside user) */
            const double hz = (double)sysconf(_SC_CLK_TCK);
            l->busy_s = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz;
            l->total_s = l->busy_s + (double)(v[3] + v[4]) / hz;
            found |= 1;
        } else if (sscanf(line, "procs_running %d", &l->procs_running) == 1) {
            found |= 2;
        }
    }
    fclose(f);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    l->wall_s = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    l->cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    l->tick_s = 1.0 / (double)sysconf(_SC_CLK_TCK);
    return found == 3 ? 0 : -1;
}

/* ---- the source: other processes' share of the machine over the timed repetitions -------- */

typedef struct load_state {
    bool ok;
    probe_load before, after;
    double own_before, own_after; /* this process's CPU seconds, every thread */
} load_state;

double probe_load_self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static void load_start(void *state, probe_point *pt)
{
    (void)pt;
    load_state *st = state;
    st->ok = probe_load_read(&st->before) == 0;
    st->own_before = probe_load_self_cpu_s();
}

static void load_stop(void *state, probe_point *pt)
{
    (void)pt;
    load_state *st = state;
    st->own_after = probe_load_self_cpu_s();
    st->ok = st->ok && probe_load_read(&st->after) == 0;
}

json_t *probe_load_record(const probe_load *before, const probe_load *after, double own_cpu_s)
{
    const double other = after->busy_s - before->busy_s - own_cpu_s;
    /* the machine's time by the clock, not in jiffies: a short window holds none or two */
    const double total = (after->wall_s - before->wall_s) * after->cores;
    /* each core's counter read twice, each off by up to a tick */
    const double resolution = 2.0 * after->cores * after->tick_s;
    const double share = total > 0 ? (other > 0 ? other : 0) / total : 0;
    json_t *j = json_object();
    json_object_set_new(j, "other_cpu_s", json_real(other > 0 ? other : 0));
    json_object_set_new(j, "other_share", json_real(share));
    json_object_set_new(j, "resolution_s", json_real(resolution));
    json_object_set_new(j, "procs_running_before", json_integer(before->procs_running));
    json_object_set_new(j, "procs_running_after", json_integer(after->procs_running));
    json_t *busy;
    if (total > 0 && other - resolution > PROBE_BUSY_SHARE * total)
        busy = json_true(); /* others took more than the share, even at the counters' worst */
    else if (total > 0 && other + resolution <= PROBE_BUSY_SHARE * total)
        busy = json_false();
    else
        busy = json_null(); /* the window is too short for /proc/stat's ticks to tell */
    json_object_set_new(j, "busy", busy);
    return j;
}

static void load_report(void *state, probe_point *pt, int reps)
{
    (void)reps;
    load_state *st = state;
    if (!st->ok) {
        json_object_set_new(pt->unavailable, "machine_load", json_string("/proc/stat unreadable"));
        return;
    }
    json_object_set_new(pt->record, "machine_load",
                        probe_load_record(&st->before, &st->after, st->own_after - st->own_before));
}

const probe_source probe_source_load = {
    .name = "load",
    .state_bytes = sizeof(load_state),
    .start = load_start,
    .stop = load_stop,
    .report = load_report,
};
