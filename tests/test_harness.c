/* test_harness.c: the point runner: its record, every status produced for real, point ids,
 * the input generator, and results-file reading (torn lines, foreign files). */
#include "helpers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../attn/stack.h"
#include "../bench/point/inputs.h"
#include "../bench/point/point.h"
#include "../bench/probes/probe.h"
#include "../bench/record/record.h"
#include "../bench/run/run.h"

static point_spec spec(const char *method, int64_t n)
{
    point_spec s = {0};
    attn_params_default(attn_find(method), &s.params);
    s.shape = (attn_shape){.B = 1, .H = 1, .n = n, .d = 64};
    s.threads = 2;
    s.reps = 3;
    s.warmup = 1;
    s.seed = 1;
    s.counters = "perf::PAGE-FAULTS,PAPI_TOT_CYC";
    return s;
}

static json_t *run(const point_spec *s, uint64_t mem_limit, double time_limit, bool no_skip,
                   const char *fault)
{
    point_limits lim = {.mem_limit = mem_limit, .time_limit = time_limit, .no_skip = no_skip};
    json_t *ctx = json_object();
    if (fault)
        setenv("ATTNBENCH_FAULT", fault, 1);
    json_t *rec = point_run(s, &lim, ctx);
    unsetenv("ATTNBENCH_FAULT");
    json_decref(ctx);
    return rec;
}

static const char *status(const json_t *rec)
{
    return json_string_value(json_object_get(rec, "status"));
}

static double num(const json_t *rec, const char *key)
{
    return json_number_value(json_object_get(rec, key));
}

/* A measured field of an ok point: a number (not null, which would read as 0) in [lo, hi]. */
#define assert_measured(rec, key, lo, hi) check_measured((rec), (key), (lo), (hi), __LINE__)
static void check_measured(const json_t *rec, const char *key, double lo, double hi, int line)
{
    const json_t *v = json_object_get(rec, key);
    if (!json_is_number(v))
        fail_msg("line %d: %s is %s, not a number", line, key, v ? "null" : "missing");
    const double x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        fail_msg("line %d: %s = %g is outside [%g, %g]", line, key, x, lo, hi);
}

/* The fields every record has, measured or not. */
static const char *const measured_fields[] = {
    "wall_s", "wall_s_min", "wall_s_max", "wall_s_reps", "gflops", "peak_rss_bytes",
    "rss_before_inputs_bytes", "rss_before_kernel_bytes", "ru_maxrss_bytes", "heap_peak_bytes",
    "heap_kernel_alloc_bytes", "jemalloc", "counters", "counters_unavailable", "rusage",
};

static void test_ok_record_has_every_field(void **state)
{
    (void)state;
    point_spec s = spec("full_stream", 1000);
    json_t *rec = run(&s, UINT64_C(8) << 30, 60, false, NULL);
    assert_string_equal(status(rec), "ok");
    static const char *const keys[] = {
        "method", "n", "d", "heads", "batch", "causal", "params", "status", "model_bytes",
        "model_flops", "counters", "counters_unavailable", "context", "point_id", "rusage",
        "harness",
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        assert_non_null(json_object_get(rec, keys[i]));
    /* every measured field of an ok point is a number in its range: a null reads as 0 in a
     * careless reader, so a missing measurement must fail here */
    const double model = num(rec, "model_bytes"), MiB = 0x1p20;
#if defined(__SANITIZE_ADDRESS__)
    const double own = 64 * MiB, slack = 0.25 * model + 64 * MiB; /* ASan's shadow and quarantine */
#else
    const double own = 8 * MiB, slack = 0.1 * model + 8 * MiB; /* thread stacks, BLAS, OpenMP */
#endif
    /* the model is the method's own: 4 d flops a score, n^2 scores */
    assert_measured(rec, "model_flops", 4.0 * 64 * 1000 * 1000, 4.0 * 64 * 1000 * 1000);
    /* the times are the repetitions' own: median, fastest, slowest, and gflops from them */
    const json_t *reps = json_object_get(rec, "wall_s_reps");
    assert_int_equal(json_array_size(reps), 3);
    double t[3];
    for (size_t i = 0; i < 3; i++) {
        t[i] = json_number_value(json_array_get(reps, i));
        assert_true(t[i] > 0 && t[i] < 30); /* the point's time limit */
    }
    const double lo = fmin(t[0], fmin(t[1], t[2])), hi = fmax(t[0], fmax(t[1], t[2]));
    const double mid = fmax(fmin(t[0], t[1]), fmin(fmax(t[0], t[1]), t[2]));
    assert_measured(rec, "wall_s", mid, mid);
    assert_measured(rec, "wall_s_min", lo, lo);
    assert_measured(rec, "wall_s_max", hi, hi);
    const double gflops = num(rec, "model_flops") / num(rec, "wall_s") / 1e9;
    assert_measured(rec, "gflops", gflops * (1 - 1e-12), gflops * (1 + 1e-12));
    /* memory: the harness's own pages, then the model touched, and little beyond it */
    assert_measured(rec, "rss_before_inputs_bytes", 1 * MiB, own);
    assert_measured(rec, "rss_before_kernel_bytes", num(rec, "rss_before_inputs_bytes"),
                    num(rec, "rss_before_inputs_bytes") + model + slack);
    /* the buffers are touched before the kernel runs: the peak holds the whole model */
    assert_measured(rec, "peak_rss_bytes", num(rec, "rss_before_inputs_bytes") + 0.9 * model,
                    num(rec, "rss_before_inputs_bytes") + model + slack);
    /* wait4's view of the child's whole life: its peak, read by the parent (the kernel keeps it
     * apart from VmHWM: they differ by a few pages) */
    assert_measured(rec, "ru_maxrss_bytes", 0.95 * num(rec, "peak_rss_bytes"),
                    num(rec, "peak_rss_bytes") + slack);
    const json_t *ru = json_object_get(rec, "rusage");
    assert_measured(ru, "cpu_s", 1e-7, 2 * 30); /* two threads at most, within the time limit */
    assert_measured(ru, "minor_faults", 0, 1e9);
    assert_measured(json_object_get(rec, "harness"), "probe_fraction", 0, 1);
#if !defined(__SANITIZE_ADDRESS__)
    /* the harness's own footprint before the inputs stays small (ASan's shadow pages aside) */
    assert_true(num(rec, "rss_before_inputs_bytes") < 8 << 20);
#endif
    if (probe_jemalloc_available()) {
        /* the point's buffers are its model: the heap peak sees them, plus jemalloc's
         * size-class rounding (at most 25% for these small buffers) and small JSON objects */
        assert_measured(rec, "heap_peak_bytes", model, 1.25 * model + 64 * 1024);
        /* the kernels allocate nothing inside the repetitions (on one thread, GCC's OpenMP
         * runtime allocates a team per parallel region; this point runs two) */
        assert_measured(rec, "heap_kernel_alloc_bytes", 0, 0);
        assert_true(json_is_object(json_object_get(rec, "jemalloc")));
    } else { /* sanitizer builds: no jemalloc, and the record says nothing rather than 0 */
        assert_true(json_is_null(json_object_get(rec, "heap_peak_bytes")));
        assert_true(json_is_null(json_object_get(rec, "jemalloc")));
    }
    /* a counter is either a number or null with a reason, never a silent zero */
    const json_t *counters = json_object_get(rec, "counters");
    const json_t *why = json_object_get(rec, "counters_unavailable");
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)counters, key, value)
    {
        if (json_is_null(value))
            assert_true(json_is_string(json_object_get(why, key)));
        else
            assert_true(json_is_number(value) && json_number_value(value) >= 0);
    }
    assert_int_equal(json_object_size(counters), 2);
    json_decref(rec);
}

/* The null path: a point that was not measured has every measured field null (never 0), and
 * one that failed before its repetitions has no timings. */
static void test_unmeasured_records_are_null(void **state)
{
    (void)state;
    point_spec big = spec("full", 65536);
    json_t *rec = run(&big, UINT64_C(1) << 30, 60, false, NULL);
    assert_string_equal(status(rec), "skipped");
    for (size_t i = 0; i < sizeof measured_fields / sizeof measured_fields[0]; i++) {
        const json_t *v = json_object_get(rec, measured_fields[i]);
        assert_non_null(v); /* every record has every key */
        assert_true(json_is_null(v));
    }
    assert_measured(rec, "model_bytes", 16.0 * (1 << 30), 1e12); /* the model is known */
    json_decref(rec);

    point_spec s = spec("full", 512);
    rec = run(&s, 0, 30, false, "unwritten");
    assert_string_equal(status(rec), "error");
    assert_true(json_is_null(json_object_get(rec, "wall_s")));
    assert_true(json_is_null(json_object_get(rec, "gflops")));
    json_decref(rec);
}

/* Counters whose start fails for real (the event sets already running) are null with the
 * reason in the record, not zeros. Where no event counts, there is nothing to start. */
static void test_failed_counter_start_is_null_with_reason(void **state)
{
    (void)state;
    point_spec s = spec("full_stream", 512);
    s.counters = "perf::TASK-CLOCK,perf::PAGE-FAULTS";
    json_t *rec = run(&s, 0, 30, false, NULL);
    assert_string_equal(status(rec), "ok");
    const int counting = json_is_number(json_object_get(json_object_get(rec, "counters"),
                                                        "perf::TASK-CLOCK"));
    json_decref(rec);
    if (!counting) {
        print_message("skipped: perf::TASK-CLOCK does not count here: no start to fail\n");
        skip();
    }
    rec = run(&s, 0, 30, false, "papi-busy");
    assert_string_equal(status(rec), "ok");
    const json_t *counters = json_object_get(rec, "counters");
    const json_t *why = json_object_get(rec, "counters_unavailable");
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "perf::PAGE-FAULTS" : "perf::TASK-CLOCK";
        assert_true(json_is_null(json_object_get(counters, name)));
        assert_non_null(strstr(json_string_value(json_object_get(why, name)), "PAPI_start failed"));
    }
    assert_true(num(rec, "wall_s") > 0); /* the rest of the point is measured */
    json_decref(rec);
}

/* A training point without warm-up: its one timed step still writes into poisoned outputs
 * and gradients, and is checked; the buffers were touched before it, so the step pays for no
 * first-touch page faults. */
static void test_training_step_without_warmup_is_verified(void **state)
{
    (void)state;
    point_spec s = spec("lsh", 2048);
    s.train = true;
    s.stack = STACK_REVERSIBLE;
    s.layers = 2;
    s.ff_chunk = 64;
    s.warmup = 0;
    s.reps = 1;
    json_t *rec = run(&s, 0, 60, false, NULL);
    assert_string_equal(status(rec), "ok");
    assert_measured(rec, "loss", 1e-6, 1e6);
    /* the step's own page faults: the pages were touched when the buffers were prepared */
    const double faults = json_number_value(json_object_get(json_object_get(rec, "rusage"),
                                                            "minor_faults"));
    print_message("minor faults in the timed step: %.0f (model %.0f pages)\n", faults,
                  num(rec, "model_bytes") / 4096);
    assert_true(faults < 0.1 * num(rec, "model_bytes") / 4096);
    json_decref(rec);
    rec = run(&s, 0, 60, false, "unwritten");
    assert_string_equal(status(rec), "error");
    assert_non_null(strstr(json_string_value(json_object_get(rec, "reason")), "timed repetitions"));
    json_decref(rec);
}

static void test_every_failure_status_for_real(void **state)
{
    (void)state;
    point_spec s = spec("full", 512);
    json_t *rec;

    rec = run(&s, 0, 30, false, "segv");
    assert_string_equal(status(rec), "crashed");
    assert_non_null(strstr(json_string_value(json_object_get(rec, "reason")), "signal 11"));
    json_decref(rec);

    /* a SIGKILL nobody explains is not called an OOM kill: the kernel counted none */
    rec = run(&s, 0, 30, false, "sigkill");
    assert_string_equal(status(rec), "killed");
    assert_non_null(strstr(json_string_value(json_object_get(rec, "reason")), "cause unknown"));
    json_decref(rec);

    rec = run(&s, 0, 1.0, false, "sleep");
    assert_string_equal(status(rec), "timeout");
    json_decref(rec);

    rec = run(&s, 0, 30, false, "unwritten");
    assert_string_equal(status(rec), "error");
    assert_non_null(strstr(json_string_value(json_object_get(rec, "reason")), "not written"));
    json_decref(rec);

    /* a real allocation beyond the child's capped address space (16 GiB of scores under a
     * 1 GiB limit + slack): it fails inside the child, never reaching the OOM killer.
     * AddressSanitizer builds cannot cap the address space, so they leave this one out. */
    point_spec big = spec("full", 65536);
#if !defined(__SANITIZE_ADDRESS__)
    rec = run(&big, UINT64_C(1) << 30, 60, true, NULL);
    assert_string_equal(status(rec), "alloc_failed");
    json_decref(rec);
#endif

    /* the same point without --no-skip is not run at all */
    rec = run(&big, UINT64_C(1) << 30, 60, false, NULL);
    assert_string_equal(status(rec), "skipped");
    assert_true(json_is_null(json_object_get(rec, "wall_s")));
    json_decref(rec);

    /* a real kernel killed mid-run: 4 runs of about 30 s each here against a 0.3 s limit, a
     * margin no machine closes (the "sleep" fault above is the deterministic case) */
    point_spec slow = spec("full_stream", 131072);
    rec = run(&slow, 0, 0.3, false, NULL);
    assert_string_equal(status(rec), "timeout");
    json_decref(rec);

    point_spec huge = spec("full", INT64_C(1) << 31);
    rec = run(&huge, 0, 30, false, NULL);
    assert_string_equal(status(rec), "unsupported");
    json_decref(rec);
}

/* --accuracy: the exact reference runs after the record is sent, so losing it (here: hung
 * past the time limit) keeps the measurements and says why the error is missing. */
static void test_lost_reference_keeps_the_measurements(void **state)
{
    (void)state;
    point_spec s = spec("lsh", 1024);
    s.accuracy = true;
    json_t *rec = run(&s, 0, 30, false, NULL);
    assert_string_equal(status(rec), "ok");
    const json_t *e = json_object_get(rec, "err_vs_exact");
    assert_true(json_is_number(json_object_get(e, "mean_rel")));
    assert_true(json_is_string(json_object_get(e, "reference")));
    json_decref(rec);

    rec = run(&s, 0, 1.0, false, "sleep-reference");
    assert_string_equal(status(rec), "ok");
    assert_true(num(rec, "wall_s") > 0);
    e = json_object_get(rec, "err_vs_exact");
    assert_non_null(strstr(json_string_value(json_object_get(e, "error")), "time limit"));
    json_decref(rec);
}

/* A stop request (a sweep's SIGINT/SIGTERM handler) kills the child; the point is no result. */
static void test_stop_request_discards_the_point(void **state)
{
    (void)state;
    point_spec s = spec("full_stream", 1024);
    volatile sig_atomic_t stop = 1;
    point_limits lim = {.time_limit = 30, .stop = &stop};
    json_t *ctx = json_object();
    setenv("ATTNBENCH_FAULT", "sleep", 1);
    json_t *rec = point_run(&s, &lim, ctx);
    unsetenv("ATTNBENCH_FAULT");
    assert_null(rec);
    stop = 0; /* unset, the same point is measured */
    rec = point_run(&s, &lim, ctx);
    assert_non_null(rec);
    assert_string_equal(status(rec), "ok");
    json_decref(rec);
    json_decref(ctx);
}

static void test_point_id_is_stable_and_specific(void **state)
{
    (void)state;
    char key[1024], id[17], id2[17];
    point_spec s = spec("full_stream", 4096);
    /* explicit values: the key holds every parameter, defaults included */
    assert_int_equal(attn_params_parse(&s.params, "tile_q=128"), 0);
    assert_int_equal(attn_params_parse(&s.params, "tile_k=512"), 0);
    point_key(&s, key, sizeof key);
    point_id(key, id);
    assert_string_equal(key, "method=full_stream;n=4096;d=64;heads=1;batch=1;causal=0;threads=2;"
                             "seed=1;inputs=random;accuracy=0;params=tile_q=128,tile_k=512");
    /* FNV-1a 64 of the key: a regression value, so ids stay comparable across versions */
    assert_string_equal(id, "bc74930e9911eae9");
    s.reps = 9; /* measurement settings are not identity */
    point_key(&s, key, sizeof key);
    point_id(key, id2);
    assert_string_equal(id, id2);
    s.shape.causal = true;
    point_key(&s, key, sizeof key);
    point_id(key, id2);
    assert_string_not_equal(id, id2);
}

static void test_inputs_are_counter_based(void **state)
{
    (void)state;
    /* fixed values: the committed results were measured on these inputs; a generator that
     * drifts would silently change what a point id stands for */
    float x[4], y[1000];
    inputs_normal(x, 4, 1, 1, 1.0f, 1);
    assert_float_equal(x[0], -0.89068007469177246, 0);
    assert_float_equal(x[1], 0.019773859530687332, 0);
    assert_float_equal(x[2], -0.82405012845993042, 0);
    assert_float_equal(x[3], 1.5722371339797974, 0);
    float a[1000];
    inputs_normal(a, 1000, 5, 2, 1.0f, 1);
    inputs_normal(y, 1000, 5, 2, 1.0f, 3);
    assert_memory_equal(a, y, sizeof a); /* whatever the thread count */
    double mean = 0, var = 0;
    for (int i = 0; i < 1000; i++)
        mean += a[i] / 1000.0;
    for (int i = 0; i < 1000; i++)
        var += (a[i] - mean) * (a[i] - mean) / 999.0;
    assert_true(fabs(mean) < 0.15 && fabs(var - 1) < 0.15);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_results_file_reading(void **state)
{
    (void)state;
    char path[] = "/tmp/attnbench_test_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    record_file rf;
    char err[512];
    const char *good = "{\"schema\":\"attnbench/1\",\"point_id\":\"a\"}\n"
                       "{\"schema\":\"attnbench/1\",\"point_id\":\"b\"}\n";
    write_file(path, good);
    assert_int_equal(record_file_read(path, false, &rf, err, sizeof err), 0);
    assert_int_equal(json_array_size(rf.records), 2);
    assert_int_equal(rf.torn_line, 0);
    record_file_free(&rf);

    char torn[512];
    snprintf(torn, sizeof torn, "%s{\"schema\":\"attnbench/1\",\"poi", good);
    write_file(path, torn);
    assert_int_equal(record_file_read(path, false, &rf, err, sizeof err), 0);
    assert_int_equal(json_array_size(rf.records), 2);
    assert_int_equal(rf.torn_line, 3);
    assert_int_equal(rf.good_bytes, (long)strlen(good));
    record_file_free(&rf);

    write_file(path, "name,value\n1,2\n");
    assert_int_equal(record_file_read(path, false, &rf, err, sizeof err), -1);
    assert_non_null(strstr(err, "not an attnbench results file"));

    snprintf(torn, sizeof torn, "%s{\"other\":1}\n%s", good, good);
    write_file(path, torn);
    assert_int_equal(record_file_read(path, false, &rf, err, sizeof err), -1);
    assert_non_null(strstr(err, ":3:"));
    unlink(path);
    assert_int_equal(record_file_read(path, true, &rf, err, sizeof err), 0);
    assert_int_equal(json_array_size(rf.records), 0);
    record_file_free(&rf);
    assert_int_equal(record_file_read(path, false, &rf, err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_record_has_every_field),
        cmocka_unit_test(test_unmeasured_records_are_null),
        cmocka_unit_test(test_failed_counter_start_is_null_with_reason),
        cmocka_unit_test(test_training_step_without_warmup_is_verified),
        cmocka_unit_test(test_every_failure_status_for_real),
        cmocka_unit_test(test_lost_reference_keeps_the_measurements),
        cmocka_unit_test(test_stop_request_discards_the_point),
        cmocka_unit_test(test_point_id_is_stable_and_specific),
        cmocka_unit_test(test_inputs_are_counter_based),
        cmocka_unit_test(test_results_file_reading),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
