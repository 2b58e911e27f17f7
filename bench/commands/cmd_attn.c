/* cmd_attn.c: the commands that run a method directly, without the measuring harness:
 *   attnbench list [--counters]          one method per line: name, parameters, defaults
 *   attnbench forward --method M --q Q.npy --k K.npy --v V.npy --out O.npy [...]
 *   attnbench backward --method M --q .. --k .. --v .. --dout dO.npy --dq .. --dk .. --dv ..
 * They exist so NumPy or PyTorch can check any method from outside. */
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../attn/ring.h"
#include "../launch/ranks.h"
#include "../probes/probe.h"
#include "../sys/cli.h"
#include "../sys/npy.h"
#include "commands.h"

/* The counter groups --counters knows, and every attn work counter with what it counts. */
static int list_counters(void)
{
    printf("%-4s %s\n%-4s %s\n", "hw", probe_papi_default_hw, "sw", probe_papi_default_sw);
    printf("sde  the attention library's work counters, PAPI software-defined events that "
           "count on any machine:\n");
    for (int i = 0; i < ATTN_NSTATS; i++) {
        char name[64];
        probe_sde_event_name(i, name, sizeof name);
        printf("     %-28s %s\n", name, attn_stat_help(i));
    }
    return 0;
}

int cmd_list(int argc, char **argv)
{
    enum { OPT_HELP = 1, OPT_COUNTERS };
    static const struct option opts[] = {{"help", no_argument, 0, OPT_HELP},
                                         {"counters", no_argument, 0, OPT_COUNTERS},
                                         {0, 0, 0, 0}};
    bool counters = false;
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        if (c == OPT_COUNTERS) {
            counters = true;
            continue;
        }
        if (c != OPT_HELP)
            return cli_getopt_error("list", optopt, argv, optind);
        puts("usage: attnbench list [--counters]\n"
             "One method per line: name, parameters as name=default[min..max] or {choices},\n"
             "and a summary. --counters: the counter groups of --counters instead, and every\n"
             "work counter the attention kernels keep (sde:::attn::NAME).");
        return 0;
    }
    if (optind < argc)
        return cli_error("list", "unexpected argument '%s'", argv[optind]);
    if (counters)
        return list_counters();
    int count;
    const attn_method *const *all = attn_methods(&count);
    for (int i = 0; i < count; i++) {
        const attn_method *m = all[i];
        attn_params p;
        attn_params_default(m, &p);
        printf("%-13s", m->name);
        for (int j = 0; j < m->n_params; j++) {
            char val[64];
            const attn_param_spec *spec = &m->params[j];
            printf(" %s=%s", spec->name, attn_param_format(&p, j, val, sizeof val));
            if (spec->kind == ATTN_PARAM_CHOICE) {
                printf("{");
                for (int c = 0; spec->choices[c]; c++)
                    printf("%s%s", c ? "|" : "", spec->choices[c]);
                printf("}");
            } else {
                printf(spec->kind == ATTN_PARAM_INT ? "[%.0f..%.0f%s]" : "[%g..%g%s]", spec->min,
                       spec->max, spec->auto_ok ? "|auto" : "");
            }
        }
        printf("  # %s\n", m->summary);
    }
    return 0;
}

static const char forward_usage[] =
    "usage: attnbench forward --method M --q Q.npy --k K.npy --v V.npy --out O.npy\n"
    "                         [--causal] [--param key=value]... [--threads T]\n"
    "                         [--lse LSE.npy] [--structure S.npy] [--ranks P]\n"
    "                         [--dtype fp32|bf16]\n"
    "Inputs are float32 C-order .npy arrays of shape (n, d) or (B, H, n, d); the output has\n"
    "the inputs' shape, the logsumexp (n) or (B, H, n), the structure the method's own.\n"
    "--dtype bf16 runs the method on bf16 tensors: float32 inputs are rounded to bf16 on load\n"
    "and the outputs written as float32 (their bf16 values, exactly); bfloat16 arrays (numpy\n"
    "with ml_dtypes saves them as '<V2') are read as they are and outputs written the same way.\n"
    "The logsumexp is float32 either way.\n"
    "--ranks P (method ring): P MPI processes through mpirun, each with its rows.\n";

static const char backward_usage[] =
    "usage: attnbench backward --method M --q Q.npy --k K.npy --v V.npy --dout dO.npy\n"
    "                          --dq dQ.npy --dk dK.npy --dv dV.npy [--causal]\n"
    "                          [--param key=value]... [--threads T] [--ranks P]\n"
    "                          [--dtype fp32|bf16]\n"
    "Runs the forward, then the backward of the loss whose gradient with respect to the output\n"
    "is dO, and writes dq, dk, dv in the inputs' shape (--dtype: as for forward).\n";

/* The first element of x[0..count) that is NaN or infinite, or -1. */
static int64_t first_nonfinite(const float *x, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (!isfinite(x[i]))
            return (int64_t)i;
    return -1;
}

/* Whether an array holds bfloat16 values: numpy saves ml_dtypes' bfloat16 as a 2-byte void. */
static int is_bf16_file(const npy_array *a)
{
    return strcmp(a->descr, "<V2") == 0 || strcmp(a->descr, "|V2") == 0;
}

/* Element i of an input (float32, or a bfloat16 file's) as float. */
static float input_value(const npy_array *a, size_t i)
{
    return attn_value(a->data, is_bf16_file(a) ? ATTN_BF16 : ATTN_FP32, i);
}

/* Reads one input and checks it against the first one read (ref), if any. With bf16, a
 * bfloat16 file ('<V2') is read too. */
static int read_input(const char *cmd, const char *flag, const char *path, npy_array *a,
                      const npy_array *ref, attn_dtype dtype)
{
    char err[512], err2[512];
    if (!path)
        return cli_error(cmd, "--%s is required", flag);
    if (npy_read(path, "<f4", a, err, sizeof err) &&
        (dtype != ATTN_BF16 || (npy_read(path, "<V2", a, err2, sizeof err2) &&
                                npy_read(path, "|V2", a, err2, sizeof err2))))
        return cli_error(cmd, "--%s %s%s", flag, err,
                         dtype == ATTN_BF16 ? " or a bfloat16 '<V2'" : "");
    if (ref && is_bf16_file(a) != is_bf16_file(ref))
        return cli_error(cmd, "--%s %s: dtype '%s' differs from --q's '%s'", flag, path, a->descr,
                         ref->descr);
    if (a->ndim != 2 && a->ndim != 4)
        return cli_error(cmd, "--%s %s: shape must be (n, d) or (B, H, n, d), not %d-D", flag,
                         path, a->ndim);
    if (ref && (a->ndim != ref->ndim || memcmp(a->shape, ref->shape,
                                               (size_t)a->ndim * sizeof a->shape[0]) != 0))
        return cli_error(cmd, "--%s %s: shape differs from --q's", flag, path);
    /* a NaN or infinity has no attention: say where it is rather than return NaN everywhere */
    int64_t bad = -1;
    for (size_t i = 0; i < a->count && bad < 0; i++)
        if (!isfinite(input_value(a, i)))
            bad = (int64_t)i;
    if (bad >= 0) {
        char index[160];
        const float x = input_value(a, (size_t)bad);
        return cli_error(cmd, "--%s %s: element (%s) is %s; inputs must be finite", flag, path,
                         npy_index(a, bad, index, sizeof index),
                         isnan(x) ? "NaN" : x > 0 ? "+inf" : "-inf");
    }
    return 0;
}

/* Finite inputs must give finite results; when the magnitudes overflow float32 scores they
 * do not, and nothing is written. Returns 0 or CLI_EFAIL after one line. */
static int check_output(const char *cmd, const char *what, const npy_array *shape_of_q,
                        const float *x)
{
    int64_t bad = first_nonfinite(x, shape_of_q->count);
    if (bad < 0)
        return 0;
    char index[160];
    return cli_fail(cmd, "%s element (%s) is not finite although every input is (scores "
                    "overflow float32 at such magnitudes); nothing written", what,
                    npy_index(shape_of_q, bad, index, sizeof index));
}

/* The shape of (n, d) or (B, H, n, d) inputs. */
static attn_shape shape_of(const npy_array *q, int causal)
{
    attn_shape shape = {.B = 1, .H = 1, .causal = causal};
    if (q->ndim == 4) {
        shape.B = q->shape[0];
        shape.H = q->shape[1];
    }
    shape.n = q->shape[q->ndim - 2];
    shape.d = q->shape[q->ndim - 1];
    return shape;
}

/* The files of forward and backward, by flag (getopt values past the ASCII ones). */
enum { F_FIRST = 256, F_Q = F_FIRST, F_K, F_V, F_DOUT, F_OUT, F_LSE, F_STRUCTURE, F_DQ, F_DK, F_DV,
       F_LAST };
#define F_COUNT (F_LAST - F_FIRST)

static const char *const file_flag[F_COUNT] = {"q", "k", "v", "dout", "out", "lse", "structure",
                                               "dq", "dk", "dv"};
#define FILE_OF(a, flag) ((a)->path[(flag) - F_FIRST])

/* What forward and backward were told. */
typedef struct attn_args {
    const char *method;
    const char *path[F_COUNT]; /* by flag - F_FIRST; NULL when not given */
    const char *params[64];
    int nparams;
    int causal;
    int64_t threads;
    int threads_given;
    int64_t ranks;             /* 0: this process */
    attn_dtype dtype;
    int help;
} attn_args;

/* Parses forward's or backward's flags into a and the method's parameters into p. Returns 0 (a
 * help printed sets a->help) or the command's exit status after one line. */
static int attn_args_parse(const char *cmd, int argc, char **argv, int backward, attn_args *a,
                           attn_params *p)
{
    static const struct option opts[] = {
        {"method", required_argument, 0, 'm'},   {"q", required_argument, 0, F_Q},
        {"k", required_argument, 0, F_K},        {"v", required_argument, 0, F_V},
        {"dout", required_argument, 0, F_DOUT},  {"out", required_argument, 0, F_OUT},
        {"lse", required_argument, 0, F_LSE},    {"structure", required_argument, 0, F_STRUCTURE},
        {"dq", required_argument, 0, F_DQ},      {"dk", required_argument, 0, F_DK},
        {"dv", required_argument, 0, F_DV},      {"causal", no_argument, 0, 'c'},
        {"param", required_argument, 0, 'p'},    {"threads", required_argument, 0, 't'},
        {"ranks", required_argument, 0, 'r'},    {"help", no_argument, 0, 'h'},
        {"dtype", required_argument, 0, 'y'},    {0, 0, 0, 0},
    };
    /* the files each command takes */
    static const int fwd_files[] = {F_Q, F_K, F_V, F_OUT, F_LSE, F_STRUCTURE};
    static const int bwd_files[] = {F_Q, F_K, F_V, F_DOUT, F_DQ, F_DK, F_DV};
    memset(a, 0, sizeof *a);
    a->threads = omp_get_max_threads();
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        if (c >= F_FIRST && c < F_LAST) {
            const int *ok = backward ? bwd_files : fwd_files;
            const size_t nok = backward ? sizeof bwd_files / sizeof *bwd_files
                                        : sizeof fwd_files / sizeof *fwd_files;
            int allowed = 0;
            for (size_t i = 0; i < nok; i++)
                allowed |= ok[i] == c;
            if (!allowed)
                return cli_error(cmd, "%s takes no %s (see 'attnbench %s --help')", cmd,
                                 argv[optind - 1], cmd);
            FILE_OF(a, c) = optarg;
            continue;
        }
        switch (c) {
        case 'm': a->method = optarg; break;
        case 'c': a->causal = 1; break;
        case 'y':
            if (attn_dtype_parse(optarg, &a->dtype) != 0)
                return cli_error(cmd, "--dtype '%s' is not fp32 or bf16", optarg);
            break;
        case 'p':
            if (a->nparams == 64)
                return cli_error(cmd, "too many --param flags");
            a->params[a->nparams++] = optarg;
            break;
        case 't':
            if (cli_parse_int(optarg, 1, 1024, &a->threads))
                return cli_error(cmd, "--threads '%s' is not an integer in [1, 1024]", optarg);
            a->threads_given = 1;
            break;
        case 'r':
            if (cli_parse_int(optarg, 1, 1024, &a->ranks))
                return cli_error(cmd, "--ranks '%s' is not an integer in [1, 1024]", optarg);
            break;
        case 'h':
            fputs(backward ? backward_usage : forward_usage, stdout);
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
    const int required[] = {F_OUT, F_DQ, F_DK, F_DV};
    for (int i = backward; i < (backward ? 4 : 1); i++)
        if (!FILE_OF(a, required[i]))
            return cli_error(cmd, "--%s is required", file_flag[required[i] - F_FIRST]);
    if (backward && !p->method->backward)
        return cli_error(cmd, "%s: method %s has no backward pass",
                         attn_errname(ATTN_ENOBACKWARD), p->method->name);
    return 0;
}

/* The ring over MPI processes: they read and write the files themselves. */
static int attn_on_ranks(const char *cmd, const attn_args *a, const attn_params *p,
                         const attn_shape *shape)
{
    const char *why;
    int rc;
    if (strcmp(p->method->name, "ring") != 0)
        return cli_error(cmd, "--ranks runs the ring method over MPI processes, not %s",
                         p->method->name);
    if (FILE_OF(a, F_STRUCTURE))
        return cli_error(cmd, "--structure: method ring has no discrete structure");
    if ((rc = attn_ring_check(shape, p, (int)a->ranks, &why)))
        return cli_check_error(cmd, p, rc, why);
    static const int order[9] = {F_Q, F_K, F_V, F_DOUT, F_OUT, F_LSE, F_DQ, F_DK, F_DV};
    const char *files[9];
    for (int i = 0; i < 9; i++)
        files[i] = FILE_OF(a, order[i]);
    /* ranks on this machine share its cores, unless told otherwise */
    const int64_t each = a->threads_given ? a->threads
                                          : a->threads / a->ranks < 1 ? 1 : a->threads / a->ranks;
    return ranks_files((int)a->ranks, p, a->causal, (int)each, files);
}

/* What forward and backward compute in this process. */
typedef struct attn_outputs {
    void *out, *grad[3];    /* the run's dtype */
    float *lse, *wide;      /* wide: one output widened to fp32 (bf16 runs) */
    void *inputs[4];        /* bf16 runs on float32 files: the inputs rounded */
    int32_t *structure;
} attn_outputs;

static int write_file(const char *cmd, const char *path, const char *dtype, int ndim,
                      const int64_t *shape, const void *data, size_t elem)
{
    char err[512];
    if (path && npy_write(path, dtype, ndim, shape, data, elem, err, sizeof err))
        return cli_error(cmd, "%s", err);
    return 0;
}

/* Checks one output of the run (every element finite) and writes it where asked: as it is in
 * fp32; in bf16 as '<V2' when the inputs were bfloat16 files, else widened to float32. */
static int put_output(const char *cmd, const char *what, const char *path, const npy_array *q,
                      const attn_shape *shape, const void *x, attn_outputs *o)
{
    const float *f = x;
    if (shape->dtype == ATTN_BF16) {
        attn_convert(x, ATTN_BF16, o->wide, ATTN_FP32, q->count);
        f = o->wide;
    }
    int rc = check_output(cmd, what, q, f);
    if (rc)
        return rc;
    if (shape->dtype == ATTN_BF16 && is_bf16_file(q))
        return write_file(cmd, path, "<V2", q->ndim, q->shape, x, sizeof(attn_bf16));
    return write_file(cmd, path, "<f4", q->ndim, q->shape, f, sizeof(float));
}

/* The method in this process on inputs in[] (q, k, v, and dout for backward): computes the
 * forward (and the backward), checks that every result is finite, and writes the files asked
 * for. Nothing is written when anything fails (the forward's files are written after its
 * checks; backward writes only gradients, after all of theirs). */
static int attn_here(const char *cmd, const attn_args *a, const attn_params *p,
                     const attn_shape *shape, const npy_array *in, int backward, attn_outputs *o)
{
    attn_cost cost;
    p->method->cost(shape, p, (int)a->threads, &cost);
    const size_t elems = attn_tensor_elems(shape), nstruct = attn_structure_elems(&cost),
                 size = attn_dtype_size(shape->dtype);
    if (FILE_OF(a, F_STRUCTURE) && !nstruct) /* before any work or output */
        return cli_error(cmd, "--structure: method %s has no discrete structure", p->method->name);
    const void *x[4] = {NULL};
    for (int i = 0; i < (backward ? 4 : 3); i++) {
        x[i] = in[i].data;
        if (shape->dtype == ATTN_BF16 && !is_bf16_file(&in[i])) { /* rounded on load */
            if (!(o->inputs[i] = malloc(elems * size)))
                return cli_fail(cmd, "out of memory for n=%lld", (long long)shape->n);
            attn_convert(in[i].data, ATTN_FP32, o->inputs[i], ATTN_BF16, elems);
            x[i] = o->inputs[i];
        }
    }
    o->out = malloc(elems * size);
    o->lse = malloc((size_t)(shape->B * shape->H * shape->n) * sizeof *o->lse);
    o->wide = shape->dtype == ATTN_BF16 ? malloc(elems * sizeof *o->wide) : NULL;
    o->structure = nstruct ? malloc(nstruct * sizeof *o->structure) : NULL;
    for (int i = 0; i < 3 && backward; i++)
        o->grad[i] = malloc(elems * size);
    if (!o->out || !o->lse || (nstruct && !o->structure) ||
        (shape->dtype == ATTN_BF16 && !o->wide) ||
        (backward && (!o->grad[0] || !o->grad[1] || !o->grad[2])))
        return cli_fail(cmd, "out of memory for n=%lld", (long long)shape->n);
    attn_tensors t = {.q = x[0], .k = x[1], .v = x[2], .out = o->out, .lse = o->lse,
                      .structure = o->structure};
    int rc = attn_forward_alloc(shape, p, &t, (int)a->threads);
    if (rc)
        return cli_fail(cmd, "%s: %s", attn_errname(rc), attn_strerror(rc));
    if (backward) {
        if ((rc = put_output(cmd, "output", NULL, &in[0], shape, o->out, o)))
            return rc;
        attn_grads g = {.q = x[0], .k = x[1], .v = x[2], .out = o->out, .lse = o->lse,
                        .dout = x[3], .structure = o->structure, .dq = o->grad[0],
                        .dk = o->grad[1], .dv = o->grad[2]};
        if ((rc = attn_backward_alloc(shape, p, &g, (int)a->threads)))
            return cli_fail(cmd, "%s: %s", attn_errname(rc), attn_strerror(rc));
        for (int i = 0; i < 3 && !rc; i++)
            rc = put_output(cmd, file_flag[F_DQ - F_FIRST + i], NULL, &in[0], shape, o->grad[i], o);
        for (int i = 0; i < 3 && !rc; i++)
            rc = put_output(cmd, file_flag[F_DQ - F_FIRST + i], FILE_OF(a, F_DQ + i), &in[0],
                            shape, o->grad[i], o);
        return rc;
    }
    const int64_t lse_shape[3] = {shape->B, shape->H, shape->n};
    if ((rc = put_output(cmd, "output", FILE_OF(a, F_OUT), &in[0], shape, o->out, o)) ||
        (rc = write_file(cmd, FILE_OF(a, F_LSE), "<f4", in[0].ndim == 4 ? 3 : 1,
                         in[0].ndim == 4 ? lse_shape : &shape->n, o->lse, sizeof *o->lse)))
        return rc;
    return write_file(cmd, FILE_OF(a, F_STRUCTURE), "<i4", cost.structure_ndim,
                      cost.structure_dims, o->structure, sizeof *o->structure);
}

/* forward and backward: one method on .npy inputs. backward also runs the forward first,
 * for the out, lse and structure its backward needs. */
static int attn_command(const char *cmd, int argc, char **argv, int backward)
{
    attn_args a;
    attn_params p;
    int rc = attn_args_parse(cmd, argc, argv, backward, &a, &p);
    if (rc || a.help)
        return rc;
    if (a.ranks && a.dtype != ATTN_FP32)
        return cli_error(cmd, "--ranks reads and writes float32 files only (`run --ranks P "
                              "--dtype bf16` measures ring over ranks in bf16)");
    npy_array in[4];
    memset(in, 0, sizeof in);
    attn_outputs o = {0};
    for (int i = 0; i < (backward ? 4 : 3) && !rc; i++)
        rc = read_input(cmd, file_flag[i], a.path[i], &in[i], i ? &in[0] : NULL, a.dtype);
    if (!rc) {
        attn_shape shape = shape_of(&in[0], a.causal);
        shape.dtype = a.dtype;
        const char *why;
        if ((rc = attn_check(&shape, &p, &why)))
            rc = cli_check_error(cmd, &p, rc, why);
        else
            rc = a.ranks ? attn_on_ranks(cmd, &a, &p, &shape)
                         : attn_here(cmd, &a, &p, &shape, in, backward, &o);
    }
    for (int i = 0; i < 4; i++)
        npy_free(&in[i]);
    free(o.out);
    free(o.lse);
    free(o.wide);
    free(o.structure);
    for (int i = 0; i < 3; i++)
        free(o.grad[i]);
    for (int i = 0; i < 4; i++)
        free(o.inputs[i]);
    return rc;
}

int cmd_forward(int argc, char **argv)
{
    return attn_command("forward", argc, argv, 0);
}

int cmd_backward(int argc, char **argv)
{
    return attn_command("backward", argc, argv, 1);
}
