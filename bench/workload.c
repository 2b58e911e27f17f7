/* workload.c: see workload.h. */
#include "workload.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inputs.h"

static void *alloc_aligned(size_t bytes)
{
    return bytes ? aligned_alloc(64, (bytes + 63) / 64 * 64) : NULL;
}

/* The layer stack of a training point. */
static void stack_of(const point_spec *s, stack_config *c)
{
    memset(c, 0, sizeof *c);
    c->kind = s->stack;
    c->layers = s->layers;
    c->shape = s->shape;
    c->attn = s->params;
    c->d_ff = s->d_ff > 0 ? s->d_ff : 4 * s->shape.H * s->shape.d;
    c->ff_chunk = s->ff_chunk;
}

int workload_model(const point_spec *s, point_model *m, const char **why)
{
    memset(m, 0, sizeof *m);
    if (s->train) {
        stack_config c;
        stack_of(s, &c);
        int rc = stack_check(&c, why);
        if (rc)
            return rc;
        stack_cost sc;
        stack_cost_of(&c, s->threads, &sc);
        const uint64_t rows = (uint64_t)(s->shape.B * s->shape.n);
        const uint64_t D = (uint64_t)(s->shape.H * s->shape.d);
        m->flops = sc.flops;
        m->param_bytes = 2 * sc.weight_floats * sizeof(float);
        m->io_bytes = (2 * rows * D + rows * (uint64_t)sc.width) * sizeof(float);
        m->workspace_bytes = sc.workspace_bytes;
        m->activation_bytes = sc.activation_bytes;
        m->bytes = m->param_bytes + m->io_bytes + m->workspace_bytes;
        m->d_ff = c.d_ff;
        return 0;
    }
    int rc = attn_check(&s->shape, &s->params, why);
    if (rc)
        return rc;
    if (s->backward && !s->params.method->backward) {
        *why = "the method has no backward pass";
        return ATTN_ENOBACKWARD;
    }
    attn_cost c;
    s->params.method->cost(&s->shape, &s->params, s->threads, &c);
    m->flops = c.flops;
    m->io_bytes = attn_io_bytes(&s->shape, &c);
    m->workspace_bytes = c.workspace_bytes;
    if (s->backward) { /* dout, dq, dk, dv; one workspace serves both passes in turn */
        m->flops += c.bwd_flops;
        m->io_bytes += 4 * attn_tensor_elems(&s->shape) * sizeof(float);
        if (c.bwd_workspace_bytes > m->workspace_bytes)
            m->workspace_bytes = c.bwd_workspace_bytes;
    }
    m->bytes = m->io_bytes + m->workspace_bytes;
    return 0;
}

int workload_prepare(workload *w, const point_spec *s)
{
    memset(w, 0, sizeof *w);
    w->spec = s;
    const char *why;
    if (workload_model(s, &w->model, &why))
        return ATTN_EUNSUPPORTED;
    if (s->train) {
        stack_of(s, &w->stack);
        stack_cost sc;
        stack_cost_of(&w->stack, s->threads, &sc);
        const size_t rows = (size_t)(s->shape.B * s->shape.n), D = (size_t)(s->shape.H * s->shape.d);
        w->weights = alloc_aligned(sc.weight_floats * 4);
        w->grads = alloc_aligned(sc.weight_floats * 4);
        w->x = alloc_aligned(rows * D * 4);
        w->dx = alloc_aligned(rows * D * 4);
        w->target = alloc_aligned(rows * (size_t)sc.width * 4);
        w->work = alloc_aligned(sc.workspace_bytes);
        w->weight_floats = sc.weight_floats;
        if (!w->weights || !w->grads || !w->x || !w->dx || !w->target ||
            (sc.workspace_bytes && !w->work))
            return ATTN_ENOMEM;
        if (w->work)
            memset(w->work, 0, sc.workspace_bytes);
        workload_poison(w);
        stack_init_weights(&w->stack, w->weights, s->seed);
        inputs_normal(w->x, rows * D, s->seed, 11, 1.0f, s->threads);
        inputs_normal(w->target, rows * (size_t)sc.width, s->seed, 12, 1.0f, s->threads);
        return 0;
    }
    attn_cost c;
    s->params.method->cost(&s->shape, &s->params, s->threads, &c);
    const size_t elems = attn_tensor_elems(&s->shape), rows = (size_t)(s->shape.B * s->shape.H * s->shape.n);
    const size_t nstruct = attn_structure_elems(&c);
    w->q = alloc_aligned(elems * 4);
    w->k = alloc_aligned(elems * 4);
    w->v = alloc_aligned(elems * 4);
    w->out = alloc_aligned(elems * 4);
    w->lse = alloc_aligned(rows * 4);
    w->structure = alloc_aligned(nstruct * 4);
    w->work = alloc_aligned(w->model.workspace_bytes);
    if (s->backward) {
        w->dout = alloc_aligned(elems * 4);
        w->dq = alloc_aligned(elems * 4);
        w->dk = alloc_aligned(elems * 4);
        w->dv = alloc_aligned(elems * 4);
        if (!w->dout || !w->dq || !w->dk || !w->dv)
            return ATTN_ENOMEM;
        inputs_normal(w->dout, elems, s->seed, 13, 1.0f, s->threads);
    }
    if (!w->q || !w->k || !w->v || !w->out || !w->lse || (nstruct && !w->structure) ||
        (w->model.workspace_bytes && !w->work))
        return ATTN_ENOMEM;
    if (w->work)
        memset(w->work, 0, w->model.workspace_bytes);
    if (w->structure)
        memset(w->structure, 0, nstruct * 4);
    workload_poison(w);
    inputs_generate(&s->shape, s->inputs, s->seed, w->q, w->k, w->v, s->threads);
    return 0;
}

static void fill_nan(float *x, size_t count)
{
    for (size_t i = 0; i < count; i++)
        x[i] = NAN;
}

void workload_poison(workload *w)
{
    size_t count;
    float *out = workload_output(w, &count);
    fill_nan(out, count);
    if (w->spec->train)
        fill_nan(w->grads, w->weight_floats);
    else
        fill_nan(w->lse, (size_t)(w->spec->shape.B * w->spec->shape.H * w->spec->shape.n));
    if (w->spec->backward) {
        fill_nan(w->dq, count);
        fill_nan(w->dk, count);
        fill_nan(w->dv, count);
    }
}

int workload_run(workload *w)
{
    const point_spec *s = w->spec;
    if (s->train)
        return stack_train_step(&w->stack, w->weights, w->grads, w->x, w->target, w->dx, &w->loss,
                                w->work, s->threads);
    attn_tensors t = {.q = w->q, .k = w->k, .v = w->v, .out = w->out, .lse = w->lse,
                      .structure = w->structure};
    int rc = s->params.method->forward(&s->shape, &s->params, &t, w->work, s->threads);
    if (rc || !s->backward)
        return rc;
    attn_grads g = {.q = w->q, .k = w->k, .v = w->v, .out = w->out, .lse = w->lse,
                    .dout = w->dout, .structure = w->structure, .dq = w->dq, .dk = w->dk,
                    .dv = w->dv};
    return s->params.method->backward(&s->shape, &s->params, &g, w->work, s->threads);
}

float *workload_output(workload *w, size_t *count)
{
    *count = attn_tensor_elems(&w->spec->shape); /* dx (B, n, H d) has as many as out */
    return w->spec->train ? w->dx : w->out;
}

static int64_t first_bad(const float *x, size_t count, int allow_neg_inf)
{
    for (size_t i = 0; i < count; i++)
        if (!isfinite(x[i]) && !(allow_neg_inf && x[i] == -INFINITY))
            return (int64_t)i;
    return -1;
}

int workload_verify(const workload *w, char *why, size_t size)
{
    const attn_shape *s = &w->spec->shape;
    size_t count;
    const float *out = workload_output((workload *)w, &count);
    const struct {
        const char *name;
        const float *x;
        size_t count;
        int allow_neg_inf;
    } parts[] = {
        {w->spec->train ? "dx" : "out", out, count, 0},
        {w->spec->train ? "weight gradient" : "lse", w->spec->train ? w->grads : w->lse,
         w->spec->train ? w->weight_floats : (size_t)(s->B * s->H * s->n), !w->spec->train},
        {"dq", w->dq, w->dq ? count : 0, 0},
        {"dk", w->dk, w->dk ? count : 0, 0},
        {"dv", w->dv, w->dv ? count : 0, 0},
    };
    for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
        const int64_t bad = first_bad(parts[p].x, parts[p].count, parts[p].allow_neg_inf);
        if (bad >= 0) {
            snprintf(why, size, "%s element %lld is %g: not written, or not finite on finite "
                     "inputs", parts[p].name, (long long)bad, (double)parts[p].x[bad]);
            return -1;
        }
    }
    if (w->spec->train && !isfinite(w->loss)) {
        snprintf(why, size, "the loss is %g: not finite on finite inputs", w->loss);
        return -1;
    }
    return 0;
}

void workload_report(const workload *w, json_t *r)
{
    if (w->spec->train)
        json_object_set_new(r, "loss", json_real(w->loss));
}

void workload_free(workload *w)
{
    free(w->q), free(w->k), free(w->v), free(w->out), free(w->lse), free(w->structure);
    free(w->weights), free(w->grads), free(w->x), free(w->target), free(w->dx), free(w->work);
    free(w->dout), free(w->dq), free(w->dk), free(w->dv);
    memset(w, 0, sizeof *w);
}
