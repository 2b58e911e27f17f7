/* probe_jemalloc.c: jemalloc's per-thread peak and allocator-wide statistics (see probe.h).
 * Built with HAVE_JEMALLOC=0 (sanitizer builds), every probe reports "unavailable". */
#include <stdio.h>
#include <string.h>

#include "probe.h"

#if HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>

bool probe_jemalloc_available(void)
{
    return true;
}

const char *probe_jemalloc_version(void)
{
    const char *v = NULL;
    size_t sz = sizeof v;
    return mallctl("version", &v, &sz, NULL, 0) == 0 ? v : NULL;
}

int probe_jemalloc_peak_reset(void)
{
    return mallctl("thread.peak.reset", NULL, NULL, NULL, 0) == 0 ? 0 : -1;
}

int probe_jemalloc_peak_read(uint64_t *bytes)
{
    size_t sz = sizeof *bytes;
    return mallctl("thread.peak.read", bytes, &sz, NULL, 0) == 0 ? 0 : -1;
}

int probe_jemalloc_thread_allocated(uint64_t *bytes)
{
    size_t sz = sizeof *bytes;
    return mallctl("thread.allocated", bytes, &sz, NULL, 0) == 0 ? 0 : -1;
}

static int read_size(const char *name, uint64_t *out)
{
    size_t v, sz = sizeof v;
    if (mallctl(name, &v, &sz, NULL, 0) != 0)
        return -1;
    *out = v;
    return 0;
}

int probe_jemalloc_read_stats(probe_jemalloc_stats *st)
{
    /* the stats are a snapshot taken at the last epoch; refresh it first */
    uint64_t epoch = 1;
    size_t sz = sizeof epoch;
    if (mallctl("epoch", &epoch, &sz, &epoch, sz) != 0)
        return -1;
    return read_size("stats.allocated", &st->allocated) | read_size("stats.active", &st->active) |
           read_size("stats.resident", &st->resident) | read_size("stats.mapped", &st->mapped) |
           read_size("stats.retained", &st->retained) | read_size("stats.metadata", &st->metadata);
}

int probe_jemalloc_opt(const char *name, char *buf, int size)
{
    bool b;
    size_t sz = sizeof b;
    if (strcmp(name, "opt.retain") == 0 || strcmp(name, "opt.background_thread") == 0) {
        if (mallctl(name, &b, &sz, NULL, 0) != 0)
            return -1;
        snprintf(buf, (size_t)size, "%s", b ? "true" : "false");
        return 0;
    }
    unsigned u;
    sz = sizeof u;
    if (mallctl(name, &u, &sz, NULL, 0) == 0) {
        snprintf(buf, (size_t)size, "%u", u);
        return 0;
    }
    ssize_t s;
    sz = sizeof s;
    if (mallctl(name, &s, &sz, NULL, 0) == 0) {
        snprintf(buf, (size_t)size, "%zd", s);
        return 0;
    }
    return -1;
}

#else

bool probe_jemalloc_available(void)
{
    return false;
}
const char *probe_jemalloc_version(void)
{
    return NULL;
}
int probe_jemalloc_peak_reset(void)
{
    return -1;
}
int probe_jemalloc_peak_read(uint64_t *bytes)
{
    (void)bytes;
    return -1;
}
int probe_jemalloc_thread_allocated(uint64_t *bytes)
{
    (void)bytes;
    return -1;
}
int probe_jemalloc_read_stats(probe_jemalloc_stats *st)
{
    (void)st;
    return -1;
}
int probe_jemalloc_opt(const char *name, char *buf, int size)
{
    (void)name;
    (void)buf;
    (void)size;
    return -1;
}

#endif

/* ---- the source: the heap's peak over the point, what the repetitions allocated, and the
 * allocator-wide statistics at the end ---------------------------------------------------- */

typedef struct jemalloc_state {
    bool peak_ok, alloc_ok;
    uint64_t alloc_before, alloc_after;
} jemalloc_state;

static const char *const heap_fields[] = {"heap_peak_bytes", "heap_kernel_alloc_bytes", "jemalloc"};

static void jemalloc_open(void *state, probe_point *pt)
{
    jemalloc_state *st = state;
    if (!pt->pid)
        st->peak_ok = probe_jemalloc_peak_reset() == 0; /* the inputs' allocation counts */
}

static void jemalloc_start(void *state, probe_point *pt)
{
    jemalloc_state *st = state;
    st->alloc_ok = !pt->pid && st->peak_ok &&
                   probe_jemalloc_thread_allocated(&st->alloc_before) == 0;
}

static void jemalloc_stop(void *state, probe_point *pt)
{
    (void)pt;
    jemalloc_state *st = state;
    st->alloc_ok = st->alloc_ok && probe_jemalloc_thread_allocated(&st->alloc_after) == 0;
}

static void jemalloc_report(void *state, probe_point *pt, int runs)
{
    (void)runs;
    jemalloc_state *st = state;
    uint64_t peak = 0;
    probe_jemalloc_stats js;
    if (pt->pid) {
        for (size_t i = 0; i < sizeof heap_fields / sizeof heap_fields[0]; i++)
            json_object_set_new(pt->unavailable, heap_fields[i],
                                json_string("an external program: jemalloc is attnbench's "
                                            "allocator"));
        return;
    }
    if (!probe_jemalloc_available()) {
        for (size_t i = 0; i < sizeof heap_fields / sizeof heap_fields[0]; i++)
            json_object_set_new(pt->unavailable, heap_fields[i],
                                json_string("jemalloc is not the allocator of this build "
                                            "(sanitizer builds use their own)"));
        return;
    }
    if (st->peak_ok && probe_jemalloc_peak_read(&peak) == 0)
        json_object_set_new(pt->record, "heap_peak_bytes", json_integer((json_int_t)peak));
    else
        json_object_set_new(pt->unavailable, "heap_peak_bytes",
                            json_string("jemalloc's thread.peak could not be reset or read"));
    if (st->alloc_ok)
        json_object_set_new(pt->record, "heap_kernel_alloc_bytes",
                            json_integer((json_int_t)(st->alloc_after - st->alloc_before)));
    else
        json_object_set_new(pt->unavailable, "heap_kernel_alloc_bytes",
                            json_string("jemalloc's thread.allocated could not be read"));
    if (probe_jemalloc_read_stats(&js) != 0) {
        json_object_set_new(pt->unavailable, "jemalloc",
                            json_string("jemalloc's stats.* could not be read"));
        return;
    }
    json_t *j = json_object();
    json_object_set_new(j, "allocated", json_integer((json_int_t)js.allocated));
    json_object_set_new(j, "active", json_integer((json_int_t)js.active));
    json_object_set_new(j, "resident", json_integer((json_int_t)js.resident));
    json_object_set_new(j, "mapped", json_integer((json_int_t)js.mapped));
    json_object_set_new(j, "retained", json_integer((json_int_t)js.retained));
    json_object_set_new(j, "metadata", json_integer((json_int_t)js.metadata));
    json_object_set_new(pt->record, "jemalloc", j);
}

const probe_source probe_source_jemalloc = {
    .name = "jemalloc",
    .state_bytes = sizeof(jemalloc_state),
    .open = jemalloc_open,
    .start = jemalloc_start,
    .stop = jemalloc_stop,
    .report = jemalloc_report,
};
