/* reference.h: double-precision reference attention for the tests, written independently of
 * attn/: one softmax per query over an explicit candidate multiset (multiplicity 0 = not a
 * candidate), with the logits each method defines, and the candidate sets each method's
 * structure implies. Slow and obvious on purpose. */
#ifndef TESTS_REFERENCE_H
#define TESTS_REFERENCE_H

#include <stdint.h>

typedef double (*ref_logit_fn)(int64_t i, int64_t j, const void *ctx);

/* out_i = sum_j m_ij exp(l_ij) v_j / sum_j m_ij exp(l_ij) for one head; lse_i likewise. */
void ref_multiset(int64_t n, int64_t d, const double *v, const int *mult, ref_logit_fn logit,
                  const void *ctx, double *out, double *lse);

/* scale * q_i . k_j */
typedef struct ref_dot {
    const double *q, *k;
    int64_t d;
    double scale;
} ref_dot;
double ref_dot_logit(int64_t i, int64_t j, const void *ctx);

/* LSH's shared-QK logits (HF / trax v2): q_i . q_j rsqrt(mean(q_j^2) + 1e-6) / sqrt(d), causal
 * -1e9 and self -1e5 replacing the logit. */
typedef struct ref_sqk {
    const double *q;
    int64_t d;
    int causal;
} ref_sqk;
double ref_sqk_logit(int64_t i, int64_t j, const void *ctx);

/* Candidate multiplicities (n x n) of each method from its structure. */
void ref_mult_all(int64_t n, int causal, int *mult);
void ref_mult_lsh(const int32_t *buckets, int64_t n, int h, int64_t chunk, int *mult);
void ref_mult_block_sparse(int64_t n, int64_t block, int n_rand, const int32_t *table, int *mult);
void ref_mult_etc(int64_t n, int64_t g, int64_t radius, int l2g_segment, int g2l_segment,
                  const int32_t *segments, int *mult);

/* A float array as doubles (malloc'ed). */
double *ref_doubles(const float *x, int64_t count);

#endif
