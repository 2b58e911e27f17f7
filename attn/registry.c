/* registry.c: the table of methods (from methods.def), error names, and parameter handling
 * shared by every method. Nothing here is method-specific. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "methods.h"

static const attn_method *const methods[] = {
#define ATTN_METHOD(name) &attn_##name,
#include "methods.def"
#undef ATTN_METHOD
};

const attn_method *const *attn_methods(int *count)
{
    *count = (int)(sizeof methods / sizeof methods[0]);
    return methods;
}

const attn_method *attn_find(const char *name)
{
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(methods[i]->name, name) == 0)
            return methods[i];
    return NULL;
}

const char *attn_strerror(int err)
{
    static const char *const msg[] = {
#define ATTN_ERROR_MSG(name, text) text,
        ATTN_ERRORS(ATTN_ERROR_MSG)
#undef ATTN_ERROR_MSG
    };
    return err >= 0 && err < ATTN_NERRORS ? msg[err] : "unknown error";
}

const char *attn_errname(int err)
{
    static const char *const names[] = {
#define ATTN_ERROR_NAME(name, text) #name,
        ATTN_ERRORS(ATTN_ERROR_NAME)
#undef ATTN_ERROR_NAME
    };
    return err >= 0 && err < ATTN_NERRORS ? names[err] : "ATTN_E?";
}

const char *attn_stat_name(int i)
{
    static const char *const names[] = {
#define ATTN_STAT_NAME(name, text, help) text,
        ATTN_STATS(ATTN_STAT_NAME)
#undef ATTN_STAT_NAME
    };
    return i >= 0 && i < ATTN_NSTATS ? names[i] : "?";
}

const char *attn_stat_help(int i)
{
    static const char *const help[] = {
#define ATTN_STAT_HELP(name, text, h) h,
        ATTN_STATS(ATTN_STAT_HELP)
#undef ATTN_STAT_HELP
    };
    return i >= 0 && i < ATTN_NSTATS ? help[i] : "?";
}

void attn_stats_add(attn_stats *total, const attn_stats *part)
{
    if (!total)
        return;
    for (int i = 0; i < ATTN_NSTATS; i++)
        if (part->v[i]) {
#pragma omp atomic
            total->v[i] += part->v[i];
        }
}

void attn_params_default(const attn_method *m, attn_params *p)
{
    memset(p, 0, sizeof *p);
    p->method = m;
    for (int i = 0; i < m->n_params; i++)
        p->v[i] = m->params[i].def;
}

int attn_param_index(const attn_method *m, const char *key)
{
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, key) == 0)
            return i;
    return -1;
}

/* Parses a whole string as a finite number; integers must be integral. */
static int parse_number(const char *text, bool integral, double *out)
{
    if (!*text)
        return ATTN_EPARAM_VALUE;
    char *end;
    errno = 0;
    double x = strtod(text, &end);
    if (*end || errno || !isfinite(x))
        return ATTN_EPARAM_VALUE;
    if (integral && x != floor(x))
        return ATTN_EPARAM_VALUE;
    *out = x;
    return ATTN_OK;
}

int attn_params_set(attn_params *p, const char *key, const char *value)
{
    int i = attn_param_index(p->method, key);
    if (i < 0)
        return ATTN_EUNKNOWN_PARAM;
    const attn_param_spec *spec = &p->method->params[i];
    if (spec->auto_ok && strcmp(value, "auto") == 0) {
        p->v[i] = ATTN_AUTO;
        return ATTN_OK;
    }
    if (spec->kind == ATTN_PARAM_CHOICE) {
        for (int c = 0; spec->choices[c]; c++)
            if (strcmp(spec->choices[c], value) == 0) {
                p->v[i] = c;
                return ATTN_OK;
            }
        return ATTN_EPARAM_VALUE;
    }
    double x;
    int rc = parse_number(value, spec->kind == ATTN_PARAM_INT, &x);
    if (rc)
        return rc;
    if (x < spec->min || x > spec->max)
        return ATTN_EPARAM_RANGE;
    p->v[i] = x;
    return ATTN_OK;
}

int attn_params_parse(attn_params *p, const char *assignment)
{
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return ATTN_EPARAM_VALUE;
    char key[64];
    size_t len = (size_t)(eq - assignment);
    if (len >= sizeof key)
        return ATTN_EUNKNOWN_PARAM;
    memcpy(key, assignment, len);
    key[len] = '\0';
    return attn_params_set(p, key, eq + 1);
}

const char *attn_param_format(const attn_params *p, int i, char *buf, size_t size)
{
    const attn_param_spec *spec = &p->method->params[i];
    if (spec->auto_ok && p->v[i] == ATTN_AUTO)
        snprintf(buf, size, "auto");
    else if (spec->kind == ATTN_PARAM_CHOICE)
        snprintf(buf, size, "%s", spec->choices[(int)p->v[i]]);
    else
        snprintf(buf, size, "%.17g", p->v[i]);
    return buf;
}

int attn_check(const attn_shape *s, const attn_params *p, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    *why = "";
    if (s->B <= 0 || s->H <= 0 || s->n <= 0 || s->d <= 0) {
        *why = "B, H, n and d must be positive";
        return ATTN_ESHAPE;
    }
    /* Keep every index of a (B, H, n, d) tensor, n*n, and the bytes of the inputs and
     * outputs inside int64 and size_t; B and H are bounded alone first so B*H cannot
     * overflow, and then B*H*n (at most 2^51) cannot either. */
    const int64_t big = INT64_C(1) << 20;
    if (s->n > (INT64_C(1) << 31) || s->d > 4096 || s->B > big || s->H > big ||
        s->B * s->H > big || s->B * s->H * s->n > (INT64_C(1) << 56) / s->d) {
        *why = "n <= 2^31, d <= 4096, B*H <= 2^20 and B*H*n*d <= 2^56";
        return ATTN_ESHAPE;
    }
    return p->method->check(s, p, why);
}

size_t attn_tensor_elems(const attn_shape *s)
{
    return (size_t)(s->B * s->H * s->n * s->d);
}

size_t attn_structure_elems(const attn_cost *c)
{
    if (c->structure_ndim == 0)
        return 0;
    size_t e = 1;
    for (int i = 0; i < c->structure_ndim; i++)
        e *= (size_t)c->structure_dims[i];
    return e;
}

size_t attn_dtype_size(attn_dtype t)
{
    return t == ATTN_BF16 ? sizeof(attn_bf16) : sizeof(float);
}

const char *attn_dtype_name(attn_dtype t)
{
    return t == ATTN_BF16 ? "bf16" : "fp32";
}

int attn_dtype_parse(const char *name, attn_dtype *t)
{
    if (strcmp(name, "fp32") == 0)
        *t = ATTN_FP32;
    else if (strcmp(name, "bf16") == 0)
        *t = ATTN_BF16;
    else
        return ATTN_EPARAM_VALUE;
    return ATTN_OK;
}

void attn_convert(const void *src, attn_dtype from, void *dst, attn_dtype to, size_t count)
{
    if (from == to) {
        memcpy(dst, src, count * attn_dtype_size(from));
    } else if (from == ATTN_FP32) {
        const float *x = src;
        attn_bf16 *y = dst;
        for (size_t i = 0; i < count; i++)
            y[i] = attn_f32_to_bf16(x[i]);
    } else {
        const attn_bf16 *x = src;
        float *y = dst;
        for (size_t i = 0; i < count; i++)
            y[i] = attn_bf16_to_f32(x[i]);
    }
}

size_t attn_io_bytes(const attn_shape *s, const attn_cost *c)
{
    return 4 * attn_tensor_elems(s) * attn_dtype_size(s->dtype) + (size_t)(s->B * s->H * s->n) * sizeof(float) +
           attn_structure_elems(c) * sizeof(int32_t);
}

void *attn_aligned_alloc(size_t bytes)
{
    return bytes ? aligned_alloc(64, (bytes + 63) / 64 * 64) : NULL;
}

/* A workspace of bytes (none for 0). Returns 0 or ATTN_ENOMEM. */
static int workspace_alloc(size_t bytes, void **work)
{
    *work = attn_aligned_alloc(bytes);
    return bytes && !*work ? ATTN_ENOMEM : 0;
}

int attn_backward_alloc(const attn_shape *s, const attn_params *p, const attn_grads *g,
                        int nthreads)
{
    int rc = attn_check(s, p, NULL);
    if (rc)
        return rc;
    if (!p->method->backward)
        return ATTN_ENOBACKWARD;
    attn_cost c;
    p->method->cost(s, p, nthreads, &c);
    void *work;
    if ((rc = workspace_alloc(c.bwd_workspace_bytes, &work)))
        return rc;
    rc = p->method->backward(s, p, g, work, nthreads);
    free(work);
    return rc;
}

void attn_exact_params(const attn_shape *s, const attn_params *p, attn_params *exact)
{
    if (p->method->exact)
        p->method->exact(s, p, exact);
    else
        attn_params_default(attn_find("full_stream"), exact);
}

int attn_forward_alloc(const attn_shape *s, const attn_params *p, const attn_tensors *t,
                       int nthreads)
{
    int rc = attn_check(s, p, NULL);
    if (rc)
        return rc;
    attn_cost c;
    p->method->cost(s, p, nthreads, &c);
    void *work;
    if ((rc = workspace_alloc(c.workspace_bytes, &work)))
        return rc;
    rc = p->method->forward(s, p, t, work, nthreads);
    free(work);
    return rc;
}

int attn_mass_recall(const attn_shape *s, const attn_params *p, const attn_tensors *t,
                     const float *lse_exact, double *recall, int nthreads)
{
    const int64_t rows = s->B * s->H * s->n;
    double sum = 0;
    if (p->method->mass) {
        const int rc = p->method->mass(s, p, t, lse_exact, &sum, nthreads);
        if (rc)
            return rc;
    } else {
        /* each scored key once: the row's logsumexp is log sum over its keys of exp(l), so
         * exp(lse - lse_exact) is their share of the exact mass (capped at 1 for rounding; a
         * row with no key at all, lse -inf, recalled nothing) */
        for (int64_t i = 0; i < rows; i++)
            sum += isinf(t->lse[i]) && t->lse[i] < 0 ? 0 : fmin(1.0, exp((double)t->lse[i] - lse_exact[i]));
    }
    *recall = rows ? sum / (double)rows : 1;
    return ATTN_OK;
}
