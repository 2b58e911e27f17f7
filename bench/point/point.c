/* point.c: a point's identity (its key and id), its cost model, its record before anything is
 * measured, and the fields every kind of workload sets the same way (the repetitions' times);
 * see point.h. Running it is run/run.c's. */
#include "point.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../record/record.h"
#include "../sys/timing.h"
#include "inputs.h"
#include "workload.h"

const char *point_status_name(int status)
{
    static const char *const names[] = {
#define POINT_STATUS_NAME(name, text) text,
        POINT_STATUSES(POINT_STATUS_NAME)
#undef POINT_STATUS_NAME
    };
    return status >= 0 && status < POINT_NSTATUS ? names[status] : "error";
}

int point_status_parse(const char *name)
{
    for (int i = 0; i < POINT_NSTATUS; i++)
        if (strcmp(point_status_name(i), name) == 0)
            return i;
    return -1;
}

void point_key(const point_spec *s, char *buf, size_t size)
{
    const attn_method *m = s->params.method;
    int len = snprintf(buf, size,
                       "method=%s;n=%lld;d=%lld;heads=%lld;batch=%lld;causal=%d;threads=%d;"
                       "seed=%llu;inputs=%s;accuracy=%d;params=",
                       s->external ? s->label : m->name, (long long)s->shape.n, (long long)s->shape.d,
                       (long long)s->shape.H, (long long)s->shape.B, s->shape.causal,
                       s->threads, (unsigned long long)s->seed, inputs_name(s->inputs),
                       s->accuracy);
    for (int i = 0; i < m->n_params && len > 0 && (size_t)len < size; i++) {
        char val[64];
        len += snprintf(buf + len, size - (size_t)len, "%s%s=%s", i ? "," : "",
                        m->params[i].name, attn_param_format(&s->params, i, val, sizeof val));
    }
    if (s->backward && len > 0 && (size_t)len < size) /* so do forward-only points */
        len += snprintf(buf + len, size - (size_t)len, ";backward=1");
    if (s->ranks > 0 && len > 0 && (size_t)len < size) /* and points in one process */
        len += snprintf(buf + len, size - (size_t)len, ";ranks=%d", s->ranks);
    if (s->shape.dtype != ATTN_FP32 && len > 0 && (size_t)len < size) /* and fp32 points */
        len += snprintf(buf + len, size - (size_t)len, ";dtype=%s", attn_dtype_name(s->shape.dtype));
    /* a training point adds its stack (attention points keep the keys they always had) */
    if (s->train && len > 0 && (size_t)len < size)
        snprintf(buf + len, size - (size_t)len, ";train=%s;layers=%d;d_ff=%lld;ff_chunk=%lld%s%s",
                 stack_kind_name(s->stack), s->layers,
                 (long long)s->d_ff, (long long)s->ff_chunk, s->label ? ";label=" : "",
                 s->label ? s->label : "");
}

void point_id(const char *key, char id[17])
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    snprintf(id, 17, "%016llx", (unsigned long long)h);
}

int point_model_of(const point_spec *s, point_model *m, const char **why)
{
    return workload_model(s, m, why);
}

/* The measured fields, in record order; all null until measured. */
static const char *const measured_keys[] = {
    "wall_s", "wall_s_min", "wall_s_max", "wall_s_reps", "gflops", "peak_rss_bytes",
    "rss_before_inputs_bytes", "rss_before_kernel_bytes", "rss_file_growth_bytes",
    "ru_maxrss_bytes", "heap_peak_bytes",
    "heap_kernel_alloc_bytes", "jemalloc", "counters", "counters_unavailable", "rusage",
    "err_vs_exact", "err_vs_fp32", "loss", "work",
    "harness", "unavailable", "peer", "ranks", "machine_load", "quiet_wait", "attempts",
    "capacity", /* set by capacity --verify: what it predicted for this point */
};

json_t *point_record_new(const point_spec *s, const json_t *context, int status,
                         const char *reason)
{
    char key[1024], id[17];
    point_key(s, key, sizeof key);
    point_id(key, id);
    const attn_method *m = s->params.method;
    json_t *r = json_object();
    json_object_set_new(r, "schema", json_string(RECORD_SCHEMA));
    json_object_set_new(r, "point_id", json_string(id));
    json_object_set_new(r, "point_key", json_string(key));
    json_object_set_new(r, "method", json_string(s->label ? s->label : m->name));
    /* an external program: the attnbench method whose parameters and model it carries */
    json_object_set_new(r, "implements", s->external ? json_string(m->name) : json_null());
    json_object_set_new(r, "params", record_params(&s->params));
    json_object_set_new(r, "n", json_integer(s->shape.n));
    json_object_set_new(r, "d", json_integer(s->shape.d));
    json_object_set_new(r, "heads", json_integer(s->shape.H));
    json_object_set_new(r, "batch", json_integer(s->shape.B));
    json_object_set_new(r, "causal", json_boolean(s->shape.causal));
    json_object_set_new(r, "dtype", json_string(attn_dtype_name(s->shape.dtype)));
    json_object_set_new(r, "threads", json_integer(s->threads));
    json_object_set_new(r, "reps", json_integer(s->reps));
    json_object_set_new(r, "warmup", json_integer(s->warmup));
    json_object_set_new(r, "seed", json_integer((json_int_t)s->seed));
    json_object_set_new(r, "inputs", json_string(inputs_name(s->inputs)));
    json_object_set_new(r, "backward", json_boolean(s->backward));
    json_object_set_new(r, "status", json_string(point_status_name(status)));
    json_object_set_new(r, "reason", reason ? json_string(reason) : json_null());

    /* the training step's stack (null for an attention forward) */
    point_model pm;
    const char *why;
    const int ok = point_model_of(s, &pm, &why) == 0;
    const int64_t D = s->shape.H * s->shape.d;
    json_object_set_new(r, "stack", s->train ? json_string(stack_kind_name(s->stack)) : json_null());
    json_object_set_new(r, "inner", s->train ? json_string(m->name) : json_null());
    json_object_set_new(r, "layers", s->train ? json_integer(s->layers) : json_null());
    json_object_set_new(r, "d_model", s->train ? json_integer(D) : json_null());
    json_object_set_new(r, "d_ff", s->train && ok ? json_integer(pm.d_ff) : json_null());
    json_object_set_new(r, "ff_chunk", s->train ? json_integer(s->ff_chunk) : json_null());
    json_object_set_new(r, "param_bytes", s->train && ok ? json_integer((json_int_t)pm.param_bytes)
                                                         : json_null());
    json_object_set_new(r, "model_activation_bytes",
                        s->train && ok ? json_integer((json_int_t)pm.activation_bytes) : json_null());
    json_object_set_new(r, "model_flops", ok ? json_real(pm.flops) : json_null());
    json_object_set_new(r, "model_recompute_flops",
                        s->train && ok ? json_real(pm.recompute_flops) : json_null());
    json_object_set_new(r, "model_bytes", ok ? json_integer((json_int_t)pm.bytes) : json_null());
    json_object_set_new(r, "model_io_bytes", ok ? json_integer((json_int_t)pm.io_bytes) : json_null());
    json_object_set_new(r, "model_workspace_bytes",
                        ok ? json_integer((json_int_t)pm.workspace_bytes) : json_null());
    for (size_t i = 0; i < sizeof measured_keys / sizeof measured_keys[0]; i++)
        json_object_set_new(r, measured_keys[i], json_null());
    json_object_set(r, "context", (json_t *)context);
    return r;
}

/* Our own kernels in this process, as the pipeline's driver (measure.h): the buffers
 * allocated and touched before anything is timed, warm-up runs on poisoned outputs checked,
 * the repetitions on poisoned outputs checked after. */
typedef struct own_run {
    const point_spec *s;
    workload w;
    void *inflated; /* the inflate:PCT fault's extra memory */
} own_run;

void point_record_times(json_t *r, const point_spec *s, const double *times)
{
    json_t *all = json_array();
    double sorted_small[64], median, min, max;
    double *sorted = s->reps <= 64 ? sorted_small : malloc((size_t)s->reps * sizeof *sorted);
    for (int i = 0; i < s->reps; i++)
        json_array_append_new(all, json_real(times[i]));
    json_object_set_new(r, "wall_s_reps", all); /* in run order; the summary sorts a copy */
    if (!sorted) { /* --reps is at most 1000: a few KiB that did not come */
        json_object_set_new(r, "wall_s", json_null());
        return;
    }
    memcpy(sorted, times, (size_t)s->reps * sizeof *sorted);
    timing_summary(sorted, s->reps, &median, &min, &max);
    if (sorted != sorted_small)
        free(sorted);
    json_object_set_new(r, "wall_s", json_real(median));
    json_object_set_new(r, "wall_s_min", json_real(min));
    json_object_set_new(r, "wall_s_max", json_real(max));
    point_model pm;
    const char *why;
    if (point_model_of(s, &pm, &why) == 0)
        json_object_set_new(r, "gflops", json_real(pm.flops / median / 1e9));
}

int point_over_memory(const point_spec *s, const point_limits *lim, char *buf, size_t size)
{
    point_model m;
    const char *why;
    if (point_model_of(s, &m, &why) != 0 || !lim->mem_limit || lim->no_skip)
        return 0;
    /* ranks started here by mpirun share this machine: each is at most the largest */
    const uint64_t model = m.bytes * (uint64_t)(s->ranks > 0 ? s->ranks : 1);
    /* calibrated (capacity --verify): the peak RSS the measured records predict */
    const double need = lim->mem_ratio > 0 ? lim->mem_base + lim->mem_ratio * (double)model
                                           : (double)model;
    if (need <= (double)lim->mem_limit)
        return 0;
    char what[160];
    if (lim->mem_ratio > 0)
        snprintf(what, sizeof what, "predicted peak RSS %.0f bytes (%.3f GiB: %.1f MiB + %.4f x "
                 "the model's %.3f GiB)", need, need / 0x1p30, lim->mem_base / 0x1p20,
                 lim->mem_ratio, (double)model / 0x1p30);
    else
        snprintf(what, sizeof what, "model needs %llu bytes (%.2f GiB%s)",
                 (unsigned long long)model, (double)model / 0x1p30,
                 s->ranks > 0 ? " over all ranks" : "");
    snprintf(buf, size, "%s, more than the memory limit of %.2f GiB%s%s%s", what,
             (double)lim->mem_limit / 0x1p30, lim->mem_limit_source[0] ? " (" : "",
             lim->mem_limit_source, lim->mem_limit_source[0] ? ")" : "");
    return 1;
}

int point_fault(const char *name)
{
    const char *f = getenv("ATTNBENCH_FAULT");
    return f && strcmp(f, name) == 0;
}
