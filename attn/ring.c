/* ring.c: ring attention, one rank's part (see ring.h), and the registered method `ring`: one
 * rank over the whole sequence, through an exchange that only copies. */
#include "ring.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "backward.h"
#include "kernels.h"
#include "methods.h"
#include "tile.h"

enum { RING_TILE_Q, RING_TILE_K, RING_LAYOUT };
enum { RING_AUTO, RING_CONTIGUOUS, RING_ZIGZAG };

static const char *const ring_layouts[] = {"auto", "contiguous", "zigzag", NULL};

static const attn_param_spec ring_params[] = {
    [RING_TILE_Q] = {.name = "tile_q", .help = "query rows per tile", .kind = ATTN_PARAM_INT,
                     .def = 128, .min = 1, .max = 4096},
    [RING_TILE_K] = {.name = "tile_k", .help = "key rows per tile", .kind = ATTN_PARAM_INT,
                     .def = 256, .min = 1, .max = 16384},
    [RING_LAYOUT] = {.name = "layout",
                     .help = "rows of each rank: contiguous, zigzag (chunks r and 2P-1-r: causal "
                             "work balanced), auto (zigzag when causal and n >= 2P)",
                     .kind = ATTN_PARAM_CHOICE, .def = RING_AUTO, .choices = ring_layouts},
};

/* auto: zigzag when causal, unless the sequence is too short for 2P chunks of rows */
static int ring_layout(const attn_shape *s, const attn_params *p, int ranks)
{
    const int l = (int)p->v[RING_LAYOUT];
    if (l != RING_AUTO)
        return l;
    return s->causal && s->n >= 2 * (int64_t)ranks ? RING_ZIGZAG : RING_CONTIGUOUS;
}

void attn_ring_part_of(const attn_shape *s, const attn_params *p, int ranks, int rank,
                       attn_ring_part *part)
{
    const int64_t n = s->n, P = ranks, r = rank;
    *part = (attn_ring_part){0};
    if (ring_layout(s, p, ranks) == RING_CONTIGUOUS) {
        part->chunks = 1;
        part->start[0] = r * n / P;
        part->len[0] = (r + 1) * n / P - part->start[0];
    } else { /* 2P chunks; rank r takes r and 2P - 1 - r (r < 2P - 1 - r: sequence order) */
        const int64_t c[2] = {r, 2 * P - 1 - r};
        part->chunks = 2;
        for (int i = 0; i < 2; i++) {
            part->start[i] = c[i] * n / (2 * P);
            part->len[i] = (c[i] + 1) * n / (2 * P) - part->start[i];
        }
    }
    part->rows = part->len[0] + part->len[1];
}

int attn_ring_check(const attn_shape *s, const attn_params *p, int ranks, const char **why)
{
    const int zig = ring_layout(s, p, ranks) == RING_ZIGZAG;
    *why = zig ? "zigzag needs n >= 2 x ranks (every rank holds two chunks of rows)"
               : "n must be at least the number of ranks (every rank holds rows)";
    return ranks < 1 || s->n < (zig ? 2 : 1) * (int64_t)ranks ? ATTN_EUNSUPPORTED : ATTN_OK;
}

/* Tile sizes clamped to n, so a short sequence does not pay for a huge tile. */
static void ring_tiles(const attn_shape *s, const attn_params *p, int *tq, int *tk)
{
    *tq = (int)fmin(p->v[RING_TILE_Q], (double)s->n);
    *tk = (int)fmin(p->v[RING_TILE_K], (double)s->n);
}

/* Floats of one block of `rows` rows over every head: one of K, V, dK, dV. */
static size_t block_floats(const attn_shape *s, int64_t rows)
{
    return (size_t)(s->B * s->H * rows * s->d);
}

/* Buffers for arriving key/value blocks: none with one rank, one with two (the only block that
 * arrives is computed last), two from three ranks on (one computed on, one arriving). */
static int ring_kv_buffers(int ranks)
{
    return ranks - 1 < 2 ? ranks - 1 : 2;
}

/* The workspace of either pass, carved in one place so size and layout agree. */
typedef struct ring_work {
    char *kv[2];    /* blocks arriving from the previous rank, K then V (each sized for the
                       largest block, in the shape's dtype: bf16 blocks travel as bf16):
                       ring_kv_buffers of them, since a rank computes its own block from its
                       inputs, uncopied */
    float *grad[2]; /* backward: this rank's dK, dV share of the block, then the sum sent on */
    float *acc;     /* backward: the sum arriving from the previous rank (not with one rank) */
    float *row;     /* forward: each row's running softmax sum l; backward: D = rowsum(dO o O) */
    float *dq;      /* backward, bf16: this rank's dq, added up in fp32 */
    float *out;     /* forward, bf16 over several ranks: this rank's output, merged block by
                       block in fp32 and rounded once at the end */
    char *tiles;    /* one tile per thread */
    int ranks;
    size_t block_bytes; /* of one of K, V (the largest block) */
    size_t block;   /* floats of the largest block: where V starts in a kv buffer */
} ring_work;

static size_t ring_carve(const attn_shape *s, const attn_params *p, int ranks, int rank,
                         int nthreads, int backward, void *base, ring_work *w)
{
    attn_ring_part me;
    attn_ring_part_of(s, p, ranks, rank, &me);
    int64_t maxblk = 0;
    for (int r = 0; r < ranks; r++) {
        attn_ring_part o;
        attn_ring_part_of(s, p, ranks, r, &o);
        maxblk = o.rows > maxblk ? o.rows : maxblk;
    }
    int tq, tk;
    ring_tiles(s, p, &tq, &tk);
    const size_t pair = 2 * block_floats(s, maxblk);
    kern_cursor c = {base, 0};
    ring_work local;
    w = w ? w : &local;
    *w = (ring_work){.ranks = ranks, .block = block_floats(s, maxblk),
                     .block_bytes = block_floats(s, maxblk) * attn_dtype_size(s->dtype)};
    for (int i = 0; i < ring_kv_buffers(ranks); i++)
        w->kv[i] = kern_take(&c, pair, attn_dtype_size(s->dtype));
    if (!backward && ranks > 1 && s->dtype != ATTN_FP32)
        w->out = kern_take(&c, block_floats(s, me.rows), sizeof(float));
    if (backward) { /* one rank: its gradient sums stay home, in grad[0] */
        for (int i = 0; i < (ranks > 1 ? 2 : 1); i++)
            w->grad[i] = kern_take(&c, pair, sizeof(float));
        if (ranks > 1)
            w->acc = kern_take(&c, pair, sizeof(float));
    }
    w->row = kern_take(&c, (size_t)(s->B * s->H * me.rows), sizeof(float));
    w->dq = backward && s->dtype != ATTN_FP32 ? kern_take(&c, block_floats(s, me.rows), 4) : NULL;
    const size_t per_thread = backward ? bwd_tile_bytes(tq, tk, (int)s->d)
                                       : tile_bytes(tq, tk, (int)s->d, s->dtype);
    w->tiles = kern_take(&c, (size_t)nthreads * per_thread, 1);
    return c.off;
}

/* The keys and values computed at `step`: the rank's own inputs at step 0, then the blocks
 * that arrived, in turn. */
static void step_block(const ring_work *w, int step, const void *own_k, const void *own_v,
                       const void **k, const void **v)
{
    if (step == 0) {
        *k = own_k, *v = own_v;
        return;
    }
    const char *buf = w->kv[(step - 1) % ring_kv_buffers(w->ranks)];
    *k = buf, *v = buf + w->block_bytes;
}

/* Starts passing the block computed at `step` (its rows: blk) on, and receiving the next one
 * (next) into the buffer not computed on. Returns the exchange's error. */
static int pass_block(const ring_work *w, const attn_ring_exchange *x, const attn_shape *s,
                      int step, const void *k, const void *v, const attn_ring_part *blk,
                      const attn_ring_part *next)
{
    char *to = w->kv[step % ring_kv_buffers(w->ranks)];
    const size_t size = attn_dtype_size(s->dtype), out = block_floats(s, blk->rows) * size,
                 in = block_floats(s, next->rows) * size;
    if (x->shift(x->ctx, ATTN_RING_K, k, out, to, in) != 0)
        return 1;
    return x->shift(x->ctx, ATTN_RING_V, v, out, to + w->block_bytes, in) != 0;
}

static int wait_block(const attn_ring_exchange *x)
{
    const int k = x->wait(x->ctx, ATTN_RING_K) != 0;
    return (x->wait(x->ctx, ATTN_RING_V) != 0) | k;
}

/* One step of the ring, as both passes begin it: the block computed now (its rows and its
 * keys and values) and the block that arrives meanwhile, already asked for. */
typedef struct ring_step {
    attn_ring_part blk, next;
    const void *k, *v; /* the shape's dtype (several ranks: fp32) */
    int more; /* a block arrives during this step: wait_block before the next */
} ring_step;

/* Begins `step` of rank me_rank: finds its blocks and, unless it is the last, starts passing
 * the current block on. Returns the exchange's error. */
static int step_begin(const ring_work *w, const attn_ring_exchange *x, const attn_shape *s,
                      const attn_params *p, int me_rank, int step, const void *own_k,
                      const void *own_v, ring_step *st)
{
    const int P = w->ranks;
    attn_ring_part_of(s, p, P, ((me_rank - step) % P + P) % P, &st->blk);
    attn_ring_part_of(s, p, P, ((me_rank - step - 1) % P + P) % P, &st->next);
    step_block(w, step, own_k, own_v, &st->k, &st->v);
    st->more = step + 1 < P;
    return st->more ? pass_block(w, x, s, step, st->k, st->v, &st->blk, &st->next) : 0;
}

/* The scores query rows [a, a + len) see: every key, or with the causal mask keys <= row. */
static double chunk_scores(const attn_shape *s, int64_t a, int64_t len)
{
    return s->causal ? (double)len * (double)a + (double)len * (double)(len + 1) / 2
                     : (double)len * (double)s->n;
}

void attn_ring_cost_of(const attn_shape *s, const attn_params *p, int ranks, int rank,
                       int nthreads, attn_ring_cost *c)
{
    attn_ring_part me;
    attn_ring_part_of(s, p, ranks, rank, &me);
    *c = (attn_ring_cost){0};
    c->rows = me.rows;
    for (int r = 0; r < ranks; r++) {
        attn_ring_part o;
        attn_ring_part_of(s, p, ranks, r, &o);
        c->max_block_rows = o.rows > c->max_block_rows ? o.rows : c->max_block_rows;
    }
    double pairs = 0;
    for (int i = 0; i < me.chunks; i++)
        pairs += chunk_scores(s, me.start[i], me.len[i]);
    c->cost.scores = (double)(s->B * s->H) * pairs;
    c->cost.flops = 4.0 * c->cost.scores * (double)s->d;
    c->cost.bwd_flops = 2.5 * c->cost.flops; /* as full_stream: five products to two */
    c->cost.workspace_bytes = ring_carve(s, p, ranks, rank, nthreads, 0, NULL, NULL);
    c->cost.bwd_workspace_bytes = ring_carve(s, p, ranks, rank, nthreads, 1, NULL, NULL);
    /* step s passes on the block of rank (rank - s): K and V in P - 1 steps; the backward's
     * dK, dV sums also in the last step, home to their owner (no transfer with one rank) */
    for (int step = 0; step < ranks && ranks > 1; step++) {
        attn_ring_part src;
        attn_ring_part_of(s, p, ranks, ((rank - step) % ranks + ranks) % ranks, &src);
        const double pair = 2.0 * (double)block_floats(s, src.rows);
        const double kv = pair * (double)attn_dtype_size(s->dtype); /* K, V in the dtype */
        if (step + 1 < ranks) {
            c->send_bytes += kv;
            c->bwd_send_bytes += kv;
        }
        c->bwd_send_bytes += pair * sizeof(float); /* the dK, dV sums: fp32 */
    }
}

/* Block-local row offset of chunk i of a part (its rows follow the earlier chunk's). */
static int64_t chunk_local(const attn_ring_part *pt, int i)
{
    return i ? pt->len[0] : 0;
}

/* ---- forward ------------------------------------------------------------------------- */

/* This rank's queries against one block (K and V, `blk` its rows), merged into out,
 * m (kept in lse) and l. Each item is one head's query tile, run the same way for any thread
 * count. */
static void forward_block(const attn_shape *s, const attn_ring_part *me, const attn_ring_part *blk,
                          const void *K, const void *V, const attn_tensors *t, float *l,
                          float *out32, char *tiles, int tq, int tk, int nthreads,
                          const attn_ring_exchange *x)
{
    const int d = (int)s->d;
    const int64_t BH = s->B * s->H, qt0 = (me->len[0] + tq - 1) / tq,
                  qtiles = qt0 + (me->len[1] + tq - 1) / tq, items = BH * qtiles;
    const float scale = 1.0f / sqrtf((float)d);
    const size_t per_thread = tile_bytes(tq, tk, d, s->dtype);
    const attn_dtype dt = s->dtype;
#pragma omp parallel num_threads(nthreads)
    {
        kern_cursor cursor = {tiles + (size_t)omp_get_thread_num() * per_thread, 0};
        kern_tile tile;
        tile_init(&tile, &cursor, tq, tk, d, dt);
        if (out32) /* several merges into fp32, one rounding at the end */
            tile.out_dtype = ATTN_FP32;
        attn_stats mine = {{0}};
        tile.stats = t->stats ? &mine : NULL;
#pragma omp for schedule(dynamic)
        for (int64_t item = 0; item < items; item++) {
            if (x->progress && omp_get_thread_num() == 0) /* the caller's thread */
                x->progress(x->ctx);
            const int64_t bh = item / qtiles, qt = item % qtiles;
            const int qc = qt >= qt0;
            const int64_t q0 = (qt - (qc ? qt0 : 0)) * tq;
            const int rows = (int)(me->len[qc] - q0 < tq ? me->len[qc] - q0 : tq);
            const int64_t g0 = me->start[qc] + q0, lq = chunk_local(me, qc) + q0;
            const size_t qoff = (size_t)(bh * me->rows + lq);
            int started = 0;
            for (int kc = 0; kc < blk->chunks; kc++) {
                int64_t kend = blk->len[kc];
                if (s->causal && g0 + rows - blk->start[kc] < kend) /* keys after the last query */
                    kend = g0 + rows - blk->start[kc];
                for (int64_t k0 = 0; k0 < kend; k0 += tk) {
                    const int cols = (int)(kend - k0 < tk ? kend - k0 : tk);
                    const int64_t gk = blk->start[kc] + k0; /* global first key */
                    const size_t koff = (size_t)(bh * blk->rows + chunk_local(blk, kc) + k0) * d;
                    if (!started)
                        tile_begin(&tile, attn_elem(t->q, dt, qoff * d), d, NULL, rows, scale);
                    started = 1;
                    /* causal: global key gk + j is hidden from the queries before it */
                    const tile_mask causal = {.q0 = (int32_t)g0, .k0 = (int32_t)gk,
                                              .lo = INT32_MIN, .hi = 0, .hidden = -INFINITY};
                    tile_attend(&tile, attn_elem(K, dt, koff), d, NULL, attn_elem(V, dt, koff), d,
                                NULL, cols, s->causal ? &causal : NULL);
                }
            }
            if (started)
                tile_end_merge(&tile, out32 ? (void *)(out32 + qoff * d)
                                            : attn_elem_mut(t->out, dt, qoff * d),
                               d, NULL, t->lse + qoff, l + qoff, true);
        }
        attn_stats_add(t->stats, &mine);
    }
}

int attn_ring_forward(const attn_shape *s, const attn_params *p, const attn_ring_exchange *x,
                      const attn_tensors *t, void *work, int nthreads)
{
    const int P = x->ranks, me_rank = x->rank;
    attn_ring_part me;
    attn_ring_part_of(s, p, P, me_rank, &me);
    ring_work w;
    ring_carve(s, p, P, me_rank, nthreads, 0, work, &w);
    int tq, tk;
    ring_tiles(s, p, &tq, &tk);
    const size_t mine_floats = block_floats(s, me.rows), rows = (size_t)(s->B * s->H * me.rows);

    /* own block first; every row starts with nothing seen (l = 0: the first merge sets it) */
    if (w.out)
        memset(w.out, 0, mine_floats * sizeof(float));
    else
        memset(t->out, 0, mine_floats * attn_dtype_size(s->dtype));
    memset(w.row, 0, rows * sizeof(float));
    int failed = 0;
    for (int step = 0; step < P && !failed; step++) {
        ring_step st;
        failed = step_begin(&w, x, s, p, me_rank, step, t->k, t->v, &st);
        if (!failed)
            forward_block(s, &me, &st.blk, st.k, st.v, t, w.row, w.out, w.tiles, tq, tk, nthreads,
                          x);
        if (st.more && !failed)
            failed = wait_block(x);
    }
    if (failed)
        return ATTN_EEXCHANGE;
    for (size_t i = 0; i < rows; i++) /* the lse from the running max (in lse) and sum */
        t->lse[i] = w.row[i] > 0 ? t->lse[i] + logf(w.row[i]) : -INFINITY;
    if (w.out)
        attn_convert(w.out, ATTN_FP32, t->out, s->dtype, mine_floats);
    return ATTN_OK;
}

/* ---- backward ------------------------------------------------------------------------ */

/* Local query row qrows[r] is global row qrows[r] + qoff; key row krows[j] is krows[j] + koff. */
typedef struct ring_offsets {
    int64_t qoff, koff;
} ring_offsets;

static void ring_causal_mask(const void *ctx, float *s, int lds, int rows, int cols,
                             const int32_t *qrows, const int32_t *krows, float *shift, int grad)
{
    const ring_offsets *o = ctx;
    (void)shift;
    if (grad) /* masked entries were -inf: P = 0 there, so dS is 0 already */
        return;
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++)
            if (krows[j] + o->koff > qrows[r] + o->qoff)
                s[(size_t)r * lds + j] = -INFINITY;
}

/* One head's units for one block: each query tile of each chunk against each key tile of the
 * block's chunks that it sees, in that order. */
typedef struct ring_units {
    const attn_ring_exchange *x; /* its progress runs as the caller's thread claims units */
    const attn_ring_part *me, *blk;
    int tq, tk;
    bool causal;
    int qc, kc;
    int64_t q0, k0;
    ring_offsets offsets[2][2]; /* per (query chunk, key chunk): stable while units run */
    /* the block the units are of, for the driver's head_io (backward_block) */
    const void *K, *V;  /* the shape's dtype */
    const float *D;
    float *grad, *dq;   /* dq: where this rank's dq adds up (fp32) */
    size_t bf;
    int d;
    attn_dtype dtype;
} ring_units;

static bool ring_next(void *state, bwd_tile *t, bwd_unit *u)
{
    ring_units *c = state;
    if (c->x->progress && omp_get_thread_num() == 0)
        c->x->progress(c->x->ctx);
    for (;;) {
        if (c->qc >= c->me->chunks)
            return false;
        const int64_t qlen = c->me->len[c->qc];
        if (c->q0 >= qlen) {
            c->qc++, c->q0 = 0, c->kc = 0, c->k0 = 0;
            continue;
        }
        if (c->kc >= c->blk->chunks) {
            c->q0 += c->tq, c->kc = 0, c->k0 = 0;
            continue;
        }
        const int rows = (int)(qlen - c->q0 < c->tq ? qlen - c->q0 : c->tq);
        const int64_t g0 = c->me->start[c->qc] + c->q0, kstart = c->blk->start[c->kc];
        int64_t kend = c->blk->len[c->kc];
        if (c->causal && g0 + rows - kstart < kend)
            kend = g0 + rows - kstart;
        if (c->k0 >= kend) {
            c->kc++, c->k0 = 0;
            continue;
        }
        const int cols = (int)(kend - c->k0 < c->tk ? kend - c->k0 : c->tk);
        *u = (bwd_unit){
            .qrows = bwd_range(t->qrows, chunk_local(c->me, c->qc) + c->q0, rows),
            .rows = rows,
            .krows = bwd_range(t->krows, chunk_local(c->blk, c->kc) + c->k0, cols),
            .cols = cols,
            .mask = c->causal && kstart + c->k0 + cols - 1 > g0 ? ring_causal_mask : NULL,
            .ctx = &c->offsets[c->qc][c->kc]};
        c->k0 += c->tk;
        return true;
    }
}

/* One head's io against the block: this rank's query rows, the block's key rows, and the block's
 * dK, dV (grad: dK then dV, packed). */
static void ring_head_io(void *state, const attn_grads *g, int64_t bh, bwd_io *io)
{
    const ring_units *c = state;
    const int d = c->d;
    const size_t qo = (size_t)(bh * c->me->rows), ko = (size_t)(bh * c->blk->rows);
    const attn_dtype dt = c->dtype;
    *io = (bwd_io){.q = attn_elem(g->q, dt, qo * d), .k = attn_elem(c->K, dt, ko * d),
                   .v = attn_elem(c->V, dt, ko * d), .dout = attn_elem(g->dout, dt, qo * d),
                   .lse = g->lse + qo, .D = c->D + qo, .dq = c->dq + qo * d,
                   .dk = c->grad + ko * d, .dv = c->grad + c->bf + ko * d, .dtype = dt, .d = d,
                   .scale = 1.0f / sqrtf((float)d)};
}

static void ring_head_units(void *state, int64_t bh, const bwd_io *io)
{
    (void)bh, (void)io;
    ring_units *c = state;
    c->qc = c->kc = 0;
    c->q0 = c->k0 = 0;
    for (int qc = 0; qc < 2; qc++)
        for (int kc = 0; kc < 2; kc++)
            c->offsets[qc][kc] = (ring_offsets){c->me->start[qc] - chunk_local(c->me, qc),
                                                c->blk->start[kc] - chunk_local(c->blk, kc)};
}

/* This rank's share of one block's gradients: dq += ..., and the block's dK, dV (grad: dK then
 * dV, packed) written from zero, by the one driver (backward.h): each head's units over the
 * team in a fixed order. dq was zeroed and D computed once, before the first block. */
static void backward_block(const attn_shape *s, const attn_params *p, const attn_ring_part *me,
                           const attn_ring_part *blk, const void *K, const void *V, float *grad,
                           float *dq, const attn_grads *g, const float *D, char *tiles,
                           int nthreads, const attn_ring_exchange *x)
{
    int tq, tk;
    ring_tiles(s, p, &tq, &tk);
    const size_t bf = block_floats(s, blk->rows);
    memset(grad, 0, 2 * bf * sizeof(float));
    ring_units units = {.x = x, .me = me, .blk = blk, .tq = tq, .tk = tk, .causal = s->causal,
                        .K = K, .V = V, .D = D, .grad = grad, .dq = dq, .bf = bf, .d = (int)s->d,
                        .dtype = s->dtype};
    const bwd_plan plan = {.max_rows = tq, .max_cols = tk, .prepare = false, .state = &units,
                           .head_io = ring_head_io, .head_units = ring_head_units,
                           .next = ring_next};
    bwd_drive(s, g, &plan, NULL, tiles, nthreads);
}

int attn_ring_backward(const attn_shape *s, const attn_params *p, const attn_ring_exchange *x,
                       const attn_grads *g, void *work, int nthreads)
{
    const int P = x->ranks, me_rank = x->rank;
    attn_ring_part me;
    attn_ring_part_of(s, p, P, me_rank, &me);
    ring_work w;
    ring_carve(s, p, P, me_rank, nthreads, 1, work, &w);
    const size_t mine_floats = block_floats(s, me.rows), rows = (size_t)(s->B * s->H * me.rows);
    const int d = (int)s->d;

    const attn_dtype dt = s->dtype;
    float *dq = dt == ATTN_FP32 ? g->dq : w.dq; /* bf16: added up in fp32, rounded at the end */
    memset(dq, 0, mine_floats * sizeof(float));
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t i0 = 0; i0 < (int64_t)rows; i0 += 1024) {
        const int64_t count = (int64_t)rows - i0 < 1024 ? (int64_t)rows - i0 : 1024;
        bwd_rowdot(attn_elem(g->dout, dt, (size_t)i0 * d), attn_elem(g->out, dt, (size_t)i0 * d),
                   dt, count, d, w.row + i0);
    }
    int failed = 0;
    for (int step = 0; step < P && !failed; step++) {
        ring_step st;
        if ((failed = step_begin(&w, x, s, p, me_rank, step, g->k, g->v, &st)) != 0)
            break;
        float *share = w.grad[step & 1];
        const size_t pair = 2 * block_floats(s, st.blk.rows);
        backward_block(s, p, &me, &st.blk, st.k, st.v, share, dq, g, w.row, w.tiles, nthreads, x);
        if (step > 0) { /* the sum of the ranks before this one: ring order, fixed */
            failed = x->wait(x->ctx, ATTN_RING_GRAD) != 0;
            for (size_t i = 0; i < pair && !failed; i++)
                share[i] = w.acc[i] + share[i];
        }
        /* pass the sum on; receive the next block's, or (last step) this rank's own, home
         * (one rank: its own sum is already here) */
        const size_t incoming = st.more ? 2 * block_floats(s, st.next.rows) : 2 * mine_floats;
        if (!failed && P > 1)
            failed = x->shift(x->ctx, ATTN_RING_GRAD, share, pair * sizeof(float), w.acc,
                              incoming * sizeof(float)) != 0;
        if (st.more && !failed)
            failed = wait_block(x);
    }
    if (failed || (P > 1 && x->wait(x->ctx, ATTN_RING_GRAD) != 0))
        return ATTN_EEXCHANGE;
    const float *home = P > 1 ? w.acc : w.grad[0];
    attn_convert(home, ATTN_FP32, g->dk, dt, mine_floats);
    attn_convert(home + mine_floats, ATTN_FP32, g->dv, dt, mine_floats);
    if (dt != ATTN_FP32)
        attn_convert(dq, ATTN_FP32, g->dq, dt, mine_floats);
    return ATTN_OK;
}

/* ---- the registered method: one rank ---------------------------------------------- */

/* One rank never shifts (every ring loop runs P - 1 exchanges), so it needs no transport. */
static const attn_ring_exchange one_rank = {.rank = 0, .ranks = 1};

static int ring_check(const attn_shape *s, const attn_params *p, const char **why)
{
    if (s->n > INT32_MAX / 2) {
        *why = "n must fit a BLAS int dimension";
        return ATTN_EUNSUPPORTED;
    }
    return attn_ring_check(s, p, 1, why);
}

static void ring_cost(const attn_shape *s, const attn_params *p, int nthreads, attn_cost *c)
{
    attn_ring_cost rc;
    attn_ring_cost_of(s, p, 1, 0, nthreads, &rc);
    *c = rc.cost;
}

static int ring_forward(const attn_shape *s, const attn_params *p, const attn_tensors *t,
                        void *work, int nthreads)
{
    return attn_ring_forward(s, p, &one_rank, t, work, nthreads);
}

static int ring_backward(const attn_shape *s, const attn_params *p, const attn_grads *g,
                         void *work, int nthreads)
{
    return attn_ring_backward(s, p, &one_rank, g, work, nthreads);
}

const attn_method attn_ring = {
    .name = "ring",
    .summary = "exact attention split over ranks that pass key/value blocks around a ring "
               "(Ring Attention); one rank here, P with --ranks (MPI)",
    .params = ring_params,
    .n_params = (int)(sizeof ring_params / sizeof ring_params[0]),
    .check = ring_check,
    .cost = ring_cost,
    .forward = ring_forward,
    .backward = ring_backward,
};
