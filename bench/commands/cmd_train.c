/* cmd_train.c: attnbench train-step: one training step of a layer stack (attn/stack.h) on
 * given data, with everything it computes written out: the loss, every weight gradient, the
 * input's gradient and each layer's discrete structure (LSH buckets). It exists so another
 * implementation of the same model (Hugging Face's ReformerModel, in tests/peers_test.py) can
 * be run on the same weights, inputs and buckets and compared number by number.
 *
 *   OUT/step.json                 the loss and everything that defines the step
 *   OUT/dx.npy                    (B, n, d_model)
 *   OUT/grads/layerL.NAME.npy     one per parameter, shaped as stack_param_shape says
 *   OUT/structure/layerL.npy      the method's structure with its H axis (lsh: buckets,
 *                                 (n_hashes, B, H, n)); only for methods that have one
 *   OUT/weights/layerL.NAME.npy   the weights used, when they were not given
 *   OUT/target.npy                the target used, when it was not given */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../attn/rng.h"
#include "../../attn/stack.h"
#include "../record/record.h"
#include "../sys/cli.h"
#include "../sys/npy.h"
#include "commands.h"

static const char usage[] =
    "usage: attnbench train-step --method M --x X.npy --out DIR [--stack standard|reversible]\n"
    "                            [--layers L] [--heads H] [--d-ff F] [--ff-chunk P] [--causal]\n"
    "                            [--param key=value]... [--weights DIR] [--target T.npy]\n"
    "                            [--seed S] [--threads T]\n"
    "One training step of an L-layer stack (default 2, standard) over attention method M:\n"
    "forward, the loss 0.5 mean((y - target)^2), backward to every weight and to x.\n"
    "  x       float32 (B, n, d_model), d_model = H d (--heads H, default 1)\n"
    "  target  float32 (B, n, d_model) for standard, (B, n, 2 d_model) = [Y1 | Y2] for\n"
    "          reversible; without --target it is drawn from --seed and written to\n"
    "          DIR/target.npy\n"
    "  --weights WDIR  reads WDIR/layerL.NAME.npy for L = 0.. and every NAME of ln1_g ln1_b wq\n"
    "          wk wv wo ln2_g ln2_b w1 b1 w2 b2 (no wk for a shared-QK method such as lsh);\n"
    "          matrices are (in, out), the transpose of a torch Linear's weight. Without it\n"
    "          the stack's own initialisation from --seed (default 1) is used and written to\n"
    "          DIR/weights/.\n"
    "Writes DIR/step.json (loss and configuration), DIR/dx.npy, DIR/grads/layerL.NAME.npy and,\n"
    "for a method with a discrete structure, DIR/structure/layerL.npy (lsh: each layer's\n"
    "buckets, (n_hashes, B, H, n)). --d-ff defaults to 4 d_model, --ff-chunk to 1024.\n";

typedef struct train_args {
    const char *method, *x_path, *target_path, *weights_dir, *out_dir;
    const char *params[64];
    int nparams;
    int causal;
    int64_t stack, layers, heads, d_ff, ff_chunk, threads;
    uint64_t seed;
    int help;
} train_args;

static int parse(int argc, char **argv, train_args *a, attn_params *p)
{
    enum { O_X = 256, O_TARGET, O_WEIGHTS, O_OUT, O_STACK, O_LAYERS, O_HEADS, O_DFF, O_CHUNK,
           O_SEED };
    static const struct option opts[] = {
        {"method", required_argument, 0, 'm'},      {"x", required_argument, 0, O_X},
        {"target", required_argument, 0, O_TARGET}, {"weights", required_argument, 0, O_WEIGHTS},
        {"out", required_argument, 0, O_OUT},       {"stack", required_argument, 0, O_STACK},
        {"layers", required_argument, 0, O_LAYERS}, {"heads", required_argument, 0, O_HEADS},
        {"d-ff", required_argument, 0, O_DFF},      {"ff-chunk", required_argument, 0, O_CHUNK},
        {"seed", required_argument, 0, O_SEED},     {"causal", no_argument, 0, 'c'},
        {"param", required_argument, 0, 'p'},       {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0},
    };
    const char *cmd = "train-step";
    memset(a, 0, sizeof *a);
    a->stack = STACK_STANDARD;
    a->layers = 2;
    a->heads = 1;
    a->ff_chunk = 1024;
    a->threads = omp_get_max_threads();
    a->seed = 1;
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        int64_t x;
        switch (c) {
        case 'm': a->method = optarg; break;
        case O_X: a->x_path = optarg; break;
        case O_TARGET: a->target_path = optarg; break;
        case O_WEIGHTS: a->weights_dir = optarg; break;
        case O_OUT: a->out_dir = optarg; break;
        case 'c': a->causal = 1; break;
        case O_STACK:
            if ((a->stack = stack_kind_parse(optarg)) < 0)
                return cli_error(cmd, "--stack '%s' is not one of: standard, reversible", optarg);
            break;
        case O_LAYERS:
            if (cli_parse_int(optarg, 1, 1024, &a->layers))
                return cli_error(cmd, "--layers '%s' is not an integer in [1, 1024]", optarg);
            break;
        case O_HEADS:
            if (cli_parse_int(optarg, 1, 4096, &a->heads))
                return cli_error(cmd, "--heads '%s' is not an integer in [1, 4096]", optarg);
            break;
        case O_DFF:
            if (cli_parse_int(optarg, 1, INT32_MAX, &a->d_ff))
                return cli_error(cmd, "--d-ff '%s' is not a positive integer", optarg);
            break;
        case O_CHUNK:
            if (cli_parse_int(optarg, 1, INT32_MAX, &a->ff_chunk))
                return cli_error(cmd, "--ff-chunk '%s' is not a positive integer", optarg);
            break;
        case O_SEED:
            if (cli_parse_int(optarg, 0, INT64_MAX, &x))
                return cli_error(cmd, "--seed '%s' is not a non-negative integer", optarg);
            a->seed = (uint64_t)x;
            break;
        case 'p':
            if (a->nparams == 64)
                return cli_error(cmd, "too many --param flags");
            a->params[a->nparams++] = optarg;
            break;
        case 't':
            if (cli_parse_int(optarg, 1, 1024, &a->threads))
                return cli_error(cmd, "--threads '%s' is not an integer in [1, 1024]", optarg);
            break;
        case 'h':
            fputs(usage, stdout);
            a->help = 1;
            return 0;
        default: return cli_getopt_error(cmd, optopt, argv, optind);
        }
    }
    if (optind < argc)
        return cli_error(cmd, "unexpected argument '%s'", argv[optind]);
    int rc = cli_method_params(cmd, a->method, a->params, a->nparams, p);
    if (rc)
        return rc;
    if (!a->x_path)
        return cli_error(cmd, "--x is required");
    if (!a->out_dir)
        return cli_error(cmd, "--out is required");
    return 0;
}

/* A NaN or infinity in the data would make every result NaN: refuse it, saying where. */
static int check_finite(const char *path, const char *what, const npy_array *a)
{
    const float *v = a->data;
    char index[160];
    for (size_t i = 0; i < a->count; i++)
        if (!isfinite(v[i]))
            return cli_error("train-step", "%s %s: element (%s) is %s; values must be finite",
                             what, path, npy_index(a, (int64_t)i, index, sizeof index),
                             isnan(v[i]) ? "NaN" : v[i] > 0 ? "+inf" : "-inf");
    return 0;
}

/* Reads a float32 array of exactly the given shape, every element finite. */
static int read_exact(const char *path, const char *what, int ndim, const int64_t *shape,
                      npy_array *a)
{
    const char *cmd = "train-step";
    char err[512], want[128] = "", got[128] = "";
    if (npy_read(path, "<f4", a, err, sizeof err))
        return cli_error(cmd, "%s: %s", what, err);
    bool same = a->ndim == ndim;
    for (int i = 0; i < ndim; i++) {
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? ", " : "",
                 (long long)shape[i]);
        same = same && a->shape[i] == shape[i];
    }
    for (int i = 0; i < a->ndim; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "",
                 (long long)a->shape[i]);
    if (!same)
        return cli_error(cmd, "%s %s has shape (%s); the step needs (%s)", what, path, got, want);
    return check_finite(path, what, a);
}

static int write_npy(const char *dir, const char *name, const char *dtype, int ndim,
                     const int64_t *shape, const void *data, size_t elem)
{
    char path[4096], err[512];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return cli_error("train-step", "%s/%s: path too long", dir, name);
    if (cli_mkdirs_for(path) != 0)
        return cli_error("train-step", "cannot create the folder of %s: %s", path,
                         strerror(errno));
    if (npy_write(path, dtype, ndim, shape, data, elem, err, sizeof err))
        return cli_error("train-step", "%s", err);
    return 0;
}

/* Every parameter of every layer, read from dir (into weights) or written to dir (from
 * weights or gradients), as dir/layerL.NAME.npy under `sub`. */
static int param_files(const stack_config *c, float *weights, const char *dir, const char *sub,
                       bool read)
{
    for (int l = 0; l < c->layers; l++)
        for (int i = 0; i < STACK_NPARAMS; i++) {
            const char *name = stack_param_names[i];
            char file[128], path[4096];
            snprintf(file, sizeof file, "%s%slayer%d.%s.npy", sub, *sub ? "/" : "", l, name);
            snprintf(path, sizeof path, "%s/%s", dir, file);
            int64_t shape[2];
            const int ndim = stack_param_shape(c, name, shape);
            if (!ndim) { /* wk of a shared-QK method: a file for it would be silently unused */
                struct stat st;
                if (read && stat(path, &st) == 0)
                    return cli_error("train-step", "%s: method %s derives its keys from the "
                                     "queries and has no wk", path, c->attn.method->name);
                continue;
            }
            size_t count;
            float *at = stack_param(c, weights, l, name, &count);
            if (!read) {
                int rc = write_npy(dir, file, "<f4", ndim, shape, at, sizeof(float));
                if (rc)
                    return rc;
                continue;
            }
            npy_array a = {0};
            char what[64];
            snprintf(what, sizeof what, "weight %s of layer %d", name, l);
            int rc = read_exact(path, what, ndim, shape, &a);
            if (!rc)
                memcpy(at, a.data, count * sizeof(float));
            npy_free(&a);
            if (rc)
                return rc;
        }
    return 0;
}

/* Layer l's structure as the method lays it out for all H heads: the stack keeps it head
 * after head, each head's with a size-1 H axis; its place in the full shape is the axis that
 * is H times longer (prepended when the method's structure has no H axis). */
static int write_structure(const stack_config *c, void *work, int nthreads, int l,
                           const char *dir)
{
    size_t per_head;
    const int32_t *s = stack_structure(c, work, nthreads, l, &per_head);
    if (!s)
        return 0;
    attn_cost full, one;
    attn_shape head = c->shape;
    head.H = 1;
    c->attn.method->cost(&c->shape, &c->attn, nthreads, &full);
    c->attn.method->cost(&head, &c->attn, nthreads, &one);
    const int64_t H = c->shape.H;
    int ndim = full.structure_ndim, axis = -1;
    int64_t dims[5];
    for (int i = 0; i < ndim; i++) {
        dims[i] = full.structure_dims[i];
        if (axis < 0 && H > 1 && full.structure_dims[i] == H * one.structure_dims[i])
            axis = i;
    }
    if (H > 1 && axis < 0) { /* no H axis: one array per head */
        memmove(dims + 1, dims, (size_t)ndim * sizeof dims[0]);
        dims[0] = H;
        ndim++;
        axis = 0;
    }
    int32_t *out = malloc(per_head * (size_t)H * sizeof *out);
    if (!out)
        return cli_fail("train-step", "out of memory for the structure of layer %d", l);
    if (axis < 0) {
        memcpy(out, s, per_head * sizeof *out);
    } else {
        size_t inner = 1;
        for (int i = axis + 1; i < ndim; i++)
            inner *= (size_t)dims[i];
        const size_t outer = per_head / inner;
        for (int64_t h = 0; h < H; h++)
            for (size_t o = 0; o < outer; o++)
                memcpy(out + (o * (size_t)H + (size_t)h) * inner,
                       s + (size_t)h * per_head + o * inner, inner * sizeof *out);
    }
    char file[64];
    snprintf(file, sizeof file, "structure/layer%d.npy", l);
    int rc = write_npy(dir, file, "<i4", ndim, dims, out, sizeof *out);
    free(out);
    return rc;
}

static bool any_nonfinite(const float *x, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (!isfinite(x[i]))
            return true;
    return false;
}

static int write_summary(const train_args *a, const stack_config *c, double loss)
{
    json_t *j = json_object();
    const attn_method *m = c->attn.method;
    json_object_set_new(j, "schema", json_string("attnbench-train-step/1"));
    json_object_set_new(j, "loss", json_real(loss));
    json_object_set_new(j, "stack", json_string(stack_kind_name(c->kind)));
    json_object_set_new(j, "method", json_string(m->name));
    json_object_set_new(j, "params", record_params(&c->attn));
    json_object_set_new(j, "causal", json_boolean(c->shape.causal));
    json_object_set_new(j, "layers", json_integer(c->layers));
    json_object_set_new(j, "batch", json_integer(c->shape.B));
    json_object_set_new(j, "n", json_integer(c->shape.n));
    json_object_set_new(j, "heads", json_integer(c->shape.H));
    json_object_set_new(j, "d", json_integer(c->shape.d));
    json_object_set_new(j, "d_model", json_integer(c->shape.H * c->shape.d));
    json_object_set_new(j, "d_ff", json_integer(c->d_ff));
    json_object_set_new(j, "ff_chunk", json_integer(c->ff_chunk));
    json_object_set_new(j, "threads", json_integer(a->threads));
    json_object_set_new(j, "seed", json_integer((json_int_t)a->seed));
    json_object_set_new(j, "x", json_string(a->x_path));
    json_object_set_new(j, "weights", a->weights_dir ? json_string(a->weights_dir) : json_null());
    json_object_set_new(j, "target", a->target_path ? json_string(a->target_path) : json_null());
    char path[4096];
    snprintf(path, sizeof path, "%s/step.json", a->out_dir);
    const int rc = json_dump_file(j, path, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(j);
    if (rc)
        return cli_error("train-step", "cannot write %s: %s", path, strerror(errno));
    return 0;
}

/* The step on x (B, n, d_model), read and checked: builds the stack, reads or makes the
 * weights and the target, runs, checks and writes. */
static int train_on(const train_args *a, const attn_params *p, const npy_array *x)
{
    const char *cmd = "train-step";
    const int64_t B = x->shape[0], n = x->shape[1], D = x->shape[2];
    stack_config c = {.kind = (enum stack_kind)a->stack, .layers = (int)a->layers, .attn = *p,
                      .shape = {.B = B, .H = a->heads, .n = n, .d = D / a->heads,
                                .causal = a->causal},
                      .d_ff = a->d_ff ? a->d_ff : 4 * D, .ff_chunk = a->ff_chunk,
                      /* the stream a measured training point draws its target from */
                      .target_base = rng_stream(a->seed, 12)};
    const char *why;
    int rc = stack_check(&c, &why);
    if (rc)
        return cli_check_error(cmd, p, rc, why);
    stack_cost cost;
    stack_cost_of(&c, (int)a->threads, &cost);
    const size_t rows = (size_t)(B * n), tcount = rows * (size_t)cost.width;
    const int64_t tshape[3] = {B, n, cost.width};
    npy_array tg = {0};
    float *target = NULL;
    float *weights = malloc(cost.weight_floats * sizeof *weights);
    float *grads = malloc(cost.weight_floats * sizeof *grads);
    float *dx = malloc(rows * (size_t)D * sizeof *dx);
    void *work = malloc(cost.workspace_bytes);
    if (a->target_path) {
        rc = read_exact(a->target_path, "--target", 3, tshape, &tg);
        target = tg.data;
    } else if ((target = malloc(tcount * sizeof *target))) {
        rng_fill_normal(target, 0, tcount, c.target_base, 1.0);
    }
    if (!rc && (!target || !weights || !grads || !dx || !work))
        rc = cli_fail(cmd, "out of memory for a step of %.1f GiB",
                      (double)cost.workspace_bytes / (1 << 30));
    struct stat st;
    if (!rc && a->weights_dir && (stat(a->weights_dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        rc = cli_error(cmd, "--weights %s: not a folder", a->weights_dir);
    if (!rc && a->weights_dir)
        rc = param_files(&c, weights, a->weights_dir, "", true);
    else if (!rc)
        stack_init_weights(&c, weights, a->seed);
    double loss = 0;
    if (!rc && (rc = stack_train_step(&c, weights, grads, x->data, target, dx, &loss, work,
                                      (int)a->threads)))
        rc = cli_fail(cmd, "%s: %s", attn_errname(rc), attn_strerror(rc));
    if (!rc && (!isfinite(loss) || any_nonfinite(grads, cost.weight_floats) ||
                any_nonfinite(dx, rows * (size_t)D)))
        rc = cli_fail(cmd, "the step's loss or gradients are not finite (values overflow "
                      "float32 at these magnitudes); nothing written");
    if (!rc && cli_mkdirs(a->out_dir) != 0)
        rc = cli_error(cmd, "cannot create %s: %s", a->out_dir, strerror(errno));
    if (!rc)
        rc = write_npy(a->out_dir, "dx.npy", "<f4", 3, x->shape, dx, sizeof *dx);
    if (!rc)
        rc = param_files(&c, grads, a->out_dir, "grads", false);
    if (!rc && !a->weights_dir)
        rc = param_files(&c, weights, a->out_dir, "weights", false);
    if (!rc && !a->target_path)
        rc = write_npy(a->out_dir, "target.npy", "<f4", 3, tshape, target, sizeof *target);
    for (int l = 0; l < c.layers && !rc; l++)
        rc = write_structure(&c, work, (int)a->threads, l, a->out_dir);
    if (!rc)
        rc = write_summary(a, &c, loss);
    if (!a->target_path)
        free(target);
    npy_free(&tg);
    free(weights);
    free(grads);
    free(dx);
    free(work);
    return rc;
}

int cmd_train_step(int argc, char **argv)
{
    const char *cmd = "train-step";
    train_args a;
    attn_params p;
    int rc = parse(argc, argv, &a, &p);
    if (rc || a.help)
        return rc;
    npy_array x = {0};
    char err[512];
    if (npy_read(a.x_path, "<f4", &x, err, sizeof err))
        rc = cli_error(cmd, "--x %s", err);
    else if (x.ndim != 3)
        rc = cli_error(cmd, "--x %s: shape must be (B, n, d_model), not %d-D", a.x_path, x.ndim);
    else if (x.shape[2] % a.heads != 0)
        rc = cli_error(cmd, "--x %s: d_model %lld is not a multiple of --heads %lld", a.x_path,
                       (long long)x.shape[2], (long long)a.heads);
    else if (!(rc = check_finite(a.x_path, "--x", &x)))
        rc = train_on(&a, &p, &x);
    npy_free(&x);
    return rc;
}
