/* test_ring.c: ring attention over P ranks, run as P threads that pass blocks through shared
 * memory (the exchange interface bench/ implements with MPI), against full_stream on the whole
 * sequence: outputs and lse to 1e-5, gradients to 1e-4, for P = 1..4, n not divisible by P,
 * causal and not, every layout, several heads and a batch; the results do not depend on the
 * thread count; the scores computed less those masked, summed over ranks, are the model's; and
 * the bytes each rank sent are those its cost model gives. */
#include "helpers.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../attn/ring.h"

#define MAX_RANKS 4

/* The exchange of P threads. A rank's shift posts its send buffer; its wait copies the previous
 * rank's posted buffer into its own receive buffer, then waits until the next rank has copied
 * its send buffer (so it may be reused), as a completed MPI send would. */
typedef struct mailbox {
    const void *send[ATTN_RING_CHANNELS];
    size_t send_bytes[ATTN_RING_CHANNELS];
    void *recv[ATTN_RING_CHANNELS];
    size_t recv_bytes[ATTN_RING_CHANNELS];
    long posted[ATTN_RING_CHANNELS], consumed[ATTN_RING_CHANNELS];
    double sent_bytes;
    int size_mismatch;
    long progress_calls;
    pthread_t owner; /* the rank's thread: the only one that may call progress */
    int progress_elsewhere;
} mailbox;

typedef struct ring_world {
    int ranks;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    mailbox box[MAX_RANKS];
} ring_world;

typedef struct rank_ctx {
    ring_world *w;
    int rank;
} rank_ctx;

static int threads_shift(void *ctx, int chan, const void *send, size_t send_bytes, void *recv,
                         size_t recv_bytes)
{
    rank_ctx *c = ctx;
    pthread_mutex_lock(&c->w->lock);
    mailbox *me = &c->w->box[c->rank];
    me->send[chan] = send, me->send_bytes[chan] = send_bytes;
    me->recv[chan] = recv, me->recv_bytes[chan] = recv_bytes;
    me->posted[chan]++;
    me->sent_bytes += (double)send_bytes;
    pthread_cond_broadcast(&c->w->changed);
    pthread_mutex_unlock(&c->w->lock);
    return 0;
}

static int threads_wait(void *ctx, int chan)
{
    rank_ctx *c = ctx;
    ring_world *w = c->w;
    mailbox *me = &w->box[c->rank], *prev = &w->box[(c->rank + w->ranks - 1) % w->ranks];
    pthread_mutex_lock(&w->lock);
    const long gen = me->posted[chan];
    while (prev->posted[chan] < gen)
        pthread_cond_wait(&w->changed, &w->lock);
    if (prev->send_bytes[chan] != me->recv_bytes[chan])
        me->size_mismatch = 1;
    memcpy(me->recv[chan], prev->send[chan],
           prev->send_bytes[chan] < me->recv_bytes[chan] ? prev->send_bytes[chan]
                                                          : me->recv_bytes[chan]);
    prev->consumed[chan]++;
    pthread_cond_broadcast(&w->changed);
    while (me->consumed[chan] < gen)
        pthread_cond_wait(&w->changed, &w->lock);
    pthread_mutex_unlock(&w->lock);
    return me->size_mismatch;
}

static void threads_progress(void *ctx)
{
    rank_ctx *c = ctx;
    mailbox *me = &c->w->box[c->rank];
    me->progress_calls++;
    if (!pthread_equal(pthread_self(), me->owner))
        me->progress_elsewhere = 1;
}

/* One rank's job: its rows of the inputs, its outputs, and what it counted. */
typedef struct rank_job {
    const attn_shape *s;
    const attn_params *p;
    attn_ring_exchange x;
    rank_ctx ctx;
    attn_ring_part part;
    int nthreads;
    float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
    attn_stats st;
    int fwd_rc, bwd_rc;
} rank_job;

static void *rank_main(void *arg)
{
    rank_job *j = arg;
    j->ctx.w->box[j->ctx.rank].owner = pthread_self();
    attn_ring_cost c;
    attn_ring_cost_of(j->s, j->p, j->x.ranks, j->x.rank, j->nthreads, &c);
    void *work = attn_aligned_alloc(c.cost.workspace_bytes > c.cost.bwd_workspace_bytes
                                        ? c.cost.workspace_bytes
                                        : c.cost.bwd_workspace_bytes);
    attn_tensors t = {.q = j->q, .k = j->k, .v = j->v, .out = j->out, .lse = j->lse,
                      .stats = &j->st};
    j->fwd_rc = attn_ring_forward(j->s, j->p, &j->x, &t, work, j->nthreads);
    attn_grads g = {.q = j->q, .k = j->k, .v = j->v, .out = j->out, .lse = j->lse,
                    .dout = j->dout, .dq = j->dq, .dk = j->dk, .dv = j->dv};
    if (!j->fwd_rc)
        j->bwd_rc = attn_ring_backward(j->s, j->p, &j->x, &g, work, j->nthreads);
    free(work);
    return NULL;
}

/* Copies (or, back = 1, returns) a part's rows between a (B, H, n, width) tensor and a rank's
 * (B, H, rows, width) one. */
static void part_rows(const attn_shape *s, const attn_ring_part *pt, int64_t width, float *whole,
                      float *local, int back)
{
    for (int64_t bh = 0; bh < s->B * s->H; bh++) {
        int64_t at = 0;
        for (int c = 0; c < pt->chunks; c++) {
            float *a = whole + (bh * s->n + pt->start[c]) * width;
            float *b = local + (bh * pt->rows + at) * width;
            const size_t bytes = (size_t)(pt->len[c] * width) * sizeof(float);
            if (back)
                memcpy(a, b, bytes);
            else
                memcpy(b, a, bytes);
            at += pt->len[c];
        }
    }
}

static float *take(const attn_shape *s, const attn_ring_part *pt, int64_t width, float *whole)
{
    float *local = malloc((size_t)(s->B * s->H * pt->rows * width) * sizeof(float) + 4);
    part_rows(s, pt, width, whole, local, 0);
    return local;
}

static double *widen(const float *x, size_t count)
{
    double *y = malloc(count * sizeof *y);
    for (size_t i = 0; i < count; i++)
        y[i] = x[i];
    return y;
}

/* What a ring of P ranks gives, gathered back into whole tensors. */
typedef struct ring_result {
    float *out, *lse, *dq, *dk, *dv;
    attn_stats st;
    double model_scores;
} ring_result;

/* A rank's local tensor in the shape's dtype: x itself (fp32), or rounded into a new buffer
 * (bf16), which replaces x. */
static float *as_dtype(const attn_shape *s, float *x, size_t count)
{
    if (s->dtype == ATTN_FP32)
        return x;
    void *y = malloc(count * attn_dtype_size(s->dtype) + 4);
    attn_convert(x, ATTN_FP32, y, s->dtype, count);
    free(x);
    return y;
}

/* A rank's output back as fp32, in place (its buffer holds count floats). */
static void to_f32(const attn_shape *s, float *x, size_t count)
{
    if (s->dtype == ATTN_FP32)
        return;
    float *y = malloc(count * sizeof *y);
    attn_convert(x, s->dtype, y, ATTN_FP32, count);
    memcpy(x, y, count * sizeof *y);
    free(y);
}

/* The ranks run in s->dtype; inputs and results are fp32 whole tensors either way (in bf16,
 * the inputs should hold bf16 values, and the results are the bf16 ones widened). */
static void run_ring(const attn_shape *s, const attn_params *p, int P, int nthreads,
                     float *q, float *k, float *v, float *dout, ring_result *res)
{
    const size_t elems = attn_tensor_elems(s), rows = (size_t)(s->B * s->H * s->n);
    ring_world w = {.ranks = P};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.changed, NULL);
    rank_job jobs[MAX_RANKS];
    pthread_t tid[MAX_RANKS];
    for (int r = 0; r < P; r++) {
        rank_job *j = &jobs[r];
        *j = (rank_job){.s = s, .p = p, .nthreads = nthreads};
        j->ctx = (rank_ctx){&w, r};
        j->x = (attn_ring_exchange){.rank = r, .ranks = P, .ctx = &j->ctx,
                                    .shift = threads_shift, .wait = threads_wait,
                                    .progress = threads_progress};
        attn_ring_part_of(s, p, P, r, &j->part);
        const size_t local = (size_t)(s->B * s->H * j->part.rows), le = local * (size_t)s->d;
        j->q = as_dtype(s, take(s, &j->part, s->d, q), le);
        j->k = as_dtype(s, take(s, &j->part, s->d, k), le);
        j->v = as_dtype(s, take(s, &j->part, s->d, v), le);
        j->dout = as_dtype(s, take(s, &j->part, s->d, dout), le);
        j->out = malloc(le * 4), j->lse = malloc(local * 4);
        j->dq = malloc(le * 4), j->dk = malloc(le * 4), j->dv = malloc(le * 4);
        fill_nan(j->lse, local);
        for (int i = 0; i < 4; i++) /* NaN in fp32 and in bf16 */
            memset((float *[]){j->out, j->dq, j->dk, j->dv}[i], 0xff, le * 4);
        assert_int_equal(pthread_create(&tid[r], NULL, rank_main, j), 0);
    }
    *res = (ring_result){.out = malloc(elems * 4), .lse = malloc(rows * 4),
                         .dq = malloc(elems * 4), .dk = malloc(elems * 4), .dv = malloc(elems * 4)};
    for (int r = 0; r < P; r++) {
        rank_job *j = &jobs[r];
        pthread_join(tid[r], NULL);
        assert_int_equal(j->fwd_rc, 0);
        assert_int_equal(j->bwd_rc, 0);
        assert_false(w.box[r].size_mismatch);
        /* transfers are given their chance to move while the rank computes, from its thread */
        assert_true(w.box[r].progress_calls > 0);
        assert_false(w.box[r].progress_elsewhere);
        attn_ring_cost c;
        attn_ring_cost_of(s, p, P, r, nthreads, &c);
        /* what the rank sent is what its model says (one rank sends nothing: a copy) */
        if (P > 1)
            assert_true(w.box[r].sent_bytes == c.send_bytes + c.bwd_send_bytes);
        res->model_scores += c.cost.scores;
        const size_t le = (size_t)(s->B * s->H * j->part.rows * s->d);
        to_f32(s, j->out, le), to_f32(s, j->dq, le), to_f32(s, j->dk, le), to_f32(s, j->dv, le);
        part_rows(s, &j->part, s->d, res->out, j->out, 1);
        part_rows(s, &j->part, 1, res->lse, j->lse, 1);
        part_rows(s, &j->part, s->d, res->dq, j->dq, 1);
        part_rows(s, &j->part, s->d, res->dk, j->dk, 1);
        part_rows(s, &j->part, s->d, res->dv, j->dv, 1);
        attn_stats_add(&res->st, &j->st);
        free(j->q), free(j->k), free(j->v), free(j->dout), free(j->out), free(j->lse);
        free(j->dq), free(j->dk), free(j->dv);
    }
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.changed);
}

static void ring_result_free(ring_result *r)
{
    free(r->out), free(r->lse), free(r->dq), free(r->dk), free(r->dv);
}

/* full_stream's forward and backward on the whole sequence, in double for the comparisons. */
typedef struct exact {
    double *out, *lse, *dq, *dk, *dv;
} exact;

static void run_exact(const attn_shape *s, float *q, float *k, float *v, float *dout, exact *e)
{
    const size_t elems = attn_tensor_elems(s), rows = (size_t)(s->B * s->H * s->n);
    float *out, *lse;
    assert_int_equal(run_method("full_stream", NULL, s, q, k, v, 2, &out, &lse, NULL), 0);
    float *dq = malloc(elems * 4), *dk = malloc(elems * 4), *dv = malloc(elems * 4);
    attn_params p;
    attn_params_default(attn_find("full_stream"), &p);
    attn_grads g = {.q = q, .k = k, .v = v, .out = out, .lse = lse, .dout = dout, .dq = dq,
                    .dk = dk, .dv = dv};
    assert_int_equal(attn_backward_alloc(s, &p, &g, 2), 0);
    *e = (exact){widen(out, elems), widen(lse, rows), widen(dq, elems), widen(dk, elems),
                 widen(dv, elems)};
    free(out), free(lse), free(dq), free(dk), free(dv);
}

static void exact_free(exact *e)
{
    free(e->out), free(e->lse), free(e->dq), free(e->dk), free(e->dv);
}

static void test_ring_equals_full_stream(void **state)
{
    (void)state;
    const int64_t lengths[] = {37, 64, 203};
    const char *layouts[] = {"layout=auto", "layout=contiguous", "layout=zigzag"};
    for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++)
        for (int causal = 0; causal <= 1; causal++) {
            attn_shape s = {.B = 2, .H = 2, .n = lengths[li], .d = 8, .causal = causal};
            const size_t elems = attn_tensor_elems(&s), rows = (size_t)(s.B * s.H * s.n);
            float *q = malloc(elems * 4), *k = malloc(elems * 4), *v = malloc(elems * 4),
                  *dout = malloc(elems * 4);
            fill_normal(q, elems, 1 + li, 1.0f), fill_normal(k, elems, 2 + li, 1.0f);
            fill_normal(v, elems, 3 + li, 1.0f), fill_normal(dout, elems, 4 + li, 1.0f);
            exact e;
            run_exact(&s, q, k, v, dout, &e);
            for (int P = 1; P <= MAX_RANKS; P++)
                for (size_t lo = 0; lo < 3; lo++) {
                    attn_params p;
                    attn_params_default(attn_find("ring"), &p);
                    assert_int_equal(attn_params_parse(&p, layouts[lo]), 0);
                    /* small tiles: several per chunk, and tiles that do not divide it */
                    assert_int_equal(attn_params_parse(&p, "tile_q=7"), 0);
                    assert_int_equal(attn_params_parse(&p, "tile_k=5"), 0);
                    const char *why;
                    assert_int_equal(attn_ring_check(&s, &p, P, &why), 0);
                    ring_result r;
                    run_ring(&s, &p, P, 2, q, k, v, dout, &r);
                    assert_allclose(r.out, e.out, elems, 1e-5, 1e-5);
                    assert_allclose(r.lse, e.lse, rows, 1e-5, 1e-5);
                    assert_allclose(r.dq, e.dq, elems, 1e-4, 1e-4);
                    assert_allclose(r.dk, e.dk, elems, 1e-4, 1e-4);
                    assert_allclose(r.dv, e.dv, elems, 1e-4, 1e-4);
                    /* the ranks' scores, less the masked ones, are full attention's */
                    const double want = (double)(s.B * s.H) *
                                        (causal ? (double)s.n * (double)(s.n + 1) / 2
                                                : (double)s.n * (double)s.n);
                    assert_true(r.model_scores == want);
                    assert_true((double)(r.st.v[ATTN_STAT_SCORES] -
                                         r.st.v[ATTN_STAT_SCORES_MASKED]) == want);
                    ring_result_free(&r);
                }
            exact_free(&e);
            free(q), free(k), free(v), free(dout);
        }
}

/* The same ranks with 1 and 3 threads each give the same bits. */
static void test_ring_thread_count_invariant(void **state)
{
    (void)state;
    attn_shape s = {.B = 1, .H = 3, .n = 301, .d = 16, .causal = true};
    const size_t elems = attn_tensor_elems(&s), rows = (size_t)(s.B * s.H * s.n);
    float *q = malloc(elems * 4), *k = malloc(elems * 4), *v = malloc(elems * 4),
          *dout = malloc(elems * 4);
    fill_normal(q, elems, 11, 1.0f), fill_normal(k, elems, 12, 1.0f);
    fill_normal(v, elems, 13, 1.0f), fill_normal(dout, elems, 14, 1.0f);
    attn_params p;
    attn_params_default(attn_find("ring"), &p);
    assert_int_equal(attn_params_parse(&p, "tile_q=16"), 0);
    assert_int_equal(attn_params_parse(&p, "tile_k=24"), 0);
    ring_result a, b;
    run_ring(&s, &p, 3, 1, q, k, v, dout, &a);
    run_ring(&s, &p, 3, 3, q, k, v, dout, &b);
    assert_memory_equal(a.out, b.out, elems * 4);
    assert_memory_equal(a.lse, b.lse, rows * 4);
    assert_memory_equal(a.dq, b.dq, elems * 4);
    assert_memory_equal(a.dk, b.dk, elems * 4);
    assert_memory_equal(a.dv, b.dv, elems * 4);
    ring_result_free(&a), ring_result_free(&b);
    free(q), free(k), free(v), free(dout);
}

/* The layouts: every row belongs to exactly one rank; zigzag balances causal work within a
 * chunk's rows of the mean, contiguous does not; more ranks than rows is refused. */
static void test_ring_layouts(void **state)
{
    (void)state;
    attn_params p;
    attn_params_default(attn_find("ring"), &p);
    for (int causal = 0; causal <= 1; causal++)
        for (int P = 1; P <= 8; P++)
            for (int64_t n = P; n < 3 * P + 5; n++) {
                attn_shape s = {.B = 1, .H = 1, .n = n, .d = 4, .causal = causal};
                const char *why;
                assert_int_equal(attn_ring_check(&s, &p, P, &why), 0); /* auto fits any n >= P */
                char *owner = calloc((size_t)n, 1);
                for (int r = 0; r < P; r++) {
                    attn_ring_part pt;
                    attn_ring_part_of(&s, &p, P, r, &pt);
                    assert_true(pt.rows >= 1);
                    for (int c = 0; c < pt.chunks; c++)
                        for (int64_t i = pt.start[c]; i < pt.start[c] + pt.len[c]; i++)
                            owner[i]++;
                }
                for (int64_t i = 0; i < n; i++)
                    assert_int_equal(owner[i], 1);
                free(owner);
            }
    attn_shape s = {.B = 1, .H = 1, .n = 1 << 16, .d = 64, .causal = true};
    double lo = INFINITY, hi = 0, clo = INFINITY, chi = 0;
    attn_params contiguous = p;
    assert_int_equal(attn_params_parse(&contiguous, "layout=contiguous"), 0);
    for (int r = 0; r < 4; r++) {
        attn_ring_cost c;
        attn_ring_cost_of(&s, &p, 4, r, 1, &c);
        lo = fmin(lo, c.cost.scores), hi = fmax(hi, c.cost.scores);
        attn_ring_cost_of(&s, &contiguous, 4, r, 1, &c);
        clo = fmin(clo, c.cost.scores), chi = fmax(chi, c.cost.scores);
    }
    assert_true(hi / lo < 1.001); /* zigzag: equal work */
    assert_true(chi / clo > 6.9); /* contiguous: the last rank does 7x the first's */
    const char *why;
    s.n = 3;
    assert_int_equal(attn_ring_check(&s, &p, 4, &why), ATTN_EUNSUPPORTED);
    assert_non_null(strstr(why, "ranks"));
    attn_params zig = p;
    assert_int_equal(attn_params_parse(&zig, "layout=zigzag"), 0);
    s.n = 7;
    assert_int_equal(attn_ring_check(&s, &zig, 4, &why), ATTN_EUNSUPPORTED);
    assert_non_null(strstr(why, "zigzag"));
    s.n = 8;
    assert_int_equal(attn_ring_check(&s, &zig, 4, &why), 0);
}

/* An exchange that fails makes the call fail with ATTN_EEXCHANGE, not a wrong answer. */
static int failing_shift(void *ctx, int chan, const void *send, size_t sb, void *recv, size_t rb)
{
    (void)ctx, (void)chan, (void)send, (void)sb, (void)recv, (void)rb;
    return -1;
}

static int ok_wait(void *ctx, int chan)
{
    (void)ctx, (void)chan;
    return 0;
}

static void test_ring_exchange_failure(void **state)
{
    (void)state;
    attn_shape s = {.B = 1, .H = 1, .n = 16, .d = 4};
    attn_params p;
    attn_params_default(attn_find("ring"), &p);
    attn_ring_exchange x = {.rank = 0, .ranks = 2, .shift = failing_shift, .wait = ok_wait};
    attn_ring_cost c;
    attn_ring_cost_of(&s, &p, 2, 0, 1, &c);
    void *work = attn_aligned_alloc(c.cost.bwd_workspace_bytes);
    float buf[5][8 * 4], lse[8];
    attn_tensors t = {.q = buf[0], .k = buf[1], .v = buf[2], .out = buf[3], .lse = lse};
    memset(buf, 0, sizeof buf);
    assert_int_equal(attn_ring_forward(&s, &p, &x, &t, work, 1), ATTN_EEXCHANGE);
    attn_grads g = {.q = buf[0], .k = buf[1], .v = buf[2], .out = buf[3], .lse = lse,
                    .dout = buf[4], .dq = buf[0], .dk = buf[1], .dv = buf[2]};
    assert_int_equal(attn_ring_backward(&s, &p, &x, &g, work, 1), ATTN_EEXCHANGE);
    free(work);
}

/* bf16 over ranks: K and V travel as bf16 and each rank merges the blocks in fp32, so the output
 * is the fp32 ring's rounded once, bit for bit, and the lse fp32's own, whatever the ranks; the
 * gradients (whose D reads the bf16 output) within 1% of fp32's; a rank sends half the K and V
 * bytes (its model says so, and run_ring checks what it sent against the model). */
static void test_bf16_ranks(void **state)
{
    (void)state;
    attn_shape s = {.B = 2, .H = 2, .n = 203, .d = 16, .causal = true};
    const size_t elems = attn_tensor_elems(&s), rows = (size_t)(s.B * s.H * s.n);
    float *in[4];
    for (int i = 0; i < 4; i++) {
        in[i] = malloc(elems * sizeof(float));
        fill_normal(in[i], elems, 40 + (uint64_t)i, 1.0f);
        for (size_t e = 0; e < elems; e++)
            in[i][e] = attn_bf16_to_f32(attn_f32_to_bf16(in[i][e]));
    }
    attn_params p;
    attn_params_default(attn_find("ring"), &p);
    assert_int_equal(attn_params_set(&p, "tile_q", "32"), 0);
    for (int P = 1; P <= 3; P += 2) {
        ring_result f, b;
        run_ring(&s, &p, P, 2, in[0], in[1], in[2], in[3], &f);
        attn_shape sb = s;
        sb.dtype = ATTN_BF16;
        run_ring(&sb, &p, P, 2, in[0], in[1], in[2], in[3], &b);
        assert_memory_equal(b.lse, f.lse, rows * sizeof(float));
        for (size_t e = 0; e < elems; e++)
            assert_int_equal(attn_f32_to_bf16(b.out[e]), attn_f32_to_bf16(f.out[e]));
        float *const got[3] = {b.dq, b.dk, b.dv}, *const want[3] = {f.dq, f.dk, f.dv};
        for (int g = 0; g < 3; g++) {
            double num = 0, den = 0;
            for (size_t e = 0; e < elems; e++) {
                num += ((double)got[g][e] - want[g][e]) * ((double)got[g][e] - want[g][e]);
                den += (double)want[g][e] * want[g][e];
            }
            assert_true(sqrt(num / den) < 1e-2 && num > 0);
        }
        attn_ring_cost cf, cb;
        attn_ring_cost_of(&s, &p, P, 0, 2, &cf);
        attn_ring_cost_of(&sb, &p, P, 0, 2, &cb);
        assert_true(cb.send_bytes * 2 == cf.send_bytes);
        ring_result_free(&f), ring_result_free(&b);
    }
    for (int i = 0; i < 4; i++)
        free(in[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_ranks),
        cmocka_unit_test(test_ring_equals_full_stream),
        cmocka_unit_test(test_ring_thread_count_invariant),
        cmocka_unit_test(test_ring_layouts),
        cmocka_unit_test(test_ring_exchange_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
