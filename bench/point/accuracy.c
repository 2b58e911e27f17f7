/* accuracy.c: a method's output against its exact counterpart's (see accuracy.h). */
#include "accuracy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../sys/timing.h"

/* Sets e's max_rel and mean_rel: the row-wise relative L2 error of out against ref. */
static void relative_error(json_t *e, const float *out, const float *ref, int64_t rows, int64_t d,
                           const char *metric)
{
    double max = 0, sum = 0, all_num = 0, all_den = 0;
    for (int64_t r = 0; r < rows; r++) {
        double num = 0, den = 0;
        for (int64_t c = 0; c < d; c++) {
            double diff = (double)out[r * d + c] - (double)ref[r * d + c];
            num += diff * diff;
            den += (double)ref[r * d + c] * (double)ref[r * d + c];
        }
        double row = sqrt(num) / (den > 0 ? sqrt(den) : 1.0);
        max = row > max ? row : max;
        sum += row;
        all_num += num;
        all_den += den;
    }
    json_object_set_new(e, "max_rel", json_real(max));
    json_object_set_new(e, "mean_rel", json_real(sum / (double)rows));
    json_object_set_new(e, "metric", json_string(metric));
    /* over the whole output: rows whose exact output is small (a query averaging many random
     * values) weigh by their size, not by their number, as they do in what follows them */
    json_object_set_new(e, "rel_fro", json_real(all_den > 0 ? sqrt(all_num / all_den) : sqrt(all_num)));
}

/* Runs method p on fp32 copies of the inputs (shape s in fp32) into ref and lse; returns its
 * error code and, when it fails, an {"error": why} object in e. */
static int reference_run(const point_spec *s, const attn_shape *shape, const attn_params *p,
                         const float *q, const float *k, const float *v, float *ref, float *lse,
                         json_t *e)
{
    attn_cost c;
    p->method->cost(shape, p, s->threads, &c);
    const size_t nstruct = attn_structure_elems(&c);
    int32_t *structure = nstruct ? malloc(nstruct * sizeof *structure) : NULL;
    int rc = ATTN_ENOMEM;
    if (structure || !nstruct) {
        attn_tensors t = {.q = q, .k = k, .v = v, .out = ref, .lse = lse, .structure = structure};
        rc = attn_forward_alloc(shape, p, &t, s->threads);
    }
    free(structure);
    if (rc) {
        char why[256];
        snprintf(why, sizeof why, "the reference %s failed: %s (%s)", p->method->name,
                 attn_errname(rc), attn_strerror(rc));
        json_object_set_new(e, "error", json_string(why));
    }
    return rc;
}

/* The configuration of a reference as text: "lsh chunk_len=1024 n_hashes=1 ...". */
static json_t *reference_text(const attn_params *p)
{
    char text[512];
    int len = snprintf(text, sizeof text, "%s", p->method->name);
    for (int i = 0; i < p->method->n_params && len < (int)sizeof text; i++) {
        char val[64];
        len += snprintf(text + len, sizeof text - (size_t)len, " %s=%s", p->method->params[i].name,
                        attn_param_format(p, i, val, sizeof val));
    }
    return json_string(text);
}

/* A tensor of the point as fp32: itself, or (bf16) a widened copy in *copy (freed by the
 * caller). NULL when out of memory. */
static const float *as_fp32(const attn_shape *s, const void *x, float **copy)
{
    *copy = NULL;
    if (s->dtype == ATTN_FP32)
        return x;
    const size_t elems = attn_tensor_elems(s);
    if ((*copy = malloc(elems * sizeof **copy)) != NULL)
        attn_convert(x, s->dtype, *copy, ATTN_FP32, elems);
    return *copy;
}

json_t *point_accuracy(const point_spec *s, const void *q, const void *k, const void *v,
                       const void *out, const float *lse_m, const int32_t *structure_m,
                       json_t **vs_fp32)
{
    /* the references run in fp32 on the point's own inputs, widened (exactly) from bf16 */
    attn_shape shape = s->shape;
    shape.dtype = ATTN_FP32;
    float *copies[4];
    const float *qf = as_fp32(&s->shape, q, &copies[0]), *kf = as_fp32(&s->shape, k, &copies[1]),
                *vf = as_fp32(&s->shape, v, &copies[2]), *of = as_fp32(&s->shape, out, &copies[3]);
    attn_params exact;
    attn_exact_params(&shape, &s->params, &exact);
    const size_t elems = attn_tensor_elems(&shape), rows = (size_t)(shape.B * shape.H * shape.n);
    float *ref = malloc(elems * sizeof *ref), *lse = malloc(rows * sizeof *lse);
    json_t *e = json_object();
    if (vs_fp32)
        *vs_fp32 = NULL;
    if (!qf || !kf || !vf || !of || !ref || !lse) {
        json_object_set_new(e, "error", json_string("out of memory for the exact reference"));
        goto done;
    }
    const double t0 = timing_now();
    if (reference_run(s, &shape, &exact, qf, kf, vf, ref, lse, e) == 0) {
        relative_error(e, of, ref, (int64_t)rows, shape.d,
                       "row-wise ||out - exact||_2 / ||exact||_2");
        /* what the method's pattern or hash let through of the exact attention: needs its own
         * logsumexp and structure, so our methods only (not an external program's output) */
        double recall;
        const attn_tensors tm = {.q = qf, .k = kf, .v = vf, .out = (float *)of,
                                 .lse = (float *)lse_m, .structure = (int32_t *)structure_m};
        const int have = lse_m && (structure_m || !s->params.method->mass);
        json_object_set_new(e, "mass_recall",
                            have && attn_mass_recall(&shape, &s->params, &tm, lse, &recall,
                                                     s->threads) == 0
                                ? json_real(recall)
                                : json_null());
        json_object_set_new(e, "reference", reference_text(&exact));
        json_object_set_new(e, "reference_s", json_real(timing_now() - t0));
    }
    if (vs_fp32 && s->shape.dtype != ATTN_FP32) {
        /* the same method and parameters in fp32, on the same inputs: what the storage costs */
        json_t *f = json_object();
        const double t1 = timing_now();
        if (reference_run(s, &shape, &s->params, qf, kf, vf, ref, lse, f) == 0) {
            relative_error(f, of, ref, (int64_t)rows, shape.d,
                           "row-wise ||out - fp32||_2 / ||fp32||_2");
            json_object_set_new(f, "reference", reference_text(&s->params));
            json_object_set_new(f, "reference_s", json_real(timing_now() - t1));
        }
        *vs_fp32 = f;
    }
done:
    free(ref);
    free(lse);
    for (int i = 0; i < 4; i++)
        free(copies[i]);
    return e;
}

json_t *point_exact_error(const point_spec *s, const float *q, const float *k, const float *v,
                          const float *out, const float *lse_m, const int32_t *structure_m)
{
    return point_accuracy(s, q, k, v, out, lse_m, structure_m, NULL);
}
