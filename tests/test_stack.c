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

#include "../attn/rng.h"
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

/* Before F ran head by head it projected every head at once, converted between token and
 * head layouts and kept a layer's whole Q, K, V and their gradients; these are the loss, each
 * weight gradient's norm (layers 0 and 1: ln1_g, ln1_b, wq, wk, wv, wo, ln2_g, ln2_b, w1, b1,
 * w2, b2) and dx's norm that layout computed (commit 8f3297e's stack, this recipe), so the
 * head-by-head step must give them again to fp32 rounding. LSH had a key projection then,
 * unused (its gradient 0); it has none now. */
static const struct {
    double loss, grad_norm[24], dx_norm;
} all_heads_layout[] = {
        /* reversible lsh */ {1.38283645, {0.0401907504, 0.0942444045, 0.0694812327, 0, 0.0752827309, 0.0877745041, 0.0889733409, 0.0631352462, 0.13739821, 0.0807424266, 0.286292227, 0.125415723, 0.0634418411, 0.115156777, 0.0512024185, 0, 0.125821532, 0.125718651, 0.0684900441, 0.0568260642, 0.143400802, 0.0669483253, 0.196875276, 0.0824830545, }, 0.0441113045},
        /* standard lsh */ {1.6677078, {0.0729249549, 0.19230422, 0.135536123, 0, 0.194662732, 0.217652724, 0.175230644, 0.0949813863, 0.299528386, 0.162841941, 0.58337588, 0.235644742, 0.134180249, 0.181249486, 0.119586828, 0, 0.336335751, 0.383889918, 0.140054921, 0.111056704, 0.339319105, 0.11653858, 0.459455164, 0.163932505, }, 0.076975824},
        /* reversible full_stream */ {1.2904971, {0.0316091847, 0.0597931868, 0.0530074931, 0.0521279278, 0.0760716017, 0.0835123641, 0.0460054863, 0.0576899934, 0.116486409, 0.0516257689, 0.164841257, 0.0799949667, 0.0383338427, 0.0788295087, 0.0495148906, 0.0506658237, 0.107067418, 0.090504002, 0.0502184429, 0.0479347111, 0.129340691, 0.0442779893, 0.130914436, 0.0492835185, }, 0.043398352},
        /* standard full_stream */ {1.54790532, {0.0741594695, 0.319969685, 0.140558935, 0.142774441, 0.243002416, 0.231096073, 0.099898969, 0.138020007, 0.284203278, 0.131586673, 0.449322702, 0.227863187, 0.0922692477, 0.224359674, 0.130909067, 0.130574138, 0.277912309, 0.244755921, 0.103067056, 0.0976387064, 0.277731933, 0.0895669048, 0.290617381, 0.109380148, }, 0.0939866512},
};

static void test_head_by_head_matches_the_all_heads_layout(void **state)
{
    (void)state;
    static const char *const lsh[] = {"chunk_len=16", "n_hashes=2", NULL};
    static const struct {
        enum stack_kind kind;
        const char *method;
        const char *const *params;
        int64_t H, d, n;
    } cases[] = {
        {STACK_REVERSIBLE, "lsh", lsh, 2, 8, 64},
        {STACK_STANDARD, "lsh", lsh, 2, 8, 64},
        {STACK_REVERSIBLE, "full_stream", NULL, 3, 8, 40},
        {STACK_STANDARD, "full_stream", NULL, 3, 8, 40},
    };
    static const char *const names[] = {"ln1_g", "ln1_b", "wq", "wk", "wv", "wo",
                                        "ln2_g", "ln2_b", "w1", "b1", "w2", "b2"};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        stack_config c = {.kind = cases[k].kind, .layers = 2, .d_ff = 24, .ff_chunk = 16};
        c.shape = (attn_shape){.B = 2, .H = cases[k].H, .n = cases[k].n, .d = cases[k].d};
        attn_params_default(attn_find(cases[k].method), &c.attn);
        for (int i = 0; cases[k].params && cases[k].params[i]; i++)
            assert_int_equal(attn_params_parse(&c.attn, cases[k].params[i]), 0);
        stack_cost sc;
        stack_cost_of(&c, 2, &sc);
        const size_t rows = (size_t)(2 * c.shape.n), D = (size_t)(c.shape.H * c.shape.d);
        float *w = malloc(sc.weight_floats * 4), *g = malloc(sc.weight_floats * 4);
        float *x = malloc(rows * D * 4), *dx = malloc(rows * D * 4);
        float *target = malloc(rows * (size_t)sc.width * 4);
        void *work = aligned_alloc(64, (sc.workspace_bytes + 63) / 64 * 64);
        stack_init_weights(&c, w, 7);
        rng_fill_normal(x, 0, rows * D, rng_stream(7, 11), 1.0);
        rng_fill_normal(target, 0, rows * (size_t)sc.width, rng_stream(7, 12), 1.0);
        double loss;
        assert_int_equal(stack_train_step(&c, w, g, x, target, dx, &loss, work, 2), 0);
        assert_float_equal(loss, all_heads_layout[k].loss, 1e-6 * loss);
        for (int l = 0; l < 2; l++)
            for (int m = 0; m < 12; m++) {
                size_t count = 0;
                const float *p = stack_param(&c, g, l, names[m], &count);
                double ss = 0;
                for (size_t i = 0; p && i < count; i++)
                    ss += (double)p[i] * p[i];
                const double want = all_heads_layout[k].grad_norm[l * 12 + m];
                if (fabs(sqrt(ss) - want) > 2e-5 * want)
                    fail_msg("%s %s layer %d: |grad %s| = %.9g, the all-heads layout %.9g",
                             c.kind == STACK_REVERSIBLE ? "reversible" : "standard",
                             cases[k].method, l, names[m], sqrt(ss), want);
            }
        double ss = 0;
        for (size_t i = 0; i < rows * D; i++)
            ss += (double)dx[i] * dx[i];
        assert_float_equal(sqrt(ss), all_heads_layout[k].dx_norm, 2e-5 * sqrt(ss));
        /* the same target generated from its stream instead of given: the same step */
        c.target_base = rng_stream(7, 12);
        double loss2;
        float *g2 = malloc(sc.weight_floats * 4);
        assert_int_equal(stack_train_step(&c, w, g2, x, NULL, dx, &loss2, work, 2), 0);
        assert_float_equal(loss2, loss, 1e-12 * loss);
        assert_memory_equal(g2, g, sc.weight_floats * 4);
        free(w), free(g), free(g2), free(x), free(dx), free(target), free(work);
    }
}

/* The Reformer's layers have no key projection: a shared-QK method's stack has no wk, and its
 * model counts three projections, not four. */
static void test_shared_qk_has_no_key_projection(void **state)
{
    (void)state;
    net lsh = make_net(STACK_REVERSIBLE, "lsh", NULL, 2, 128, 2, 16, 64, 64, 0);
    net fs = make_net(STACK_REVERSIBLE, "full_stream", NULL, 2, 128, 2, 16, 64, 64, 0);
    size_t count;
    assert_null(stack_param(&lsh.c, lsh.w, 0, "wk", &count));
    assert_non_null(stack_param(&fs.c, fs.w, 0, "wk", &count));
    const size_t D = 32;
    assert_int_equal(fs.cost.weight_floats - lsh.cost.weight_floats, 2 * D * D);
    /* and the recomputation is reported apart from the model's work */
    assert_true(lsh.cost.recompute_flops > 0 && lsh.cost.recompute_flops < lsh.cost.flops);
    net std = make_net(STACK_STANDARD, "lsh", NULL, 2, 128, 2, 16, 64, 64, 0);
    assert_true(std.cost.recompute_flops == 0);
    free_net(&lsh), free_net(&fs), free_net(&std);
}

/* The parameter table train-step reads and writes by: the named parameters tile a layer's
 * weights exactly (shapes multiply to the counts, the counts add up to the layer, each lies
 * where the one before ends), for both kinds of projection set. */
static void test_parameter_table_tiles_the_weights(void **state)
{
    (void)state;
    const char *methods[] = {"lsh", "full_stream"};
    for (int m = 0; m < 2; m++) {
        net t = make_net(STACK_STANDARD, methods[m], NULL, 2, 128, 2, 16, 48, 64, 0);
        float *next = t.w;
        for (int l = 0; l < 2; l++)
            for (int i = 0; i < STACK_NPARAMS; i++) {
                int64_t shape[2];
                size_t count;
                const int ndim = stack_param_shape(&t.c, stack_param_names[i], shape);
                float *p = stack_param(&t.c, t.w, l, stack_param_names[i], &count);
                assert_int_equal(ndim == 0, p == NULL);
                if (!p)
                    continue;
                assert_ptr_equal(p, next);
                assert_int_equal(count, (size_t)(shape[0] * (ndim == 2 ? shape[1] : 1)));
                next += count;
            }
        assert_ptr_equal(next, t.w + t.cost.weight_floats);
        int64_t shape[2];
        assert_int_equal(stack_param_shape(&t.c, "w1", shape), 2);
        assert_true(shape[0] == 32 && shape[1] == 48); /* (in, out) */
        assert_int_equal(stack_param_shape(&t.c, "b1", shape), 1);
        assert_true(shape[0] == 48);
        assert_int_equal(stack_param_shape(&t.c, "nope", shape), 0);
        free_net(&t);
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
        cmocka_unit_test(test_head_by_head_matches_the_all_heads_layout),
        cmocka_unit_test(test_shared_qk_has_no_key_projection),
        cmocka_unit_test(test_parameter_table_tiles_the_weights),
        cmocka_unit_test(test_rejects_bad_stacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
