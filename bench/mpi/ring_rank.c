/* ring_rank.c: build/attnbench-rank, one rank of a `ring` point, started P times by mpirun
 * (bench/launch/ranks.c execs it; never run by hand). The only code of attnbench that links MPI: the
 * harness itself never initializes MPI, so it may go on forking points.
 *
 *   attnbench-rank --point JSON --record FILE
 *
 * JSON is the point: its record before measurement (point_record_new: "n", "d", "heads",
 * "batch", "causal", "threads", "seed", "reps", "warmup", "inputs", "backward", "params": {..},
 * the rest ignored here) and "accuracy". Every rank generates its own
 * rows of the inputs from the seed (the values they have in the whole tensors), resets its
 * VmHWM, runs the warm-up (outputs poisoned, then checked), then the timed repetitions, each
 * started together after a barrier and timed as the slowest rank's; it counts the bytes it sent
 * and the time it waited for blocks. Rank 0 gathers every rank's numbers and writes one JSON
 * object to FILE: the measured fields of the point's record (bench/launch/ranks.c adds them to it).
 * With "accuracy", rank 0 also gathers the outputs and compares them with full_stream's on the
 * whole inputs (after the measured region). Exit status 0 when FILE was written.
 *
 *   attnbench-rank --files JSON
 *
 * is `attnbench forward|backward --ranks P` (bench/cmd_attn.c checked the files first): JSON
 * gives the method's parameters, causal, threads and the paths {"q", "k", "v", "dout", "out",
 * "lse", "dq", "dk", "dv"} (dout and the gradients for backward). Each rank takes its rows of
 * the .npy inputs, the ring runs, and rank 0 gathers the rows and writes the outputs; one line
 * on stderr and exit status 1 on a failure. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "../../attn/ring.h"
#include "../measure/measure.h"
#include "../point/accuracy.h"
#include "../point/inputs.h"
#include "../point/point.h"
#include "../point/workload.h"
#include "../sys/npy.h"
#include "../sys/timing.h"

/* Under AddressSanitizer (make asan): Open MPI keeps allocations until exit, many of them in
 * plugins it has unloaded by then (unnamed frames, so no suppression can name them), and
 * LeakSanitizer would fail every rank. Leak checking is off in this program only: the ring's
 * code is leak-checked in test_ring, and the harness in every other test. */
#if defined(__SANITIZE_ADDRESS__)
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}
#endif

/* ---- the exchange, over MPI ---------------------------------------------------------- */

typedef struct mpi_ring {
    MPI_Comm comm;
    int rank, ranks;
    MPI_Request req[ATTN_RING_CHANNELS][2];
    double wait_s, sent_bytes; /* since the last reset */
} mpi_ring;

static int mpi_shift(void *ctx, int chan, const void *send, size_t send_bytes, void *recv,
                     size_t recv_bytes)
{
    mpi_ring *x = ctx;
    const int next = (x->rank + 1) % x->ranks, prev = (x->rank + x->ranks - 1) % x->ranks;
    /* in 2-byte units, which fp32 and bf16 blocks both are whole numbers of, so that sender
     * and receiver always agree on the type */
    if (send_bytes / 2 > INT32_MAX || recv_bytes / 2 > INT32_MAX)
        return -1; /* one message per block: a count MPI takes as an int */
    if (MPI_Irecv(recv, (int)(recv_bytes / 2), MPI_UINT16_T, prev, chan, x->comm,
                  &x->req[chan][0]) != MPI_SUCCESS ||
        MPI_Isend(send, (int)(send_bytes / 2), MPI_UINT16_T, next, chan, x->comm,
                  &x->req[chan][1]) != MPI_SUCCESS)
        return -1;
    x->sent_bytes += (double)send_bytes;
    return 0;
}

static int mpi_wait(void *ctx, int chan)
{
    mpi_ring *x = ctx;
    const double t0 = timing_now();
    const int rc = MPI_Waitall(2, x->req[chan], MPI_STATUSES_IGNORE);
    x->wait_s += timing_now() - t0;
    return rc != MPI_SUCCESS;
}

/* Lets the transfers in flight move: Open MPI advances a large message only inside its calls
 * (the shared-memory transport copies it when the receiver polls), so without this the copy
 * would wait for mpi_wait instead of running under the compute. */
static void mpi_progress(void *ctx)
{
    mpi_ring *x = ctx;
    int done;
    for (int chan = 0; chan < ATTN_RING_CHANNELS; chan++)
        MPI_Testall(2, x->req[chan], &done, MPI_STATUSES_IGNORE);
}

/* ---- the point ---------------------------------------------------------------------- */

typedef struct rank_point {
    point_spec s;
    char counters[1024]; /* s.counters points here */
    attn_ring_part part;
    attn_ring_cost cost;
    void *q, *k, *v, *out, *dout, *dq, *dk, *dv; /* the point's dtype */
    float *lse;
    void *work;
    size_t elems, rows; /* this rank's */
    attn_stats *stats;  /* the probes' work counters, or NULL */
} rank_point;

static int parse_point(const char *text, point_spec *s, char *counters, size_t counters_size,
                       char *why, size_t size)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (!json_is_object(j)) {
        snprintf(why, size, "--point is not a JSON object: %s", err.text);
        json_decref(j);
        return -1;
    }
    memset(s, 0, sizeof *s);
    attn_params_default(attn_find("ring"), &s->params);
    s->shape = (attn_shape){
        .n = json_integer_value(json_object_get(j, "n")),
        .d = json_integer_value(json_object_get(j, "d")),
        .H = json_integer_value(json_object_get(j, "heads")),
        .B = json_integer_value(json_object_get(j, "batch")),
        .causal = json_is_true(json_object_get(j, "causal"))};
    const char *dtype = json_string_value(json_object_get(j, "dtype"));
    if (dtype && attn_dtype_parse(dtype, &s->shape.dtype) != 0) {
        snprintf(why, size, "dtype '%s'", dtype);
        json_decref(j);
        return -1;
    }
    s->threads = (int)json_integer_value(json_object_get(j, "threads"));
    s->reps = (int)json_integer_value(json_object_get(j, "reps"));
    s->warmup = (int)json_integer_value(json_object_get(j, "warmup"));
    s->seed = (uint64_t)json_integer_value(json_object_get(j, "seed"));
    s->inputs = inputs_parse(json_is_string(json_object_get(j, "inputs"))
                                ? json_string_value(json_object_get(j, "inputs"))
                                : "random");
    s->backward = json_is_true(json_object_get(j, "backward"));
    s->accuracy = json_is_true(json_object_get(j, "accuracy"));
    const char *events = json_string_value(json_object_get(j, "counters"));
    snprintf(counters, counters_size, "%s", events ? events : "");
    s->counters = counters;
    const char *key;
    json_t *value;
    int rc = 0;
    json_object_foreach(json_object_get(j, "params"), key, value)
    {
        char text_value[64];
        if (json_is_string(value))
            snprintf(text_value, sizeof text_value, "%s", json_string_value(value));
        else
            snprintf(text_value, sizeof text_value, "%.17g", json_number_value(value));
        if (attn_params_set(&s->params, key, text_value) != 0) {
            snprintf(why, size, "parameter %s=%s", key, text_value);
            rc = -1;
        }
    }
    json_decref(j);
    const char *bad;
    if (!rc && (s->threads < 1 || s->reps < 1 || s->inputs < 0 ||
                attn_check(&s->shape, &s->params, &bad) != 0)) {
        snprintf(why, size, "the point is not one ring runs");
        rc = -1;
    }
    return rc;
}

static float *alloc_floats(size_t count)
{
    return attn_aligned_alloc((count ? count : 1) * sizeof(float));
}

/* NaN in every element, fp32 or bf16 (all bits set is a NaN in both). */
static void poison(void *x, size_t bytes)
{
    memset(x, 0xff, bytes);
}

static void *alloc_elems(size_t count, attn_dtype dtype)
{
    return attn_aligned_alloc((count ? count : 1) * attn_dtype_size(dtype));
}

/* Allocates and fills this rank's buffers, every page touched. Returns 0 or -1. */
static int prepare(rank_point *p, int ranks, int rank)
{
    const point_spec *s = &p->s;
    attn_ring_part_of(&s->shape, &s->params, ranks, rank, &p->part);
    attn_ring_cost_of(&s->shape, &s->params, ranks, rank, s->threads, &p->cost);
    p->elems = (size_t)(s->shape.B * s->shape.H * p->part.rows * s->shape.d);
    p->rows = (size_t)(s->shape.B * s->shape.H * p->part.rows);
    const attn_cost *c = &p->cost.cost; /* one workspace serves both passes in turn */
    const size_t work = s->backward && c->bwd_workspace_bytes > c->workspace_bytes
                            ? c->bwd_workspace_bytes
                            : c->workspace_bytes;
    const attn_dtype t = s->shape.dtype;
    const size_t bytes = p->elems * attn_dtype_size(t);
    p->q = alloc_elems(p->elems, t), p->k = alloc_elems(p->elems, t), p->v = alloc_elems(p->elems, t);
    p->out = alloc_elems(p->elems, t), p->lse = alloc_floats(p->rows);
    p->work = attn_aligned_alloc(work);
    if (!p->q || !p->k || !p->v || !p->out || !p->lse || !p->work)
        return -1;
    memset(p->work, 0, work);
    poison(p->out, bytes), poison(p->lse, p->rows * sizeof(float));
    const inputs_rows rows = {.chunks = p->part.chunks,
                              .start = {p->part.start[0], p->part.start[1]},
                              .len = {p->part.len[0], p->part.len[1]}};
    if (inputs_generate_rows_as(&s->shape, &rows, s->inputs, s->seed, p->q, p->k, p->v,
                                s->threads) != 0)
        return -1;
    if (s->backward) {
        p->dout = alloc_elems(p->elems, t), p->dq = alloc_elems(p->elems, t);
        p->dk = alloc_elems(p->elems, t), p->dv = alloc_elems(p->elems, t);
        if (!p->dout || !p->dq || !p->dk || !p->dv ||
            inputs_normal_rows_as(&s->shape, &rows, s->seed, 13, 1.0f, p->dout, s->threads) != 0)
            return -1;
        poison(p->dq, bytes), poison(p->dk, bytes), poison(p->dv, bytes);
    }
    return 0;
}

static int run_once(rank_point *p, const attn_ring_exchange *x)
{
    const point_spec *s = &p->s;
    attn_tensors t = {.q = p->q, .k = p->k, .v = p->v, .out = p->out, .lse = p->lse,
                      .stats = p->stats};
    int rc = attn_ring_forward(&s->shape, &s->params, x, &t, p->work, s->threads);
    if (rc || !s->backward)
        return rc;
    attn_grads g = {.q = p->q, .k = p->k, .v = p->v, .out = p->out, .lse = p->lse,
                    .dout = p->dout, .dq = p->dq, .dk = p->dk, .dv = p->dv,
                    .stats = p->stats};
    return attn_ring_backward(&s->shape, &s->params, x, &g, p->work, s->threads);
}

/* The first element a run left unwritten or not finite, as a sentence; "" when none. */
static void verify(const rank_point *p, char *why, size_t size)
{
    const attn_dtype t = p->s.shape.dtype;
    const struct {
        const char *name;
        const void *x;
        attn_dtype t;
        size_t count;
    } parts[] = {{"out", p->out, t, p->elems}, {"lse", p->lse, ATTN_FP32, p->rows},
                 {"dq", p->dq, t, p->dq ? p->elems : 0}, {"dk", p->dk, t, p->dk ? p->elems : 0},
                 {"dv", p->dv, t, p->dv ? p->elems : 0}};
    why[0] = '\0';
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        for (size_t e = 0; e < parts[i].count; e++) {
            const float x = attn_value(parts[i].x, parts[i].t, e);
            if (!isfinite(x) && !(parts[i].x == p->lse && x == -INFINITY)) {
                snprintf(why, size, "%s element %zu of the rank's rows is %g", parts[i].name, e,
                         (double)x);
                return;
            }
        }
}

/* Test hook: ATTNBENCH_FAULT (segv, sigkill, exit, sleep) in the rank ATTNBENCH_FAULT_RANK
 * names, once its buffers exist: a rank that dies must end the point, named. */
static void inject_fault(int rank)
{
    const char *f = getenv("ATTNBENCH_FAULT"), *r = getenv("ATTNBENCH_FAULT_RANK");
    if (!f || !r || atoi(r) != rank)
        return;
    if (strcmp(f, "segv") == 0)
        raise(SIGSEGV);
    else if (strcmp(f, "sigkill") == 0)
        raise(SIGKILL);
    else if (strcmp(f, "exit") == 0)
        _exit(3);
    else if (strcmp(f, "sleep") == 0)
        for (;;)
            pause();
}

/* Rank r's rows of a local (B, H, rows, d) tensor into rank 0's whole (B, H, n, d) one (NULL
 * on other ranks). Counts travel as ints, one chunk of one head at a time. */
static void gather_rows(const rank_point *p, int ranks, int rank, const float *local, float *whole)
{
    const point_spec *s = &p->s;
    const int64_t d = s->shape.d;
    for (int r = 0; r < ranks; r++) {
        attn_ring_part pt;
        attn_ring_part_of(&s->shape, &s->params, ranks, r, &pt);
        for (int64_t bh = 0; bh < s->shape.B * s->shape.H; bh++)
            for (int c = 0, at = 0; c < pt.chunks; at += (int)pt.len[c], c++) {
                const int count = (int)(pt.len[c] * d);
                float *dst = whole ? whole + (bh * s->shape.n + pt.start[c]) * d : NULL;
                const float *src = local + (bh * pt.rows + at) * d;
                if (r == 0 && rank == 0)
                    memcpy(dst, src, (size_t)count * sizeof(float));
                else if (rank == r)
                    MPI_Send(src, count, MPI_FLOAT, 0, 7, MPI_COMM_WORLD);
                else if (rank == 0)
                    MPI_Recv(dst, count, MPI_FLOAT, r, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            }
    }
}

/* max |got - want| / max |want| over a tensor */
static double scaled_error(const float *got, const float *want, size_t count)
{
    double err = 0, scale = 0;
    for (size_t i = 0; i < count; i++) {
        err = fmax(err, fabs((double)got[i] - (double)want[i]));
        scale = fmax(scale, fabs((double)want[i]));
    }
    return scale > 0 ? err / scale : err;
}

/* Rank 0, --accuracy: every rank's output rows into the whole output, against full_stream's on
 * the whole inputs (after the measured region); with --backward the gradients too, against
 * full_stream's backward: {"max_rel", ..., "grad": {"dq", "dk", "dv": max |err| / max |exact|}}.
 * A whole tensor past 2^31 floats is not gathered. */
static json_t *accuracy(rank_point *p, int ranks, int rank)
{
    const point_spec *s = &p->s;
    const size_t whole = attn_tensor_elems(&s->shape);
    if (whole > INT32_MAX)
        return rank == 0 ? json_pack("{s:s}", "error", "the whole output is past 2^31 floats: "
                                                       "not gathered")
                         : NULL;
    float *got[4] = {NULL};
    const void *local[4] = {p->out, p->dq, p->dk, p->dv};
    const int tensors = s->backward ? 4 : 1;
    float *wide = alloc_floats(p->elems); /* a rank's rows widened from bf16 */
    for (int i = 0; i < tensors; i++) {
        got[i] = rank == 0 ? alloc_floats(whole) : NULL;
        attn_convert(local[i], s->shape.dtype, wide, ATTN_FP32, p->elems);
        gather_rows(p, ranks, rank, wide, got[i]);
    }
    free(wide);
    json_t *e = NULL;
    if (rank == 0) {
        /* the references run in fp32 on the values the ranks computed on (bf16: rounded) */
        point_spec f32 = *s;
        f32.shape.dtype = ATTN_FP32;
        float *q = alloc_floats(whole), *k = alloc_floats(whole), *v = alloc_floats(whole);
        inputs_generate(&s->shape, s->inputs, s->seed, q, k, v, s->threads);
        float *const xs[3] = {q, k, v};
        for (int i = 0; i < 3 && s->shape.dtype == ATTN_BF16; i++)
            for (size_t j = 0; j < whole; j++)
                xs[i][j] = attn_bf16_to_f32(attn_f32_to_bf16(xs[i][j]));
        s = &f32;
        e = point_exact_error(s, q, k, v, got[0], NULL, NULL);
        if (s->backward) { /* full_stream's forward and backward on the whole inputs */
            const size_t rows = (size_t)(s->shape.B * s->shape.H * s->shape.n);
            float *out = alloc_floats(whole), *lse = alloc_floats(rows), *dout = alloc_floats(whole);
            float *g[3] = {alloc_floats(whole), alloc_floats(whole), alloc_floats(whole)};
            attn_params exact;
            attn_params_default(attn_find("full_stream"), &exact);
            inputs_normal(dout, whole, s->seed, 13, 1.0f, s->threads);
            for (size_t j = 0; j < whole && p->s.shape.dtype == ATTN_BF16; j++)
                dout[j] = attn_bf16_to_f32(attn_f32_to_bf16(dout[j]));
            attn_tensors t = {.q = q, .k = k, .v = v, .out = out, .lse = lse};
            attn_grads gr = {.q = q, .k = k, .v = v, .out = out, .lse = lse, .dout = dout,
                             .dq = g[0], .dk = g[1], .dv = g[2]};
            json_t *grad = json_object();
            if (attn_forward_alloc(&s->shape, &exact, &t, s->threads) == 0 &&
                attn_backward_alloc(&s->shape, &exact, &gr, s->threads) == 0) {
                static const char *const names[] = {"dq", "dk", "dv"};
                for (int i = 0; i < 3; i++)
                    json_object_set_new(grad, names[i], json_real(scaled_error(got[i + 1], g[i], whole)));
                json_object_set_new(grad, "metric", json_string("max |grad - exact| / max |exact|, "
                                                                "exact: full_stream's backward"));
            } else {
                json_object_set_new(grad, "error", json_string("full_stream's backward failed"));
            }
            json_object_set_new(e, "grad", grad);
            free(out), free(lse), free(dout), free(g[0]), free(g[1]), free(g[2]);
        }
        free(q), free(k), free(v);
    }
    for (int i = 0; i < tensors; i++)
        free(got[i]);
    return e;
}

/* ---- attnbench forward|backward --ranks P: .npy files in, .npy files out ------------ */

/* One rank's rows of a whole (B, H, n, d) array (width d, or 1 for the lse). */
static void take_rows(const attn_shape *s, const attn_ring_part *pt, int64_t width,
                      const float *whole, float *local)
{
    for (int64_t bh = 0; bh < s->B * s->H; bh++)
        for (int c = 0, at = 0; c < pt->chunks; at += (int)pt->len[c], c++)
            memcpy(local + (bh * pt->rows + at) * width, whole + (bh * s->n + pt->start[c]) * width,
                   (size_t)(pt->len[c] * width) * sizeof(float));
}

static int files_main(const char *text, int rank, int ranks)
{
    json_t *j = json_loads(text, 0, NULL);
    const char *path[9];
    static const char *const keys[9] = {"q", "k", "v", "dout", "out", "lse", "dq", "dk", "dv"};
    for (int i = 0; i < 9; i++)
        path[i] = json_string_value(json_object_get(j, keys[i]));
    const int backward = path[3] != NULL, threads = (int)json_integer_value(json_object_get(j, "threads"));
    attn_params p;
    attn_params_default(attn_find("ring"), &p);
    const char *key;
    json_t *value;
    json_object_foreach(json_object_get(j, "params"), key, value)
        attn_params_set(&p, key, json_string_value(value));
    npy_array in[4];
    memset(in, 0, sizeof in);
    char err[512] = "";
    int bad = 0;
    for (int i = 0; i < (backward ? 4 : 3) && !bad; i++)
        bad = !path[i] || npy_read(path[i], "<f4", &in[i], err, sizeof err) != 0;
    attn_shape s = {.B = 1, .H = 1, .causal = json_is_true(json_object_get(j, "causal"))};
    if (!bad) {
        if (in[0].ndim == 4)
            s.B = in[0].shape[0], s.H = in[0].shape[1];
        s.n = in[0].shape[in[0].ndim - 2], s.d = in[0].shape[in[0].ndim - 1];
    }
    attn_ring_part pt;
    attn_ring_cost c;
    float *local[9] = {NULL};
    void *work = NULL;
    int rc = bad ? -1 : 0;
    if (!rc) {
        attn_ring_part_of(&s, &p, ranks, rank, &pt);
        attn_ring_cost_of(&s, &p, ranks, rank, threads, &c);
        const size_t elems = (size_t)(s.B * s.H * pt.rows * s.d), rows = (size_t)(s.B * s.H * pt.rows);
        for (int i = 0; i < 9; i++)
            local[i] = alloc_floats(i == 5 ? rows : elems);
        work = attn_aligned_alloc(c.cost.bwd_workspace_bytes > c.cost.workspace_bytes
                                      ? c.cost.bwd_workspace_bytes : c.cost.workspace_bytes);
        for (int i = 0; i < (backward ? 4 : 3); i++) {
            take_rows(&s, &pt, s.d, in[i].data, local[i]);
            npy_free(&in[i]);
        }
        mpi_ring ring = {.comm = MPI_COMM_WORLD, .rank = rank, .ranks = ranks};
        for (int chan = 0; chan < ATTN_RING_CHANNELS; chan++)
            ring.req[chan][0] = ring.req[chan][1] = MPI_REQUEST_NULL;
        const attn_ring_exchange x = {.rank = rank, .ranks = ranks, .ctx = &ring, .shift = mpi_shift,
                                      .wait = mpi_wait, .progress = mpi_progress};
        attn_tensors t = {.q = local[0], .k = local[1], .v = local[2], .out = local[4], .lse = local[5]};
        rc = attn_ring_forward(&s, &p, &x, &t, work, threads);
        attn_grads g = {.q = local[0], .k = local[1], .v = local[2], .out = local[4],
                        .lse = local[5], .dout = local[3], .dq = local[6], .dk = local[7], .dv = local[8]};
        if (!rc && backward)
            rc = attn_ring_backward(&s, &p, &x, &g, work, threads);
        if (rc)
            snprintf(err, sizeof err, "rank %d: %s (%s)", rank, attn_errname(rc), attn_strerror(rc));
    }
    int all_ok, ok = rc == 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (all_ok) { /* rank 0 gathers each output and writes it */
        rank_point rp = {.s = {.params = p, .shape = s}};
        const int outputs[] = {4, 5, 6, 7, 8};
        for (size_t i = 0; i < sizeof outputs / sizeof outputs[0] && !rc; i++) {
            const int o = outputs[i];
            if (!path[o] || (o >= 6 && !backward))
                continue;
            const int64_t width = o == 5 ? 1 : s.d;
            attn_shape ws = s; /* the lse is gathered as rows of width 1 */
            ws.d = width;
            rp.s.shape = ws;
            float *whole = rank == 0 ? alloc_floats((size_t)(s.B * s.H * s.n * width)) : NULL;
            gather_rows(&rp, ranks, rank, local[o], whole);
            if (rank == 0) {
                int64_t shape[4] = {s.B, s.H, s.n, width};
                const int nd = o == 5 ? (in[0].ndim == 4 ? 3 : 1) : in[0].ndim;
                const int64_t *dims = in[0].ndim == 4 ? shape : shape + 2;
                if (npy_write(path[o], "<f4", nd, dims, whole, sizeof(float), err, sizeof err) != 0)
                    rc = -1;
            }
            free(whole);
        }
    } else if (rank == 0 && !err[0]) {
        snprintf(err, sizeof err, "another rank failed");
    }
    if (err[0] && (rank == 0 || rc))
        fprintf(stderr, "attnbench %s: %s\n", backward ? "backward" : "forward", err);
    for (int i = 0; i < 9; i++)
        free(local[i]);
    for (int i = 0; i < 4; i++)
        npy_free(&in[i]);
    free(work);
    json_decref(j);
    return rc || !all_ok ? 1 : 0;
}

static int write_record(const char *path, json_t *j)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (json_dump_file(j, tmp, JSON_COMPACT | JSON_REAL_PRECISION(17)) != 0)
        return -1;
    return rename(tmp, path);
}

/* ---- the point, measured by the one pipeline (measure.h), rank by rank ----------------- */

/* One rank as the pipeline's driver: its rows prepared, its warm-up, and the repetitions each
 * started together after a barrier and timed as the slowest rank's. Every step ends with the
 * ranks agreeing, so all of them take the same path. */
typedef struct rank_run {
    rank_point *p;
    int rank, ranks;
    mpi_ring ring;
    attn_ring_exchange x;
    double run_s; /* this rank's own time in the repetitions */
} rank_run;

/* POINT_OK when every rank ran clean (rc 0, nothing bad found); otherwise POINT_ERROR on every
 * rank, with the first failing rank's reason on rank 0 (which writes the record). */
static int agree(const rank_run *r, int rc, const char *bad, char *why, size_t size)
{
    const int failed = rc || bad[0], first = failed ? r->rank : r->ranks;
    int who;
    MPI_Allreduce(&first, &who, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (who == r->ranks)
        return POINT_OK;
    if (r->rank == who && rc)
        snprintf(why, size, "rank %d: %s (%s)", r->rank, attn_errname(rc), attn_strerror(rc));
    else if (r->rank == who)
        snprintf(why, size, "rank %d: %s: not written, or not finite on finite inputs", r->rank,
                 bad);
    if (who != 0 && r->rank == who)
        MPI_Send(why, (int)size, MPI_CHAR, 0, 9, MPI_COMM_WORLD);
    else if (who != 0 && r->rank == 0)
        MPI_Recv(why, (int)size, MPI_CHAR, who, 9, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    return POINT_ERROR;
}

static int rank_prepare(void *ctx, attn_stats *work, workload **w, char *why, size_t size)
{
    rank_run *r = ctx;
    *w = NULL;
    r->p->stats = work;
    int ok = prepare(r->p, r->ranks, r->rank) == 0, all_ok;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (all_ok)
        return POINT_OK;
    snprintf(why, size, "a rank could not allocate its %.3g GiB (model)",
             (double)r->p->cost.cost.workspace_bytes / 0x1p30);
    return POINT_ALLOC_FAILED;
}

static int rank_warmup(void *ctx, char *why, size_t size)
{
    rank_run *r = ctx;
    inject_fault(r->rank);
    int rc = 0;
    for (int i = 0; i < r->p->s.warmup && !rc; i++)
        rc = run_once(r->p, &r->x);
    char bad[256] = "";
    if (!rc && r->p->s.warmup > 0)
        verify(r->p, bad, sizeof bad);
    return agree(r, rc, bad, why, size);
}

static int rank_repeat(void *ctx, double *times, char *why, size_t size)
{
    rank_run *r = ctx;
    r->ring.wait_s = r->ring.sent_bytes = 0;
    int rc = 0;
    for (int i = 0; i < r->p->s.reps; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = timing_now();
        rc = run_once(r->p, &r->x);
        const double mine[2] = {timing_now() - t0, rc ? 1 : 0};
        double all[2];
        r->run_s += mine[0];
        MPI_Allreduce(mine, all, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        times[i] = all[0]; /* the slowest rank's */
        if (all[1] > 0)
            break; /* every rank stops together */
    }
    return agree(r, rc, "", why, size);
}

static int rank_finish(void *ctx, int status, json_t *record, char *why, size_t size)
{
    (void)record;
    rank_run *r = ctx;
    if (status != POINT_OK) /* the same on every rank: they agreed at each step */
        return status;
    char bad[256] = "";
    verify(r->p, bad, sizeof bad);
    return agree(r, 0, bad, why, size);
}

/* What each rank measured, gathered on rank 0: fixed slots of doubles. */
enum { M_ROWS, M_PEAK, M_RSS_INPUTS, M_RSS_KERNEL, M_SENT, M_MODEL_SENT, M_WAIT, M_RUN,
       M_MODEL_BYTES, M_SCORES, M_FIELDS };

static json_t *rank_json(int r, const double *m)
{
    json_t *j = json_object();
    json_object_set_new(j, "rank", json_integer(r));
    json_object_set_new(j, "rows", json_integer((json_int_t)m[M_ROWS]));
    json_object_set_new(j, "peak_rss_bytes", m[M_PEAK] > 0 ? json_integer((json_int_t)m[M_PEAK]) : json_null());
    json_object_set_new(j, "rss_before_inputs_bytes", json_integer((json_int_t)m[M_RSS_INPUTS]));
    json_object_set_new(j, "rss_before_kernel_bytes", json_integer((json_int_t)m[M_RSS_KERNEL]));
    json_object_set_new(j, "model_bytes", json_integer((json_int_t)m[M_MODEL_BYTES]));
    json_object_set_new(j, "bytes_sent", json_real(m[M_SENT]));
    json_object_set_new(j, "model_bytes_sent", json_real(m[M_MODEL_SENT]));
    json_object_set_new(j, "wait_s", json_real(m[M_WAIT]));
    json_object_set_new(j, "wait_share", json_real(m[M_RUN] > 0 ? m[M_WAIT] / m[M_RUN] : 0));
    json_object_set_new(j, "scores", json_real(m[M_SCORES]));
    return j;
}

/* A number of this rank's record (its probes'), or 0. */
static double field(const json_t *rec, const char *key)
{
    const json_t *v = json_object_get(rec, key);
    return json_is_number(v) ? json_number_value(v) : 0;
}

/* Every rank's record (its probes' fields) on rank 0, in rank order; NULL elsewhere. */
static json_t *gather_records(const json_t *mine, int rank, int ranks)
{
    char *text = json_dumps(mine, JSON_COMPACT | JSON_REAL_PRECISION(17));
    int len = text ? (int)strlen(text) + 1 : 1;
    int *lens = rank == 0 ? calloc((size_t)ranks, sizeof *lens) : NULL;
    MPI_Gather(&len, 1, MPI_INT, lens, 1, MPI_INT, 0, MPI_COMM_WORLD);
    int *at = rank == 0 ? calloc((size_t)ranks, sizeof *at) : NULL;
    size_t total = 0;
    for (int r = 0; rank == 0 && lens && at && r < ranks; r++)
        at[r] = (int)total, total += (size_t)lens[r];
    char *all = rank == 0 ? malloc(total + 1) : NULL;
    MPI_Gatherv(text ? text : "", len, MPI_CHAR, all, lens, at, MPI_CHAR, 0, MPI_COMM_WORLD);
    json_t *records = NULL;
    if (rank == 0 && all && lens && at) {
        records = json_array();
        for (int r = 0; r < ranks; r++) {
            json_t *one = json_loads(all + at[r], 0, NULL);
            json_array_append_new(records, one ? one : json_object());
        }
    }
    free(text), free(lens), free(at), free(all);
    return records;
}

/* Sums the numbers of object `key` (a dotted path one level deep at most) over every rank's
 * record into out's: the work the ranks did together. */
static void sum_over_ranks(json_t *out, const json_t *records, const char *key, const char *sub)
{
    json_t *dst = json_object_get(out, key);
    if (sub)
        dst = json_object_get(dst, sub);
    if (!json_is_object(dst))
        return;
    const char *name;
    json_t *v;
    json_object_foreach(dst, name, v)
    {
        if (!json_is_number(v))
            continue;
        double total = 0;
        size_t i;
        json_t *rec;
        json_array_foreach(records, i, rec)
        {
            const json_t *o = json_object_get(rec, key);
            if (sub)
                o = json_object_get(o, sub);
            total += field(o, name);
        }
        json_object_set_new(dst, name, json_real(total));
    }
}

/* The ranks' work together: counters, the kernels' counted work and getrusage summed over the
 * ranks, and the work's ratios to the model (all ranks') made again from the sums. */
static void sum_work(json_t *out, const json_t *records, double tokens)
{
    sum_over_ranks(out, records, "counters", NULL);
    sum_over_ranks(out, records, "rusage", NULL);
    sum_over_ranks(out, records, "work", "counted");
    json_t *work = json_object_get(out, "work");
    const json_t *counted = json_object_get(work, "counted");
    const double scores = field(counted, "SCORES"), masked = field(counted, "SCORES_MASKED");
    const double model = field(work, "model_scores");
    if (!json_is_object(work))
        return;
    if (model > 0) {
        json_object_set_new(work, "scores_vs_model", json_real(scores / model));
        json_object_set_new(work, "unmasked_vs_model", json_real((scores - masked) / model));
    }
    json_object_set_new(work, "scores_per_token", json_real(scores / tokens));
}

/* Rank 0's record of the point: its own probes' fields, the largest rank's memory, every
 * rank's numbers under `ranks`, the slowest rank's times. */
static json_t *compose(json_t *mine, const json_t *records, const rank_run *r,
                       const double *times, const double *every, int status, const char *why)
{
    json_t *out = json_deep_copy(mine);
    const attn_shape *sh = &r->p->s.shape;
    if (records)
        sum_work(out, records, (double)(sh->B * sh->H * sh->n));
    json_object_set_new(out, "status", json_string(point_status_name(status)));
    json_object_set_new(out, "reason", why[0] ? json_string(why) : json_null());
    json_t *reps = json_array(), *per = json_array();
    for (int i = 0; status == POINT_OK && i < r->p->s.reps; i++)
        json_array_append_new(reps, json_real(times[i]));
    json_object_set_new(out, "wall_s_reps", reps);
    double peak = 0, sum = 0, inputs = 0, kernel = 0, sent = 0, wait = 0;
    for (int k = 0; k < r->ranks; k++) {
        const double *m = every + (size_t)k * M_FIELDS;
        json_array_append_new(per, rank_json(k, m));
        peak = fmax(peak, m[M_PEAK]), sum += m[M_PEAK];
        inputs = fmax(inputs, m[M_RSS_INPUTS]), kernel = fmax(kernel, m[M_RSS_KERNEL]);
        sent = fmax(sent, m[M_SENT]);
        wait = fmax(wait, m[M_RUN] > 0 ? m[M_WAIT] / m[M_RUN] : 0);
    }
    json_object_set_new(out, "peak_rss_bytes", json_integer((json_int_t)peak));
    json_object_set_new(out, "rss_before_inputs_bytes", json_integer((json_int_t)inputs));
    json_object_set_new(out, "rss_before_kernel_bytes", json_integer((json_int_t)kernel));
    json_t *rj = json_object();
    json_object_set_new(rj, "count", json_integer(r->ranks));
    json_object_set_new(rj, "peak_rss_bytes_max", json_integer((json_int_t)peak));
    json_object_set_new(rj, "peak_rss_bytes_sum", json_integer((json_int_t)sum));
    json_object_set_new(rj, "bytes_sent_max", json_real(sent));
    json_object_set_new(rj, "wait_share_max", json_real(wait));
    int len;
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    MPI_Get_library_version(version, &len);
    version[strcspn(version, "\n,")] = '\0';
    json_object_set_new(rj, "mpi", json_string(version));
    json_object_set_new(rj, "per_rank", per);
    json_object_set_new(out, "ranks", rj);
    return out;
}

/* Measures the point on this rank, gathers every rank's numbers, and on rank 0 writes the
 * record to `record`. Returns the exit status. */
static int point_main(const char *point_text, const char *record, int rank, int ranks)
{
    char why[512] = "";
    rank_point p;
    memset(&p, 0, sizeof p);
    int status = POINT_OK;
    const char *bad;
    if (parse_point(point_text, &p.s, p.counters, sizeof p.counters, why, sizeof why) != 0)
        status = POINT_ERROR;
    else if (attn_ring_check(&p.s.shape, &p.s.params, ranks, &bad) != 0)
        snprintf(why, sizeof why, "%s", bad), status = POINT_UNSUPPORTED;
    rank_run r = {.p = &p, .rank = rank, .ranks = ranks,
                  .ring = {.comm = MPI_COMM_WORLD, .rank = rank, .ranks = ranks}};
    for (int chan = 0; chan < ATTN_RING_CHANNELS; chan++) /* Testall on never-used requests */
        r.ring.req[chan][0] = r.ring.req[chan][1] = MPI_REQUEST_NULL;
    r.x = (attn_ring_exchange){.rank = rank, .ranks = ranks, .ctx = &r.ring,
                               .shift = mpi_shift, .wait = mpi_wait, .progress = mpi_progress};
    double *times = calloc((size_t)(p.s.reps > 0 ? p.s.reps : 1), sizeof *times);
    json_t *mine = json_object(), *harness = json_object();
    const measure_driver d = {.ctx = &r, .prepare = rank_prepare, .warmup = rank_warmup,
                              .repeat = rank_repeat, .finish = rank_finish,
                              .window_runs = p.s.reps, .siblings = true};
    if (status == POINT_OK && !times)
        snprintf(why, sizeof why, "out of memory for the repetitions' times"), status = POINT_ERROR;
    int all; /* every rank takes the same path from here */
    MPI_Allreduce(&status, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (all == POINT_OK)
        status = measure_point(&p.s, &d, mine, harness, times, why, sizeof why);

    double m[M_FIELDS] = {0}, *every = rank == 0 ? calloc((size_t)ranks * M_FIELDS, sizeof(double)) : NULL;
    m[M_ROWS] = (double)p.part.rows;
    m[M_PEAK] = field(mine, "peak_rss_bytes");
    m[M_RSS_INPUTS] = field(mine, "rss_before_inputs_bytes");
    m[M_RSS_KERNEL] = field(mine, "rss_before_kernel_bytes");
    m[M_SENT] = p.s.reps > 0 ? r.ring.sent_bytes / p.s.reps : 0;
    m[M_MODEL_SENT] = p.cost.send_bytes + (p.s.backward ? p.cost.bwd_send_bytes : 0);
    m[M_WAIT] = p.s.reps > 0 ? r.ring.wait_s / p.s.reps : 0;
    m[M_RUN] = p.s.reps > 0 ? r.run_s / p.s.reps : 0;
    m[M_MODEL_BYTES] = (double)workload_rank_bytes(&p.s, ranks, rank);
    m[M_SCORES] = p.cost.cost.scores;
    MPI_Gather(m, M_FIELDS, MPI_DOUBLE, every, M_FIELDS, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    json_t *records = gather_records(mine, rank, ranks);
    json_t *err = status == POINT_OK && p.s.accuracy ? accuracy(&p, ranks, rank) : NULL;

    int written = 1;
    if (rank == 0) {
        json_t *out = compose(mine, records, &r, times, every, status, why);
        if (err)
            json_object_set_new(out, "err_vs_exact", err);
        written = write_record(record, out) == 0;
        if (!written)
            fprintf(stderr, "attnbench-rank: cannot write %s: %s\n", record, strerror(errno));
        json_decref(out);
    }
    json_decref(mine);
    json_decref(records);
    json_decref(harness);
    free(times), free(every);
    free(p.q), free(p.k), free(p.v), free(p.out), free(p.lse), free(p.work);
    free(p.dout), free(p.dq), free(p.dk), free(p.dv);
    return written ? 0 : 1;
}

int main(int argc, char **argv)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* mpirun gone (killed at a time limit): so are we */
    const char *point_text = NULL, *record = NULL, *files = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--point") == 0)
            point_text = argv[i + 1];
        else if (strcmp(argv[i], "--record") == 0)
            record = argv[i + 1];
        else if (strcmp(argv[i], "--files") == 0)
            files = argv[i + 1];
    }
    if (!files && (!point_text || !record)) {
        fprintf(stderr, "usage: attnbench-rank --point JSON --record FILE (run by attnbench "
                        "under mpirun)\n");
        return 2;
    }
    int provided, rank, ranks;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    const int rc = files ? files_main(files, rank, ranks) : point_main(point_text, record, rank, ranks);
    MPI_Finalize();
    return rc;
}
