/* etc.c: ETC global-local attention (Ainslie et al., "ETC: Encoding Long and Structured Inputs
 * in Transformers", EMNLP 2020), bidirectional, as google-research/google-research
 * etcmodel/layers/attention.py (FusedGlobalLocalAttention) defines it.
 *
 * The first g rows of q, k, v are the global tokens, the other n_l = n - g rows the long
 * tokens, so the method takes the same inputs as every other. Long token i attends to the long
 * tokens within `radius` of it (l2l) and to the global tokens (l2g); global tokens attend to
 * every global token (g2g) and to the long tokens (g2l): ETC's two fused softmaxes.
 *
 * g = globals (default 128, at most n), or with tokens_per_global = t > 0, g = ceil(n/(t+1)):
 * global token s then summarizes the s-th run of t long tokens. Segments: long token i
 * belongs to segment i / t (with tokens_per_global) or i * g / n_l (with a fixed g: g even
 * runs). l2g=segment (ETC's hard l2g mask) lets a long token see only its own segment's
 * global token, g2l=segment (the hard g2l mask) lets a global token see only its own
 * segment's long tokens; with both, only g2g (g^2 pairs) grows faster than n.
 *
 * Conventions: relative position encodings (ETC's relative ids) are left out, as the ETC
 * code allows (relative_vocab_size=None); Q, K, V are shared by the four pieces (ETC's
 * share_qkv_projections=True default); scores are scaled by 1/sqrt(d); masked pairs get
 * weight exactly 0 (ETC adds -10000, the same unless a row has nothing to attend). The local
 * band is computed in tiles of 64 queries against their window, masked outside the radius:
 * never as a dense n_l x n_l mask and without tiling the side keys into every block. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "backward.h"
#include "kernels.h"
#include "methods.h"
#include "tile.h"

enum { ETC_RADIUS, ETC_GLOBALS, ETC_TOKENS_PER_GLOBAL, ETC_L2G, ETC_G2L };
static const char *const etc_masks[] = {"all", "segment", NULL};

static const attn_param_spec etc_params[] = {
    [ETC_RADIUS] = {.name = "radius", .help = "local window radius of the long tokens",
                    .kind = ATTN_PARAM_INT, .def = 84, .min = 0, .max = 2147483648.0},
    [ETC_GLOBALS] = {.name = "globals", .help = "global tokens (the first rows), at most n",
                     .kind = ATTN_PARAM_INT, .def = 128, .min = 0, .max = 2147483648.0},
    [ETC_TOKENS_PER_GLOBAL] = {.name = "tokens_per_global",
                               .help = "t > 0: g = ceil(n/(t+1)) globals, one per t long tokens "
                                       "(overrides globals); 0: off",
                               .kind = ATTN_PARAM_INT, .def = 0, .min = 0, .max = 2147483648.0},
    [ETC_L2G] = {.name = "l2g", .help = "long tokens see all globals, or their segment's",
                 .kind = ATTN_PARAM_CHOICE, .def = 0, .choices = etc_masks},
    [ETC_G2L] = {.name = "g2l", .help = "globals see all long tokens, or their segment's",
                 .kind = ATTN_PARAM_CHOICE, .def = 0, .choices = etc_masks},
};

enum { ETC_TILE_Q = 64, ETC_TILE_K = 256 };

typedef struct etc_geom {
    int64_t n, g, nl, r, t; /* t: tokens per global, 0 for a fixed g */
    int l2g_segment, g2l_segment;
} etc_geom;

static etc_geom geom(const attn_shape *s, const attn_params *p)
{
    etc_geom e = {.n = s->n, .r = (int64_t)p->v[ETC_RADIUS],
                  .t = (int64_t)p->v[ETC_TOKENS_PER_GLOBAL],
                  .l2g_segment = (int)p->v[ETC_L2G] == 1, .g2l_segment = (int)p->v[ETC_G2L] == 1};
    e.g = e.t > 0 ? (s->n + e.t) / (e.t + 1) : (int64_t)p->v[ETC_GLOBALS];
    if (e.g > s->n)
        e.g = s->n;
    e.nl = s->n - e.g;
    return e;
}

/* Segment (global token) of long token i; -1 when there are no globals. */
static int64_t segment_of(const etc_geom *e, int64_t i)
{
    if (e->g == 0)
        return -1;
    int64_t s = e->t > 0 ? i / e->t : (int64_t)((double)i * (double)e->g / (double)e->nl);
    return s < e->g ? s : e->g - 1;
}

/* First long token of segment s (segments are contiguous, in order); s may be g. */
static int64_t segment_start(const etc_geom *e, int64_t s)
{
    if (s >= e->g)
        return e->nl;
    if (e->t > 0)
        return s * e->t < e->nl ? s * e->t : e->nl;
    int64_t lo = (int64_t)ceil((double)s * (double)e->nl / (double)e->g);
    while (lo > 0 && segment_of(e, lo - 1) >= s) /* guard the float division */
        lo--;
    while (lo < e->nl && segment_of(e, lo) < s)
        lo++;
    return lo;
}

static int etc_check(const attn_shape *s, const attn_params *p, const char **why)
{
    (void)p;
    if (s->causal) {
        *why = "ETC global-local attention is bidirectional: it has no causal form";
        return ATTN_EUNSUPPORTED;
    }
    if (s->n > INT32_MAX) {
        *why = "positions must fit int32";
        return ATTN_EUNSUPPORTED;
    }
    return ATTN_OK;
}

/* sum over i in [0, L) of the window size min(L-1, i+r) - max(0, i-r) + 1 */
static double window_pairs(double L, double r)
{
    if (L <= 0)
        return 0;
    double hi = L * (L - 1) / 2 + L * r; /* sum of i + r */
    double k = fmin(L, r);               /* terms where i + r > L - 1 */
    double top = r, bottom = r - k + 1;  /* their excess runs bottom..top */
    hi -= (top + bottom) * k / 2;
    double m = L - 1 - r; /* terms where i - r > 0 */
    double lo = m > 0 ? m * (m + 1) / 2 : 0;
    return hi - lo + L;
}

static void etc_cost(const attn_shape *s, const attn_params *p, int nthreads, attn_cost *c)
{
    const etc_geom e = geom(s, p);
    *c = (attn_cost){0};
    c->workspace_bytes = (size_t)nthreads * tile_bytes(ETC_TILE_Q, ETC_TILE_K, (int)s->d, s->dtype);
    if (e.nl > 0) {
        c->structure_ndim = 1;
        c->structure_dims[0] = e.nl;
    }
    const double g = (double)e.g, nl = (double)e.nl;
    double pairs = window_pairs(nl, (double)e.r);                  /* l2l */
    pairs += nl * (e.l2g_segment ? (e.g > 0) : g);                 /* l2g */
    pairs += g * g + (e.g2l_segment ? nl : g * nl);                /* g2g, g2l */
    c->scores = (double)(s->B * s->H) * pairs;
    c->flops = 4.0 * c->scores * (double)s->d;
    c->bwd_workspace_bytes = bwd_head_bytes(s) +
                             (size_t)nthreads * bwd_tile_bytes(ETC_TILE_Q, ETC_TILE_K, (int)s->d);
    c->bwd_flops = 2.5 * c->flops;
}

/* Whether query row qr sees key row kr (rows of one head, the globals first). */
static int sees(const etc_geom *e, int64_t qr, int64_t kr)
{
    const int qg = qr < e->g, kg = kr < e->g;
    if (qg && kg)
        return 1; /* g2g */
    if (qg)
        return !e->g2l_segment || segment_of(e, kr - e->g) == qr;
    if (kg)
        return !e->l2g_segment || segment_of(e, qr - e->g) == kr;
    return qr - kr <= e->r && kr - qr <= e->r; /* l2l: the local window */
}

/* sees() as a tile mask, for queries [row0, row0 + rows) against keys [j0, j0 + cols) of one
 * masked range: the local window is a band of positions; a segment rule compares segment ids
 * (a global's own index against the segment of each long token), written into qseg or kseg. */
static void mask_of(const etc_geom *e, int64_t row0, int rows, int64_t j0, int cols,
                    int32_t *qseg, int32_t *kseg, tile_mask *m)
{
    *m = (tile_mask){.q0 = (int32_t)row0, .k0 = (int32_t)j0, .lo = 0, .hi = 0,
                     .hidden = -INFINITY};
    if (row0 < e->g) { /* global queries, long keys: g2l by segment */
        for (int j = 0; j < cols; j++)
            kseg[j] = (int32_t)segment_of(e, j0 + j - e->g);
        m->kpos = kseg;
        m->k0 = 0;
    } else if (j0 < e->g) { /* long queries, global keys: l2g by segment */
        for (int r = 0; r < rows; r++)
            qseg[r] = (int32_t)segment_of(e, row0 + r - e->g);
        m->qpos = qseg;
        m->q0 = 0;
    } else { /* long queries, long keys: the local window */
        m->hi = (int32_t)(e->r < INT32_MAX ? e->r : INT32_MAX);
        m->lo = -m->hi;
    }
}

/* The key rows a query tile (rows queries from head row row0) streams: up to three ranges,
 * each masked with sees() or not at all. Returns the count. */
typedef struct key_range {
    int64_t k0, k1;
    int masked;
} key_range;

static int key_ranges(const etc_geom *e, int64_t row0, int rows, key_range out[3])
{
    int count = 0;
    if (row0 < e->g) { /* global queries: every global, then every long token or their runs */
        if (!e->g2l_segment) {
            out[count++] = (key_range){0, e->n, 0};
        } else {
            out[count++] = (key_range){0, e->g, 0};
            out[count++] = (key_range){e->g + segment_start(e, row0), e->g + segment_start(e, row0 + rows), 1};
        }
        return count;
    }
    const int64_t first = row0 - e->g; /* long index of the first query */
    if (e->g > 0 && !e->l2g_segment)
        out[count++] = (key_range){0, e->g, 0};
    else if (e->g > 0) /* the segments these queries belong to */
        out[count++] = (key_range){segment_of(e, first), segment_of(e, first + rows - 1) + 1, 1};
    const int64_t lo = first - e->r > 0 ? first - e->r : 0;
    const int64_t hi = first + rows + e->r < e->nl ? first + rows + e->r : e->nl;
    out[count++] = (key_range){e->g + lo, e->g + hi, 1};
    return count;
}

/* The items of one head: the global query tiles first (the long ones), then the long tiles.
 * Returns the first head row of item k and its row count. */
static int64_t item_rows(const etc_geom *e, int64_t k, int *rows)
{
    const int64_t gtiles = (e->g + ETC_TILE_Q - 1) / ETC_TILE_Q;
    const int is_global = k < gtiles;
    const int64_t first = (is_global ? k : k - gtiles) * ETC_TILE_Q;
    const int64_t count = is_global ? e->g : e->nl;
    *rows = (int)(count - first < ETC_TILE_Q ? count - first : ETC_TILE_Q);
    return is_global ? first : e->g + first;
}

static int64_t items_per_head(const etc_geom *e)
{
    return (e->g + ETC_TILE_Q - 1) / ETC_TILE_Q + (e->nl + ETC_TILE_Q - 1) / ETC_TILE_Q;
}

static int etc_forward(const attn_shape *s, const attn_params *p, const attn_tensors *t,
                       void *work, int nthreads)
{
    const etc_geom e = geom(s, p);
    const int d = (int)s->d;
    const int64_t n = s->n, heads = s->B * s->H, per_head = items_per_head(&e);
    const float scale = 1.0f / sqrtf((float)d);
    const size_t per_thread = tile_bytes(ETC_TILE_Q, ETC_TILE_K, d, s->dtype);

    for (int64_t i = 0; i < e.nl && t->structure && !t->reuse_structure; i++)
        t->structure[i] = (int32_t)segment_of(&e, i);

#pragma omp parallel num_threads(nthreads)
    {
        kern_cursor cursor = {(char *)work + (size_t)omp_get_thread_num() * per_thread, 0};
        kern_tile tile;
        tile_init(&tile, &cursor, ETC_TILE_Q, ETC_TILE_K, d, s->dtype);
        attn_stats mine = {{0}};
        tile.stats = t->stats ? &mine : NULL;
        int32_t qseg[ETC_TILE_Q], kseg[ETC_TILE_K]; /* segment ids, for the segment masks */
#pragma omp for schedule(dynamic)
        for (int64_t item = 0; item < heads * per_head; item++) {
            const int64_t bh = item / per_head;
            const size_t off = (size_t)bh * (size_t)n * (size_t)d;
            const attn_dtype dt = s->dtype;
            const void *kk = attn_elem(t->k, dt, off), *v = attn_elem(t->v, dt, off);
            int rows;
            const int64_t row0 = item_rows(&e, item % per_head, &rows);
            key_range ranges[3];
            const int nr = key_ranges(&e, row0, rows, ranges);
            tile_begin(&tile, attn_elem(t->q, dt, off + (size_t)row0 * d), d, NULL, rows, scale);
            for (int r = 0; r < nr; r++)
                for (int64_t j0 = ranges[r].k0; j0 < ranges[r].k1; j0 += ETC_TILE_K) {
                    const int cols = (int)(ranges[r].k1 - j0 < ETC_TILE_K ? ranges[r].k1 - j0 : ETC_TILE_K);
                    tile_mask mask;
                    if (ranges[r].masked) /* segments are only defined where a mask needs them */
                        mask_of(&e, row0, rows, j0, cols, qseg, kseg, &mask);
                    /* a tile's rows are all global or all long, and so are its keys */
                    mine.v[row0 < e.g || j0 < e.g ? ATTN_STAT_GLOBAL_SCORES
                                                  : ATTN_STAT_LOCAL_SCORES] +=
                        (uint64_t)rows * (uint64_t)cols;
                    tile_attend(&tile, attn_elem(kk, dt, (size_t)j0 * d), d, NULL,
                                attn_elem(v, dt, (size_t)j0 * d), d, NULL, cols,
                                ranges[r].masked ? &mask : NULL);
                }
            tile_end(&tile, attn_elem_mut(t->out, dt, off + (size_t)row0 * d), d, NULL,
                     t->lse + (size_t)bh * (size_t)n + row0);
        }
        attn_stats_add(t->stats, &mine);
    }
    return ATTN_OK;
}

static void bwd_mask(const void *ctx, float *s, int lds, int rows, int cols, const int32_t *qrows,
                     const int32_t *krows, float *shift, int grad)
{
    (void)shift;
    if (grad)
        return; /* masked pairs have P = 0, so dS = 0 there already */
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++)
            if (!sees(ctx, qrows[r], krows[j]))
                s[(size_t)r * lds + j] = -INFINITY;
}

/* The units of one head's backward: the forward's query tiles, each against its key ranges
 * in tiles of ETC_TILE_K keys, in the forward's order. */
typedef struct etc_units {
    const etc_geom *e;
    int64_t item, j0; /* the next unit: query tile, and the key tile within its ranges */
    int range;
} etc_units;

static bool etc_next(void *state, bwd_tile *t, bwd_unit *u)
{
    etc_units *c = state;
    const etc_geom *e = c->e;
    for (; c->item < items_per_head(e); c->item++, c->range = 0, c->j0 = -1) {
        int rows;
        const int64_t row0 = item_rows(e, c->item, &rows);
        key_range ranges[3];
        const int nr = key_ranges(e, row0, rows, ranges);
        for (; c->range < nr; c->range++, c->j0 = -1) {
            const key_range *kr = &ranges[c->range];
            if (c->j0 < 0)
                c->j0 = kr->k0;
            if (c->j0 >= kr->k1)
                continue;
            const int cols = (int)(kr->k1 - c->j0 < ETC_TILE_K ? kr->k1 - c->j0 : ETC_TILE_K);
            *u = (bwd_unit){.qrows = bwd_range(t->qrows, row0, rows), .rows = rows,
                            .krows = bwd_range(t->krows, c->j0, cols), .cols = cols,
                            .mask = kr->masked ? bwd_mask : NULL, .ctx = e};
            c->j0 += ETC_TILE_K;
            return true;
        }
    }
    return false;
}

static void etc_head_units(void *state, int64_t bh, const bwd_io *io)
{
    (void)bh, (void)io;
    etc_units *c = state;
    *c = (etc_units){.e = c->e, .j0 = -1};
}

/* The backward: every query tile against its key ranges, run by the one driver (backward.h):
 * one head uses every thread, and the result does not depend on the thread count. */
static int etc_backward(const attn_shape *s, const attn_params *p, const attn_grads *gr,
                        void *work, int nthreads)
{
    const etc_geom e = geom(s, p);
    etc_units units = {.e = &e};
    const bwd_plan plan = {.max_rows = ETC_TILE_Q, .max_cols = ETC_TILE_K, .prepare = true,
                           .scale = 1.0f / sqrtf((float)s->d), .state = &units,
                           .head_units = etc_head_units, .next = etc_next};
    kern_cursor cursor = {work, 0};
    const bwd_head head = bwd_head_carve(s, &cursor);
    bwd_drive(s, gr, &plan, &head, cursor.base + cursor.off, nthreads);
    return ATTN_OK;
}

const attn_method attn_etc = {
    .name = "etc",
    .summary = "ETC global-local attention: first g rows global, long tokens in a local window",
    .params = etc_params,
    .n_params = (int)(sizeof etc_params / sizeof etc_params[0]),
    .check = etc_check,
    .cost = etc_cost,
    .forward = etc_forward,
    .backward = etc_backward,
};
