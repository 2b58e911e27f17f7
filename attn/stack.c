/* stack.c: standard and reversible transformer stacks and their training step (see stack.h).
 *
 * Every product is an OpenBLAS sgemm on fixed blocks of rows (or of weight rows, for weight
 * gradients), each block computed by one thread, so results do not depend on the thread
 * count. The workspace is laid out once by carve(), which both stack_cost_of() (to size it)
 * and the step (to use it) call, so the two cannot disagree.
 *
 * F runs head by head: each head's Q, K, V come from its columns of the projections and its
 * output goes through its rows of Wo straight into the residual stream, so one head's
 * projections and gradients exist at a time (a reversible stack at 2^20 tokens kept a whole
 * layer's Q, K, V, outputs and their gradients, 7 GiB at d_model 256). Shared-QK methods
 * (lsh) have no key projection at all, as in the Reformer. */
#include "stack.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels.h"
#include "rng.h"

/* Products run on fixed blocks of rows, each one sgemm on one thread (results do not depend
 * on the thread count): ROW_BLOCK rows of activations, so OpenBLAS packs the weights once per
 * sizeable block (64-row blocks spent a sixth of the step packing); WEIGHT_BLOCK rows of a
 * weight gradient, small, so there are enough blocks for every thread. */
enum { ROW_BLOCK = 512, WEIGHT_BLOCK = 64 };

/* ---- weights ----------------------------------------------------------------------------- */

typedef struct layer_w {
    float *ln1_g, *ln1_b, *wq, *wk, *wv, *wo, *ln2_g, *ln2_b, *w1, *b1, *w2, *b2;
} layer_w;

static int64_t dmodel(const stack_config *c)
{
    return c->shape.H * c->shape.d;
}

/* Q, K, V and output projections: three when the method derives its keys from the queries. */
static int projections(const stack_config *c)
{
    return c->attn.method->shared_qk ? 3 : 4;
}

static size_t layer_floats(const stack_config *c)
{
    const int64_t D = dmodel(c), F = c->d_ff;
    return (size_t)(4 * D + projections(c) * D * D + D * F + F + F * D + D);
}

/* The weights (or gradients) of layer l inside a flat array; wk is NULL for shared QK. */
static layer_w layer_at(float *base, const stack_config *c, int l)
{
    const int64_t D = dmodel(c), F = c->d_ff;
    float *p = base + (size_t)l * layer_floats(c);
    layer_w w;
    w.ln1_g = p, p += D;
    w.ln1_b = p, p += D;
    w.wq = p, p += D * D;
    w.wk = NULL;
    if (!c->attn.method->shared_qk)
        w.wk = p, p += D * D;
    w.wv = p, p += D * D;
    w.wo = p, p += D * D;
    w.ln2_g = p, p += D;
    w.ln2_b = p, p += D;
    w.w1 = p, p += D * F;
    w.b1 = p, p += F;
    w.w2 = p, p += F * D;
    w.b2 = p;
    return w;
}

const char *const stack_param_names[STACK_NPARAMS] = {
    "ln1_g", "ln1_b", "wq", "wk", "wv", "wo", "ln2_g", "ln2_b", "w1", "b1", "w2", "b2",
};

int stack_param_shape(const stack_config *c, const char *name, int64_t shape[2])
{
    const int64_t D = dmodel(c), F = c->d_ff;
    /* rows, columns (0: a vector), in stack_param_names' order */
    const int64_t dims[STACK_NPARAMS][2] = {{D, 0}, {D, 0}, {D, D}, {D, D}, {D, D}, {D, D},
                                            {D, 0}, {D, 0}, {D, F}, {F, 0}, {F, D}, {D, 0}};
    for (int i = 0; i < STACK_NPARAMS; i++)
        if (strcmp(stack_param_names[i], name) == 0) {
            if (i == 3 && c->attn.method->shared_qk) /* wk */
                return 0;
            shape[0] = dims[i][0];
            shape[1] = dims[i][1];
            return dims[i][1] ? 2 : 1;
        }
    return 0;
}

float *stack_param(const stack_config *c, float *weights, int l, const char *name, size_t *count)
{
    int64_t shape[2];
    const int ndim = stack_param_shape(c, name, shape);
    if (!ndim)
        return NULL;
    const layer_w w = layer_at(weights, c, l);
    float *const at[STACK_NPARAMS] = {w.ln1_g, w.ln1_b, w.wq, w.wk, w.wv, w.wo,
                                      w.ln2_g, w.ln2_b, w.w1, w.b1, w.w2, w.b2};
    for (int i = 0; i < STACK_NPARAMS; i++)
        if (strcmp(stack_param_names[i], name) == 0) {
            *count = (size_t)(shape[0] * (ndim == 2 ? shape[1] : 1));
            return at[i];
        }
    return NULL;
}

void stack_init_weights(const stack_config *c, float *weights, uint64_t seed)
{
    const int64_t D = dmodel(c), F = c->d_ff;
    for (int l = 0; l < c->layers; l++) {
        layer_w w = layer_at(weights, c, l);
        float *mats[] = {w.wq, w.wk, w.wv, w.wo, w.w1, w.w2};
        const int64_t fan_in[] = {D, D, D, D, D, F}, count[] = {D * D, D * D, D * D, D * D, D * F, F * D};
        for (int m = 0; m < 6; m++) /* each matrix its own stream, with or without wk */
            if (mats[m])
                rng_fill_normal(mats[m], 0, (size_t)count[m],
                                rng_stream(seed, (uint64_t)(l * 16 + m)), 1.0 / sqrt((double)fan_in[m]));
        for (int64_t i = 0; i < D; i++) {
            w.ln1_g[i] = w.ln2_g[i] = 1.0f;
            w.ln1_b[i] = w.ln2_b[i] = w.b2[i] = 0.0f;
        }
        for (int64_t i = 0; i < F; i++)
            w.b1[i] = 0.0f;
    }
}

/* ---- products, LayerNorm, layouts ---------------------------------------------------------- */

/* Y (rows, m) = alpha X (rows, k) W (k, m) + beta Y, by blocks of rows; leading dimensions
 * ldx, ldw, ldy (a head's columns of a projection, or its rows of Wo). */
static void mm_xw(int nthreads, int64_t rows, int k, int m, const float *X, int ldx,
                  const float *W, int ldw, float alpha, float beta, float *Y, int ldy)
{
    const int64_t nblocks = (rows + ROW_BLOCK - 1) / ROW_BLOCK;
#pragma omp parallel num_threads(nthreads)
    {
        kern_blas_serial();
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblocks; b++) {
            const int64_t r0 = b * ROW_BLOCK;
            const int r = (int)(rows - r0 < ROW_BLOCK ? rows - r0 : ROW_BLOCK);
            kern_gemm_nn(r, m, k, alpha, X + r0 * ldx, ldx, W, ldw, beta, Y + r0 * ldy, ldy);
        }
    }
}

/* dX (rows, k) = dY (rows, m) W^T + beta dX, with W (k, m) of leading dimension ldw. */
static void mm_dywt(int nthreads, int64_t rows, int k, int m, const float *dY, int ldy,
                    const float *W, int ldw, float beta, float *dX, int ldx)
{
    const int64_t nblocks = (rows + ROW_BLOCK - 1) / ROW_BLOCK;
#pragma omp parallel num_threads(nthreads)
    {
        kern_blas_serial();
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblocks; b++) {
            const int64_t r0 = b * ROW_BLOCK;
            const int r = (int)(rows - r0 < ROW_BLOCK ? rows - r0 : ROW_BLOCK);
            kern_gemm_nt(r, k, m, 1.0f, dY + r0 * ldy, ldy, W, ldw, beta, dX + r0 * ldx, ldx);
        }
    }
}

/* dW (k, m) += X (rows, k)^T dY (rows, m), by blocks of dW's rows (whole sums per block). */
static void mm_xtdy(int nthreads, int64_t rows, int k, int m, const float *X, int ldx,
                    const float *dY, int ldy, float *dW, int ldw)
{
    const int nblocks = (k + WEIGHT_BLOCK - 1) / WEIGHT_BLOCK;
#pragma omp parallel num_threads(nthreads)
    {
        kern_blas_serial();
#pragma omp for schedule(static)
        for (int b = 0; b < nblocks; b++) {
            const int k0 = b * WEIGHT_BLOCK, kk = k - k0 < WEIGHT_BLOCK ? k - k0 : WEIGHT_BLOCK;
            kern_gemm_tn(kk, m, (int)rows, 1.0f, X + k0, ldx, dY, ldy, 1.0f,
                         dW + (size_t)k0 * ldw, ldw);
        }
    }
}

/* acc[j] += sum over rows of X[i][j] (columns in parallel: a fixed summation order). */
static void colsum(int nthreads, int64_t rows, int64_t cols, const float *X, float *acc)
{
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
        const int64_t c1 = c0 + 16 < cols ? c0 + 16 : cols;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = c0; j < c1; j++)
                acc[j] += X[i * cols + j];
    }
}

#define LN_EPS 1e-5f

static void ln_forward(int nthreads, int64_t rows, int64_t D, const float *x, const float *g,
                       const float *b, float *y, float *mean, float *rstd)
{
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        const float *xi = x + i * D;
        double mu = 0, var = 0;
        for (int64_t j = 0; j < D; j++)
            mu += xi[j];
        mu /= (double)D;
        for (int64_t j = 0; j < D; j++)
            var += (xi[j] - mu) * (xi[j] - mu);
        const float rs = (float)(1.0 / sqrt(var / (double)D + LN_EPS));
        mean[i] = (float)mu;
        rstd[i] = rs;
        for (int64_t j = 0; j < D; j++)
            y[i * D + j] = g[j] * ((xi[j] - (float)mu) * rs) + b[j];
    }
}

/* dx += LayerNorm'^T dy; dg += sum dy o xhat; db += sum dy. */
static void ln_backward(int nthreads, int64_t rows, int64_t D, const float *x, const float *g,
                        const float *mean, const float *rstd, const float *dy, float *dx,
                        float *dg, float *db)
{
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        const float *xi = x + i * D, *dyi = dy + i * D;
        double s1 = 0, s2 = 0; /* mean of dxhat, mean of dxhat o xhat */
        for (int64_t j = 0; j < D; j++) {
            const double xh = (xi[j] - mean[i]) * rstd[i], dxh = (double)dyi[j] * g[j];
            s1 += dxh;
            s2 += dxh * xh;
        }
        s1 /= (double)D;
        s2 /= (double)D;
        for (int64_t j = 0; j < D; j++) {
            const double xh = (xi[j] - mean[i]) * rstd[i], dxh = (double)dyi[j] * g[j];
            dx[i * D + j] += (float)(rstd[i] * (dxh - s1 - xh * s2));
        }
    }
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t j = 0; j < D; j++) {
        double sg = 0, sb = 0;
        for (int64_t i = 0; i < rows; i++) {
            sg += (double)dy[i * D + j] * ((x[i * D + j] - mean[i]) * rstd[i]);
            sb += dy[i * D + j];
        }
        dg[j] += (float)sg;
        db[j] += (float)sb;
    }
}

static void add_into(int nthreads, size_t count, const float *a, float *y)
{
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (size_t i = 0; i < count; i++)
        y[i] += a[i];
}

/* ---- the workspace ------------------------------------------------------------------------- */

/* F's state for one layer: its LayerNorm, and per head Q, K (none for shared QK), V, the
 * attention output and lse. A standard stack keeps one per layer, every head (its backward
 * needs them all); a reversible one has a single one, whose q, k, v hold one head at a time
 * (recomputed in the backward: cheap products against keeping every head's) and whose out
 * and lse hold every head from the recompute of a layer's forward to its backward. */
typedef struct fcache {
    float *xn, *mean, *rstd;
    float *q, *k, *v;    /* (B, n, d) per head; head h at h * head_stride */
    float *out, *lse;    /* every head: (H, B, n, d) and (H, B, n) */
    size_t head_stride;  /* B n d, or 0 when q, k, v hold one head */
} fcache;

/* What G keeps: normalized inputs, statistics and the hidden layer, for `rows` rows. */
typedef struct gcache {
    float *xn, *mean, *rstd, *h;
} gcache;

typedef struct layout {
    size_t total, activations;
    float *y1, *y2, *dy1, *dy2;   /* the streams and their gradients (standard: y1, dy1) */
    float *dxn;                   /* F's backward: the gradient of its LayerNorm's output */
    float *dout, *dq, *dk, *dv;   /* F's backward: one head's (B, n, d) each */
    float *g_out, *g_dh, *g_dxn;  /* G's chunk scratch */
    gcache gscratch;              /* G's chunk intermediates (reversible) */
    fcache rev_fc;                /* reversible: one F cache, reused by every layer */
    float *loss_rows;             /* per row block: its share of the loss */
    void *attn_fwd, *attn_bwd;
    /* per layer: structure; standard: inputs, F cache, mid, G cache; reversible: kept inputs */
    char *layers_base;
    size_t layer_stride;
} layout;

typedef struct layer_state {
    int32_t *structure;  /* per head, contiguous: head h at h * structure_per_head() */
    float *xin, *xmid;   /* standard */
    fcache fc;           /* standard */
    gcache gc;           /* standard: all rows */
    float *kept1, *kept2; /* reversible with keep_inputs */
} layer_state;

/* One head as the attention methods see it: (B, 1, n, d). */
static attn_shape head_shape(const stack_config *s)
{
    attn_shape h = s->shape;
    h.H = 1;
    return h;
}

static size_t head_elems(const stack_config *s)
{
    return (size_t)(s->shape.B * s->shape.n * s->shape.d);
}

static void carve_fcache(kern_cursor *c, const stack_config *s, bool all_heads, fcache *f)
{
    const size_t rows = (size_t)(s->shape.B * s->shape.n), D = (size_t)dmodel(s);
    const size_t H = (size_t)s->shape.H, he = head_elems(s), qkv = all_heads ? H * he : he;
    f->xn = kern_take(c, rows * D, 4);
    f->mean = kern_take(c, rows, 4);
    f->rstd = kern_take(c, rows, 4);
    f->q = kern_take(c, qkv, 4);
    f->k = s->attn.method->shared_qk ? NULL : kern_take(c, qkv, 4);
    f->v = kern_take(c, qkv, 4);
    f->out = kern_take(c, H * he, 4);
    f->lse = kern_take(c, H * (size_t)(s->shape.B * s->shape.n), 4);
    f->head_stride = all_heads ? he : 0;
}

static void carve_gcache(kern_cursor *c, const stack_config *s, size_t rows, gcache *g)
{
    const size_t D = (size_t)dmodel(s), F = (size_t)s->d_ff;
    g->xn = kern_take(c, rows * D, 4);
    g->mean = kern_take(c, rows, 4);
    g->rstd = kern_take(c, rows, 4);
    g->h = kern_take(c, rows * F, 4);
}

/* The structure elements (LSH buckets, ...) of one head. */
static size_t structure_per_head(const stack_config *s)
{
    attn_cost ac;
    const attn_shape h = head_shape(s);
    s->attn.method->cost(&h, &s->attn, 1, &ac);
    return attn_structure_elems(&ac);
}

/* One layer's persistent state at base (NULL: sizes only); returns its bytes. */
static size_t carve_layer(const stack_config *s, char *base, layer_state *ls)
{
    kern_cursor c = {.base = base};
    const size_t rows = (size_t)(s->shape.B * s->shape.n), D = (size_t)dmodel(s);
    memset(ls, 0, sizeof *ls);
    ls->structure = kern_take(&c, structure_per_head(s) * (size_t)s->shape.H, 4);
    if (s->kind == STACK_STANDARD) {
        ls->xin = kern_take(&c, rows * D, 4);
        ls->xmid = kern_take(&c, rows * D, 4);
        carve_fcache(&c, s, true, &ls->fc);
        carve_gcache(&c, s, rows, &ls->gc);
    } else if (s->keep_inputs) {
        ls->kept1 = kern_take(&c, rows * D, 4);
        ls->kept2 = kern_take(&c, rows * D, 4);
    }
    return c.off;
}

static layer_state layer_state_at(const stack_config *s, const layout *L, int l)
{
    layer_state ls;
    carve_layer(s, L->layers_base + (size_t)l * L->layer_stride, &ls);
    return ls;
}

static size_t chunk_rows(const stack_config *s)
{
    const size_t rows = (size_t)(s->shape.B * s->shape.n);
    return (size_t)s->ff_chunk < rows ? (size_t)s->ff_chunk : rows;
}

/* Lays out the workspace (base NULL: only sizes it). */
static void carve(const stack_config *s, int nthreads, char *base, layout *L)
{
    kern_cursor c = {.base = base};
    const size_t rows = (size_t)(s->shape.B * s->shape.n), D = (size_t)dmodel(s);
    const size_t F = (size_t)s->d_ff, P = chunk_rows(s), he = head_elems(s);
    memset(L, 0, sizeof *L);
    /* what the backward keeps from the forward */
    L->y1 = kern_take(&c, rows * D, 4);
    L->y2 = s->kind == STACK_REVERSIBLE ? kern_take(&c, rows * D, 4) : NULL;
    layer_state ls;
    L->layer_stride = carve_layer(s, NULL, &ls);
    L->layers_base = kern_take(&c, L->layer_stride * (size_t)s->layers, 1);
    L->activations = c.off;
    /* scratch */
    L->dy1 = kern_take(&c, rows * D, 4);
    L->dy2 = s->kind == STACK_REVERSIBLE ? kern_take(&c, rows * D, 4) : NULL;
    L->dxn = kern_take(&c, rows * D, 4);
    L->dout = kern_take(&c, he, 4);
    L->dq = kern_take(&c, he, 4);
    L->dk = kern_take(&c, he, 4);
    L->dv = kern_take(&c, he, 4);
    L->g_out = kern_take(&c, P * D, 4);
    L->g_dh = kern_take(&c, P * F, 4);
    L->g_dxn = kern_take(&c, P * D, 4);
    L->loss_rows = kern_take(&c, (rows + ROW_BLOCK - 1) / ROW_BLOCK, 8);
    if (s->kind == STACK_REVERSIBLE) {
        carve_gcache(&c, s, P, &L->gscratch);
        carve_fcache(&c, s, false, &L->rev_fc);
    }
    attn_cost ac;
    const attn_shape h = head_shape(s);
    s->attn.method->cost(&h, &s->attn, nthreads, &ac);
    L->attn_fwd = kern_take(&c, ac.workspace_bytes, 1);
    L->attn_bwd = kern_take(&c, ac.bwd_workspace_bytes, 1);
    L->total = c.off;
}

/* ---- F and G ----------------------------------------------------------------------------- */

typedef struct step {
    const stack_config *c;
    layout L;
    int nthreads;
    int64_t rows, D, F;
} step;

/* Head h's Q, K and V in fc (its own slot, or the one-head room), projected from fc->xn. */
static void project_head(step *st, const layer_w *w, fcache *fc, int64_t h, float **q,
                         float **k, float **v)
{
    const int nt = st->nthreads, D = (int)st->D, d = (int)st->c->shape.d;
    const size_t at = (size_t)h * fc->head_stride;
    *q = fc->q + at;
    *v = fc->v + at;
    *k = fc->k ? fc->k + at : *q; /* shared QK: the method reads its keys off the queries */
    mm_xw(nt, st->rows, D, d, fc->xn, D, w->wq + h * d, D, 1.0f, 0.0f, *q, d);
    if (fc->k)
        mm_xw(nt, st->rows, D, d, fc->xn, D, w->wk + h * d, D, 1.0f, 0.0f, *k, d);
    mm_xw(nt, st->rows, D, d, fc->xn, D, w->wv + h * d, D, 1.0f, 0.0f, *v, d);
}

/* y += sign F(x), head by head, keeping in fc what F's backward needs; the structure is drawn,
 * or reused when `reuse`. y may be x: the LayerNorm reads x before any head writes y. */
static int f_forward(step *st, const layer_w *w, const float *x, fcache *fc, int32_t *structure,
                     bool reuse, float sign, float *y)
{
    const stack_config *c = st->c;
    const int nt = st->nthreads, D = (int)st->D, d = (int)c->shape.d;
    const attn_shape hs = head_shape(c);
    const size_t he = head_elems(c), per_head = structure_per_head(c);
    ln_forward(nt, st->rows, D, x, w->ln1_g, w->ln1_b, fc->xn, fc->mean, fc->rstd);
    for (int64_t h = 0; h < c->shape.H; h++) {
        float *q, *k, *v;
        project_head(st, w, fc, h, &q, &k, &v);
        float *out = fc->out + (size_t)h * he;
        attn_tensors t = {.q = q, .k = k, .v = v, .out = out,
                          .lse = fc->lse + (size_t)h * (size_t)(c->shape.B * c->shape.n),
                          .structure = per_head ? structure + (size_t)h * per_head : NULL,
                          .reuse_structure = reuse, .head_offset = h, .stats = c->stats};
        int rc = c->attn.method->forward(&hs, &c->attn, &t, st->L.attn_fwd, nt);
        if (rc)
            return rc;
        mm_xw(nt, st->rows, d, D, out, d, w->wo + h * d * D, D, sign, 1.0f, y, D);
    }
    return 0;
}

/* dx += F'(x)^T df, weight gradients into g, head by head from fc (its LayerNorm, every head's
 * output and lse, and Q, K, V per head when kept, else projected again). dx may be df: df is
 * read for every head before the LayerNorm's backward writes dx. */
static int f_backward(step *st, const layer_w *w, layer_w *g, const float *x, fcache *fc,
                      const int32_t *structure, const float *df, float *dx)
{
    const stack_config *c = st->c;
    const int nt = st->nthreads, D = (int)st->D, d = (int)c->shape.d;
    const attn_shape hs = head_shape(c);
    const size_t he = head_elems(c), per_head = structure_per_head(c);
    layout *L = &st->L;
    for (int64_t h = 0; h < c->shape.H; h++) {
        float *q, *k, *v;
        if (fc->head_stride) {
            const size_t at = (size_t)h * fc->head_stride;
            q = fc->q + at, v = fc->v + at, k = fc->k ? fc->k + at : q;
        } else {
            project_head(st, w, fc, h, &q, &k, &v);
        }
        const float *out = fc->out + (size_t)h * he;
        /* the output projection: dWo_h += out_h^T df, dout_h = df Wo_h^T */
        mm_xtdy(nt, st->rows, d, D, out, d, df, D, g->wo + h * d * D, D);
        mm_dywt(nt, st->rows, d, D, df, D, w->wo + h * d * D, D, 0.0f, L->dout, d);
        attn_grads ag = {.q = q, .k = k, .v = v, .out = out,
                         .lse = fc->lse + (size_t)h * (size_t)(c->shape.B * c->shape.n),
                         .dout = L->dout,
                         .structure = per_head ? structure + (size_t)h * per_head : NULL,
                         .dq = L->dq, .dk = L->dk, .dv = L->dv, .stats = c->stats};
        int rc = c->attn.method->backward(&hs, &c->attn, &ag, L->attn_bwd, nt);
        if (rc)
            return rc;
        /* the projections: dW_h += xn^T d_h, dxn += d_h W_h^T (shared QK: no key's) */
        const float *grads[] = {L->dq, L->dk, L->dv};
        float *dmats[] = {g->wq, g->wk, g->wv};
        const float *mats[] = {w->wq, w->wk, w->wv};
        for (int m = 0; m < 3; m++) {
            if (!mats[m])
                continue;
            mm_xtdy(nt, st->rows, D, d, fc->xn, D, grads[m], d, dmats[m] + h * d, D);
            mm_dywt(nt, st->rows, D, d, grads[m], d, mats[m] + h * d, D, h || m ? 1.0f : 0.0f,
                    L->dxn, D);
        }
    }
    ln_backward(nt, st->rows, D, x, w->ln1_g, fc->mean, fc->rstd, L->dxn, dx, g->ln1_g, g->ln1_b);
    return 0;
}

/* G's forward on `rows` rows: gc keeps the intermediates, out = G(x). */
static void g_forward(step *st, const layer_w *w, int64_t rows, const float *x, gcache *gc,
                      float *out)
{
    const int nt = st->nthreads, D = (int)st->D, F = (int)st->F;
    if (st->c->stats)
        st->c->stats->v[ATTN_STAT_FF_CHUNKS]++;
    ln_forward(nt, rows, D, x, w->ln2_g, w->ln2_b, gc->xn, gc->mean, gc->rstd);
    mm_xw(nt, rows, D, F, gc->xn, D, w->w1, F, 1.0f, 0.0f, gc->h, F);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < rows; i++)
        for (int j = 0; j < F; j++) {
            const float z = gc->h[i * F + j] + w->b1[j];
            gc->h[i * F + j] = z > 0.0f ? z : 0.0f;
        }
    mm_xw(nt, rows, F, D, gc->h, F, w->w2, D, 1.0f, 0.0f, out, D);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < rows; i++)
        for (int j = 0; j < D; j++)
            out[i * D + j] += w->b2[j];
}

/* dx += G'(x)^T dg on `rows` rows, weight gradients into g. dg is read before dx is written,
 * so they may be the same rows. */
static void g_backward(step *st, const layer_w *w, layer_w *g, int64_t rows, const float *x,
                       const gcache *gc, const float *dg, float *dx)
{
    const int nt = st->nthreads, D = (int)st->D, F = (int)st->F;
    layout *L = &st->L;
    mm_xtdy(nt, rows, F, D, gc->h, F, dg, D, g->w2, D);
    colsum(nt, rows, D, dg, g->b2);
    mm_dywt(nt, rows, F, D, dg, D, w->w2, D, 0.0f, L->g_dh, F);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < rows * F; i++)
        if (gc->h[i] <= 0.0f)
            L->g_dh[i] = 0.0f;
    mm_xtdy(nt, rows, D, F, gc->xn, D, L->g_dh, F, g->w1, F);
    colsum(nt, rows, F, L->g_dh, g->b1);
    mm_dywt(nt, rows, D, F, L->g_dh, F, w->w1, F, 0.0f, L->g_dxn, D);
    ln_backward(nt, rows, D, x, w->ln2_g, gc->mean, gc->rstd, L->g_dxn, dx, g->ln2_g, g->ln2_b);
}

/* ---- the stacks -------------------------------------------------------------------------- */

static int forward_standard(step *st, const float *weights, const float *x)
{
    const stack_config *c = st->c;
    const size_t count = (size_t)(st->rows * st->D);
    const int64_t P = (int64_t)chunk_rows(c);
    float *cur = st->L.y1;
    memcpy(cur, x, count * sizeof(float));
    for (int l = 0; l < c->layers; l++) {
        layer_w w = layer_at((float *)weights, c, l);
        layer_state ls = layer_state_at(c, &st->L, l);
        memcpy(ls.xin, cur, count * sizeof(float));
        int rc = f_forward(st, &w, cur, &ls.fc, ls.structure, false, 1.0f, cur); /* x += F(x) */
        if (rc)
            return rc;
        memcpy(ls.xmid, cur, count * sizeof(float));
        for (int64_t r0 = 0; r0 < st->rows; r0 += P) { /* G keeps all rows: standard keeps all */
            const int64_t rows = st->rows - r0 < P ? st->rows - r0 : P;
            gcache part = {ls.gc.xn + r0 * st->D, ls.gc.mean + r0, ls.gc.rstd + r0,
                           ls.gc.h + r0 * st->F};
            g_forward(st, &w, rows, cur + r0 * st->D, &part, st->L.g_out);
            add_into(st->nthreads, (size_t)(rows * st->D), st->L.g_out, cur + r0 * st->D);
        }
    }
    return 0;
}

static int backward_standard(step *st, const float *weights, float *grads, float *dx)
{
    const stack_config *c = st->c;
    const int64_t P = (int64_t)chunk_rows(c);
    float *dcur = st->L.dy1;
    for (int l = c->layers - 1; l >= 0; l--) {
        layer_w w = layer_at((float *)weights, c, l), g = layer_at(grads, c, l);
        layer_state ls = layer_state_at(c, &st->L, l);
        for (int64_t r0 = 0; r0 < st->rows; r0 += P) { /* x_out = mid + G(mid) */
            const int64_t rows = st->rows - r0 < P ? st->rows - r0 : P;
            gcache part = {ls.gc.xn + r0 * st->D, ls.gc.mean + r0, ls.gc.rstd + r0,
                           ls.gc.h + r0 * st->F};
            g_backward(st, &w, &g, rows, ls.xmid + r0 * st->D, &part, dcur + r0 * st->D,
                       dcur + r0 * st->D);
        }
        int rc = f_backward(st, &w, &g, ls.xin, &ls.fc, ls.structure, dcur, dcur); /* mid = in + F(in) */
        if (rc)
            return rc;
    }
    memcpy(dx, dcur, (size_t)(st->rows * st->D) * sizeof(float));
    return 0;
}

static int forward_reversible(step *st, const float *weights, const float *x)
{
    const stack_config *c = st->c;
    const size_t count = (size_t)(st->rows * st->D);
    const int64_t P = (int64_t)chunk_rows(c);
    float *y1 = st->L.y1, *y2 = st->L.y2;
    memcpy(y1, x, count * sizeof(float));
    memcpy(y2, x, count * sizeof(float));
    for (int l = 0; l < c->layers; l++) {
        layer_w w = layer_at((float *)weights, c, l);
        layer_state ls = layer_state_at(c, &st->L, l);
        if (c->keep_inputs) {
            memcpy(ls.kept1, y1, count * sizeof(float));
            memcpy(ls.kept2, y2, count * sizeof(float));
        }
        /* Y1 = X1 + F(X2), head by head into Y1 */
        int rc = f_forward(st, &w, y2, &st->L.rev_fc, ls.structure, false, 1.0f, y1);
        if (rc)
            return rc;
        for (int64_t r0 = 0; r0 < st->rows; r0 += P) { /* Y2 = X2 + G(Y1), chunk by chunk */
            const int64_t rows = st->rows - r0 < P ? st->rows - r0 : P;
            g_forward(st, &w, rows, y1 + r0 * st->D, &st->L.gscratch, st->L.g_out);
            add_into(st->nthreads, (size_t)(rows * st->D), st->L.g_out, y2 + r0 * st->D);
        }
    }
    return 0;
}

static double max_abs_diff(const float *a, const float *b, size_t count)
{
    double m = 0;
    for (size_t i = 0; i < count; i++)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static int backward_reversible(step *st, const float *weights, float *grads, float *dx)
{
    const stack_config *c = st->c;
    const size_t count = (size_t)(st->rows * st->D);
    const int64_t P = (int64_t)chunk_rows(c);
    const bool use_kept = c->keep_inputs && !c->inverse_error;
    float *y1 = st->L.y1, *y2 = st->L.y2, *dy1 = st->L.dy1, *dy2 = st->L.dy2;
    for (int l = c->layers - 1; l >= 0; l--) {
        layer_w w = layer_at((float *)weights, c, l), g = layer_at(grads, c, l);
        layer_state ls = layer_state_at(c, &st->L, l);
        if (c->stats)
            c->stats->v[ATTN_STAT_LAYERS_RECOMPUTED]++;
        /* G: recompute chunk by chunk from Y1; X2 = Y2 - G(Y1); dY1 += G'^T dY2 */
        for (int64_t r0 = 0; r0 < st->rows; r0 += P) {
            const int64_t rows = st->rows - r0 < P ? st->rows - r0 : P;
            float *y1r = y1 + r0 * st->D, *y2r = y2 + r0 * st->D;
            g_forward(st, &w, rows, y1r, &st->L.gscratch, st->L.g_out);
            if (use_kept)
                memcpy(y2r, ls.kept2 + r0 * st->D, (size_t)(rows * st->D) * sizeof(float));
            else
                for (int64_t i = 0; i < rows * st->D; i++)
                    y2r[i] -= st->L.g_out[i];
            g_backward(st, &w, &g, rows, y1r, &st->L.gscratch, dy2 + r0 * st->D, dy1 + r0 * st->D);
        }
        /* F: recompute from X2 with the saved structure, head by head out of Y1: X1 = Y1 -
         * F(X2) (or the kept X1, for the oracle); then dX2 = dY2 + F'^T dY1 */
        int rc = f_forward(st, &w, y2, &st->L.rev_fc, ls.structure, true, -1.0f, y1);
        if (rc)
            return rc;
        if (use_kept)
            memcpy(y1, ls.kept1, count * sizeof(float));
        if (c->inverse_error && c->keep_inputs)
            c->inverse_error[l] = fmax(max_abs_diff(y1, ls.kept1, count),
                                       max_abs_diff(y2, ls.kept2, count));
        rc = f_backward(st, &w, &g, y2, &st->L.rev_fc, ls.structure, dy1, dy2);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < count; i++) /* both streams started as x */
        dx[i] = dy1[i] + dy2[i];
    return 0;
}

/* ---- the interface ----------------------------------------------------------------------- */

const char *stack_kind_name(enum stack_kind kind)
{
    return kind == STACK_REVERSIBLE ? "reversible" : "standard";
}

int stack_kind_parse(const char *name)
{
    if (strcmp(name, "standard") == 0)
        return STACK_STANDARD;
    return strcmp(name, "reversible") == 0 ? STACK_REVERSIBLE : -1;
}

int stack_check(const stack_config *c, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    if (c->layers < 1 || c->d_ff < 1 || c->ff_chunk < 1) {
        *why = "layers, d_ff and ff_chunk must be positive";
        return ATTN_ESHAPE;
    }
    if (!c->attn.method->backward) {
        *why = "the inner method has no backward pass";
        return ATTN_ENOBACKWARD;
    }
    if (dmodel(c) * c->d_ff > INT32_MAX || c->shape.B * c->shape.n > INT32_MAX) {
        *why = "d_model * d_ff and B * n must fit a BLAS int";
        return ATTN_EUNSUPPORTED;
    }
    if (dmodel(c) > 4096) {
        *why = "d_model above 4096 (the loss's row of generated targets)";
        return ATTN_EUNSUPPORTED;
    }
    return attn_check(&c->shape, &c->attn, why);
}

static void init_step(step *st, const stack_config *c, void *work, int nthreads)
{
    memset(st, 0, sizeof *st);
    st->c = c;
    st->nthreads = nthreads;
    st->rows = c->shape.B * c->shape.n;
    st->D = dmodel(c);
    st->F = c->d_ff;
    carve(c, nthreads, work, &st->L); /* the reversible stack's shared F cache included */
}

void stack_cost_of(const stack_config *c, int nthreads, stack_cost *out)
{
    layout L;
    carve(c, nthreads, NULL, &L);
    const int64_t D = dmodel(c);
    out->weight_floats = layer_floats(c) * (size_t)c->layers;
    out->workspace_bytes = L.total;
    out->activation_bytes = L.activations;
    out->width = c->kind == STACK_REVERSIBLE ? 2 * D : D;
    attn_cost ac;
    c->attn.method->cost(&c->shape, &c->attn, nthreads, &ac);
    const double rows = (double)(c->shape.B * c->shape.n), DD = (double)D * (double)D;
    const double proj = 2.0 * rows * projections(c) * DD, ff = 2.0 * rows * 2.0 * (double)D * (double)c->d_ff;
    /* the model: forward (products and attention), backward (twice the products, and the
     * attention's backward) */
    out->flops = (proj + ff + ac.flops + 2 * (proj + ff) + ac.bwd_flops) * c->layers;
    /* work done again, not part of the model: the reversible backward recomputes each layer's
     * forward, then projects Q, K, V once more, head by head, for the attention's backward */
    out->recompute_flops = c->kind == STACK_REVERSIBLE
                               ? (proj + ff + ac.flops + 2.0 * rows * (projections(c) - 1) * DD) *
                                     c->layers
                               : 0.0;
}

const int32_t *stack_structure(const stack_config *c, void *work, int nthreads, int l,
                               size_t *per_head)
{
    *per_head = structure_per_head(c);
    if (!*per_head)
        return NULL;
    layout L;
    carve(c, nthreads, work, &L);
    return layer_state_at(c, &L, l).structure;
}

/* 0.5 mean((y - target)^2) and its gradient into dy1 (and dy2). The target is the given one,
 * or, when NULL, N(0, 1) values of the stream c->target_base, generated row by row (the same
 * values inputs_normal would write), so no (rows, width) target needs to exist. Row blocks in
 * parallel, their sums added in block order. */
static double loss_and_grad(step *st, const float *target, float *dy1, float *dy2)
{
    const int64_t D = st->D, rows = st->rows, width = dy2 ? 2 * D : D;
    const double scale = 1.0 / (double)(rows * width);
    const int64_t nblocks = (rows + ROW_BLOCK - 1) / ROW_BLOCK;
    double *part = (double *)st->L.loss_rows;
#pragma omp parallel num_threads(st->nthreads)
    {
        float tg_row[2 * 4096];
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblocks; b++) {
            double loss = 0;
            for (int64_t i = b * ROW_BLOCK; i < rows && i < (b + 1) * ROW_BLOCK; i++) {
                const float *tg = target ? target + i * width : tg_row;
                if (!target) /* width is even, so row i starts on a whole pair */
                    rng_fill_normal(tg_row, (uint64_t)(i * width / 2), (size_t)width,
                                    st->c->target_base, 1.0);
                for (int64_t j = 0; j < width; j++) {
                    const float y = j < D ? st->L.y1[i * D + j] : st->L.y2[i * D + j - D];
                    const double diff = (double)y - tg[j];
                    loss += 0.5 * diff * diff * scale;
                    if (j < D)
                        dy1[i * D + j] = (float)(diff * scale);
                    else
                        dy2[i * D + j - D] = (float)(diff * scale);
                }
            }
            part[b] = loss;
        }
    }
    double loss = 0;
    for (int64_t b = 0; b < nblocks; b++)
        loss += part[b];
    return loss;
}

int stack_forward(const stack_config *c, const float *weights, const float *x, float *y,
                  void *work, int nthreads)
{
    step st;
    init_step(&st, c, work, nthreads);
    int rc = c->kind == STACK_REVERSIBLE ? forward_reversible(&st, weights, x)
                                         : forward_standard(&st, weights, x);
    if (rc)
        return rc;
    const int64_t D = st.D;
    for (int64_t i = 0; i < st.rows; i++) {
        memcpy(y + i * (st.L.y2 ? 2 * D : D), st.L.y1 + i * D, (size_t)D * sizeof(float));
        if (st.L.y2)
            memcpy(y + i * 2 * D + D, st.L.y2 + i * D, (size_t)D * sizeof(float));
    }
    return 0;
}

int stack_train_step(const stack_config *c, const float *weights, float *grads, const float *x,
                     const float *target, float *dx, double *loss, void *work, int nthreads)
{
    step st;
    init_step(&st, c, work, nthreads);
    memset(grads, 0, layer_floats(c) * (size_t)c->layers * sizeof(float));
    if (c->kind == STACK_REVERSIBLE) {
        int rc = forward_reversible(&st, weights, x);
        if (rc)
            return rc;
        *loss = loss_and_grad(&st, target, st.L.dy1, st.L.dy2);
        return backward_reversible(&st, weights, grads, dx);
    }
    int rc = forward_standard(&st, weights, x);
    if (rc)
        return rc;
    *loss = loss_and_grad(&st, target, st.L.dy1, NULL);
    return backward_standard(&st, weights, grads, dx);
}
