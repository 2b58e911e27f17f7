/* test_stats.c: the work counters (attn_stats) the kernels fill as they run, against the cost
 * model and against counts taken independently from the structure a forward wrote:
 *   - the scores a method computes (less those it masked) are exactly the scores its model
 *     charges, for every method, causal or not, tiles that do not divide n, any thread count;
 *   - counting changes no output bit, and the counts do not depend on the thread count;
 *   - LSH's bucket counts and duplicate candidates equal a brute-force recount from the buckets;
 *   - the backward recomputes as many scores as the forward computed;
 *   - a stack counts its recomputed layers and feed-forward chunks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../attn/stack.h"
#include "helpers.h"

typedef struct run {
    attn_params p;
    attn_cost c;
    float *out, *lse;
    int32_t *structure;
    attn_stats st;
} run;

/* Runs a forward, counting into r->st when `count`. Returns 0, or attn_check's error (the
 * method does not run this configuration: nothing allocated). */
static int forward_counted(const char *method, const char *const *params, const attn_shape *s,
                           const float *q, const float *k, const float *v, int nthreads,
                           bool count, run *r)
{
    memset(r, 0, sizeof *r);
    const attn_method *m = attn_find(method);
    assert_non_null(m);
    attn_params_default(m, &r->p);
    for (int i = 0; params && params[i]; i++)
        assert_int_equal(attn_params_parse(&r->p, params[i]), 0);
    const int rc = attn_check(s, &r->p, NULL);
    if (rc)
        return rc;
    m->cost(s, &r->p, nthreads, &r->c);
    const size_t elems = attn_tensor_elems(s), rows = (size_t)(s->B * s->H * s->n);
    const size_t ns = attn_structure_elems(&r->c);
    r->out = malloc(elems * sizeof *r->out);
    r->lse = malloc(rows * sizeof *r->lse);
    r->structure = ns ? malloc(ns * sizeof *r->structure) : NULL;
    attn_tensors t = {.q = q, .k = k, .v = v, .out = r->out, .lse = r->lse,
                      .structure = r->structure, .stats = count ? &r->st : NULL};
    assert_int_equal(attn_forward_alloc(s, &r->p, &t, nthreads), 0);
    return 0;
}

static void run_free(run *r)
{
    free(r->out), free(r->lse), free(r->structure);
}

typedef struct inputs {
    attn_shape s;
    float *q, *k, *v;
} inputs;

static inputs make_inputs(int64_t B, int64_t H, int64_t n, int64_t d, bool causal, uint64_t seed)
{
    inputs in = {.s = {.B = B, .H = H, .n = n, .d = d, .causal = causal}};
    const size_t elems = attn_tensor_elems(&in.s);
    in.q = malloc(elems * sizeof(float));
    in.k = malloc(elems * sizeof(float));
    in.v = malloc(elems * sizeof(float));
    fill_normal(in.q, elems, seed, 1.0f);
    fill_normal(in.k, elems, seed + 1, 1.0f);
    fill_normal(in.v, elems, seed + 2, 1.0f);
    return in;
}

static void inputs_free(inputs *in)
{
    free(in->q), free(in->k), free(in->v);
}

/* One configuration: which count the model charges. `full` computes (and exponentiates) the
 * masked scores of a causal row too, and its model charges them; the streaming methods skip
 * what lies wholly above the diagonal and mask the rest, and their model charges only what
 * is left; lsh scores every candidate of its chunks and its model charges every one. */
typedef struct config {
    const char *method;
    const char *params[4];
    bool charges_masked;
} config;

static const config configs[] = {
    {"full", {NULL}, true},
    {"full_stream", {NULL}, false},
    {"full_stream", {"tile_q=48", "tile_k=80", NULL}, false},
    {"block_sparse", {"block=16", "n_rand=2", NULL}, false},
    {"block_sparse", {"block=24", "n_rand=3", NULL}, false},
    {"etc", {"radius=9", "globals=13", NULL}, false},
    {"etc", {"radius=5", "tokens_per_global=16", "l2g=segment", "g2l=segment"}, false},
    {"lsh", {"chunk_len=16", "n_hashes=3", NULL}, true},
    {"lsh", {"chunk_len=32", "n_hashes=1", "n_buckets=6", NULL}, true},
};

static uint64_t charged(const config *cf, const attn_stats *st)
{
    return st->v[ATTN_STAT_SCORES] - (cf->charges_masked ? 0 : st->v[ATTN_STAT_SCORES_MASKED]);
}

static void test_scores_counted_equal_the_model(void **state)
{
    (void)state;
    const int64_t ns[] = {96, 250, 320};
    int ran = 0;
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++)
        for (int causal = 0; causal < 2; causal++)
            for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
                const config *cf = &configs[c];
                const int64_t n = strcmp(cf->method, "lsh") == 0 ? ns[i] / 32 * 32 : ns[i];
                inputs in = make_inputs(2, 2, n, 16, causal, 100 + i);
                run r;
                if (forward_counted(cf->method, cf->params, &in.s, in.q, in.k, in.v, 3, true, &r)) {
                    inputs_free(&in); /* not a configuration the method runs */
                    continue;
                }
                const uint64_t want = (uint64_t)llround(r.c.scores);
                if (charged(cf, &r.st) != want)
                    fail_msg("%s %s%s n=%lld causal=%d: counted %llu scores (%llu masked), the "
                             "model charges %llu", cf->method, cf->params[0] ? cf->params[0] : "",
                             cf->params[0] && cf->params[1] ? " ..." : "", (long long)n, causal,
                             (unsigned long long)r.st.v[ATTN_STAT_SCORES],
                             (unsigned long long)r.st.v[ATTN_STAT_SCORES_MASKED],
                             (unsigned long long)want);
                assert_true(r.st.v[ATTN_STAT_SCORES_MASKED] <= r.st.v[ATTN_STAT_SCORES]);
                if (!causal && strcmp(cf->method, "etc") != 0)
                    assert_int_equal(r.st.v[ATTN_STAT_SCORES_MASKED], 0);
                if (causal) /* the diagonal's tiles (lsh: later positions in a chunk) */
                    assert_true(r.st.v[ATTN_STAT_SCORES_MASKED] > 0);
                ran++;
                /* an exponential per score, plus a rescale per row and tile where tiled */
                assert_true(r.st.v[ATTN_STAT_EXPS] >= r.st.v[ATTN_STAT_SCORES]);
                assert_true(r.st.v[ATTN_STAT_TILES] > 0);
                run_free(&r);
                inputs_free(&in);
            }
    assert_true(ran >= 36); /* block_sparse and etc have no causal form: the rest ran */
}

static void test_counting_changes_nothing_and_not_with_threads(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        const config *cf = &configs[c];
        inputs in = make_inputs(1, 3, 256, 32, false, 7);
        run plain, counted1, counted3;
        assert_int_equal(forward_counted(cf->method, cf->params, &in.s, in.q, in.k, in.v, 2,
                                         false, &plain), 0);
        assert_int_equal(forward_counted(cf->method, cf->params, &in.s, in.q, in.k, in.v, 1,
                                         true, &counted1), 0);
        assert_int_equal(forward_counted(cf->method, cf->params, &in.s, in.q, in.k, in.v, 3,
                                         true, &counted3), 0);
        const size_t elems = attn_tensor_elems(&in.s);
        assert_memory_equal(plain.out, counted1.out, elems * sizeof(float));
        assert_memory_equal(plain.out, counted3.out, elems * sizeof(float));
        assert_memory_equal(&counted1.st, &counted3.st, sizeof(attn_stats));
        for (int i = 0; i < ATTN_NSTATS; i++)
            assert_int_equal(plain.st.v[i], 0); /* nothing counted where not asked */
        run_free(&plain), run_free(&counted1), run_free(&counted3);
        inputs_free(&in);
    }
}

/* ---- LSH against a recount from its buckets -------------------------------------------- */

/* The entries of round r sorted by (bucket, position), written independently of lsh.c. */
static void sort_by_bucket(const int32_t *bucket, int64_t n, int32_t *order)
{
    int64_t e = 0;
    int32_t top = 0;
    for (int64_t j = 0; j < n; j++)
        top = bucket[j] > top ? bucket[j] : top;
    for (int32_t b = 0; b <= top; b++)
        for (int64_t j = 0; j < n; j++)
            if (bucket[j] == b)
                order[e++] = (int32_t)j;
    assert_int_equal(e, n);
}

static void test_lsh_buckets_and_duplicates_equal_a_recount(void **state)
{
    (void)state;
    const struct {
        int64_t n;
        const char *params[4];
        int h, c;
    } cases[] = {
        {128, {"chunk_len=16", "n_hashes=2", NULL}, 2, 16},
        {96, {"chunk_len=8", "n_hashes=4", "n_buckets=4", NULL}, 4, 8},
        {64, {"chunk_len=64", "n_hashes=2", NULL}, 2, 64}, /* one chunk per round */
        {64, {"chunk_len=64", "n_hashes=1", NULL}, 1, 64}, /* one chunk in all: seen once */
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const int64_t n = cases[t].n, B = 2, H = 2;
        const int h = cases[t].h, c = cases[t].c;
        inputs in = make_inputs(B, H, n, 16, false, 40 + t);
        run r;
        assert_int_equal(forward_counted("lsh", cases[t].params, &in.s, in.q, in.k, in.v, 2, true,
                                         &r), 0);
        uint64_t counted_dup = 0;
        assert_int_equal(attn_find("lsh")->duplicates(&in.s, &r.p, r.structure, &counted_dup, 3), 0);

        uint64_t buckets = 0, largest = 0, dup = 0;
        int32_t *order = malloc((size_t)(h * n) * sizeof *order);
        int32_t *seen = malloc((size_t)n * sizeof *seen);
        for (int64_t b = 0; b < B; b++)
            for (int64_t hd = 0; hd < H; hd++) {
                for (int rd = 0; rd < h; rd++) {
                    const int32_t *bk = r.structure + (size_t)((rd * B + b) * H + hd) * (size_t)n;
                    sort_by_bucket(bk, n, order + rd * n);
                    int64_t big = 0;
                    for (int32_t bb = 0; bb <= 4 * n; bb++) { /* at most 2n buckets here */
                        int64_t size = 0;
                        for (int64_t j = 0; j < n; j++)
                            size += bk[j] == bb;
                        buckets += size > 0;
                        big = size > big ? size : big;
                    }
                    largest += (uint64_t)big;
                }
                /* each query's candidates: its chunk and the one before, over the rounds */
                const int64_t chunks = h * n / c;
                for (int64_t i = 0; i < n; i++) {
                    memset(seen, 0, (size_t)n * sizeof *seen);
                    for (int64_t e = 0; e < h * n; e++) {
                        if (order[e] != i)
                            continue;
                        const int64_t a = e / c, prev = (a + chunks - 1) % chunks;
                        for (int side = prev == a; side < 2; side++)
                            for (int64_t x = (side ? a : prev) * c; x < (side ? a : prev) * c + c; x++)
                                dup += seen[order[x]]++ > 0;
                    }
                }
            }
        assert_int_equal(r.st.v[ATTN_STAT_LSH_BUCKETS], buckets);
        assert_int_equal(r.st.v[ATTN_STAT_LSH_BUCKET_MAX], largest);
        assert_int_equal(counted_dup, dup);
        if (h == 1 && c == n)
            assert_int_equal(dup, 0);
        if (h == 2 && c == n) /* a round's chunk and the one before (the other round's) hold
                                 every key, twice over both rounds: 4 copies, 3 of them again */
            assert_int_equal(dup, (uint64_t)(3 * B * H * n * n));
        free(order), free(seen);
        run_free(&r);
        inputs_free(&in);
    }
}

/* ---- backward and stacks --------------------------------------------------------------- */

static void test_backward_recomputes_the_forwards_scores(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++)
        for (int causal = 0; causal < 2; causal++) {
            const config *cf = &configs[c];
            inputs in = make_inputs(1, 2, 192, 16, causal, 9);
            run r;
            if (forward_counted(cf->method, cf->params, &in.s, in.q, in.k, in.v, 2, true, &r)) {
                inputs_free(&in);
                continue;
            }
            const size_t elems = attn_tensor_elems(&in.s);
            float *dout = malloc(elems * sizeof *dout), *dq = malloc(elems * sizeof *dq),
                  *dk = malloc(elems * sizeof *dk), *dv = malloc(elems * sizeof *dv);
            fill_normal(dout, elems, 77, 1.0f);
            attn_stats bst = {{0}};
            attn_grads g = {.q = in.q, .k = in.k, .v = in.v, .out = r.out, .lse = r.lse,
                            .dout = dout, .structure = r.structure, .dq = dq, .dk = dk,
                            .dv = dv, .stats = &bst};
            assert_int_equal(attn_backward_alloc(&in.s, &r.p, &g, 3), 0);
            if (bst.v[ATTN_STAT_BWD_SCORES] != r.st.v[ATTN_STAT_SCORES])
                fail_msg("%s causal=%d: the backward recomputed %llu scores, the forward computed "
                         "%llu", cf->method, causal,
                         (unsigned long long)bst.v[ATTN_STAT_BWD_SCORES],
                         (unsigned long long)r.st.v[ATTN_STAT_SCORES]);
            assert_int_equal(bst.v[ATTN_STAT_SCORES], 0);
            free(dout), free(dq), free(dk), free(dv);
            run_free(&r);
            inputs_free(&in);
        }
}

static void test_stack_counts_layers_and_chunks(void **state)
{
    (void)state;
    for (int kind = 0; kind < 2; kind++) {
        attn_stats st = {{0}};
        stack_config c = {.kind = kind ? STACK_REVERSIBLE : STACK_STANDARD, .layers = 3,
                          .shape = {.B = 1, .H = 2, .n = 128, .d = 8},
                          .d_ff = 32, .ff_chunk = 50, .target_base = 5, .stats = &st};
        c.attn.method = attn_find("full_stream");
        attn_params_default(c.attn.method, &c.attn);
        assert_int_equal(stack_check(&c, NULL), 0);
        stack_cost sc;
        stack_cost_of(&c, 2, &sc);
        const size_t D = 16, rows = 128;
        float *w = malloc(sc.weight_floats * sizeof *w), *gw = malloc(sc.weight_floats * sizeof *gw);
        float *x = malloc(rows * D * sizeof *x), *dx = malloc(rows * D * sizeof *dx);
        void *work = malloc(sc.workspace_bytes);
        stack_init_weights(&c, w, 3);
        fill_normal(x, rows * D, 4, 1.0f);
        double loss;
        assert_int_equal(stack_train_step(&c, w, gw, x, NULL, dx, &loss, work, 2), 0);
        const uint64_t chunks = 3 * 3; /* ceil(128 / 50) per layer, 3 layers */
        assert_int_equal(st.v[ATTN_STAT_LAYERS_RECOMPUTED], kind ? 3 : 0);
        assert_int_equal(st.v[ATTN_STAT_FF_CHUNKS], kind ? 2 * chunks : chunks);
        /* every head of every layer: n^2 scores per head, twice where the forward is redone */
        assert_int_equal(st.v[ATTN_STAT_SCORES], (kind ? 2 : 1) * 3 * 2 * 128 * 128);
        assert_int_equal(st.v[ATTN_STAT_BWD_SCORES], 3 * 2 * 128 * 128);
        free(w), free(gw), free(x), free(dx), free(work);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scores_counted_equal_the_model),
        cmocka_unit_test(test_counting_changes_nothing_and_not_with_threads),
        cmocka_unit_test(test_lsh_buckets_and_duplicates_equal_a_recount),
        cmocka_unit_test(test_backward_recomputes_the_forwards_scores),
        cmocka_unit_test(test_stack_counts_layers_and_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
