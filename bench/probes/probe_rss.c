/* probe_rss.c: resident-set probes from /proc/self (see probe.h). The high-water mark is
 * reset with clear_refs (Linux >= 4.0), so a forked child measures only its own pages. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "probe.h"

int probe_rss_read(uint64_t *rss, uint64_t *hwm)
{
    return probe_rss_read_pid(0, rss, hwm);
}

/* Fields of /proc/PID/status (pid 0: this process) given in kB, as bytes: names[i] into
 * bytes[i]. Returns 0 when every one was found, else -1. */
static int read_status(pid_t pid, const char *const *names, uint64_t *bytes, int count)
{
    char path[64];
    if (pid)
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    else
        snprintf(path, sizeof path, "/proc/self/status");
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[256];
    int found = 0;
    while (found < count && fgets(line, sizeof line, f)) {
        const char *colon = strchr(line, ':');
        unsigned long long kib;
        for (int i = 0; colon && i < count; i++)
            if (strlen(names[i]) == (size_t)(colon - line) &&
                strncmp(line, names[i], (size_t)(colon - line)) == 0 &&
                sscanf(colon + 1, " %llu kB", &kib) == 1) {
                bytes[i] = (uint64_t)kib * 1024;
                found++;
            }
    }
    fclose(f);
    return found == count ? 0 : -1;
}

int probe_rss_read_pid(pid_t pid, uint64_t *rss, uint64_t *hwm)
{
    static const char *const names[] = {"VmRSS", "VmHWM"};
    uint64_t v[2];
    if (read_status(pid, names, v, 2) != 0)
        return -1;
    *rss = v[0];
    *hwm = v[1];
    return 0;
}

/* The file-backed part of a process's RSS (RssFile: code and read-only data of the program
 * and its libraries, paged in as it first runs); pid 0 is this one. Returns 0 or -1. */
static int read_rss_file(pid_t pid, uint64_t *bytes)
{
    static const char *const names[] = {"RssFile"};
    return read_status(pid, names, bytes, 1);
}

int probe_rss_reset_peak(void)
{
    return probe_rss_reset_peak_pid(0);
}

int probe_rss_reset_peak_pid(pid_t pid)
{
    char path[64];
    if (pid)
        snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)pid);
    else
        snprintf(path, sizeof path, "/proc/self/clear_refs");
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok ? 0 : -1;
}

/* ---- the source: the point's RSS before its inputs, before its first run, and its peak ------
 * Our own point's peak is reset before the inputs (they are part of it); an external
 * program's at ready, once its inputs are loaded (the protocol lets it go only then, so what it
 * touches after is in the peak and never in the RSS at ready). The peak is read when the runs
 * stop, while a program is still alive to be read. */

typedef struct rss_state {
    bool ok; /* every reading so far succeeded (a field after a failed one would mislead) */
    uint64_t rss, hwm;
    bool file_ok;
    uint64_t file_before, file_after; /* RssFile at the baseline and at the stop */
} rss_state;

static void rss_unavailable(probe_point *pt, const char *field)
{
    json_object_set_new(pt->unavailable, field,
                        json_string(pt->pid ? "/proc/PID/status or clear_refs unreadable"
                                            : "/proc/self/status or /proc/self/clear_refs unreadable"));
}

static void rss_open(void *state, probe_point *pt)
{
    rss_state *st = state;
    st->ok = (pt->pid || probe_rss_reset_peak() == 0) &&
             probe_rss_read_pid(pt->pid, &st->rss, &st->hwm) == 0;
    st->file_ok = read_rss_file(pt->pid, &st->file_before) == 0;
    if (st->ok)
        json_object_set_new(pt->record, "rss_before_inputs_bytes", json_integer((json_int_t)st->rss));
    else
        rss_unavailable(pt, "rss_before_inputs_bytes");
}

static void rss_prepared(void *state, probe_point *pt)
{
    rss_state *st = state;
    st->ok = st->ok && probe_rss_read_pid(pt->pid, &st->rss, &st->hwm) == 0;
    if (st->ok)
        json_object_set_new(pt->record, "rss_before_kernel_bytes", json_integer((json_int_t)st->rss));
    else
        rss_unavailable(pt, "rss_before_kernel_bytes");
    st->ok = st->ok && (!pt->pid || probe_rss_reset_peak_pid(pt->pid) == 0);
}

static void rss_stop(void *state, probe_point *pt)
{
    rss_state *st = state;
    st->ok = st->ok && probe_rss_read_pid(pt->pid, &st->rss, &st->hwm) == 0;
    st->file_ok = st->file_ok && read_rss_file(pt->pid, &st->file_after) == 0;
}

static void rss_report(void *state, probe_point *pt, int runs)
{
    (void)runs;
    rss_state *st = state;
    if (st->ok)
        json_object_set_new(pt->record, "peak_rss_bytes", json_integer((json_int_t)st->hwm));
    else
        rss_unavailable(pt, "peak_rss_bytes");
    /* code pages first run after the baseline (the kernels', the input generator's, their
     * libraries'): in the peak, but shared with every process mapping them, and the same at
     * any n; point RSS leaves them out */
    if (st->file_ok)
        json_object_set_new(pt->record, "rss_file_growth_bytes",
                            json_integer(st->file_after > st->file_before
                                             ? (json_int_t)(st->file_after - st->file_before)
                                             : 0));
    else
        json_object_set_new(pt->unavailable, "rss_file_growth_bytes",
                            json_string("the process's status has no RssFile line"));
}

/* A failed point still says how high its memory went (an allocation that failed, say). */
static void rss_failed(void *state, probe_point *pt)
{
    (void)state;
    uint64_t rss, hwm;
    if (probe_rss_read_pid(pt->pid, &rss, &hwm) == 0)
        json_object_set_new(pt->record, "peak_rss_bytes", json_integer((json_int_t)hwm));
}

const probe_source probe_source_rss = {
    .name = "rss",
    .state_bytes = sizeof(rss_state),
    .open = rss_open,
    .prepared = rss_prepared,
    .stop = rss_stop,
    .report = rss_report,
    .failed = rss_failed,
};
