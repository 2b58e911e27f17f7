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
