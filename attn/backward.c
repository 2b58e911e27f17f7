/* backward.c: the tile backward pass (see backward.h), with BLAS products on gathered rows. */
#include "backward.h"

#include <assert.h>
#include <math.h>
#include <omp.h>
#include <sched.h>
#include <string.h>

#include "attn.h"
#include "kernels.h"

size_t bwd_tile_bytes(int max_rows, int max_cols, int d)
{
    const size_t r = (size_t)max_rows, c = (size_t)max_cols, dd = (size_t)d;
    const size_t slot = kern_slice_bytes(r * dd, sizeof(float)) +    /* part_q */
                        2 * kern_slice_bytes(c * dd, sizeof(float)) + /* part_k, part_v */
                        kern_slice_bytes(r, sizeof(int32_t)) + kern_slice_bytes(c, sizeof(int32_t));
    return 2 * kern_slice_bytes(r * dd, sizeof(float)) +   /* q, dout */
           2 * kern_slice_bytes(c * dd, sizeof(float)) +   /* k, v */
           2 * kern_slice_bytes(r * c, sizeof(float)) +    /* s, dp */
           2 * kern_slice_bytes(r, sizeof(float)) +        /* lse, dd */
           kern_slice_bytes(r, sizeof(int32_t)) + kern_slice_bytes(c, sizeof(int32_t)) +
           BWD_SLOTS * slot;
}

void bwd_tile_init(bwd_tile *t, kern_cursor *cursor, int max_rows, int max_cols, int d)
{
    const size_t r = (size_t)max_rows, c = (size_t)max_cols, dd = (size_t)d;
    t->max_rows = max_rows;
    t->max_cols = max_cols;
    t->d = d;
    t->q = kern_take(cursor, r * dd, sizeof(float));
    t->dout = kern_take(cursor, r * dd, sizeof(float));
    t->k = kern_take(cursor, c * dd, sizeof(float));
    t->v = kern_take(cursor, c * dd, sizeof(float));
    for (int i = 0; i < BWD_SLOTS; i++) {
        bwd_slot *sl = &t->slots[i];
        sl->part_q = kern_take(cursor, r * dd, sizeof(float));
        sl->part_k = kern_take(cursor, c * dd, sizeof(float));
        sl->part_v = kern_take(cursor, c * dd, sizeof(float));
        sl->qrows = kern_take(cursor, r, sizeof(int32_t));
        sl->krows = kern_take(cursor, c, sizeof(int32_t));
        atomic_store_explicit(&sl->busy, 0, memory_order_relaxed);
    }
    t->part_q = t->slots[0].part_q;
    t->part_k = t->slots[0].part_k;
    t->part_v = t->slots[0].part_v;
    t->s = kern_take(cursor, r * c, sizeof(float));
    t->dp = kern_take(cursor, r * c, sizeof(float));
    t->lse = kern_take(cursor, r, sizeof(float));
    t->dd = kern_take(cursor, r, sizeof(float));
    t->qrows = kern_take(cursor, r, sizeof(int32_t));
    t->krows = kern_take(cursor, c, sizeof(int32_t));
    t->stats = NULL;
}

static inline void prefetch_row(const void *base, attn_dtype dtype, int64_t row, int d)
{
    const size_t size = attn_dtype_size(dtype);
    const char *p = (const char *)base + (size_t)row * (size_t)d * size;
    for (size_t off = 0; off < (size_t)d * size; off += 64)
        __builtin_prefetch(p + off, 1);
}

size_t bwd_head_bytes(const attn_shape *s)
{
    const size_t acc = s->dtype == ATTN_BF16
                           ? kern_slice_bytes(3 * (size_t)s->n * (size_t)s->d, sizeof(float))
                           : 0;
    return kern_slice_bytes((size_t)s->n, sizeof(float)) + acc;
}

bwd_head bwd_head_carve(const attn_shape *s, kern_cursor *cursor)
{
    bwd_head h = {.D = kern_take(cursor, (size_t)s->n, sizeof(float))};
    if (s->dtype == ATTN_BF16)
        h.acc = kern_take(cursor, 3 * (size_t)s->n * (size_t)s->d, sizeof(float));
    return h;
}

int32_t *bwd_range(int32_t *rows, int64_t first, int count)
{
    for (int i = 0; i < count; i++)
        rows[i] = (int32_t)(first + i);
    return rows;
}

void bwd_rowdot(const void *dout, const void *out, attn_dtype dtype, int64_t n, int d, float *D)
{
    if (dtype == ATTN_BF16) {
        const attn_bf16 *x = dout, *y = out;
        for (int64_t i = 0; i < n; i++) {
            float acc = 0.0f;
            for (int c = 0; c < d; c++)
                acc += attn_bf16_to_f32(x[i * d + c]) * attn_bf16_to_f32(y[i * d + c]);
            D[i] = acc;
        }
        return;
    }
    const float *x = dout, *y = out;
    for (int64_t i = 0; i < n; i++) {
        float acc = 0.0f;
        for (int c = 0; c < d; c++)
            acc += x[i * d + c] * y[i * d + c];
        D[i] = acc;
    }
}

/* The fp32 rows head bh's dq, dk, dv accumulate into: the gradients, or the head's
 * accumulators in bf16. */
static void head_targets(const attn_grads *g, const attn_shape *s, int64_t bh, const bwd_head *h,
                         float *acc[3])
{
    const size_t he = (size_t)s->n * (size_t)s->d, off = (size_t)bh * he;
    void *const grads[3] = {g->dq, g->dk, g->dv};
    for (int i = 0; i < 3; i++)
        acc[i] = s->dtype == ATTN_BF16 ? h->acc + (size_t)i * he : (float *)grads[i] + off;
}

bwd_io bwd_head_io(const attn_grads *g, const attn_shape *s, int64_t bh, float scale,
                   const bwd_head *h)
{
    const size_t off = (size_t)bh * (size_t)s->n * (size_t)s->d;
    float *acc[3];
    head_targets(g, s, bh, h, acc);
    return (bwd_io){.q = attn_elem(g->q, s->dtype, off), .k = attn_elem(g->k, s->dtype, off),
                    .v = attn_elem(g->v, s->dtype, off), .dout = attn_elem(g->dout, s->dtype, off),
                    .lse = g->lse + (size_t)bh * (size_t)s->n, .D = h->D, .dq = acc[0],
                    .dk = acc[1], .dv = acc[2], .dtype = s->dtype, .d = (int)s->d,
                    .scale = scale};
}

void bwd_head_prepare(const attn_grads *g, const attn_shape *s, int64_t bh, const bwd_head *h)
{
    const int64_t n = s->n;
    const int d = (int)s->d;
    const size_t off = (size_t)bh * (size_t)n * (size_t)d;
    float *acc[3];
    head_targets(g, s, bh, h, acc);
#pragma omp for schedule(static)
    for (int64_t i0 = 0; i0 < n; i0 += 1024) {
        const int64_t rows = n - i0 < 1024 ? n - i0 : 1024;
        const size_t at = (size_t)i0 * (size_t)d;
        const size_t bytes = (size_t)rows * (size_t)d * sizeof(float);
        for (int i = 0; i < 3; i++)
            memset(acc[i] + at, 0, bytes);
        bwd_rowdot(attn_elem(g->dout, s->dtype, off + at), attn_elem(g->out, s->dtype, off + at),
                   s->dtype, rows, d, h->D + i0);
    }
}

void bwd_head_finish(const attn_grads *g, const attn_shape *s, int64_t bh, const bwd_head *h)
{
    if (s->dtype != ATTN_BF16)
        return;
    const int64_t n = s->n;
    const int d = (int)s->d;
    const size_t off = (size_t)bh * (size_t)n * (size_t)d;
    float *acc[3];
    head_targets(g, s, bh, h, acc);
    void *const grads[3] = {g->dq, g->dk, g->dv};
#pragma omp for schedule(static)
    for (int64_t i0 = 0; i0 < n; i0 += 1024) {
        const int rows = (int)(n - i0 < 1024 ? n - i0 : 1024);
        const size_t at = (size_t)i0 * (size_t)d;
        for (int i = 0; i < 3; i++)
            kern_rows_narrow(acc[i] + at, rows, d, attn_elem_mut(grads[i], s->dtype, off + at), d,
                             NULL, s->dtype);
    }
}

void bwd_tile_compute(bwd_tile *t, const bwd_io *io, const int32_t *qrows, int rows,
                      const int32_t *krows, int cols, bwd_mask_fn mask, const void *ctx)
{
    assert(rows >= 1 && rows <= t->max_rows && cols >= 1 && cols <= t->max_cols);
    const int d = io->d;
    /* gather (widening bf16 rows), asking for every row first so their cache misses overlap */
    for (int r = 0; r < rows; r++) {
        prefetch_row(io->q, io->dtype, qrows[r], d);
        prefetch_row(io->dout, io->dtype, qrows[r], d);
    }
    for (int j = 0; j < cols; j++) {
        prefetch_row(io->k, io->dtype, krows[j], d);
        prefetch_row(io->v, io->dtype, krows[j], d);
    }
    kern_rows_widen(io->q, d, qrows, rows, d, io->dtype, t->q);
    kern_rows_widen(io->dout, d, qrows, rows, d, io->dtype, t->dout);
    kern_rows_widen(io->k, d, krows, cols, d, io->dtype, t->k);
    kern_rows_widen(io->v, d, krows, cols, d, io->dtype, t->v);
    for (int r = 0; r < rows; r++) {
        const int64_t i = qrows[r];
        for (int c = 0; c < d; c++)
            t->q[(size_t)r * d + c] *= io->scale;
        t->lse[r] = io->lse[i];
        t->dd[r] = io->D[i];
    }
    if (io->kscale)
        for (int j = 0; j < cols; j++) {
            const float w = io->kscale[krows[j]];
            for (int c = 0; c < d; c++)
                t->k[(size_t)j * d + c] *= w;
        }
    if (t->stats)
        t->stats->v[ATTN_STAT_BWD_SCORES] += (uint64_t)rows * (uint64_t)cols;
    /* P = exp(scale Q K^T - lse), with the forward's masks */
    kern_gemm_nt(rows, cols, d, 1.0f, t->q, d, t->k, d, 0.0f, t->s, cols);
    if (mask)
        mask(ctx, t->s, cols, rows, cols, qrows, krows, t->lse, 0);
    for (int r = 0; r < rows; r++) {
        float *p = t->s + (size_t)r * cols;
        if (t->lse[r] == -INFINITY) /* the row attended to nothing */
            memset(p, 0, (size_t)cols * sizeof(float));
        else
            kern_exp_shift_sum(p, cols, t->lse[r]);
    }
    /* dV += P^T dO; dP = dO V^T; dS = P o (dP - D) */
    kern_gemm_tn(cols, d, rows, 1.0f, t->s, cols, t->dout, d, 0.0f, t->part_v, d);
    kern_gemm_nt(rows, cols, d, 1.0f, t->dout, d, t->v, d, 0.0f, t->dp, cols);
    for (int r = 0; r < rows; r++) {
        const float *p = t->s + (size_t)r * cols;
        float *ds = t->dp + (size_t)r * cols;
        for (int j = 0; j < cols; j++)
            ds[j] = p[j] * (ds[j] - t->dd[r]);
    }
    if (mask)
        mask(ctx, t->dp, cols, rows, cols, qrows, krows, NULL, 1);
    /* dQ += scale dS K; dK += dS^T (scale Q) */
    kern_gemm_nn(rows, d, cols, io->scale, t->dp, cols, t->k, d, 0.0f, t->part_q, d);
    kern_gemm_tn(cols, d, rows, 1.0f, t->dp, cols, t->q, d, 0.0f, t->part_k, d);
}

void bwd_tile_scatter(const bwd_tile *t, const bwd_io *io, const int32_t *qrows, int rows,
                      const int32_t *krows, int cols)
{
    const int d = io->d;
    for (int r = 0; r < rows; r++) {
        float *dst = io->dq + (int64_t)qrows[r] * d;
        for (int c = 0; c < d; c++)
            dst[c] += t->part_q[(size_t)r * d + c];
    }
    for (int j = 0; j < cols; j++) {
        float *dk = io->dk + (int64_t)krows[j] * d, *dv = io->dv + (int64_t)krows[j] * d;
        for (int c = 0; c < d; c++) {
            dk[c] += t->part_k[(size_t)j * d + c];
            dv[c] += t->part_v[(size_t)j * d + c];
        }
    }
}

void bwd_order_init(bwd_order *o)
{
    o->claimed = 0;
    atomic_store_explicit(&o->turn, 0, memory_order_relaxed);
    for (int i = 0; i < BWD_RING; i++)
        atomic_store_explicit(&o->ready[i], NULL, memory_order_relaxed);
    atomic_flag_clear(&o->adding);
}

/* Adds every published unit from the turn on, in order, if no other thread is adding; then
 * looks again, in case a unit was published just before the flag was released. */
static void add_ready(bwd_order *o, const bwd_io *io)
{
    for (;;) {
        if (atomic_flag_test_and_set_explicit(&o->adding, memory_order_acquire))
            return; /* another thread adds, and will look again after it lets go */
        int64_t u = atomic_load_explicit(&o->turn, memory_order_relaxed);
        for (bwd_slot *sl; (sl = atomic_load_explicit(&o->ready[u % BWD_RING],
                                                      memory_order_acquire)) != NULL;
             u++) {
            atomic_store_explicit(&o->ready[u % BWD_RING], NULL, memory_order_relaxed);
            /* the adds are the serial part: start on the next unit's rows while these go in */
            const bwd_slot *nx = atomic_load_explicit(&o->ready[(u + 1) % BWD_RING],
                                                      memory_order_acquire);
            for (int r = 0; nx && r < nx->rows; r++)
                prefetch_row(io->dq, ATTN_FP32, nx->qrows[r], io->d);
            for (int j = 0; nx && j < nx->cols; j++) {
                prefetch_row(io->dk, ATTN_FP32, nx->krows[j], io->d);
                prefetch_row(io->dv, ATTN_FP32, nx->krows[j], io->d);
            }
            bwd_tile tmp = {.part_q = sl->part_q, .part_k = sl->part_k, .part_v = sl->part_v};
            bwd_tile_scatter(&tmp, io, sl->qrows, sl->rows, sl->krows, sl->cols);
            atomic_store_explicit(&sl->busy, 0, memory_order_release);
            atomic_store_explicit(&o->turn, u + 1, memory_order_release);
        }
        atomic_flag_clear_explicit(&o->adding, memory_order_release);
        if (!atomic_load_explicit(&o->ready[u % BWD_RING], memory_order_acquire))
            return;
    }
}

static void pause_or_yield(int *spins)
{
    if (++*spins < 4096)
        __builtin_ia32_pause();
    else
        sched_yield(); /* more threads than cores: let the one we wait for run */
}

void bwd_run_units(bwd_tile *t, const bwd_io *io, bwd_next_fn next, void *state, bwd_order *order)
{
    /* units in flight hold a slot each, so the ring never wraps onto one not yet added */
    assert(omp_get_num_threads() * BWD_SLOTS <= BWD_RING);
    for (;;) {
        /* a free slot: wait for (and help) the adds when all hold units in line */
        bwd_slot *sl = NULL;
        for (int spins = 0; !sl;) {
            for (int i = 0; i < BWD_SLOTS && !sl; i++)
                if (!atomic_load_explicit(&t->slots[i].busy, memory_order_acquire))
                    sl = &t->slots[i];
            if (!sl) {
                add_ready(order, io);
                pause_or_yield(&spins);
            }
        }
        bwd_unit u;
        bool more;
        int64_t ticket = -1;
#pragma omp critical(attn_bwd_claim)
        {
            if ((more = next(state, t, &u)))
                ticket = order->claimed++;
        }
        if (!more)
            break;
        atomic_store_explicit(&sl->busy, 1, memory_order_relaxed);
        memcpy(sl->qrows, u.qrows, (size_t)u.rows * sizeof *u.qrows);
        memcpy(sl->krows, u.krows, (size_t)u.cols * sizeof *u.krows);
        sl->rows = u.rows;
        sl->cols = u.cols;
        t->part_q = sl->part_q;
        t->part_k = sl->part_k;
        t->part_v = sl->part_v;
        bwd_tile_compute(t, io, sl->qrows, u.rows, sl->krows, u.cols, u.mask, u.ctx);
        /* the rows these partials go to are gathered ones (lsh, block_sparse): have them on
         * their way before the unit's turn comes */
        for (int r = 0; r < u.rows; r++)
            prefetch_row(io->dq, ATTN_FP32, sl->qrows[r], io->d);
        for (int j = 0; j < u.cols; j++) {
            prefetch_row(io->dk, ATTN_FP32, sl->krows[j], io->d);
            prefetch_row(io->dv, ATTN_FP32, sl->krows[j], io->d);
        }
        atomic_store_explicit(&order->ready[ticket % BWD_RING], sl, memory_order_release);
        add_ready(order, io);
    }
    /* this thread is done when its units were added; the head, when every thread is */
    for (int i = 0, spins = 0; i < BWD_SLOTS;) {
        if (!atomic_load_explicit(&t->slots[i].busy, memory_order_acquire)) {
            i++;
            continue;
        }
        add_ready(order, io);
        pause_or_yield(&spins);
    }
}

size_t bwd_thread_bytes(const bwd_plan *plan, int d)
{
    return plan->thread_extra + bwd_tile_bytes(plan->max_rows, plan->max_cols, d);
}

void bwd_drive(const attn_shape *s, const attn_grads *g, const bwd_plan *plan,
               const bwd_head *head, char *threads, int nthreads)
{
    const int d = (int)s->d;
    const size_t per_thread = bwd_thread_bytes(plan, d);
    bwd_order order;
#pragma omp parallel num_threads(nthreads)
    {
        kern_blas_serial();
        char *mine = threads + (size_t)omp_get_thread_num() * per_thread;
        kern_cursor cursor = {mine + plan->thread_extra, 0};
        bwd_tile tile;
        bwd_tile_init(&tile, &cursor, plan->max_rows, plan->max_cols, d);
        attn_stats counted = {{0}};
        tile.stats = g->stats ? &counted : NULL;
        for (int64_t bh = 0; bh < s->B * s->H; bh++) {
            if (plan->prepare)
                bwd_head_prepare(g, s, bh, head);
            bwd_io io;
            if (plan->head_io)
                plan->head_io(plan->state, g, bh, &io);
            else
                io = bwd_head_io(g, s, bh, plan->scale, head);
            if (plan->head_begin)
                plan->head_begin(plan->state, bh, &io, mine);
#pragma omp single
            {
                plan->head_units(plan->state, bh, &io);
                bwd_order_init(&order);
            }
            bwd_run_units(&tile, &io, plan->next, plan->state, &order);
#pragma omp barrier
            if (plan->head_end)
                plan->head_end(plan->state, bh, &io);
            if (plan->prepare)
                bwd_head_finish(g, s, bh, head);
        }
        attn_stats_add(g->stats, &counted);
    }
}
