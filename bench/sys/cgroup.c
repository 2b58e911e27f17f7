/* cgroup.c: see cgroup.h. */
#include "cgroup.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* v1's "unlimited" is the page counter's maximum (2^63 - 4096 on x86-64): anything this
 * large limits nothing. */
#define CGROUP_UNLIMITED (UINT64_C(1) << 62)

static int file_exists(const char *dir, const char *name)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, R_OK) == 0;
}

/* Whether the comma-separated controller list has `name`. */
static int has_controller(const char *list, const char *name)
{
    const size_t len = strlen(name);
    for (const char *p = list; *p;) {
        const size_t n = strcspn(p, ",");
        if (n == len && strncmp(p, name, len) == 0)
            return 1;
        p += n + (p[n] == ',');
    }
    return 0;
}

/* Whether the v2 hierarchy at root has the memory controller. */
static int unified_has_memory(const char *root)
{
    char path[512], line[512] = "";
    snprintf(path, sizeof path, "%s/cgroup.controllers", root);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
    for (char *save, *w = strtok_r(line, " ", &save); ok && w; w = strtok_r(NULL, " ", &save))
        if (strcmp(w, "memory") == 0)
            return 1;
    return 0;
}

int cgroup_find(const char *proc_cgroup, const char *mounts, cgroup_memory *cg)
{
    memset(cg, 0, sizeof *cg);
    FILE *f = fopen(proc_cgroup, "r");
    if (!f)
        return -1;
    char line[1024], v1_path[512] = "", v2_path[512] = "";
    int v1 = 0, v2 = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        /* "ID:CONTROLLERS:PATH"; the path may itself hold colons */
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        if (c2 == c1 + 1 && strcmp(line, "0:") == 0) {
            snprintf(v2_path, sizeof v2_path, "%s", c2 + 1);
            v2 = 1;
        } else if (has_controller(c1 + 1, "memory")) {
            snprintf(v1_path, sizeof v1_path, "%s", c2 + 1);
            v1 = 1;
        }
    }
    fclose(f);
    if (v1) { /* a v1 memory hierarchy wins: in hybrid mode the unified one has no memory */
        snprintf(cg->root, sizeof cg->root, "%s/memory", mounts);
        snprintf(cg->dir, sizeof cg->dir, "%s%s", cg->root, strcmp(v1_path, "/") ? v1_path : "");
        if (file_exists(cg->dir, "memory.limit_in_bytes")) {
            cg->version = 1;
            return 0;
        }
    }
    if (v2) {
        for (int hybrid = 0; hybrid < 2; hybrid++) {
            snprintf(cg->root, sizeof cg->root, "%s%s", mounts, hybrid ? "/unified" : "");
            if (!unified_has_memory(cg->root))
                continue;
            snprintf(cg->dir, sizeof cg->dir, "%s%s", cg->root,
                     strcmp(v2_path, "/") ? v2_path : "");
            cg->version = 2;
            return 0;
        }
    }
    memset(cg, 0, sizeof *cg);
    return -1;
}

/* The first line of dir/name as a byte count: 0 for "max" or v1's unlimited, -1 if absent. */
static int64_t read_limit(const char *dir, const char *name)
{
    char path[1100], text[64] = "";
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int ok = fgets(text, sizeof text, f) != NULL;
    fclose(f);
    if (!ok)
        return -1;
    if (strncmp(text, "max", 3) == 0)
        return 0;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text)
        return -1;
    return v >= CGROUP_UNLIMITED ? 0 : (int64_t)v;
}

uint64_t cgroup_memory_limit(const cgroup_memory *cg, char *file, size_t size)
{
    if (size)
        file[0] = '\0';
    if (!cg->version)
        return 0;
    const char *name = cg->version == 2 ? "memory.max" : "memory.limit_in_bytes";
    char dir[800];
    snprintf(dir, sizeof dir, "%s", cg->dir);
    uint64_t best = 0;
    const size_t rootlen = strlen(cg->root);
    for (;;) {
        const int64_t v = read_limit(dir, name);
        if (v > 0 && (best == 0 || (uint64_t)v < best)) {
            best = (uint64_t)v;
            snprintf(file, size, "%s/%s", dir, name);
        }
        char *slash = strrchr(dir, '/');
        if (strlen(dir) <= rootlen || !slash || slash < dir + rootlen)
            break;
        *slash = '\0'; /* the parent */
    }
    return best;
}

/* The value of the line "key N" of path, or -1. */
static int64_t keyed_value(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[256];
    int64_t v = -1;
    const size_t len = strlen(key);
    while (v < 0 && fgets(line, sizeof line, f))
        if (strncmp(line, key, len) == 0 && line[len] == ' ')
            v = strtoll(line + len + 1, NULL, 10);
    fclose(f);
    return v;
}

int64_t cgroup_oom_kills(const cgroup_memory *cg, char *file, size_t size)
{
    if (size)
        file[0] = '\0';
    if (!cg->version)
        return -1;
    snprintf(file, size, "%s/%s", cg->dir, cg->version == 2 ? "memory.events" : "memory.oom_control");
    return keyed_value(file, "oom_kill");
}

int64_t cgroup_vmstat_oom_kills(void)
{
    return keyed_value("/proc/vmstat", "oom_kill");
}

/* A Slurm job's memory in bytes (its variables are in MB), or 0 outside a job or without one. */
static uint64_t slurm_allocation_bytes(void)
{
    if (!getenv("SLURM_JOB_ID"))
        return 0;
    const char *per_node = getenv("SLURM_MEM_PER_NODE"), *per_cpu = getenv("SLURM_MEM_PER_CPU"),
               *cpus = getenv("SLURM_CPUS_ON_NODE");
    char *end;
    if (per_node && *per_node) {
        unsigned long long mb = strtoull(per_node, &end, 10);
        return *end == '\0' ? (uint64_t)mb << 20 : 0;
    }
    if (per_cpu && *per_cpu && cpus && *cpus) {
        unsigned long long mb = strtoull(per_cpu, &end, 10);
        if (*end != '\0')
            return 0;
        unsigned long long n = strtoull(cpus, &end, 10);
        return *end == '\0' ? (uint64_t)(mb * n) << 20 : 0;
    }
    return 0;
}

void cgroup_memory_bound(memory_bound *b)
{
    memset(b, 0, sizeof *b);
    unsigned long long kib;
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
            b->mem_total = (uint64_t)kib * 1024;
    if (f)
        fclose(f);
    cgroup_memory cg;
    if (cgroup_find("/proc/self/cgroup", "/sys/fs/cgroup", &cg) == 0)
        b->cgroup_limit = cgroup_memory_limit(&cg, b->cgroup_file, sizeof b->cgroup_file);
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        b->rlimit_as = (uint64_t)rl.rlim_cur;
    b->slurm_mem = slurm_allocation_bytes();
    b->bytes = b->mem_total;
    b->source = "MemTotal";
    if (b->cgroup_limit && (!b->bytes || b->cgroup_limit < b->bytes)) {
        b->bytes = b->cgroup_limit;
        b->source = "cgroup";
    }
    if (b->rlimit_as && (!b->bytes || b->rlimit_as < b->bytes)) {
        b->bytes = b->rlimit_as;
        b->source = "RLIMIT_AS";
    }
    if (b->slurm_mem && (!b->bytes || b->slurm_mem < b->bytes)) {
        b->bytes = b->slurm_mem;
        b->source = "Slurm allocation";
    }
}

/* ---- OOM kills around a process's life (cgroup.h) ---- */

void oom_watch_begin(oom_watch *w)
{
    memset(w, 0, sizeof *w);
    w->cgroup_before = -1;
    if (cgroup_find("/proc/self/cgroup", "/sys/fs/cgroup", &w->cg) == 0)
        w->cgroup_before = cgroup_oom_kills(&w->cg, w->file, sizeof w->file);
    w->vmstat_before = cgroup_vmstat_oom_kills();
}

bool oom_watch_end(const oom_watch *w, char *evidence, size_t size)
{
    char file[900];
    const int64_t cg = w->cgroup_before >= 0 ? cgroup_oom_kills(&w->cg, file, sizeof file) : -1;
    const int64_t vm = w->vmstat_before >= 0 ? cgroup_vmstat_oom_kills() : -1;
    if (cg > w->cgroup_before && w->cgroup_before >= 0) {
        snprintf(evidence, size, "killed by the OOM killer: oom_kill in %.250s rose from %lld to %lld "
                 "while the point ran", w->file, (long long)w->cgroup_before, (long long)cg);
        return true;
    }
    if (vm > w->vmstat_before && w->vmstat_before >= 0) {
        snprintf(evidence, size, "killed by the OOM killer: the system's oom_kill count "
                 "(/proc/vmstat) rose from %lld to %lld while the point ran",
                 (long long)w->vmstat_before, (long long)vm);
        return true;
    }
    if (w->cgroup_before < 0 && w->vmstat_before < 0)
        snprintf(evidence, size, "killed by signal 9 (SIGKILL), not sent by attnbench; cause "
                 "unknown: the kernel keeps no OOM-kill count readable here");
    else
        snprintf(evidence, size, "killed by signal 9 (SIGKILL), not sent by attnbench; cause "
                 "unknown: the kernel recorded no OOM kill meanwhile (oom_kill unchanged in "
                 "%.250s%s/proc/vmstat)", w->cgroup_before >= 0 ? w->file : "",
                 w->cgroup_before >= 0 ? " and " : "");
    return false;
}
