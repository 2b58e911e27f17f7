/* test_cgroup.c: memory limits and OOM evidence from cgroups. The parsers are checked on fake
 * hierarchies (v1, v2, hybrid, limits on ancestors); then, where this process may create a
 * memory cgroup (root, as in CI), for real: inside a 256 MiB cgroup the default memory limit
 * comes from the cgroup (a larger point is skipped, not run), and a point forced past it is
 * killed by the kernel's OOM killer and recorded as `oom_killed` with the kernel's count as
 * evidence. */
#include "helpers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../bench/commands/options.h"
#include "../bench/point/point.h"
#include "../bench/run/run.h"
#include "../bench/sys/cgroup.h"

#define MiB (UINT64_C(1) << 20)

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void mkdir_p(const char *path)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    mkdir(buf, 0755);
}

static void test_v1_hybrid_limit_on_an_ancestor(void **state)
{
    (void)state;
    char tmp[] = "/tmp/attnbench_cg_XXXXXX";
    assert_non_null(mkdtemp(tmp));
    char dir[1024], proc[1100];
    snprintf(dir, sizeof dir, "%s/memory/slurm/uid_0/job_7", tmp);
    mkdir_p(dir);
    snprintf(proc, sizeof proc, "%s/cgroup", tmp);
    write_text(tmp, "cgroup", "9:name=systemd:/\n4:memory:/slurm/uid_0/job_7\n0::/\n");
    write_text(dir, "memory.limit_in_bytes", "9223372036854771712\n"); /* unlimited */
    write_text(dir, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
    snprintf(dir, sizeof dir, "%s/memory/slurm/uid_0", tmp);
    write_text(dir, "memory.limit_in_bytes", "4294967296\n");
    snprintf(dir, sizeof dir, "%s/memory/slurm", tmp);
    write_text(dir, "memory.limit_in_bytes", "8589934592\n");
    snprintf(dir, sizeof dir, "%s/memory", tmp);
    write_text(dir, "memory.limit_in_bytes", "9223372036854771712\n");

    cgroup_memory cg;
    assert_int_equal(cgroup_find(proc, tmp, &cg), 0);
    assert_int_equal(cg.version, 1);
    char file[900], want[1100];
    assert_int_equal(cgroup_memory_limit(&cg, file, sizeof file), UINT64_C(4) << 30);
    snprintf(want, sizeof want, "%s/memory/slurm/uid_0/memory.limit_in_bytes", tmp);
    assert_string_equal(file, want);
    assert_int_equal(cgroup_oom_kills(&cg, file, sizeof file), 3);
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    assert_int_equal(system(cmd), 0);
}

static void test_v2_unified_and_unlimited(void **state)
{
    (void)state;
    char tmp[] = "/tmp/attnbench_cg_XXXXXX";
    assert_non_null(mkdtemp(tmp));
    char dir[1024], proc[1100], file[900];
    snprintf(dir, sizeof dir, "%s/user.slice/session-1.scope", tmp);
    mkdir_p(dir);
    snprintf(proc, sizeof proc, "%s/cgroup", tmp);
    write_text(tmp, "cgroup", "0::/user.slice/session-1.scope\n");
    write_text(tmp, "cgroup.controllers", "cpuset cpu io memory pids\n");
    write_text(dir, "memory.max", "max\n");
    write_text(dir, "memory.events", "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\noom_group_kill 0\n");
    cgroup_memory cg;
    assert_int_equal(cgroup_find(proc, tmp, &cg), 0);
    assert_int_equal(cg.version, 2);
    assert_int_equal(cgroup_memory_limit(&cg, file, sizeof file), 0); /* "max" limits nothing */
    assert_int_equal(cgroup_oom_kills(&cg, file, sizeof file), 1);
    snprintf(dir, sizeof dir, "%s/user.slice", tmp);
    write_text(dir, "memory.max", "1073741824\n");
    assert_int_equal(cgroup_memory_limit(&cg, file, sizeof file), UINT64_C(1) << 30);

    /* no memory controller anywhere: no cgroup, and no limit from it */
    write_text(tmp, "cgroup.controllers", "cpu pids\n");
    assert_int_equal(cgroup_find(proc, tmp, &cg), -1);
    assert_int_equal(cg.version, 0);
    assert_int_equal(cgroup_memory_limit(&cg, file, sizeof file), 0);
    assert_int_equal(cgroup_oom_kills(&cg, file, sizeof file), -1);
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    assert_int_equal(system(cmd), 0);
}

/* RLIMIT_AS below physical memory (and any cgroup limit) is the bound, and says so. */
static void test_rlimit_as_bounds_memory(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    print_message("skipped: AddressSanitizer's shadow memory does not fit an address-space cap\n");
    skip();
#endif
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl = {.rlim_cur = 3 * 256 * MiB, .rlim_max = 3 * 256 * MiB};
        memory_bound b;
        if (setrlimit(RLIMIT_AS, &rl) != 0)
            _exit(1);
        cgroup_memory_bound(&b);
        _exit(strcmp(b.source, "RLIMIT_AS") == 0 && b.bytes == 3 * 256 * MiB &&
                      b.rlimit_as == b.bytes && b.mem_total > b.bytes ? 0 : 2);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- for real ------------------------------------------------------------------------ */

typedef struct real_cgroup {
    char dir[900];
    int version;
} real_cgroup;

/* Creates a memory cgroup with a 256 MiB limit beside (v1) or below the root of (v2) this
 * process's hierarchy. Returns 0, or -1 with the reason printed. */
static int make_real_cgroup(real_cgroup *rc)
{
    cgroup_memory cg;
    if (cgroup_find("/proc/self/cgroup", "/sys/fs/cgroup", &cg) != 0) {
        print_message("no memory cgroup here\n");
        return -1;
    }
    rc->version = cg.version;
    snprintf(rc->dir, sizeof rc->dir, "%s/attnbench-test-%d", cg.version == 1 ? cg.dir : cg.root,
             (int)getpid());
    if (mkdir(rc->dir, 0755) != 0) {
        print_message("cannot create a memory cgroup (%s: %s)\n", rc->dir, strerror(errno));
        return -1;
    }
    char limit[32];
    snprintf(limit, sizeof limit, "%llu\n", (unsigned long long)(256 * MiB));
    char path[1000];
    snprintf(path, sizeof path, "%s/%s", rc->dir,
             rc->version == 1 ? "memory.limit_in_bytes" : "memory.max");
    FILE *f = fopen(path, "w");
    int ok = f && fputs(limit, f) >= 0;
    ok = f && fclose(f) == 0 && ok;
    if (rc->version == 2) { /* no swap either, or the point would swap instead of dying */
        snprintf(path, sizeof path, "%s/memory.swap.max", rc->dir);
        if ((f = fopen(path, "w")))
            fputs("0\n", f), fclose(f);
    } else {
        snprintf(path, sizeof path, "%s/memory.memsw.limit_in_bytes", rc->dir);
        if ((f = fopen(path, "w")))
            fputs(limit, f), fclose(f);
    }
    if (!ok) {
        print_message("cannot set the cgroup's memory limit\n");
        rmdir(rc->dir);
        return -1;
    }
    return 0;
}

static void join(const real_cgroup *rc)
{
    char path[1000];
    snprintf(path, sizeof path, "%s/cgroup.procs", rc->dir);
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0)
        _exit(3);
}

/* Runs inside the cgroup: what the defaults say, a point over the limit skipped, and the same
 * point forced to run. Writes three lines to fd. */
static void inside(const real_cgroup *rc, int fd)
{
    join(rc);
    FILE *out = fdopen(fd, "w");
    memory_bound b;
    cgroup_memory_bound(&b);
    fprintf(out, "%s %llu\n", b.source, (unsigned long long)b.bytes);
    options o;
    options_default(&o);
    point_spec s = {0};
    attn_params_default(attn_find("full"), &s.params);
    s.shape = (attn_shape){.B = 1, .H = 1, .n = 12288, .d = 64}; /* 576 MiB of scores */
    s.threads = 1;
    s.reps = 1;
    s.seed = 1;
    s.counters = "";
    char reason[768] = "";
    fprintf(out, "%d %s\n", point_over_memory(&s, &o.limits, reason, sizeof reason), reason);
    json_t *ctx = json_object();
    point_limits lim = {.mem_limit = 0, .time_limit = 120, .no_skip = true};
    json_t *rec = point_run(&s, &lim, ctx);
    fprintf(out, "%s %s\n", json_string_value(json_object_get(rec, "status")),
            json_string_value(json_object_get(rec, "reason")));
    fclose(out);
    _exit(0);
}

static void test_real_cgroup_limit_and_oom_kill(void **state)
{
    (void)state;
    real_cgroup rc;
    if (getuid() != 0 || make_real_cgroup(&rc) != 0) {
        print_message("skipped: needs root and a writable memory cgroup hierarchy\n");
        skip();
    }
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        inside(&rc, fds[1]);
    }
    close(fds[1]);
    FILE *in = fdopen(fds[0], "r");
    char lines[3][1024] = {"", "", ""};
    for (int i = 0; i < 3 && fgets(lines[i], sizeof lines[i], in); i++)
        print_message("  cgroup v%d: %s", rc.version, lines[i]);
    fclose(in);
    int st;
    waitpid(pid, &st, 0);
    rmdir(rc.dir);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char source[64];
    unsigned long long bytes;
    assert_int_equal(sscanf(lines[0], "%63s %llu", source, &bytes), 2);
    assert_string_equal(source, "cgroup");
    assert_int_equal(bytes, 256 * MiB);
    /* the default limit, 80% of the cgroup's, skips the point instead of running it */
    assert_true(strncmp(lines[1], "1 ", 2) == 0);
    assert_non_null(strstr(lines[1], "80% of the cgroup limit"));
    /* forced past it, the kernel kills it, and says so */
    assert_true(strncmp(lines[2], "oom_killed ", 11) == 0);
    assert_non_null(strstr(lines[2], "oom_kill in"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_hybrid_limit_on_an_ancestor),
        cmocka_unit_test(test_v2_unified_and_unlimited),
        cmocka_unit_test(test_rlimit_as_bounds_memory),
        cmocka_unit_test(test_real_cgroup_limit_and_oom_kill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
