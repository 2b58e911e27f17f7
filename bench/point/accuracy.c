/* accuracy.c: a method's output against its exact counterpart's (see accuracy.h). */
#include "accuracy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../sys/timing.h"

/* Sets e's max_rel and mean_rel: the row-wise relative L2 error of out against ref. */
static void relative_error(json_t *e, const float *out, const float *ref, int64_t rows, int64_t d)
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
    json_object_set_new(e, "metric", json_string("row-wise ||out - exact||_2 / ||exact||_2"));
    /* over the whole output: rows whose exact output is small (a query averaging many random
     * values) weigh by their size, not by their number, as they do in what follows them */
    json_object_set_new(e, "rel_fro", json_real(all_den > 0 ? sqrt(all_num / all_den) : sqrt(all_num)));
}

/* The point's output against its exact counterpart's on the same inputs: the error, the
 * reference's configuration and its time; or {"error": why} when the reference could not run. */
json_t *point_exact_error(const point_spec *s, const float *q, const float *k, const float *v,
                          const float *out, const float *lse_m, const int32_t *structure_m)
{
    attn_params exact;
    attn_exact_params(&s->shape, &s->params, &exact);
    attn_cost c;
    exact.method->cost(&s->shape, &exact, s->threads, &c);
    const size_t elems = attn_tensor_elems(&s->shape), nstruct = attn_structure_elems(&c),
                 rows = (size_t)(s->shape.B * s->shape.H * s->shape.n);
    float *ref = malloc(elems * sizeof *ref), *lse = malloc(rows * sizeof *lse);
    int32_t *structure = nstruct ? malloc(nstruct * sizeof *structure) : NULL;
    json_t *e = json_object();
    const double t0 = timing_now();
    int rc = ATTN_ENOMEM;
    if (ref && lse && (structure || !nstruct)) {
        attn_tensors t = {.q = q, .k = k, .v = v, .out = ref, .lse = lse,
                          .structure = structure};
        rc = attn_forward_alloc(&s->shape, &exact, &t, s->threads);
    }
    if (rc) {
        char why[256];
        snprintf(why, sizeof why, "the exact reference %s failed: %s (%s)", exact.method->name,
                 attn_errname(rc), attn_strerror(rc));
        json_object_set_new(e, "error", json_string(why));
    } else {
        relative_error(e, out, ref, (int64_t)rows, s->shape.d);
        /* what the method's pattern or hash let through of the exact attention: needs its own
         * logsumexp and structure, so our methods only (not an external program's output) */
        double recall;
        const attn_tensors tm = {.q = q, .k = k, .v = v, .out = (float *)out,
                                 .lse = (float *)lse_m, .structure = (int32_t *)structure_m};
        const int have = lse_m && (structure_m || !s->params.method->mass);
        json_object_set_new(e, "mass_recall",
                            have && attn_mass_recall(&s->shape, &s->params, &tm, lse, &recall,
                                                     s->threads) == 0
                                ? json_real(recall)
                                : json_null());
        char text[512];
        int len = snprintf(text, sizeof text, "%s", exact.method->name);
        for (int i = 0; i < exact.method->n_params && len < (int)sizeof text; i++) {
            char val[64];
            len += snprintf(text + len, sizeof text - (size_t)len, " %s=%s",
                            exact.method->params[i].name, attn_param_format(&exact, i, val, sizeof val));
        }
        json_object_set_new(e, "reference", json_string(text));
        json_object_set_new(e, "reference_s", json_real(timing_now() - t0));
    }
    free(ref);
    free(lse);
    free(structure);
    return e;
}
