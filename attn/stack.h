/* stack.h: transformer layer stacks over any attention method, and one training step:
 * forward, a scalar loss against a target, backward to every weight and to the input.
 *
 *   F(x) = LayerNorm, Q/K/V projections, attention (any registered method), output projection
 *   G(x) = LayerNorm, feed-forward D -> d_ff (ReLU) -> D, ff_chunk positions at a time
 *
 *   standard:   x = x + F(x); x = x + G(x). Backpropagation keeps every layer's activations
 *               (inputs, normalized inputs, Q, K, V, attention output, the d_ff-wide hidden
 *               layer), so activation memory grows with the number of layers.
 *   reversible: two streams, both starting as the input (as Reformer does);
 *               Y1 = X1 + F(X2); Y2 = X2 + G(Y1). Only the top outputs are kept, plus each
 *               layer's attention structure (LSH buckets), which must not be drawn again; the
 *               backward reconstructs X2 = Y2 - G(Y1) and X1 = Y1 - F(X2) layer by layer, and
 *               runs G's forward and backward chunk by chunk, so no d_ff-wide activation ever
 *               exists for all positions. Activation memory does not grow with depth.
 *
 * F runs head by head (one head's Q, K, V and gradients exist at a time); a method with
 * shared QK (lsh) gets no key projection, as in the Reformer, so its layers have no wk.
 *
 * Shapes: the input is (B, n, D) with D = d_model = H d; the output (B, n, D) for standard
 * and (B, n, 2D) = [Y1 | Y2] for reversible. The loss is 0.5 * mean((y - target)^2).
 * Like every attn/ kernel, nothing here allocates: stack_cost says how much workspace a step
 * needs and the caller passes it in.
 *
 * Precision: with shape.dtype bf16 every activation the step stores and every gradient of an
 * activation (the streams and their gradients, LayerNorm outputs and the gradient of F's,
 * Q, K, V, attention outputs and their gradients, the feed-forward hidden layer, x and dx) is
 * bf16; products, LayerNorm and the loss compute in fp32 from widened rows and round once per
 * result, so a gradient summed over several products (F's LayerNorm output: 3 H of them) is
 * rounded once per term, as autograd sums gradients in a bf16 model; weights and weight
 * gradients stay fp32.
 * The reversible backward then reconstructs each layer's inputs from bf16 streams, so it
 * recovers them to bf16's precision, not to fp32's. */
#ifndef ATTN_STACK_H
#define ATTN_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attn.h"

enum stack_kind { STACK_STANDARD, STACK_REVERSIBLE };

typedef struct stack_config {
    enum stack_kind kind;
    int layers;
    attn_shape shape;  /* the attention's B, H, n, d and causal; d_model = H * d */
    attn_params attn;  /* the inner attention method */
    int64_t d_ff;      /* feed-forward width */
    int64_t ff_chunk;  /* positions per feed-forward chunk */
    uint64_t target_base; /* the loss's target when none is given: N(0, 1) values of this
                             rng stream base (rng_stream(seed, stream)) */
    attn_stats *stats;    /* work counters: the attention calls' own, layers recomputed and
                             feed-forward chunks run are added here; NULL: not counted */
    /* Tests only, reversible stacks: keep_inputs stores each layer's inputs in the forward;
     * the backward then uses them instead of reconstructing (ordinary backpropagation of the
     * same two-stream architecture, the oracle of the gradient test), unless inverse_error is
     * set: then it reconstructs as usual and records, per layer, the largest
     * |reconstructed - stored| input (what recomputation loses to rounding, layer by layer). */
    bool keep_inputs;
    double *inverse_error; /* `layers` entries, or NULL */
} stack_config;

typedef struct stack_cost {
    size_t weight_floats;      /* every weight; the gradients have as many */
    size_t workspace_bytes;    /* everything else one training step needs */
    size_t activation_bytes;   /* the part of it kept for the backward (grows with layers for
                                  standard, flat for reversible but for the structures) */
    double flops;              /* the model's: matrix products and attention of the forward and
                                  the backward */
    double recompute_flops;    /* done again on top of those: the reversible backward's
                                  recomputed forward and re-projected Q, K, V (0: standard) */
    int64_t width;             /* columns of the output and the target: D or 2D */
} stack_cost;

/* "standard" or "reversible", as records and flags spell the kinds; and back: the kind of a
 * name, or -1 for another. */
const char *stack_kind_name(enum stack_kind kind);
int stack_kind_parse(const char *name);

/* Returns 0, or an attn error with *why set (bad sizes, or the inner method's own check). */
int stack_check(const stack_config *c, const char **why);
/* The cost of one training step with nthreads threads; only after stack_check() == 0. */
void stack_cost_of(const stack_config *c, int nthreads, stack_cost *out);
/* Fills the weights: LayerNorm gains 1 and biases 0, matrices N(0, 1/fan_in), from the seed. */
void stack_init_weights(const stack_config *c, float *weights, uint64_t seed);
/* The parameters of a layer, in the order they lie in a weight array. */
enum { STACK_NPARAMS = 12 };
extern const char *const stack_param_names[STACK_NPARAMS];
/* The shape of parameter `name`: (in, out) for a matrix (y = x W, as the products compute
 * it: the transpose of a torch Linear's weight), (count) for a gain or bias. Returns the
 * number of dimensions, 0 for an unknown name and for "wk" of a shared-QK method. */
int stack_param_shape(const stack_config *c, const char *name, int64_t shape[2]);
/* The weights named `name` of layer l ("ln1_g", "ln1_b", "wq", "wk", "wv", "wo", "ln2_g",
 * "ln2_b", "w1", "b1", "w2", "b2") inside a weight or gradient array, and their count; NULL
 * for an unknown name, and for "wk" of a shared-QK method. */
float *stack_param(const stack_config *c, float *weights, int l, const char *name, size_t *count);
/* One training step. x (B, n, D) and target (B, n, width) are read (target NULL: generated
 * from c->target_base as it is needed, so it takes no memory); grads (weight_floats) and dx
 * (B, n, D) are overwritten; *loss is set. work holds cost.workspace_bytes. x and dx are stored
 * as c->shape.dtype, like every activation the step keeps; weights, their gradients and the
 * target are fp32. */
int stack_train_step(const stack_config *c, const float *weights, float *grads, const void *x,
                     const float *target, void *dx, double *loss, void *work, int nthreads);
/* The discrete structure layer l's attention drew in the last step or forward run in `work`
 * with nthreads threads (LSH buckets, random blocks): H arrays of *per_head int32 each, head
 * after head, each the method's structure for a (B, 1, n, d) shape. NULL (and *per_head 0)
 * when the method has none. */
const int32_t *stack_structure(const stack_config *c, void *work, int nthreads, int l,
                               size_t *per_head);
/* Tests: the forward only; writes the output (B, n, width) to y, fp32 (x: c->shape.dtype). */
int stack_forward(const stack_config *c, const float *weights, const void *x, float *y,
                  void *work, int nthreads);

#endif
