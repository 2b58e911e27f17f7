/* test_probes.c: the measuring probes on synthetic loads of known size. Each load runs in a
 * forked child, as in the harness, so the test process's own pages never count. */
#include "helpers.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <papi.h>

#include "../bench/probes/probe.h"

#define MiB (UINT64_C(1) << 20)

/* Runs fn in a child and returns the uint64 values it wrote to the pipe. */
static void in_child(void (*fn)(int fd), uint64_t *values, int count)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        fn(fds[1]);
        _exit(0);
    }
    close(fds[1]);
    for (int i = 0; i < count; i++)
        assert_int_equal(read(fds[0], &values[i], sizeof values[i]), sizeof values[i]);
    close(fds[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void send(int fd, uint64_t v)
{
    if (write(fd, &v, sizeof v) != sizeof v)
        _exit(1);
}

/* Fresh anonymous pages, without transparent huge pages: exactly bytes / 4096 first touches. */
static char *touch_pages(uint64_t bytes)
{
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        _exit(1);
    madvise(p, bytes, MADV_NOHUGEPAGE);
    for (uint64_t i = 0; i < bytes; i += 4096)
        p[i] = 1;
    return p;
}

static void rss_load(int fd)
{
    uint64_t rss0, hwm0, rss1, hwm1;
    if (probe_rss_reset_peak() || probe_rss_read(&rss0, &hwm0))
        _exit(1);
    char *p = touch_pages(256 * MiB);
    munmap(p, 256 * MiB); /* the peak must survive the release */
    if (probe_rss_read(&rss1, &hwm1))
        _exit(1);
    send(fd, rss0);
    send(fd, hwm1);
    send(fd, rss1);
}

static void test_rss_peak_sees_256_mib(void **state)
{
    (void)state;
    uint64_t v[3];
    in_child(rss_load, v, 3);
    uint64_t before = v[0], peak = v[1], after = v[2];
    print_message("rss before %.1f MiB, peak %.1f MiB, after %.1f MiB\n",
                  (double)before / MiB, (double)peak / MiB, (double)after / MiB);
    assert_true(peak - before >= 256 * MiB - 2 * MiB);
    assert_true(peak - before <= 256 * MiB + 4 * MiB);
    assert_true(after < peak - 200 * MiB); /* and the current RSS did drop */
}

static void jemalloc_load(int fd)
{
    /* through a volatile pointer: gcc removes a malloc/memset/free triple it can see */
    void *(*volatile alloc)(size_t) = malloc;
    void (*volatile release)(void *) = free;
    uint64_t peak0 = 0, peak = 0;
    if (probe_jemalloc_peak_reset() || probe_jemalloc_peak_read(&peak0))
        _exit(1);
    char *p = alloc(64 * MiB);
    memset(p, 1, 64 * MiB);
    release(p);
    if (probe_jemalloc_peak_read(&peak))
        _exit(1);
    send(fd, peak0);
    send(fd, peak);
}

static void test_jemalloc_thread_peak_sees_64_mib(void **state)
{
    (void)state;
    if (!probe_jemalloc_available())
        skip(); /* sanitizer builds replace the allocator */
    uint64_t v[2];
    in_child(jemalloc_load, v, 2);
    print_message("thread.peak after reset %llu B, after 64 MiB written and freed %llu B\n",
                  (unsigned long long)v[0], (unsigned long long)v[1]);
    assert_true(v[0] < MiB);
    assert_true(v[1] >= 64 * MiB && v[1] <= 64 * MiB + MiB);
    probe_jemalloc_stats st;
    assert_int_equal(probe_jemalloc_read_stats(&st), 0);
    assert_true(st.active >= st.allocated && st.mapped >= st.active);
    assert_non_null(probe_jemalloc_version());
}

static void papi_load(int fd)
{
    probe_papi p;
    char events[512];
    snprintf(events, sizeof events, "%s,%s", probe_papi_default_sw, probe_papi_default_hw);
    int init = probe_papi_init(&p, events, 1);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    probe_papi_start(&p);
    touch_pages(256 * MiB);
    probe_papi_stop(&p);
    getrusage(RUSAGE_SELF, &r1);
    int enabled = init == 0 && strcmp(p.perf_component, "enabled") == 0;
    send(fd, (uint64_t)enabled);
    send(fd, (uint64_t)(r1.ru_minflt - r0.ru_minflt));
    /* per event: ok, value, and whether a reason was given when not ok */
    for (int i = 0; i < p.nevents; i++) {
        send(fd, p.events[i].ok);
        send(fd, (uint64_t)p.events[i].value);
        send(fd, p.events[i].ok || strlen(p.events[i].reason) > 10);
    }
    probe_papi_free(&p);
}

/* What each counted event must read after touching `pages` fresh pages: a counter that counts
 * has the value the work implies, which may be 0 (no major fault touches anonymous memory);
 * an unavailable one is never read at all. */
static void papi_counts_page_faults_or_says_why_not(void)
{
    enum { NEV = 10 }; /* 4 software + 6 hardware events, in that order */
    enum { TASK_CLOCK, PAGE_FAULTS, MINOR_FAULTS, MAJOR_FAULTS, TOT_CYC, TOT_INS };
    uint64_t v[2 + 3 * NEV];
    in_child(papi_load, v, 2 + 3 * NEV);
    uint64_t pages = 256 * MiB / 4096, enabled = v[0], rusage_faults = v[1];
    print_message("perf_event component %s; getrusage saw %llu minor faults for %llu pages\n",
                  enabled ? "enabled" : "disabled", (unsigned long long)rusage_faults,
                  (unsigned long long)pages);
    /* the kernel's own accounting always sees the faults (ASan adds its shadow pages' own) */
#if defined(__SANITIZE_ADDRESS__)
    const uint64_t slack = pages / 4;
#else
    const uint64_t slack = pages / 20;
#endif
    assert_true(rusage_faults >= pages && rusage_faults <= pages + slack);
    int counted = 0;
    for (int i = 0; i < NEV; i++) {
        uint64_t ok = v[2 + 3 * i], value = v[3 + 3 * i], explained = v[4 + 3 * i];
        assert_true(explained); /* an unavailable counter always says why */
        if (!ok)
            continue;
        counted++;
        print_message("  event %d counted %llu\n", i, (unsigned long long)value);
        switch (i) {
        case TASK_CLOCK: /* nanoseconds: touching 256 MiB takes well over a millisecond */
            assert_true(value > 1000000);
            break;
        case PAGE_FAULTS:
        case MINOR_FAULTS:
            assert_true(value >= pages && value <= pages + slack);
            break;
        case MAJOR_FAULTS: /* fresh anonymous pages never need I/O: 0 is the truth */
            assert_true(value <= slack);
            break;
        case TOT_CYC:
        case TOT_INS:
            assert_true(value >= pages); /* at least one per page touched */
            break;
        default: /* cache and TLB misses: any count is plausible */
            break;
        }
    }
    if (enabled) { /* where PAPI's perf_event works, every software event must count */
        for (int i = TASK_CLOCK; i <= MAJOR_FAULTS; i++)
            assert_true(v[2 + 3 * i]);
    }
    print_message("%d of %d events counted\n", counted, NEV);
}

/* ---- counters attached to another process (an external program) ------------------------ */

static void *touch_64_mib(void *arg)
{
    (void)arg;
    touch_pages(64 * MiB);
    return NULL;
}

/* The attacher: forks a "program" that waits for a go, then touches 64 MiB in a thread it
 * creates only then (so only PAPI_INHERIT can count it), and waits to be let go; attaches to
 * it, counts around the work, and sends per event ok, value and whether a reason was given. */
static void papi_attach_load(int fd)
{
    int go[2], done[2], release[2];
    if (pipe(go) || pipe(done) || pipe(release))
        _exit(1);
    pid_t pid = fork();
    if (pid < 0)
        _exit(1);
    if (pid == 0) {
        char c;
        if (read(go[0], &c, 1) != 1)
            _exit(1);
        pthread_t th;
        pthread_create(&th, NULL, touch_64_mib, NULL);
        pthread_join(th, NULL);
        if (write(done[1], "d", 1) != 1 || read(release[0], &c, 1) != 1)
            _exit(1);
        _exit(0);
    }
    probe_papi p;
    probe_papi_attach(&p, probe_papi_default_sw, pid);
    probe_papi_start(&p);
    char c;
    if (write(go[1], "g", 1) != 1 || read(done[0], &c, 1) != 1)
        _exit(1);
    probe_papi_stop(&p);
    for (int i = 0; i < p.nevents; i++) {
        send(fd, p.events[i].ok);
        send(fd, (uint64_t)p.events[i].value);
        send(fd, p.events[i].ok || strlen(p.events[i].reason) > 10);
    }
    probe_papi_free(&p);
    if (write(release[1], "r", 1) != 1)
        _exit(1);
    waitpid(pid, NULL, 0);
}

/* An external program's work, counted from outside, including a thread it starts after the
 * counters were attached; or every counter null with the reason (PAPI 7 refuses the attach
 * on a machine without hardware counters). */
static void test_papi_attached_counts_another_process_or_says_why_not(void **state)
{
    (void)state;
    enum { TASK_CLOCK, PAGE_FAULTS, MINOR_FAULTS, MAJOR_FAULTS, NEV };
    uint64_t v[3 * NEV];
    in_child(papi_attach_load, v, 3 * NEV);
    const uint64_t pages = 64 * MiB / 4096;
    for (int i = 0; i < NEV; i++) {
        uint64_t ok = v[3 * i], value = v[3 * i + 1];
        assert_true(v[3 * i + 2]); /* an unavailable counter says why */
        if (!ok)
            continue;
        print_message("  attached event %d counted %llu\n", i, (unsigned long long)value);
        if (i == TASK_CLOCK)
            assert_true(value > 1000000);
        if (i == PAGE_FAULTS || i == MINOR_FAULTS)
            assert_true(value >= pages); /* the new thread's faults are the program's */
    }
}

static void test_papi_counts_page_faults_or_says_why_not(void **state)
{
    (void)state;
    papi_counts_page_faults_or_says_why_not();
}

/* The machine where PAPI's perf_event component does not work, forced on any machine: every
 * counter is unavailable, with the component's reason, and none reads as a number. */
static void test_papi_disabled_says_why(void **state)
{
    (void)state;
    setenv("ATTNBENCH_PAPI_DISABLE", "perf_event,perf_event_uncore", 1);
    uint64_t v[2 + 3 * 10];
    in_child(papi_load, v, 2 + 3 * 10);
    unsetenv("ATTNBENCH_PAPI_DISABLE");
    assert_int_equal(v[0], 0); /* the component is not enabled */
    for (int i = 0; i < 10; i++) {
        assert_int_equal(v[2 + 3 * i], 0); /* not ok */
        assert_int_equal(v[4 + 3 * i], 1); /* with a reason */
    }
    papi_counts_page_faults_or_says_why_not(); /* and the accounting still holds */
}

/* Events added from two threads at once: PAPI's name lookup is not thread-safe, and an
 * existing software event used to come back PAPI_ENOEVNT now and then. Many inits catch it,
 * each in a fresh child as in the harness (PAPI does not survive a shutdown and a new init
 * in a process whose threads live on). Where perf_event is disabled there is nothing to race,
 * and the test says so. */
static void papi_two_thread_load(int fd)
{
    probe_papi p;
    uint64_t enabled = 0, missing = 0;
    if (probe_papi_init(&p, probe_papi_default_sw, 2) == 0) {
        enabled = strcmp(p.perf_component, "enabled") == 0;
        for (int i = 0; i < p.nevents && enabled; i++)
            missing += !p.events[i].ok;
    }
    probe_papi_free(&p);
    send(fd, enabled);
    send(fd, missing);
}

static void test_papi_events_added_from_threads_all_count(void **state)
{
    (void)state;
    uint64_t missing = 0, v[2];
    int inits = 0;
    for (; inits < 40; inits++) {
        in_child(papi_two_thread_load, v, 2);
        if (!v[0]) {
            print_message("skipped: PAPI's perf_event component is disabled here: no event to add\n");
            skip();
        }
        missing += v[1];
    }
    print_message("%d inits of 2 threads, %llu software events missing\n", inits,
                  (unsigned long long)missing);
    assert_int_equal(missing, 0);
}

/* A start that fails for real (the event set is already running) leaves every event
 * unavailable with the reason, and a later stop reads nothing as 0. */
static void papi_start_fails_load(int fd)
{
    probe_papi p;
    probe_papi_init(&p, probe_papi_default_sw, 1);
    int counting = 0;
    for (int i = 0; i < p.nevents; i++)
        counting += p.events[i].ok;
    send(fd, (uint64_t)counting);
    if (!counting) {
        probe_papi_free(&p);
        return;
    }
    int busy = PAPI_start(p.eventset[0]); /* someone else started the set */
    int start = probe_papi_start(&p);
    long long discard[PROBE_MAX_EVENTS];
    if (busy == PAPI_OK)
        PAPI_stop(p.eventset[0], discard);
    int stop = probe_papi_stop(&p);
    uint64_t still_ok = 0, explained = 0;
    for (int i = 0; i < p.nevents; i++) {
        still_ok += p.events[i].ok;
        explained += strstr(p.events[i].reason, "PAPI_start failed") != NULL &&
                     strstr(p.events[i].reason, "PAPI_EISRUN") != NULL;
    }
    send(fd, (uint64_t)(start == -1));
    send(fd, (uint64_t)(stop == 0));
    send(fd, still_ok);
    send(fd, explained);
    probe_papi_free(&p);
}

static void test_papi_failed_start_makes_counters_unavailable(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        papi_start_fails_load(fds[1]);
        _exit(0);
    }
    close(fds[1]);
    uint64_t counting = 0, v[4];
    assert_int_equal(read(fds[0], &counting, sizeof counting), sizeof counting);
    if (counting) {
        for (int i = 0; i < 4; i++)
            assert_int_equal(read(fds[0], &v[i], sizeof v[i]), sizeof v[i]);
    }
    close(fds[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!counting) {
        print_message("skipped: no PAPI event counts here: a start cannot fail\n");
        skip();
    }
    assert_true(v[0]);                  /* the start said it failed */
    assert_true(v[1]);                  /* the stop had nothing to stop */
    assert_int_equal(v[2], 0);          /* no event is left claiming a value */
    assert_int_equal(v[3], counting);   /* each says why */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rss_peak_sees_256_mib),
        cmocka_unit_test(test_jemalloc_thread_peak_sees_64_mib),
        cmocka_unit_test(test_papi_counts_page_faults_or_says_why_not),
        cmocka_unit_test(test_papi_disabled_says_why),
        cmocka_unit_test(test_papi_events_added_from_threads_all_count),
        cmocka_unit_test(test_papi_failed_start_makes_counters_unavailable),
        cmocka_unit_test(test_papi_attached_counts_another_process_or_says_why_not),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
