/* probe_papi.c: PAPI counters through the low-level API (see probe.h).
 *
 * Why one event set per OpenMP thread: perf_event counters count the thread that opened
 * them, and the kernels run on an OpenMP team, so a single event set on the main thread would
 * miss the workers. libgomp keeps the same OS threads for every team of the same size, so an
 * event set opened in thread t of one parallel region counts thread t of the kernel's regions.
 *
 * Why every event is added on its own: in a VM the hardware events do not exist, and
 * component-level checks (and PAPI_query_named_event) say they do; only adding tells. Each
 * event's outcome is recorded, so a record says which counters were unavailable and why. */
#include <dirent.h>
#include <omp.h>
#include <papi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"

const char probe_papi_default_hw[] =
    "PAPI_TOT_CYC,PAPI_TOT_INS,PAPI_L1_DCM,PAPI_L2_DCM,PAPI_L3_DCM,PAPI_TLB_DM";
const char probe_papi_default_sw[] =
    "perf::TASK-CLOCK,perf::PAGE-FAULTS,perf::MINOR-FAULTS,perf::MAJOR-FAULTS";

int probe_counters_expand(const char *list, char *out, size_t size)
{
    size_t len = 0;
    out[0] = '\0';
    if (strcmp(list, "none") == 0)
        return 0;
    char sde[1024];
    size_t sl = 0;
    sde[0] = '\0';
    for (int i = 0; i < ATTN_NSTATS && sl < sizeof sde; i++) {
        char name[64];
        probe_sde_event_name(i, name, sizeof name);
        sl += (size_t)snprintf(sde + sl, sizeof sde - sl, "%s%s", i ? "," : "", name);
    }
    for (const char *s = list; *s;) {
        const size_t n = strcspn(s, ",");
        char token[128];
        if (n > 0 && n < sizeof token) {
            memcpy(token, s, n);
            token[n] = '\0';
            const char *add = strcmp(token, "hw") == 0    ? probe_papi_default_hw
                              : strcmp(token, "sw") == 0  ? probe_papi_default_sw
                              : strcmp(token, "sde") == 0 ? sde
                                                          : token;
            if (strcmp(token, "default") == 0) {
                len += (size_t)snprintf(out + len, len < size ? size - len : 0, "%s%s,%s,%s",
                                        len ? "," : "", probe_papi_default_hw,
                                        probe_papi_default_sw, sde);
            } else {
                len += (size_t)snprintf(out + len, len < size ? size - len : 0, "%s%s",
                                        len ? "," : "", add);
            }
        } else if (n >= sizeof token) {
            return -1;
        }
        s += n + (s[n] == ',');
    }
    return len > 0 && len < size ? 0 : -1;
}

static unsigned long thread_id(void)
{
    return (unsigned long)pthread_self();
}

static const char *papi_errname(int rc)
{
    static const char *const names[] = {
        "PAPI_OK",         "PAPI_EINVAL",     "PAPI_ENOMEM",   "PAPI_ESYS",
        "PAPI_ECMP",       "PAPI_ECLOST",     "PAPI_EBUG",     "PAPI_ENOEVNT",
        "PAPI_ECNFLCT",    "PAPI_ENOTRUN",    "PAPI_EISRUN",   "PAPI_ENOEVST",
        "PAPI_ENOTPRESET", "PAPI_ENOCNTR",    "PAPI_EMISC",    "PAPI_EPERM",
        "PAPI_ENOINIT",    "PAPI_ENOCMP",     "PAPI_ENOSUPP",  "PAPI_ENOIMPL",
        "PAPI_EBUF",       "PAPI_EINVAL_DOM", "PAPI_EATTR",    "PAPI_ECOUNT",
        "PAPI_ECOMBO",     "PAPI_ECMP_DISABLED", "PAPI_EDELAY_INIT", "PAPI_EMULPASS",
    };
    return rc <= 0 && -rc < (int)(sizeof names / sizeof names[0]) ? names[-rc] : "PAPI_E?";
}

static int perf_paranoid(void)
{
    int v = -99;
    FILE *f = fopen("/proc/sys/kernel/perf_event_paranoid", "r");
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = -99;
        fclose(f);
    }
    return v;
}

/* Says why an event could not be added, with what PAPI knows about the machine. */
static void explain(const probe_papi *p, const char *event, int rc, char *buf, size_t size)
{
    int hardware = strncmp(event, "perf::", 6) != 0;
    size_t len = (size_t)snprintf(buf, size, "%s: %s", papi_errname(rc), PAPI_strerror(rc));
    if (strcmp(p->perf_component, "enabled") != 0)
        len += (size_t)snprintf(buf + len, size - len, "; PAPI's perf_event component is %s",
                                p->perf_component);
    else if (rc == PAPI_ENOEVNT && hardware && p->virtualized)
        len += (size_t)snprintf(buf + len, size - len, "; no hardware performance counters");
    else if (rc == PAPI_ECNFLCT)
        len += (size_t)snprintf(buf + len, size - len,
                                "; cannot be counted together with the events added before it "
                                "(too few hardware counters); choose fewer with --counters");
    else if (rc == PAPI_EPERM)
        len += (size_t)snprintf(buf + len, size - len, "; kernel.perf_event_paranoid=%d",
                                perf_paranoid());
    if (p->virtualized && len < size)
        snprintf(buf + len, size - len, "; running in a VM (%s)", p->vm_vendor);
}

static void parse_events(probe_papi *p, const char *events)
{
    const char *s = events;
    while (*s && p->nevents < PROBE_MAX_EVENTS) {
        size_t len = strcspn(s, ",");
        if (len > 0 && len < sizeof p->events[0].name) {
            probe_papi_event *e = &p->events[p->nevents++];
            memcpy(e->name, s, len);
            e->name[len] = '\0';
            e->ok = true;
            e->process_wide = strncmp(e->name, "sde:::", 6) == 0;
        }
        s += len + (s[len] == ',');
    }
}

/* PAPI itself could not start: every event is unavailable, for the reason in init_error. */
static int every_event_failed(probe_papi *p)
{
    for (int i = 0; i < p->nevents; i++) {
        p->events[i].ok = false;
        snprintf(p->events[i].reason, sizeof p->events[i].reason, "%s", p->init_error);
    }
    return -1;
}

/* attn's own counter names: PAPI accepts any name under a registered library (it may
 * register the counter later), so a misspelt one would count 0 for ever. */
static bool attn_counter_exists(const char *event)
{
    for (int i = 0; i < ATTN_NSTATS; i++) {
        char name[64];
        probe_sde_event_name(i, name, sizeof name);
        if (strcmp(name, event) == 0)
            return true;
    }
    return false;
}

/* The software-defined events: one set, on this thread (they count a library's variables,
 * which every thread shares: a set per thread would count them once per thread). */
static void add_process_wide(probe_papi *p)
{
    int crc = PAPI_OK;
    bool created = false;
    for (int i = 0; i < p->nevents; i++) {
        probe_papi_event *e = &p->events[i];
        if (!e->process_wide)
            continue;
        if (strncmp(e->name, "sde:::attn::", 12) == 0 && !attn_counter_exists(e->name)) {
            e->ok = false;
            snprintf(e->reason, sizeof e->reason, "no such attn counter (`attnbench list --counters` "
                     "names them)");
            continue;
        }
        if (!created) {
            crc = PAPI_create_eventset(&p->sde_eventset);
            created = true;
        }
        const int rc = crc == PAPI_OK ? PAPI_add_named_event(p->sde_eventset, e->name) : crc;
        if (rc != PAPI_OK) {
            e->ok = false;
            snprintf(e->reason, sizeof e->reason, "%s: %s%s", papi_errname(rc), PAPI_strerror(rc),
                     rc == PAPI_ENOEVNT ? "; PAPI's sde component found no library of that "
                                          "name registered in this process"
                                        : "");
        }
    }
}

/* Starts the PAPI library in this process and records what it knows of the machine. Returns
 * 0, or -1 with every event unavailable for the reason. */
static int library_start(probe_papi *p)
{
    /* Test hook: ATTNBENCH_PAPI_DISABLE=perf_event,... disables PAPI components before the
     * library starts, so the path of a machine where they do not work is tested on any. */
    const char *off = getenv("ATTNBENCH_PAPI_DISABLE");
    if (off) {
        char names[256];
        snprintf(names, sizeof names, "%s", off);
        for (char *save, *c = strtok_r(names, ",", &save); c; c = strtok_r(NULL, ",", &save))
            PAPI_disable_component_by_name(c);
    }
    int rc = PAPI_library_init(PAPI_VER_CURRENT);
    if (rc != PAPI_VER_CURRENT) {
        snprintf(p->init_error, sizeof p->init_error, "PAPI_library_init: %s",
                 rc > 0 ? "version mismatch" : PAPI_strerror(rc));
        return every_event_failed(p);
    }
    if ((rc = PAPI_thread_init(thread_id)) != PAPI_OK) {
        snprintf(p->init_error, sizeof p->init_error, "PAPI_thread_init: %s", PAPI_strerror(rc));
        PAPI_shutdown();
        return every_event_failed(p);
    }
    p->initialized = true;
    int v = PAPI_get_opt(PAPI_LIB_VERSION, NULL);
    snprintf(p->version, sizeof p->version, "%d.%d.%d.%d", (int)PAPI_VERSION_MAJOR(v),
             (int)PAPI_VERSION_MINOR(v), (int)PAPI_VERSION_REVISION(v),
             (int)PAPI_VERSION_INCREMENT(v));
    const PAPI_hw_info_t *hw = PAPI_get_hardware_info();
    if (hw) {
        p->virtualized = hw->virtualized;
        snprintf(p->vm_vendor, sizeof p->vm_vendor, "%.63s", hw->virtual_vendor_string);
    }
    int cidx = PAPI_get_component_index("perf_event");
    const PAPI_component_info_t *ci = cidx >= 0 ? PAPI_get_component_info(cidx) : NULL;
    if (!ci)
        snprintf(p->perf_component, sizeof p->perf_component, "not built into this PAPI");
    else if (ci->disabled)
        snprintf(p->perf_component, sizeof p->perf_component, "disabled: %.200s",
                 ci->disabled_reason);
    else
        snprintf(p->perf_component, sizeof p->perf_component, "enabled");
    return 0;
}

/* An event stays only if every set could add it (added[t][i]: what adding it to set t
 * returned): the others are unavailable, with the reason, and removed from the sets that
 * hold them, so every set holds exactly the ok events. */
static void keep_events_every_set_has(probe_papi *p, int added[][PROBE_MAX_EVENTS])
{
    for (int i = 0; i < p->nevents; i++)
        for (int t = 0; t < p->nthreads; t++)
            if (added[t][i] != PAPI_OK && p->events[i].ok) {
                p->events[i].ok = false;
                explain(p, p->events[i].name, added[t][i], p->events[i].reason,
                        sizeof p->events[i].reason);
            }
    /* Remove events that some thread lacks, so every set holds exactly the ok events. */
    for (int t = 0; t < p->nthreads; t++)
        for (int i = 0; i < p->nevents; i++)
            if (!p->events[i].ok && added[t][i] == PAPI_OK && !p->events[i].process_wide)
                PAPI_remove_named_event(p->eventset[t], p->events[i].name);
}

int probe_papi_init(probe_papi *p, const char *events, int nthreads)
{
    memset(p, 0, sizeof *p);
    p->sde_eventset = PAPI_NULL;
    parse_events(p, events);
    p->nthreads = nthreads < PROBE_MAX_THREADS ? nthreads : PROBE_MAX_THREADS;
    if (library_start(p) != 0)
        return -1;
    add_process_wide(p);
    /* Each thread builds its own set; an event stays only if every thread could add it. */
    int added[PROBE_MAX_THREADS][PROBE_MAX_EVENTS];
#pragma omp parallel num_threads(p->nthreads)
    {
        int t = omp_get_thread_num();
        PAPI_register_thread();
        p->eventset[t] = PAPI_NULL;
        /* one thread at a time: PAPI's (libpfm4's) event-name lookup is not thread-safe, and
         * concurrent adds fail now and then with PAPI_ENOEVNT for events that exist. Each set
         * is still created and filled in its own thread, which is what perf_event binds to. */
#pragma omp critical(probe_papi_add)
        {
            int crc = PAPI_create_eventset(&p->eventset[t]);
            for (int i = 0; i < p->nevents; i++)
                added[t][i] = p->events[i].process_wide ? PAPI_OK
                              : crc == PAPI_OK
                                  ? PAPI_add_named_event(p->eventset[t], p->events[i].name)
                                  : crc;
        }
    }
    keep_events_every_set_has(p, added);
    return 0;
}

/* The thread ids of a process, from /proc/PID/task; returns how many (at most max). */
static int process_threads(pid_t pid, pid_t *tids, int max)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *e; d && n < max && (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            tids[n++] = (pid_t)atoi(e->d_name);
    if (d)
        closedir(d);
    return n;
}

int probe_papi_attach(probe_papi *p, const char *events, pid_t pid)
{
    memset(p, 0, sizeof *p);
    p->sde_eventset = PAPI_NULL;
    p->attached = true;
    parse_events(p, events);
    if (library_start(p) != 0)
        return -1;
    for (int i = 0; i < p->nevents; i++)
        if (p->events[i].process_wide) {
            p->events[i].ok = false;
            snprintf(p->events[i].reason, sizeof p->events[i].reason, "a software-defined event "
                     "counts a library inside attnbench's own process, not an external program");
        }
    const int cidx = PAPI_get_component_index("perf_event");
    pid_t tids[PROBE_MAX_THREADS];
    p->nthreads = process_threads(pid, tids, PROBE_MAX_THREADS);
    int added[PROBE_MAX_THREADS][PROBE_MAX_EVENTS];
    for (int t = 0; t < p->nthreads; t++) {
        /* a set per thread that exists now, following the threads it creates (PAPI_INHERIT) */
        PAPI_option_t opt;
        memset(&opt, 0, sizeof opt);
        p->eventset[t] = PAPI_NULL;
        const char *step = "PAPI_create_eventset";
        int rc = PAPI_create_eventset(&p->eventset[t]);
        if (rc == PAPI_OK && (step = "PAPI_assign_eventset_component(perf_event)"))
            rc = cidx >= 0 ? PAPI_assign_eventset_component(p->eventset[t], cidx) : PAPI_ENOCMP;
        if (rc == PAPI_OK && (step = "PAPI_attach"))
            rc = PAPI_attach(p->eventset[t], (unsigned long)tids[t]);
        if (rc == PAPI_OK && (step = "PAPI_set_opt(PAPI_INHERIT)")) {
            opt.inherit.eventset = p->eventset[t];
            opt.inherit.inherit = PAPI_INHERIT_ALL;
            rc = PAPI_set_opt(PAPI_INHERIT, &opt);
        }
        if (rc != PAPI_OK) { /* no event can count in this thread: say which step refused */
            for (int i = 0; i < p->nevents; i++)
                if (p->events[i].ok) {
                    p->events[i].ok = false;
                    snprintf(p->events[i].reason, sizeof p->events[i].reason,
                             "%s on the program's thread %d failed: %s: %s%s", step, (int)tids[t],
                             papi_errname(rc), PAPI_strerror(rc),
                             strcmp(step, "PAPI_attach") == 0 && p->virtualized
                                 ? "; PAPI checks an attach by opening a hardware event "
                                   "(instructions), and this VM has no hardware counters"
                                 : "");
                }
            for (int i = 0; i < p->nevents; i++)
                added[t][i] = PAPI_OK; /* nothing added: nothing to remove below */
            continue;
        }
        for (int i = 0; i < p->nevents; i++)
            added[t][i] = p->events[i].process_wide
                              ? PAPI_OK
                              : PAPI_add_named_event(p->eventset[t], p->events[i].name);
    }
    keep_events_every_set_has(p, added);
    if (p->nthreads == 0)
        for (int i = 0; i < p->nevents; i++)
            if (p->events[i].ok) {
                p->events[i].ok = false;
                snprintf(p->events[i].reason, sizeof p->events[i].reason, "the program's threads "
                         "could not be listed (/proc/%d/task)", (int)pid);
            }
    return 0;
}

/* Events of the per-thread sets (process_wide false) or of the process-wide one (true). */
static int count_ok(const probe_papi *p, bool process_wide)
{
    int k = 0;
    for (int i = 0; i < p->nevents; i++)
        k += p->events[i].ok && p->events[i].process_wide == process_wide;
    return k;
}

/* Counting failed after the events were added (PAPI_start or PAPI_stop in some thread, or of
 * the process-wide set): every event of those sets is unavailable for this point, with the
 * reason, so the record shows null and why instead of a partial or zero count. */
static void counting_failed(probe_papi *p, bool process_wide, const char *call, int thread, int rc)
{
    for (int i = 0; i < p->nevents; i++) {
        probe_papi_event *e = &p->events[i];
        if (!e->ok || e->process_wide != process_wide)
            continue;
        e->ok = false;
        e->value = 0;
        if (process_wide)
            snprintf(e->reason, sizeof e->reason, "%s of the software-defined events failed: "
                     "%s: %s; nothing counted for this point", call, papi_errname(rc),
                     PAPI_strerror(rc));
        else
            snprintf(e->reason, sizeof e->reason, "%s failed in thread %d: %s: %s; nothing "
                     "counted for this point", call, thread, papi_errname(rc), PAPI_strerror(rc));
    }
}

static int start_threads(probe_papi *p)
{
    if (count_ok(p, false) == 0)
        return 0;
    int rc[PROBE_MAX_THREADS];
    if (p->attached) /* sets attached to another process's threads start from here */
        for (int t = 0; t < p->nthreads; t++)
            rc[t] = PAPI_start(p->eventset[t]);
    else
#pragma omp parallel num_threads(p->nthreads)
        rc[omp_get_thread_num()] = PAPI_start(p->eventset[omp_get_thread_num()]);
    for (int t = 0; t < p->nthreads; t++) {
        if (rc[t] == PAPI_OK)
            continue;
        /* the threads that did start must not keep counting into a set nobody reads */
        long long discard[PROBE_MAX_EVENTS];
        if (p->attached)
            for (int u = 0; u < p->nthreads; u++) {
                if (rc[u] == PAPI_OK)
                    PAPI_stop(p->eventset[u], discard);
            }
        else
#pragma omp parallel num_threads(p->nthreads)
            if (rc[omp_get_thread_num()] == PAPI_OK)
                PAPI_stop(p->eventset[omp_get_thread_num()], discard);
        counting_failed(p, false, "PAPI_start", t, rc[t]);
        return -1;
    }
    return 0;
}

int probe_papi_start(probe_papi *p)
{
    if (!p->initialized)
        return 0;
    int failed = start_threads(p);
    if (count_ok(p, true) > 0) {
        const int rc = PAPI_start(p->sde_eventset);
        if (rc != PAPI_OK) {
            counting_failed(p, true, "PAPI_start", 0, rc);
            failed = -1;
        }
    }
    return failed;
}

int probe_papi_stop(probe_papi *p)
{
    for (int i = 0; i < p->nevents; i++)
        p->events[i].value = 0;
    if (!p->initialized)
        return 0;
    int failed = 0;
    if (count_ok(p, true) > 0) { /* the first stopped: it encloses the threads' sets */
        long long values[PROBE_MAX_EVENTS];
        const int rc = PAPI_stop(p->sde_eventset, values);
        if (rc != PAPI_OK) {
            counting_failed(p, true, "PAPI_stop", 0, rc);
            failed = -1;
        } else {
            for (int i = 0, slot = 0; i < p->nevents; i++)
                if (p->events[i].ok && p->events[i].process_wide)
                    p->events[i].value = values[slot++];
        }
    }
    if (count_ok(p, false) == 0)
        return failed;
    long long values[PROBE_MAX_THREADS][PROBE_MAX_EVENTS];
    int rc[PROBE_MAX_THREADS];
    if (p->attached)
        for (int t = 0; t < p->nthreads; t++)
            rc[t] = PAPI_stop(p->eventset[t], values[t]);
    else
#pragma omp parallel num_threads(p->nthreads)
        rc[omp_get_thread_num()] = PAPI_stop(p->eventset[omp_get_thread_num()],
                                             values[omp_get_thread_num()]);
    for (int t = 0; t < p->nthreads; t++)
        if (rc[t] != PAPI_OK) {
            counting_failed(p, false, "PAPI_stop", t, rc[t]);
            return -1;
        }
    for (int t = 0; t < p->nthreads; t++)
        for (int i = 0, slot = 0; i < p->nevents; i++)
            if (p->events[i].ok && !p->events[i].process_wide)
                p->events[i].value += values[t][slot++];
    return failed;
}

void probe_papi_free(probe_papi *p)
{
    if (!p->initialized)
        return;
    if (p->attached)
        for (int t = 0; t < p->nthreads; t++) {
            PAPI_cleanup_eventset(p->eventset[t]);
            PAPI_destroy_eventset(&p->eventset[t]);
        }
    else
#pragma omp parallel num_threads(p->nthreads)
    {
        int t = omp_get_thread_num();
        PAPI_cleanup_eventset(p->eventset[t]);
        PAPI_destroy_eventset(&p->eventset[t]);
    }
    if (p->sde_eventset != PAPI_NULL) {
        PAPI_cleanup_eventset(p->sde_eventset);
        PAPI_destroy_eventset(&p->sde_eventset);
    }
    PAPI_shutdown();
    p->initialized = false;
}

/* ---- the source: the point's counters, per repetition, and what PAPI knows of the machine -- */

typedef struct papi_state {
    probe_papi papi;
} papi_state;

static void papi_open(void *state, probe_point *pt)
{
    papi_state *st = state;
    if (!pt->pid) /* our own threads: one set each, opened before the inputs */
        probe_papi_init(&st->papi, pt->counters ? pt->counters : "", pt->threads);
}

/* Another process: sets attached to each of its threads once it is ready (its threads exist
 * by then), following the threads they create; before it may start its first run. */
static void papi_prepared(void *state, probe_point *pt)
{
    papi_state *st = state;
    if (pt->pid)
        probe_papi_attach(&st->papi, pt->counters ? pt->counters : "", pt->pid);
}

static void papi_start(void *state, probe_point *pt)
{
    (void)pt;
    papi_state *st = state;
    /* test hook: someone else started the sets first, so this start fails for real */
    const char *fault = getenv("ATTNBENCH_FAULT");
    if (fault && strcmp(fault, "papi-busy") == 0)
        probe_papi_start(&st->papi);
    probe_papi_start(&st->papi);
}

static void papi_stop(void *state, probe_point *pt)
{
    (void)pt;
    probe_papi_stop(&((papi_state *)state)->papi);
}

static json_t *papi_context(const probe_papi *p)
{
    json_t *c = json_object();
    json_object_set_new(c, "initialized", json_boolean(p->initialized));
    if (!p->initialized)
        json_object_set_new(c, "error", json_string(p->init_error));
    json_object_set_new(c, "version", p->initialized ? json_string(p->version) : json_null());
    json_object_set_new(c, "virtualized", json_boolean(p->virtualized));
    json_object_set_new(c, "vm_vendor", json_string(p->vm_vendor));
    json_object_set_new(c, "perf_event_component", json_string(p->perf_component));
    json_object_set_new(c, "threads_counted", json_integer(p->nthreads));
    return c;
}

static void papi_report(void *state, probe_point *pt, int reps)
{
    const probe_papi *p = &((papi_state *)state)->papi;
    json_t *counters = json_object(), *unavailable = json_object();
    for (int i = 0; i < p->nevents; i++) {
        const probe_papi_event *e = &p->events[i];
        json_object_set_new(counters, e->name,
                            e->ok ? json_real((double)e->value / reps) : json_null());
        if (!e->ok)
            json_object_set_new(unavailable, e->name, json_string(e->reason));
    }
    json_object_set_new(pt->record, "counters", counters);
    json_object_set_new(pt->record, "counters_unavailable", unavailable);
    /* the parent moves it into the record's context: it describes the machine */
    json_object_set_new(pt->record, "papi", papi_context(p));
}

static void papi_close(void *state)
{
    probe_papi_free(&((papi_state *)state)->papi);
}

const probe_source probe_source_papi = {
    .name = "papi",
    .state_bytes = sizeof(papi_state),
    .open = papi_open,
    .prepared = papi_prepared,
    .start = papi_start,
    .stop = papi_stop,
    .report = papi_report,
    .close = papi_close,
};
