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

/* ---- activations, products, LayerNorm -------------------------------------------------- */

/* An activation matrix: stored as the step's dtype (what the stack keeps between layers and for
 * the backward, what the attention reads and writes, and the gradients of activations, summed
 * in that dtype as autograd sums them in a bf16 model), or fp32 (a feed-forward chunk's
 * scratch). Weights and their gradients are fp32 always (master weights, as mixed-precision
 * training keeps them). */
typedef struct act {
    void *p;
    attn_dtype t;
} act;

static inline act act_of(void *p, attn_dtype t)
{
    return (act){p, t};
}

static inline act f32(float *p)
{
    return (act){p, ATTN_FP32};
}

static inline act act_at(act a, size_t elems)
{
    return (act){attn_elem_mut(a.p, a.t, elems), a.t};
}

static inline float act_get(act a, size_t i)
{
    return attn_value(a.p, a.t, i);
}

static inline void act_set(act a, size_t i, float v)
{
    if (a.t == ATTN_BF16)
        ((attn_bf16 *)a.p)[i] = attn_f32_to_bf16(v);
    else
        ((float *)a.p)[i] = v;
}

/* The calling thread's two staging blocks (ROW_BLOCK x the widest activation, fp32), from the
 * step's workspace; NULL in fp32, where nothing is staged. */
typedef struct staging {
    float *base;
    size_t per_thread; /* floats: two blocks */
} staging;

static void stage_of(const staging *sg, float **a, float **b)
{
    *a = *b = NULL;
    if (!sg->base)
        return;
    float *mine = sg->base + (size_t)omp_get_thread_num() * sg->per_thread;
    *a = mine;
    *b = mine + sg->per_thread / 2;
}

/* Rows [r0, r0 + r) of X (cols columns from column 0 of X's rows, leading dimension ld) as
 * fp32: X itself, or widened into buf (leading dimension cols). */
static const float *rows_f32(act X, int64_t r0, int r, int cols, int ld, float *buf, int *ldo)
{
    if (X.t == ATTN_FP32) {
        *ldo = ld;
        return (const float *)X.p + r0 * ld;
    }
    kern_rows_widen(attn_elem(X.p, X.t, (size_t)(r0 * ld)), ld, NULL, r, cols, X.t, buf);
    *ldo = cols;
    return buf;
}

/* Rows [r0, r0 + r) of an output Y (cols columns, leading dimension ld) as the fp32 block a
 * product writes: Y's own rows, or the staging block (holding Y's values when the product adds
 * to them, beta != 0); out_store then rounds a staged block into Y. */
static float *out_rows(act Y, int64_t r0, int r, int cols, int ld, float beta, float *stage,
                       int *ldo)
{
    if (Y.t == ATTN_FP32) {
        *ldo = ld;
        return (float *)Y.p + r0 * ld;
    }
    *ldo = cols;
    if (beta != 0.0f)
        rows_f32(Y, r0, r, cols, ld, stage, ldo);
    return stage;
}

static void out_store(act Y, int64_t r0, int r, int cols, int ld, const float *stage)
{
    if (Y.t != ATTN_FP32)
        kern_rows_narrow(stage, r, cols, attn_elem_mut(Y.p, Y.t, (size_t)(r0 * ld)), ld, NULL, Y.t);
}

/* Y (rows, m) = alpha X (rows, k) W (k, m) + beta Y, by blocks of rows; leading dimensions
 * ldx, ldw, ldy (a head's columns of a projection, or its rows of Wo). bf16 blocks are widened
 * for the product and the result rounded once per block. */
static void mm_xw(int nthreads, const staging *sg, int64_t rows, int k, int m, act X, int ldx,
                  const float *W, int ldw, float alpha, float beta, act Y, int ldy)
{
    const int64_t nblocks = (rows + ROW_BLOCK - 1) / ROW_BLOCK;
#pragma omp parallel num_threads(nthreads)
    {
        kern_blas_serial();
        float *xs, *ys;
        stage_of(sg, &xs, &ys);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblocks; b++) {
            const int64_t r0 = b * ROW_BLOCK;
            const int r = (int)(rows - r0 < ROW_BLOCK ? rows - r0 : ROW_BLOCK);
            int lx, ly;
            const float *x = rows_f32(X, r0, r, k, ldx, xs, &lx);
            float *y = out_rows(Y, r0, r, m, ldy, beta, ys, &ly);
            kern_gemm_nn(r, m, k, alpha, x, lx, W, ldw, beta, y, ly);
            out_store(Y, r0, r, m, ldy, y);
        }
    }
}

/* dX (rows, k) = dY (rows, m) W^T + beta dX, with W (k, m) of leading dimension ldw. */
static void mm_dywt(int nthreads, const staging *sg, int64_t rows, int k, int m, act dY, int ldy,
                    const float *W, int ldw, float beta, act dX, int ldx)
{
    const int64_t nblocks = (rows + ROW_BLOCK - 1) / ROW_BLOCK;
#pragma omp parallel num_threads(nthreads)
    {
        kern_blas_serial();
        float *ys, *xs;
        stage_of(sg, &ys, &xs);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblocks; b++) {
            const int64_t r0 = b * ROW_BLOCK;
            const int r = (int)(rows - r0 < ROW_BLOCK ? rows - r0 : ROW_BLOCK);
            int ly, lx;
            const float *dy = rows_f32(dY, r0, r, m, ldy, ys, &ly);
            float *dx = out_rows(dX, r0, r, k, ldx, beta, xs, &lx);
            kern_gemm_nt(r, k, m, 1.0f, dy, ly, W, ldw, beta, dx, lx);
            out_store(dX, r0, r, k, ldx, dx);
        }
    }
}

/* dW (k, m) += X (rows, k)^T dY (rows, m), by blocks of dW's rows (whole sums per block). With
 * a bf16 side, each block sums ROW_BLOCK rows at a time from widened blocks: the thread that
 * owns the block adds its row blocks in order, so the result still does not depend on the
 * thread count. */
static void mm_xtdy(int nthreads, const staging *sg, int64_t rows, int k, int m, act X, int ldx,
                    act dY, int ldy, float *dW, int ldw)
{
    const int nblocks = (k + WEIGHT_BLOCK - 1) / WEIGHT_BLOCK;
    const bool staged = X.t != ATTN_FP32 || dY.t != ATTN_FP32;
#pragma omp parallel num_threads(nthreads)
    {
        kern_blas_serial();
        float *xs, *ys;
        stage_of(sg, &xs, &ys);
#pragma omp for schedule(static)
        for (int b = 0; b < nblocks; b++) {
            const int k0 = b * WEIGHT_BLOCK, kk = k - k0 < WEIGHT_BLOCK ? k - k0 : WEIGHT_BLOCK;
            if (!staged) {
                kern_gemm_tn(kk, m, (int)rows, 1.0f, (const float *)X.p + k0, ldx, dY.p, ldy,
                             1.0f, dW + (size_t)k0 * ldw, ldw);
                continue;
            }
            for (int64_t r0 = 0; r0 < rows; r0 += ROW_BLOCK) {
                const int r = (int)(rows - r0 < ROW_BLOCK ? rows - r0 : ROW_BLOCK);
                int lx, ly;
                const float *x = rows_f32(act_at(X, (size_t)k0), r0, r, kk, ldx, xs, &lx);
                const float *dy = rows_f32(dY, r0, r, m, ldy, ys, &ly);
                kern_gemm_tn(kk, m, r, 1.0f, x, lx, dy, ly, 1.0f, dW + (size_t)k0 * ldw, ldw);
            }
        }
    }
}

/* acc[j] += sum over rows of X[i][j] (columns in parallel: a fixed summation order). */
static void colsum(int nthreads, int64_t rows, int64_t cols, act X, float *acc)
{
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
        const int64_t c1 = c0 + 16 < cols ? c0 + 16 : cols;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = c0; j < c1; j++)
                acc[j] += act_get(X, (size_t)(i * cols + j));
    }
}

#define LN_EPS 1e-5f
#define MAX_DMODEL 4096 /* a row of d_model floats lives on the stack (stack_check) */

/* Row i of X (D columns) as fp32: X's own row, or widened into buf. */
static const float *row_f32(act X, int64_t i, int64_t D, float *buf)
{
    int ld;
    return rows_f32(X, i, 1, (int)D, (int)D, buf, &ld);
}

static void ln_forward(int nthreads, int64_t rows, int64_t D, act x, const float *g,
                       const float *b, act y, float *mean, float *rstd)
{
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        float xbuf[MAX_DMODEL], ybuf[MAX_DMODEL];
        const float *xi = row_f32(x, i, D, xbuf);
        double mu = 0, var = 0;
        for (int64_t j = 0; j < D; j++)
            mu += xi[j];
        mu /= (double)D;
        for (int64_t j = 0; j < D; j++)
            var += (xi[j] - mu) * (xi[j] - mu);
        const float rs = (float)(1.0 / sqrt(var / (double)D + LN_EPS));
        mean[i] = (float)mu;
        rstd[i] = rs;
        float *yi = y.t == ATTN_FP32 ? (float *)y.p + i * D : ybuf;
        for (int64_t j = 0; j < D; j++)
            yi[j] = g[j] * ((xi[j] - (float)mu) * rs) + b[j];
        if (y.t != ATTN_FP32)
            kern_rows_narrow(ybuf, 1, (int)D, attn_elem_mut(y.p, y.t, (size_t)(i * D)), D, NULL,
                             y.t);
    }
}

/* dx += LayerNorm'^T dy; dg += sum dy o xhat; db += sum dy. */
static void ln_backward(int nthreads, int64_t rows, int64_t D, act x, const float *g,
                        const float *mean, const float *rstd, act dy, act dx, float *dg,
                        float *db)
{
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        float xbuf[MAX_DMODEL], dybuf[MAX_DMODEL], dxbuf[MAX_DMODEL];
        const float *xi = row_f32(x, i, D, xbuf), *dyi = row_f32(dy, i, D, dybuf);
        double s1 = 0, s2 = 0; /* mean of dxhat, mean of dxhat o xhat */
        for (int64_t j = 0; j < D; j++) {
            const double xh = (xi[j] - mean[i]) * rstd[i], dxh = (double)dyi[j] * g[j];
            s1 += dxh;
            s2 += dxh * xh;
        }
        s1 /= (double)D;
        s2 /= (double)D;
        float *dxi = dx.t == ATTN_FP32 ? (float *)dx.p + i * D : (float *)row_f32(dx, i, D, dxbuf);
        for (int64_t j = 0; j < D; j++) {
            const double xh = (xi[j] - mean[i]) * rstd[i], dxh = (double)dyi[j] * g[j];
            dxi[j] += (float)(rstd[i] * (dxh - s1 - xh * s2));
        }
        if (dx.t != ATTN_FP32)
            kern_rows_narrow(dxbuf, 1, (int)D, attn_elem_mut(dx.p, dx.t, (size_t)(i * D)), D,
                             NULL, dx.t);
    }
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t j = 0; j < D; j++) {
        double sg = 0, sb = 0;
        for (int64_t i = 0; i < rows; i++) {
            const size_t e = (size_t)(i * D + j);
            sg += (double)act_get(dy, e) * ((act_get(x, e) - mean[i]) * rstd[i]);
            sb += act_get(dy, e);
        }
        dg[j] += (float)sg;
        db[j] += (float)sb;
    }
}

/* y += a, elementwise (a: a chunk's G output, fp32; y: a stream). */
static void add_into(int nthreads, size_t count, const float *a, act y)
{
    if (y.t == ATTN_FP32) {
        float *yf = y.p;
#pragma omp parallel for num_threads(nthreads) schedule(static)
        for (size_t i = 0; i < count; i++)
            yf[i] += a[i];
        return;
    }
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (size_t i = 0; i < count; i++)
        act_set(y, i, act_get(y, i) + a[i]);
}

/* ---- the workspace ------------------------------------------------------------------------- */

/* F's state for one layer: its LayerNorm, and per head Q, K (none for shared QK), V, the
 * attention output and lse. A standard stack keeps one per layer, every head (its backward
 * needs them all); a reversible one has a single one, whose q, k, v hold one head at a time
 * (recomputed in the backward: cheap products against keeping every head's) and whose out
 * and lse hold every head from the recompute of a layer's forward to its backward. Stored as
 * the step's dtype, but for the LayerNorm statistics and lse (fp32). */
typedef struct fcache {
    void *xn;
    float *mean, *rstd;
    void *q, *k, *v;     /* (B, n, d) per head; head h at h * head_stride */
    void *out;           /* every head: (H, B, n, d) */
    float *lse;          /* (H, B, n) */
    size_t head_stride;  /* B n d, or 0 when q, k, v hold one head */
} fcache;

/* What G keeps: normalized inputs, statistics and the hidden layer, for `rows` rows. */
typedef struct gcache {
    void *xn, *h;
    float *mean, *rstd;
} gcache;

typedef struct layout {
    size_t total, activations;
    void *y1, *y2, *dy1, *dy2;    /* the streams and their gradients (standard: y1, dy1) */
    void *dxn;                    /* F's backward: the gradient of its LayerNorm's output */
    void *dout, *dq, *dk, *dv;    /* F's backward: one head's (B, n, d) each */
    float *g_out, *g_dh, *g_dxn;  /* G's chunk scratch */
    gcache gscratch;              /* G's chunk intermediates (reversible) */
    fcache rev_fc;                /* reversible: one F cache, reused by every layer */
    float *loss_rows;             /* per row block: its share of the loss */
    staging stage;                /* bf16: each thread's two widened blocks */
    void *attn_fwd, *attn_bwd;
    /* per layer: structure; standard: inputs, F cache, mid, G cache; reversible: kept inputs */
    char *layers_base;
    size_t layer_stride;
} layout;

typedef struct layer_state {
    int32_t *structure;  /* per head, contiguous: head h at h * structure_per_head() */
    void *xin, *xmid;    /* standard */
    fcache fc;           /* standard */
    gcache gc;           /* standard: all rows */
    void *kept1, *kept2; /* reversible with keep_inputs */
} layer_state;

/* One head as the attention methods see it: (B, 1, n, d), the stack's dtype. */
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

/* Bytes of one activation element. */
static size_t esize(const stack_config *s)
{
    return attn_dtype_size(s->shape.dtype);
}

static void carve_fcache(kern_cursor *c, const stack_config *s, bool all_heads, fcache *f)
{
    const size_t rows = (size_t)(s->shape.B * s->shape.n), D = (size_t)dmodel(s);
    const size_t H = (size_t)s->shape.H, he = head_elems(s), qkv = all_heads ? H * he : he;
    const size_t e = esize(s);
    f->xn = kern_take(c, rows * D, e);
    f->mean = kern_take(c, rows, 4);
    f->rstd = kern_take(c, rows, 4);
    f->q = kern_take(c, qkv, e);
    f->k = s->attn.method->shared_qk ? NULL : kern_take(c, qkv, e);
    f->v = kern_take(c, qkv, e);
    f->out = kern_take(c, H * he, e);
    f->lse = kern_take(c, H * (size_t)(s->shape.B * s->shape.n), 4);
    f->head_stride = all_heads ? he : 0;
}

static void carve_gcache(kern_cursor *c, const stack_config *s, size_t rows, gcache *g)
{
    const size_t D = (size_t)dmodel(s), F = (size_t)s->d_ff, e = esize(s);
    g->xn = kern_take(c, rows * D, e);
    g->mean = kern_take(c, rows, 4);
    g->rstd = kern_take(c, rows, 4);
    g->h = kern_take(c, rows * F, e);
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
    const size_t rows = (size_t)(s->shape.B * s->shape.n), D = (size_t)dmodel(s), e = esize(s);
    memset(ls, 0, sizeof *ls);
    ls->structure = kern_take(&c, structure_per_head(s) * (size_t)s->shape.H, 4);
    if (s->kind == STACK_STANDARD) {
        ls->xin = kern_take(&c, rows * D, e);
        ls->xmid = kern_take(&c, rows * D, e);
        carve_fcache(&c, s, true, &ls->fc);
        carve_gcache(&c, s, rows, &ls->gc);
    } else if (s->keep_inputs) {
        ls->kept1 = kern_take(&c, rows * D, e);
        ls->kept2 = kern_take(&c, rows * D, e);
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
    const size_t F = (size_t)s->d_ff, P = chunk_rows(s), he = head_elems(s), e = esize(s);
    memset(L, 0, sizeof *L);
    /* what the backward keeps from the forward */
    L->y1 = kern_take(&c, rows * D, e);
    L->y2 = s->kind == STACK_REVERSIBLE ? kern_take(&c, rows * D, e) : NULL;
    layer_state ls;
    L->layer_stride = carve_layer(s, NULL, &ls);
    L->layers_base = kern_take(&c, L->layer_stride * (size_t)s->layers, 1);
    L->activations = c.off;
    /* scratch */
    L->dy1 = kern_take(&c, rows * D, e);
    L->dy2 = s->kind == STACK_REVERSIBLE ? kern_take(&c, rows * D, e) : NULL;
    L->dxn = kern_take(&c, rows * D, e);
    L->dout = kern_take(&c, he, e);
    L->dq = kern_take(&c, he, e);
    L->dk = kern_take(&c, he, e);
    L->dv = kern_take(&c, he, e);
    L->g_out = kern_take(&c, P * D, 4);
    L->g_dh = kern_take(&c, P * F, 4);
    L->g_dxn = kern_take(&c, P * D, 4);
    L->loss_rows = kern_take(&c, (rows + ROW_BLOCK - 1) / ROW_BLOCK, 8);
    if (s->shape.dtype != ATTN_FP32) {
        L->stage.per_thread = 2 * (size_t)ROW_BLOCK * (F > D ? F : D);
        L->stage.base = kern_take(&c, (size_t)nthreads * L->stage.per_thread, 4);
    }
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
    attn_dtype dt; /* of the activations */
    int64_t rows, D, F;
} step;

/* An activation buffer of the step. */
static act A(const step *st, void *p)
{
    return act_of(p, st->dt);
}

/* Head h's Q, K and V in fc (its own slot, or the one-head room), projected from fc->xn. */
static void project_head(step *st, const layer_w *w, fcache *fc, int64_t h, void **q, void **k,
                         void **v)
{
    const int nt = st->nthreads, D = (int)st->D, d = (int)st->c->shape.d;
    const size_t at = (size_t)h * fc->head_stride;
    const staging *sg = &st->L.stage;
    *q = attn_elem_mut(fc->q, st->dt, at);
    *v = attn_elem_mut(fc->v, st->dt, at);
    *k = fc->k ? attn_elem_mut(fc->k, st->dt, at) : *q; /* shared QK: keys read off the queries */
    mm_xw(nt, sg, st->rows, D, d, A(st, fc->xn), D, w->wq + h * d, D, 1.0f, 0.0f, A(st, *q), d);
    if (fc->k)
        mm_xw(nt, sg, st->rows, D, d, A(st, fc->xn), D, w->wk + h * d, D, 1.0f, 0.0f, A(st, *k), d);
    mm_xw(nt, sg, st->rows, D, d, A(st, fc->xn), D, w->wv + h * d, D, 1.0f, 0.0f, A(st, *v), d);
}

/* y += sign F(x), head by head, keeping in fc what F's backward needs; the structure is drawn,
 * or reused when `reuse`. y may be x: the LayerNorm reads x before any head writes y. */
static int f_forward(step *st, const layer_w *w, void *x, fcache *fc, int32_t *structure,
                     bool reuse, float sign, void *y)
{
    const stack_config *c = st->c;
    const int nt = st->nthreads, D = (int)st->D, d = (int)c->shape.d;
    const attn_shape hs = head_shape(c);
    const size_t he = head_elems(c), per_head = structure_per_head(c);
    ln_forward(nt, st->rows, D, A(st, x), w->ln1_g, w->ln1_b, A(st, fc->xn), fc->mean, fc->rstd);
    for (int64_t h = 0; h < c->shape.H; h++) {
        void *q, *k, *v;
        project_head(st, w, fc, h, &q, &k, &v);
        void *out = attn_elem_mut(fc->out, st->dt, (size_t)h * he);
        attn_tensors t = {.q = q, .k = k, .v = v, .out = out,
                          .lse = fc->lse + (size_t)h * (size_t)(c->shape.B * c->shape.n),
                          .structure = per_head ? structure + (size_t)h * per_head : NULL,
                          .reuse_structure = reuse, .head_offset = h, .stats = c->stats};
        int rc = c->attn.method->forward(&hs, &c->attn, &t, st->L.attn_fwd, nt);
        if (rc)
            return rc;
        mm_xw(nt, &st->L.stage, st->rows, d, D, A(st, out), d, w->wo + h * d * D, D, sign, 1.0f,
              A(st, y), D);
    }
    return 0;
}

/* dx += F'(x)^T df, weight gradients into g, head by head from fc (its LayerNorm, every head's
 * output and lse, and Q, K, V per head when kept, else projected again). dx may be df: df is
 * read for every head before the LayerNorm's backward writes dx. */
static int f_backward(step *st, const layer_w *w, layer_w *g, void *x, fcache *fc,
                      const int32_t *structure, void *df, void *dx)
{
    const stack_config *c = st->c;
    const int nt = st->nthreads, D = (int)st->D, d = (int)c->shape.d;
    const attn_shape hs = head_shape(c);
    const size_t he = head_elems(c), per_head = structure_per_head(c);
    layout *L = &st->L;
    const staging *sg = &L->stage;
    for (int64_t h = 0; h < c->shape.H; h++) {
        void *q, *k, *v;
        if (fc->head_stride) {
            const size_t at = (size_t)h * fc->head_stride;
            q = attn_elem_mut(fc->q, st->dt, at), v = attn_elem_mut(fc->v, st->dt, at);
            k = fc->k ? attn_elem_mut(fc->k, st->dt, at) : q;
        } else {
            project_head(st, w, fc, h, &q, &k, &v);
        }
        void *out = attn_elem_mut(fc->out, st->dt, (size_t)h * he);
        /* the output projection: dWo_h += out_h^T df, dout_h = df Wo_h^T */
        mm_xtdy(nt, sg, st->rows, d, D, A(st, out), d, A(st, df), D, g->wo + h * d * D, D);
        mm_dywt(nt, sg, st->rows, d, D, A(st, df), D, w->wo + h * d * D, D, 0.0f, A(st, L->dout), d);
        attn_grads ag = {.q = q, .k = k, .v = v, .out = out,
                         .lse = fc->lse + (size_t)h * (size_t)(c->shape.B * c->shape.n),
                         .dout = L->dout,
                         .structure = per_head ? structure + (size_t)h * per_head : NULL,
                         .dq = L->dq, .dk = L->dk, .dv = L->dv, .stats = c->stats};
        int rc = c->attn.method->backward(&hs, &c->attn, &ag, L->attn_bwd, nt);
        if (rc)
            return rc;
        /* the projections: dW_h += xn^T d_h, dxn += d_h W_h^T (shared QK: no key's) */
        void *const grads[] = {L->dq, L->dk, L->dv};
        float *dmats[] = {g->wq, g->wk, g->wv};
        const float *mats[] = {w->wq, w->wk, w->wv};
        for (int m = 0; m < 3; m++) {
            if (!mats[m])
                continue;
            mm_xtdy(nt, sg, st->rows, D, d, A(st, fc->xn), D, A(st, grads[m]), d, dmats[m] + h * d, D);
            mm_dywt(nt, sg, st->rows, D, d, A(st, grads[m]), d, mats[m] + h * d, D,
                    h || m ? 1.0f : 0.0f, A(st, L->dxn), D);
        }
    }
    ln_backward(nt, st->rows, D, A(st, x), w->ln1_g, fc->mean, fc->rstd, A(st, L->dxn), A(st, dx),
                g->ln1_g, g->ln1_b);
    return 0;
}

/* G's forward on `rows` rows: gc keeps the intermediates, out = G(x). */
static void g_forward(step *st, const layer_w *w, int64_t rows, void *x, gcache *gc, float *out)
{
    const int nt = st->nthreads, D = (int)st->D, F = (int)st->F;
    const staging *sg = &st->L.stage;
    if (st->c->stats)
        st->c->stats->v[ATTN_STAT_FF_CHUNKS]++;
    ln_forward(nt, rows, D, A(st, x), w->ln2_g, w->ln2_b, A(st, gc->xn), gc->mean, gc->rstd);
    mm_xw(nt, sg, rows, D, F, A(st, gc->xn), D, w->w1, F, 1.0f, 0.0f, A(st, gc->h), F);
    const act h = A(st, gc->h);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < rows; i++)
        for (int j = 0; j < F; j++) {
            const float z = act_get(h, (size_t)(i * F + j)) + w->b1[j];
            act_set(h, (size_t)(i * F + j), z > 0.0f ? z : 0.0f);
        }
    mm_xw(nt, sg, rows, F, D, h, F, w->w2, D, 1.0f, 0.0f, f32(out), D);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < rows; i++)
        for (int j = 0; j < D; j++)
            out[i * D + j] += w->b2[j];
}

/* dx += G'(x)^T dg on `rows` rows, weight gradients into g. dg is read before dx is written,
 * so they may be the same rows. */
static void g_backward(step *st, const layer_w *w, layer_w *g, int64_t rows, void *x,
                       const gcache *gc, void *dg, void *dx)
{
    const int nt = st->nthreads, D = (int)st->D, F = (int)st->F;
    layout *L = &st->L;
    const staging *sg = &L->stage;
    const act h = A(st, gc->h);
    mm_xtdy(nt, sg, rows, F, D, h, F, A(st, dg), D, g->w2, D);
    colsum(nt, rows, D, A(st, dg), g->b2);
    mm_dywt(nt, sg, rows, F, D, A(st, dg), D, w->w2, D, 0.0f, f32(L->g_dh), F);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < rows * F; i++)
        if (act_get(h, (size_t)i) <= 0.0f)
            L->g_dh[i] = 0.0f;
    mm_xtdy(nt, sg, rows, D, F, A(st, gc->xn), D, f32(L->g_dh), F, g->w1, F);
    colsum(nt, rows, F, f32(L->g_dh), g->b1);
    mm_dywt(nt, sg, rows, D, F, f32(L->g_dh), F, w->w1, F, 0.0f, f32(L->g_dxn), D);
    ln_backward(nt, rows, D, A(st, x), w->ln2_g, gc->mean, gc->rstd, f32(L->g_dxn), A(st, dx),
                g->ln2_g, g->ln2_b);
}

/* ---- the stacks -------------------------------------------------------------------------- */

/* Row r0's element of an activation buffer, as a pointer. */
static void *rows_at(const step *st, void *base, int64_t r0, int64_t width)
{
    return attn_elem_mut(base, st->dt, (size_t)(r0 * width));
}

static void copy_act(const step *st, void *dst, const void *src, size_t count)
{
    memcpy(dst, src, count * attn_dtype_size(st->dt));
}

static int forward_standard(step *st, const float *weights, const void *x)
{
    const stack_config *c = st->c;
    const size_t count = (size_t)(st->rows * st->D);
    const int64_t P = (int64_t)chunk_rows(c);
    void *cur = st->L.y1;
    copy_act(st, cur, x, count);
    for (int l = 0; l < c->layers; l++) {
        layer_w w = layer_at((float *)weights, c, l);
        layer_state ls = layer_state_at(c, &st->L, l);
        copy_act(st, ls.xin, cur, count);
        int rc = f_forward(st, &w, cur, &ls.fc, ls.structure, false, 1.0f, cur); /* x += F(x) */
        if (rc)
            return rc;
        copy_act(st, ls.xmid, cur, count);
        for (int64_t r0 = 0; r0 < st->rows; r0 += P) { /* G keeps all rows: standard keeps all */
            const int64_t rows = st->rows - r0 < P ? st->rows - r0 : P;
            gcache part = {rows_at(st, ls.gc.xn, r0, st->D), rows_at(st, ls.gc.h, r0, st->F),
                           ls.gc.mean + r0, ls.gc.rstd + r0};
            g_forward(st, &w, rows, rows_at(st, cur, r0, st->D), &part, st->L.g_out);
            add_into(st->nthreads, (size_t)(rows * st->D), st->L.g_out,
                     A(st, rows_at(st, cur, r0, st->D)));
        }
    }
    return 0;
}

static int backward_standard(step *st, const float *weights, float *grads, void *dx)
{
    const stack_config *c = st->c;
    const int64_t P = (int64_t)chunk_rows(c);
    void *dcur = st->L.dy1;
    for (int l = c->layers - 1; l >= 0; l--) {
        layer_w w = layer_at((float *)weights, c, l), g = layer_at(grads, c, l);
        layer_state ls = layer_state_at(c, &st->L, l);
        for (int64_t r0 = 0; r0 < st->rows; r0 += P) { /* x_out = mid + G(mid) */
            const int64_t rows = st->rows - r0 < P ? st->rows - r0 : P;
            gcache part = {rows_at(st, ls.gc.xn, r0, st->D), rows_at(st, ls.gc.h, r0, st->F),
                           ls.gc.mean + r0, ls.gc.rstd + r0};
            void *d = rows_at(st, dcur, r0, st->D);
            g_backward(st, &w, &g, rows, rows_at(st, ls.xmid, r0, st->D), &part, d, d);
        }
        int rc = f_backward(st, &w, &g, ls.xin, &ls.fc, ls.structure, dcur, dcur); /* mid = in + F(in) */
        if (rc)
            return rc;
    }
    copy_act(st, dx, dcur, (size_t)(st->rows * st->D));
    return 0;
}

static int forward_reversible(step *st, const float *weights, const void *x)
{
    const stack_config *c = st->c;
    const size_t count = (size_t)(st->rows * st->D);
    const int64_t P = (int64_t)chunk_rows(c);
    void *y1 = st->L.y1, *y2 = st->L.y2;
    copy_act(st, y1, x, count);
    copy_act(st, y2, x, count);
    for (int l = 0; l < c->layers; l++) {
        layer_w w = layer_at((float *)weights, c, l);
        layer_state ls = layer_state_at(c, &st->L, l);
        if (c->keep_inputs) {
            copy_act(st, ls.kept1, y1, count);
            copy_act(st, ls.kept2, y2, count);
        }
        /* Y1 = X1 + F(X2), head by head into Y1 */
        int rc = f_forward(st, &w, y2, &st->L.rev_fc, ls.structure, false, 1.0f, y1);
        if (rc)
            return rc;
        for (int64_t r0 = 0; r0 < st->rows; r0 += P) { /* Y2 = X2 + G(Y1), chunk by chunk */
            const int64_t rows = st->rows - r0 < P ? st->rows - r0 : P;
            g_forward(st, &w, rows, rows_at(st, y1, r0, st->D), &st->L.gscratch, st->L.g_out);
            add_into(st->nthreads, (size_t)(rows * st->D), st->L.g_out,
                     A(st, rows_at(st, y2, r0, st->D)));
        }
    }
    return 0;
}

static double max_abs_diff(act a, act b, size_t count)
{
    double m = 0;
    for (size_t i = 0; i < count; i++)
        m = fmax(m, fabs((double)act_get(a, i) - act_get(b, i)));
    return m;
}

static int backward_reversible(step *st, const float *weights, float *grads, void *dx)
{
    const stack_config *c = st->c;
    const size_t count = (size_t)(st->rows * st->D);
    const int64_t P = (int64_t)chunk_rows(c);
    const bool use_kept = c->keep_inputs && !c->inverse_error;
    void *y1 = st->L.y1, *y2 = st->L.y2, *dy1 = st->L.dy1, *dy2 = st->L.dy2;
    for (int l = c->layers - 1; l >= 0; l--) {
        layer_w w = layer_at((float *)weights, c, l), g = layer_at(grads, c, l);
        layer_state ls = layer_state_at(c, &st->L, l);
        if (c->stats)
            c->stats->v[ATTN_STAT_LAYERS_RECOMPUTED]++;
        /* G: recompute chunk by chunk from Y1; X2 = Y2 - G(Y1); dY1 += G'^T dY2 */
        for (int64_t r0 = 0; r0 < st->rows; r0 += P) {
            const int64_t rows = st->rows - r0 < P ? st->rows - r0 : P;
            void *y1r = rows_at(st, y1, r0, st->D), *y2r = rows_at(st, y2, r0, st->D);
            g_forward(st, &w, rows, y1r, &st->L.gscratch, st->L.g_out);
            if (use_kept) {
                copy_act(st, y2r, rows_at(st, ls.kept2, r0, st->D), (size_t)(rows * st->D));
            } else {
                const act y = A(st, y2r);
                for (int64_t i = 0; i < rows * st->D; i++)
                    act_set(y, (size_t)i, act_get(y, (size_t)i) - st->L.g_out[i]);
            }
            g_backward(st, &w, &g, rows, y1r, &st->L.gscratch, rows_at(st, dy2, r0, st->D),
                       rows_at(st, dy1, r0, st->D));
        }
        /* F: recompute from X2 with the saved structure, head by head out of Y1: X1 = Y1 -
         * F(X2) (or the kept X1, for the oracle); then dX2 = dY2 + F'^T dY1 */
        int rc = f_forward(st, &w, y2, &st->L.rev_fc, ls.structure, true, -1.0f, y1);
        if (rc)
            return rc;
        if (use_kept)
            copy_act(st, y1, ls.kept1, count);
        if (c->inverse_error && c->keep_inputs)
            c->inverse_error[l] = fmax(max_abs_diff(A(st, y1), A(st, ls.kept1), count),
                                       max_abs_diff(A(st, y2), A(st, ls.kept2), count));
        rc = f_backward(st, &w, &g, y2, &st->L.rev_fc, ls.structure, dy1, dy2);
        if (rc)
            return rc;
    }
    const act a = A(st, dy1), b = A(st, dy2), out = A(st, dx);
    for (size_t i = 0; i < count; i++) /* both streams started as x */
        act_set(out, i, act_get(a, i) + act_get(b, i));
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
    if (dmodel(c) > MAX_DMODEL) {
        *why = "d_model above 4096 (the loss's row of generated targets, a LayerNorm's row)";
        return ATTN_EUNSUPPORTED;
    }
    return attn_check(&c->shape, &c->attn, why);
}

static void init_step(step *st, const stack_config *c, void *work, int nthreads)
{
    memset(st, 0, sizeof *st);
    st->c = c;
    st->nthreads = nthreads;
    st->dt = c->shape.dtype;
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
static double loss_and_grad(step *st, const float *target, void *dy1, void *dy2)
{
    const act y1 = A(st, st->L.y1), y2 = A(st, st->L.y2), g1 = A(st, dy1), g2 = A(st, dy2);
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
                    const size_t e = (size_t)(i * D + (j < D ? j : j - D));
                    const float y = act_get(j < D ? y1 : y2, e);
                    const double diff = (double)y - tg[j];
                    loss += 0.5 * diff * diff * scale;
                    act_set(j < D ? g1 : g2, e, (float)(diff * scale));
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

int stack_forward(const stack_config *c, const float *weights, const void *x, float *y,
                  void *work, int nthreads)
{
    step st;
    init_step(&st, c, work, nthreads);
    int rc = c->kind == STACK_REVERSIBLE ? forward_reversible(&st, weights, x)
                                         : forward_standard(&st, weights, x);
    if (rc)
        return rc;
    const int64_t D = st.D, width = st.L.y2 ? 2 * D : D;
    for (int64_t i = 0; i < st.rows; i++) {
        attn_convert(rows_at(&st, st.L.y1, i, D), st.dt, y + i * width, ATTN_FP32, (size_t)D);
        if (st.L.y2)
            attn_convert(rows_at(&st, st.L.y2, i, D), st.dt, y + i * width + D, ATTN_FP32,
                         (size_t)D);
    }
    return 0;
}

int stack_train_step(const stack_config *c, const float *weights, float *grads, const void *x,
                     const float *target, void *dx, double *loss, void *work, int nthreads)
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
