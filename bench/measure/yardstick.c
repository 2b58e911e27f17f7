/* yardstick.c: the sgemm yardstick (see yardstick.h). */
#include "yardstick.h"

#include <cblas.h>
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../point/inputs.h"
#include "../sys/blas_env.h"
#include "../sys/timing.h"

int yardstick_sgemm(int64_t n, int threads, int reps, yardstick *y)
{
    const size_t count = (size_t)(n * n);
    float *a = malloc(count * sizeof *a), *b = malloc(count * sizeof *b),
          *c = malloc(count * sizeof *c);
    double *times = malloc((size_t)reps * sizeof *times);
    if (!a || !b || !c || !times) {
        free(a), free(b), free(c), free(times);
        return -1;
    }
    inputs_normal(a, count, 1, 1, 1.0f, threads);
    inputs_normal(b, count, 1, 2, 1.0f, threads);
    omp_set_num_threads(threads); /* the OpenMP OpenBLAS sizes its team from this */
    const int in = (int)n;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, in, in, in, 1, a, in, b, in, 0, c, in);
    for (int r = 0; r < reps; r++) {
        const double t = timing_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, in, in, in, 1, a, in, b, in, 0, c,
                    in);
        times[r] = timing_now() - t;
    }
    double median, best, worst;
    timing_summary(times, reps, &median, &best, &worst);
    const double flops = 2.0 * (double)n * (double)n * (double)n;
    *y = (yardstick){.n = n, .threads = threads, .reps = reps,
                     .gflops_median = flops / median / 1e9, .gflops_best = flops / best / 1e9};
    free(a), free(b), free(c), free(times);
    return 0;
}

json_t *yardstick_json(const yardstick *y)
{
    json_t *j = json_object();
    json_object_set_new(j, "n", json_integer(y->n));
    json_object_set_new(j, "threads", json_integer(y->threads));
    json_object_set_new(j, "reps", json_integer(y->reps));
    json_object_set_new(j, "gflops_median", json_real(y->gflops_median));
    json_object_set_new(j, "gflops_best", json_real(y->gflops_best));
    json_object_set_new(j, "openblas_core", json_string(blas_env_corename()));
    json_object_set_new(j, "openblas_core_source", json_string(blas_env_coretype_source()));
    return j;
}

/* The child: every thread count's yardstick as one JSON line on fd. */
static _Noreturn void measure_child(int fd, const int *threads, int count)
{
    json_t *list = json_array();
    for (int i = 0; i < count; i++) {
        yardstick y;
        if (yardstick_sgemm(YARDSTICK_N, threads[i], YARDSTICK_REPS, &y) != 0)
            _exit(2);
        json_array_append_new(list, yardstick_json(&y));
    }
    char *text = json_dumps(list, JSON_COMPACT);
    const size_t len = text ? strlen(text) : 0;
    size_t done = 0;
    while (done < len) {
        const ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            _exit(3);
        done += (size_t)w;
    }
    _exit(text ? 0 : 4);
}

json_t *yardstick_measure_apart(const int *threads, int count, char *why, size_t size)
{
    int fds[2];
    if (pipe(fds) != 0) {
        snprintf(why, size, "pipe: %s", strerror(errno));
        return NULL;
    }
    fflush(NULL);
    const pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, size, "fork: %s", strerror(errno));
        close(fds[0]), close(fds[1]);
        return NULL;
    }
    if (pid == 0) {
        close(fds[0]);
        measure_child(fds[1], threads, count);
    }
    close(fds[1]);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (ssize_t r = 1; buf && r != 0;) {
        if (len + 1024 > cap) {
            char *grown = realloc(buf, cap *= 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
        }
        r = read(fds[0], buf + len, cap - len - 1);
        if (r < 0 && errno != EINTR)
            break;
        len += r > 0 ? (size_t)r : 0;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    json_t *list = NULL;
    if (buf && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        buf[len] = '\0';
        list = json_loads(buf, 0, NULL);
    }
    free(buf);
    if (!json_is_array(list)) {
        json_decref(list);
        snprintf(why, size, "the sgemm child %s %d",
                 WIFSIGNALED(status) ? "died of signal" : "exited with status",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        return NULL;
    }
    return json_pack("{s:o}", "sgemm", list);
}
