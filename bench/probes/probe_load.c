/* probe_load.c: how busy the rest of the machine was while a point was timed (see probe.h).
 * /proc/stat's first line counts every CPU's time in jiffies since boot; the busy part of it
 * over the timed repetitions, less the point's own CPU time (getrusage), is what other
 * processes took; procs_running is the number of runnable tasks at the moment of reading.
 * Jiffies are coarse (10 ms on Debian's kernels), so a window of a few milliseconds cannot be
 * judged from them: the verdict allows for that resolution and says when it cannot tell. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ---- the source: other processes' share of the machine over the timed runs ------------- */

typedef struct load_state {
    bool ok;
    probe_load before, after;
    double own_before, own_after; /* the point's CPU seconds: this process's, and the
                                     measured program's when it is another */
} load_state;

double probe_load_self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

/* The CPU seconds of this process's siblings (the other children of its parent: the other
 * ranks a launcher started on this host), from /proc. */
static double siblings_cpu_s(void)
{
    const pid_t me = getpid(), parent = getppid();
    double total = 0;
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        char *end;
        const long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid == me)
            continue;
        char path[64], text[1024];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        const size_t len = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[len] = '\0';
        const char *p = strrchr(text, ')');
        int ppid;
        unsigned long long utime, stime;
        if (p && sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ppid,
                        &utime, &stime) == 3 && ppid == parent)
            total += (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
    }
    if (d)
        closedir(d);
    return total;
}

/* The point's own CPU seconds so far: this process, the program it measures, and its siblings
 * when the point runs as several. */
static int own_cpu_s(const probe_point *pt, double *s)
{
    *s = probe_load_self_cpu_s() + (pt->siblings ? siblings_cpu_s() : 0);
    probe_usage u;
    if (pt->pid == 0)
        return 0;
    if (probe_usage_read(pt->pid, &u) != 0)
        return -1;
    *s += u.user_s + u.system_s;
    return 0;
}

static void load_start(void *state, probe_point *pt)
{
    load_state *st = state;
    st->ok = probe_load_read(&st->before) == 0 && own_cpu_s(pt, &st->own_before) == 0;
}

static void load_stop(void *state, probe_point *pt)
{
    load_state *st = state;
    st->ok = st->ok && own_cpu_s(pt, &st->own_after) == 0 && probe_load_read(&st->after) == 0;
}

static json_t *probe_load_verdict(double other_s, double machine_s, double resolution_s,
                           int procs_before, int procs_after)
{
    const double share = machine_s > 0 ? (other_s > 0 ? other_s : 0) / machine_s : 0;
    json_t *j = json_object();
    json_object_set_new(j, "other_cpu_s", json_real(other_s > 0 ? other_s : 0));
    json_object_set_new(j, "other_share", json_real(share));
    json_object_set_new(j, "resolution_s", json_real(resolution_s));
    json_object_set_new(j, "procs_running_before", json_integer(procs_before));
    json_object_set_new(j, "procs_running_after", json_integer(procs_after));
    json_t *busy;
    if (machine_s > 0 && other_s - resolution_s > PROBE_BUSY_SHARE * machine_s)
        busy = json_true(); /* others took more than the share, even at the counters' worst */
    else if (machine_s > 0 && other_s + resolution_s <= PROBE_BUSY_SHARE * machine_s)
        busy = json_false();
    else
        busy = json_null(); /* the window is too short for /proc/stat's ticks to tell */
    json_object_set_new(j, "busy", busy);
    json_object_set_new(j, "machine_s", json_real(machine_s));
    return j;
}

json_t *probe_load_record(const probe_load *before, const probe_load *after, double own_cpu_s)
{
    /* the machine's time by the clock, not in jiffies: a short window holds none or two; each
     * core's counter is read twice, each off by up to a tick */
    return probe_load_verdict(after->busy_s - before->busy_s - own_cpu_s,
                              (after->wall_s - before->wall_s) * after->cores,
                              2.0 * after->cores * after->tick_s, before->procs_running,
                              after->procs_running);
}

static void load_report(void *state, probe_point *pt, int runs)
{
    (void)runs;
    load_state *st = state;
    if (!st->ok) {
        json_object_set_new(pt->unavailable, "machine_load",
                            json_string(pt->pid ? "/proc/stat or the program's /proc unreadable"
                                                : "/proc/stat unreadable"));
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
