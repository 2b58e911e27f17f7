/* ranks.c: a ring over P MPI processes, started through mpirun and measured by each rank's own
 * pipeline (see ranks.h). */
#include "ranks.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../point/inputs.h"
#include "../sys/timing.h"

int ranks_program(char *path, size_t size)
{
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) {
        snprintf(path, size, "cannot read /proc/self/exe");
        return -1;
    }
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    snprintf(path, size, "%s/attnbench-rank", exe);
    if (access(path, X_OK) != 0) {
        snprintf(path, size, "%s/attnbench-rank was not built (MPI, libopenmpi-dev, was not "
                 "found when building: scripts/install-deps.sh installs it)", exe);
        return -1;
    }
    return 0;
}

/* The point as the rank program reads it (--point). */
static char *point_json(const point_spec *s)
{
    json_t *j = point_record_new(s, NULL, POINT_OK, NULL);
    /* not record fields: what to check and what to count */
    json_object_set_new(j, "accuracy", json_boolean(s->accuracy));
    json_object_set_new(j, "counters", json_string(s->counters ? s->counters : ""));
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return text;
}

/* Execs the launcher in the forked process, `-np ranks program args...`, its output to log
 * (NULL: inherited); never returns. */
static void exec_launcher(int ranks, const char *program, char *const *args, const char *log)
{
    /* the point's child killed (time limit): mpirun cleans up; without that promise a dead
     * point could leave its ranks running, so not launching is the safer failure */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) {
        fprintf(stderr, "attnbench: prctl(PR_SET_PDEATHSIG): %s\n", strerror(errno));
        _exit(127);
    }
    int fd = log ? open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644) : -1;
    if (log && fd < 0) {
        fprintf(stderr, "attnbench: cannot write the launcher's log %s: %s\n", log, strerror(errno));
        _exit(127);
    }
    if (fd >= 0) {
        if (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0) {
            fprintf(stderr, "attnbench: dup2 onto the launcher's log: %s\n", strerror(errno));
            _exit(127);
        }
        close(fd);
    }
    const char *env = getenv("ATTNBENCH_MPIRUN");
    char launcher[1024], np[16];
    snprintf(launcher, sizeof launcher, "%s",
             env && *env ? env : "mpirun --allow-run-as-root --oversubscribe --bind-to none");
    snprintf(np, sizeof np, "%d", ranks);
    char *argv[64];
    int argc = 0;
    for (char *save, *w = strtok_r(launcher, " \t", &save); w && argc < 50;
         w = strtok_r(NULL, " \t", &save))
        argv[argc++] = w;
    argv[argc++] = "-np", argv[argc++] = np;
    argv[argc++] = (char *)program;
    for (int i = 0; args[i] && argc < 63; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    execvp(argv[0], argv);
    fprintf(stderr, "attnbench: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int ranks_files(int ranks, const attn_params *p, int causal, int threads, const char *const *paths)
{
    char program[PATH_MAX + 128];
    if (ranks_program(program, sizeof program) != 0) {
        fprintf(stderr, "attnbench: %s\n", program);
        return 1;
    }
    static const char *const keys[9] = {"q", "k", "v", "dout", "out", "lse", "dq", "dk", "dv"};
    json_t *j = json_object(), *params = json_object();
    for (int i = 0; i < p->method->n_params; i++) {
        char val[64];
        json_object_set_new(params, p->method->params[i].name,
                            json_string(attn_param_format(p, i, val, sizeof val)));
    }
    json_object_set_new(j, "params", params);
    json_object_set_new(j, "causal", json_boolean(causal));
    json_object_set_new(j, "threads", json_integer(threads));
    for (int i = 0; i < 9; i++)
        if (paths[i])
            json_object_set_new(j, keys[i], json_string(paths[i]));
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    char *args[] = {"--files", text, NULL};
    fflush(NULL);
    const pid_t pid = fork();
    if (pid == 0)
        exec_launcher(ranks, program, args, NULL);
    free(text);
    if (pid < 0) {
        fprintf(stderr, "attnbench: cannot start the launcher: fork: %s\n", strerror(errno));
        return 1;
    }
    int wstatus = 0;
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
        fprintf(stderr, "attnbench: the %d ranks failed (%s %d); their messages are above\n",
                ranks, WIFEXITED(wstatus) ? "exit status" : "signal",
                WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : WTERMSIG(wstatus));
    return WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0 ? 0 : 1;
}

/* The first line of the launcher's log that names a dead rank, and its rank: Open MPI says
 * "process rank 1 with PID ... exited on signal 11" or "Process name: [[J,1],1]". */
static int dead_rank(const char *log, char *line, size_t size)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return -1;
    char buf[1024];
    int rank = -1;
    while (rank < 0 && fgets(buf, sizeof buf, f)) {
        const char *p;
        if ((p = strstr(buf, "process rank ")) && sscanf(p, "process rank %d", &rank) == 1) {
            buf[strcspn(buf, "\n")] = '\0';
            snprintf(line, size, "%.300s", buf);
        } else if ((p = strstr(buf, "Process name: [[")) && (p = strchr(p + 16, ']')) &&
                   sscanf(p, "],%d]", &rank) == 1) {
            snprintf(line, size, "it exited without finishing");
            char more[256];
            int code;
            const char *at;
            if (fgets(more, sizeof more, f) && (at = strstr(more, "Exit code:")) &&
                sscanf(at, "Exit code: %d", &code) == 1)
                snprintf(line, size, "it exited with status %d", code);
        }
    }
    fclose(f);
    return rank;
}

/* The last non-empty line of the log, for a failure mpirun reported without naming a rank. */
static void last_line(const char *log, char *line, size_t size)
{
    FILE *f = fopen(log, "r");
    char buf[1024];
    snprintf(line, size, "no output");
    while (f && fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\n")] = '\0';
        if (buf[strspn(buf, " \t-")])
            snprintf(line, size, "%.300s", buf);
    }
    if (f)
        fclose(f);
}

int ranks_measure(const point_spec *s, json_t *r, char *reason, size_t size)
{
    char program[PATH_MAX + 128];
    json_object_set_new(r, "peak_rss_bytes", json_null()); /* not this process's */
    if (ranks_program(program, sizeof program) != 0) {
        snprintf(reason, size, "%s", program);
        return POINT_ERROR;
    }
    char dir[PATH_MAX], record[PATH_MAX + 32], log[PATH_MAX + 32];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/attnbench-ranks-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        snprintf(reason, size, "cannot make a folder for the ranks' record: %s", strerror(errno));
        return POINT_ERROR;
    }
    snprintf(record, sizeof record, "%s/record.json", dir);
    snprintf(log, sizeof log, "%s/mpirun.log", dir);
    char *point = point_json(s);
    fflush(NULL);
    const pid_t pid = fork();
    char *args[] = {"--point", point, "--record", record, NULL};
    if (pid == 0)
        exec_launcher(s->ranks, program, args, log);
    int wstatus = 0, status = POINT_ERROR;
    if (pid < 0) {
        snprintf(reason, size, "fork() failed");
        goto done;
    }
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
        ;
    json_error_t err;
    json_t *got = json_load_file(record, 0, &err);
    if (!json_is_object(got)) { /* no record: a rank died, or the launcher failed */
        char line[512];
        const int rank = dead_rank(log, line, sizeof line);
        if (rank >= 0) {
            snprintf(reason, size, "rank %d of %d died: %s", rank, s->ranks, line);
            status = POINT_CRASHED;
        } else if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 127) {
            last_line(log, line, sizeof line);
            snprintf(reason, size, "the MPI launcher could not run: %s", line);
        } else {
            last_line(log, line, sizeof line);
            snprintf(reason, size, "the ranks ended without a record (launcher %s %d): %s",
                     WIFSIGNALED(wstatus) ? "killed by signal" : "exit status",
                     WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : WEXITSTATUS(wstatus), line);
            status = POINT_CRASHED;
        }
        json_decref(got);
        goto done;
    }
    const char *said = json_string_value(json_object_get(got, "status"));
    status = said ? point_status_parse(said) : -1;
    if (status < 0)
        status = POINT_ERROR;
    said = json_string_value(json_object_get(got, "reason"));
    if (status != POINT_OK)
        snprintf(reason, size, "%s", said ? said : "the ranks' record gives no reason");
    /* the ranks measured themselves through the one pipeline: rank 0's probes' fields, the
     * largest rank's memory, every rank's under `ranks`; the times are this side's to sum up */
    const char *key;
    json_t *value;
    json_object_foreach(got, key, value)
        if (strcmp(key, "status") && strcmp(key, "reason") && strcmp(key, "wall_s_reps"))
            json_object_set(r, key, value);
    const json_t *reps = json_object_get(got, "wall_s_reps");
    double *t = status == POINT_OK ? calloc((size_t)s->reps, sizeof *t) : NULL;
    if (status == POINT_OK && !t) {
        snprintf(reason, size, "out of memory for the ranks' %d repetition times", s->reps);
        status = POINT_ERROR;
    } else if (status == POINT_OK && json_array_size(reps) == (size_t)s->reps) {
        for (int i = 0; i < s->reps; i++)
            t[i] = json_number_value(json_array_get(reps, (size_t)i));
        point_record_times(r, s, t);
    } else if (status == POINT_OK) {
        snprintf(reason, size, "the ranks' record has %zu repetitions, not %d",
                 json_array_size(reps), s->reps);
        status = POINT_ERROR;
    }
    free(t);
    json_decref(got);
done:
    free(point);
    unlink(record);
    unlink(log);
    rmdir(dir);
    return status;
}
