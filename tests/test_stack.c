/* test_stack.c: the transformer stacks and their training step. Gradients against finite
 * differences along random directions, reversible against ordinary backpropagation of the
 * same two-stream architecture (same weights, same buckets), the inverse's reconstruction
 * error layer by layer, and chunked feed-forward against unchunked. */
#include "helpers.h"
#include "reference.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../attn/stack.h"

typedef struct net {
    stack_config c;
    stack_cost cost;
    float *w, *grads, *x, *target, *dx;
    void *work;
} net;

static net make_net(enum stack_kind kind, const char *method, const char *const *params, int layers,
                    int64_t n, int64_t H, int64_t d, int64_t d_ff, int64_t ff_chunk, int causal)
{
    net t;
    memset(&t, 0, sizeof t);
    t.c.kind = kind;
    t.c.layers = layers;
    t.c.shape = (attn_shape){.B = 1, .H = H, .n = n, .d = d, .causal = causal};
    attn_params_default(attn_find(method), &t.c.attn);
    for (int i = 0; params && params[i]; i++)
        assert_int_equal(attn_params_parse(&t.c.attn, params[i]), 0);
    t.c.d_ff = d_ff;
    t.c.ff_chunk = ff_chunk;
    const char *why;
    assert_int_equal(stack_check(&t.c, &why), 0);
    stack_cost_of(&t.c, 2, &t.cost);
    const size_t D = (size_t)(H * d), rows = (size_t)n;
    t.w = malloc(t.cost.weight_floats * 4);
    t.grads = malloc(t.cost.weight_floats * 4);
    t.x = malloc(rows * D * 4);
    t.dx = malloc(rows * D * 4);
    t.target = malloc(rows * (size_t)t.cost.width * 4);
    t.work = aligned_alloc(64, (t.cost.workspace_bytes + 63) / 64 * 64);
    stack_init_weights(&t.c, t.w, 3);
    /* feed-forward biases of +-3: no ReLU input sits near its kink, where a finite difference
     * would straddle it, yet half the units are cut off and their masks are exercised */
    for (int l = 0; l < layers; l++) {
        size_t count;
        float *b1 = stack_param(&t.c, t.w, l, "b1", &count);
        for (size_t j = 0; j < count; j++)
            b1[j] = j % 2 ? -3.0f : 3.0f;
    }
    fill_normal(t.x, rows * D, 4, 1.0f);
    fill_normal(t.target, rows * (size_t)t.cost.width, 5, 1.0f);
    return t;
}

static void free_net(net *t)
{
    free(t->w), free(t->grads), free(t->x), free(t->target), free(t->dx), free(t->work);
}

static double step_loss(net *t)
{
    double loss;
    assert_int_equal(stack_train_step(&t->c, t->w, t->grads, t->x, t->target, t->dx, &loss,
                                      t->work, 2), 0);
    return loss;
}

/* <grad, u> against (L(p + e u) - L(p - e u)) / 2e for a random direction u over the weights,
 * then over the input. */
static void check_directional(net *t, uint64_t seed)
{
    step_loss(t);
    const size_t nw = t->cost.weight_floats, nx = (size_t)(t->c.shape.n * t->c.shape.H * t->c.shape.d);
    float *g = malloc(nw * 4), *dx = malloc(nx * 4), *u = malloc(nw * 4);
    memcpy(g, t->grads, nw * 4);
    memcpy(dx, t->dx, nx * 4);
    for (int which = 0; which < 2; which++) {
        float *p = which ? t->x : t->w, *grad = which ? dx : g;
        const size_t count = which ? nx : nw;
        fill_normal(u, count, seed + (uint64_t)which, 1.0f);
        double analytic = 0;
        for (size_t i = 0; i < count; i++)
            analytic += (double)grad[i] * u[i];
        /* small enough that few ReLUs change sides, large against float rounding */
        const float eps = 1e-3f;
        float *keep = malloc(count * 4);
        memcpy(keep, p, count * 4);
        for (size_t i = 0; i < count; i++)
            p[i] = keep[i] + eps * u[i];
        const double up = step_loss(t);
        for (size_t i = 0; i < count; i++)
            p[i] = keep[i] - eps * u[i];
        const double down = step_loss(t);
        memcpy(p, keep, count * 4);
        free(keep);
        const double numeric = (up - down) / (2 * eps);
        print_message("%s %s: d/d%s along u: analytic %.6g, central difference %.6g\n",
                      t->c.kind == STACK_REVERSIBLE ? "reversible" : "standard",
                      t->c.attn.method->name, which ? "x" : "weights", analytic, numeric);
        assert_true(fabs(analytic - numeric) <= 2e-3 * fabs(numeric) + 1e-4);
    }
    free(g), free(dx), free(u);
}

static void test_gradients_along_random_directions(void **state)
{
    (void)state;
    const char *const lsh_one_chunk[] = {"chunk_len=16", "n_hashes=1", NULL};
    for (int kind = 0; kind <= 1; kind++) {
        net a = make_net(kind, "full_stream", NULL, 2, 12, 2, 4, 12, 5, 0);
        check_directional(&a, 10);
        free_net(&a);
        net b = make_net(kind, "full", NULL, 3, 9, 2, 3, 7, 9, 1);
        check_directional(&b, 11);
        free_net(&b);
        /* lsh with one chunk per round: no bucket can flip under the perturbation */
        net c = make_net(kind, "lsh", lsh_one_chunk, 2, 16, 2, 4, 8, 16, 1);
        check_directional(&c, 12);
        free_net(&c);
    }
}

/* Reversible backward (inputs reconstructed) equals ordinary backpropagation of the same
 * network (inputs stored), with the same weights and the same LSH buckets. */
static void test_reversible_equals_ordinary_backprop(void **state)
{
    (void)state;
    const char *const lsh[] = {"chunk_len=16", "n_hashes=2", NULL};
    const char *methods[] = {"lsh", "full_stream", "block_sparse"};
    const char *const *params[] = {lsh, NULL, NULL};
    for (int m = 0; m < 3; m++) {
        net rev = make_net(STACK_REVERSIBLE, methods[m], params[m], 4, 128, 2, 8, 32, 40, m == 0);
        net ord = make_net(STACK_REVERSIBLE, methods[m], params[m], 4, 128, 2, 8, 32, 40, m == 0);
        ord.c.keep_inputs = true;
        stack_cost_of(&ord.c, 2, &ord.cost);
        free(ord.work);
        ord.work = aligned_alloc(64, (ord.cost.workspace_bytes + 63) / 64 * 64);
        const double l1 = step_loss(&rev), l2 = step_loss(&ord);
        assert_float_equal(l1, l2, 1e-6 * fabs(l2));
        double gmax = 0, diff = 0;
        for (size_t i = 0; i < rev.cost.weight_floats; i++) {
            gmax = fmax(gmax, fabs(ord.grads[i]));
            diff = fmax(diff, fabs(rev.grads[i] - ord.grads[i]));
        }
        print_message("%s: loss %.6f, max |dW reversible - dW ordinary| %.3g (max |dW| %.3g)\n",
                      methods[m], l1, diff, gmax);
        assert_true(diff <= 1e-4 * gmax);
        double *ref = ref_doubles(ord.dx, 128 * 16);
        assert_allclose(rev.dx, ref, (size_t)(128 * 16), 1e-6, 1e-3);
        free(ref);
        free_net(&rev);
        free_net(&ord);
    }
}

/* The inverse: each layer's inputs, reconstructed from its outputs during the backward,
 * against the stored ones; the error grows with depth but stays at fp32 rounding. */
static void test_inverse_reconstructs_inputs(void **state)
{
    (void)state;
    const int L = 16;
    net t = make_net(STACK_REVERSIBLE, "full_stream", NULL, L, 64, 2, 8, 32, 64, 0);
    t.c.keep_inputs = true;
    double err[16];
    t.c.inverse_error = err;
    stack_cost_of(&t.c, 2, &t.cost);
    free(t.work);
    t.work = aligned_alloc(64, (t.cost.workspace_bytes + 63) / 64 * 64);
    step_loss(&t);
    char line[512];
    int len = snprintf(line, sizeof line, "inverse error by layer (top first):");
    for (int l = L - 1; l >= 0; l--) {
        len += snprintf(line + len, sizeof line - (size_t)len, " %.1e", err[l]);
        assert_true(err[l] >= 0 && err[l] < 1e-4); /* inputs are O(1) to O(10) */
    }
    print_message("%s\n", line);
    assert_true(err[0] >= err[L - 1]); /* the bottom layer's inputs went through every inverse */
    free_net(&t);
}

static void test_chunked_feed_forward_equals_unchunked(void **state)
{
    (void)state;
    for (int kind = 0; kind <= 1; kind++) {
        net whole = make_net(kind, "full_stream", NULL, 2, 100, 2, 8, 64, 100, 0);
        net chunked = make_net(kind, "full_stream", NULL, 2, 100, 2, 8, 64, 7, 0);
        const double l1 = step_loss(&whole), l2 = step_loss(&chunked);
        assert_float_equal(l1, l2, 1e-6 * fabs(l1));
        double *ref = ref_doubles(whole.grads, (int64_t)whole.cost.weight_floats);
        assert_allclose(chunked.grads, ref, whole.cost.weight_floats, 1e-7, 1e-4);
        free(ref);
        /* and the outputs of the forward alone, to fp32 rounding (BLAS may take other code
         * paths for a 7-row product than for a 64-row one) */
        const size_t ny = (size_t)(100 * whole.cost.width);
        float *y1 = malloc(ny * 4), *y2 = malloc(ny * 4);
        assert_int_equal(stack_forward(&whole.c, whole.w, whole.x, y1, whole.work, 2), 0);
        assert_int_equal(stack_forward(&chunked.c, chunked.w, chunked.x, y2, chunked.work, 2), 0);
        double *yref = ref_doubles(y1, (int64_t)ny);
        assert_allclose(y2, yref, ny, 1e-6, 1e-5);
        free(yref), free(y1), free(y2);
        free_net(&whole);
        free_net(&chunked);
    }
}

/* Activation memory: flat in depth for reversible, linear for standard (the model). */
static void test_activation_model(void **state)
{
    (void)state;
    size_t rev[3], std[3];
    const int layers[3] = {2, 4, 8};
    for (int i = 0; i < 3; i++) {
        net r = make_net(STACK_REVERSIBLE, "full_stream", NULL, layers[i], 256, 4, 16, 256, 64, 0);
        net s = make_net(STACK_STANDARD, "full_stream", NULL, layers[i], 256, 4, 16, 256, 64, 0);
        rev[i] = r.cost.activation_bytes;
        std[i] = s.cost.activation_bytes;
        free_net(&r);
        free_net(&s);
    }
    /* reversible: two streams plus nothing per layer (full_stream has no structure) */
    assert_int_equal(rev[0], rev[2]);
    /* standard: the same bytes per added layer */
    assert_int_equal(std[1] - std[0], (std[2] - std[1]) / 2);
    assert_true(std[2] > 4 * rev[2]);
}

static void test_rejects_bad_stacks(void **state)
{
    (void)state;
    stack_config c = {.kind = STACK_STANDARD, .layers = 0, .d_ff = 8, .ff_chunk = 8};
    c.shape = (attn_shape){.B = 1, .H = 1, .n = 8, .d = 4};
    attn_params_default(attn_find("full"), &c.attn);
    const char *why = NULL;
    assert_int_equal(stack_check(&c, &why), ATTN_ESHAPE);
    assert_non_null(why);
    c.layers = 2;
    c.shape.causal = true;
    attn_params_default(attn_find("etc"), &c.attn);
    assert_int_equal(stack_check(&c, &why), ATTN_EUNSUPPORTED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients_along_random_directions),
        cmocka_unit_test(test_reversible_equals_ordinary_backprop),
        cmocka_unit_test(test_inverse_reconstructs_inputs),
        cmocka_unit_test(test_chunked_feed_forward_equals_unchunked),
        cmocka_unit_test(test_activation_model),
        cmocka_unit_test(test_rejects_bad_stacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
