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

#include "cli.h"
#include "commands.h"
#include "npy.h"
#include "ranks.h"
#include "../attn/ring.h"
#include "probe.h"

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
    "Inputs are float32 C-order .npy arrays of shape (n, d) or (B, H, n, d); the output has\n"
    "the inputs' shape, the logsumexp (n) or (B, H, n), the structure the method's own.\n"
    "--ranks P (method ring): P MPI processes through mpirun, each with its rows.\n";

static const char backward_usage[] =
    "usage: attnbench backward --method M --q Q.npy --k K.npy --v V.npy --dout dO.npy\n"
    "                          --dq dQ.npy --dk dK.npy --dv dV.npy [--causal]\n"
    "                          [--param key=value]... [--threads T] [--ranks P]\n"
    "Runs the forward, then the backward of the loss whose gradient with respect to the output\n"
    "is dO, and writes dq, dk, dv in the inputs' shape.\n";

/* The first element of x[0..count) that is NaN or infinite, or -1. */
static int64_t first_nonfinite(const float *x, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (!isfinite(x[i]))
            return (int64_t)i;
    return -1;
}

/* "5, 0": the multi-index of flat element i of an array of a's shape. */
static const char *format_index(const npy_array *a, int64_t i, char *buf, size_t size)
{
    int64_t idx[NPY_MAX_DIMS], rest = i;
    for (int dim = a->ndim - 1; dim >= 0; dim--) {
        idx[dim] = rest % a->shape[dim];
        rest /= a->shape[dim];
    }
    size_t len = 0;
    buf[0] = '\0';
    for (int dim = 0; dim < a->ndim && len < size; dim++)
        len += (size_t)snprintf(buf + len, size - len, "%s%lld", dim ? ", " : "",
                                (long long)idx[dim]);
    return buf;
}

/* Reads one input and checks it against the first one read (ref), if any. */
static int read_input(const char *cmd, const char *flag, const char *path, npy_array *a,
                      const npy_array *ref)
{
    char err[512];
    if (!path)
        return cli_error(cmd, "--%s is required", flag);
    if (npy_read(path, "<f4", a, err, sizeof err))
        return cli_error(cmd, "--%s %s", flag, err);
    if (a->ndim != 2 && a->ndim != 4)
        return cli_error(cmd, "--%s %s: shape must be (n, d) or (B, H, n, d), not %d-D", flag,
                         path, a->ndim);
    if (ref && (a->ndim != ref->ndim || memcmp(a->shape, ref->shape,
                                               (size_t)a->ndim * sizeof a->shape[0]) != 0))
        return cli_error(cmd, "--%s %s: shape differs from --q's", flag, path);
    /* a NaN or infinity has no attention: say where it is rather than return NaN everywhere */
    int64_t bad = first_nonfinite(a->data, a->count);
    if (bad >= 0) {
        char index[160];
        const float x = ((const float *)a->data)[bad];
        return cli_error(cmd, "--%s %s: element (%s) is %s; inputs must be finite", flag, path,
                         format_index(a, bad, index, sizeof index),
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
                    format_index(shape_of_q, bad, index, sizeof index));
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

/* forward and backward: one method on .npy inputs. backward also runs the forward first,
 * for the out, lse and structure its backward needs. */
static int attn_command(const char *cmd, int argc, char **argv, int backward)
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
        {0, 0, 0, 0},
    };
    /* the flags each command takes */
    static const int fwd_files[] = {F_Q, F_K, F_V, F_OUT, F_LSE, F_STRUCTURE};
    static const int bwd_files[] = {F_Q, F_K, F_V, F_DOUT, F_DQ, F_DK, F_DV};
    const char *method = NULL, *path[F_COUNT] = {0}; /* by flag - F_FIRST */
    const char *params[64];
    int nparams = 0, causal = 0;
    int64_t threads = omp_get_max_threads(), ranks = 0;
    int threads_given = 0;
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
            path[c - F_FIRST] = optarg;
            continue;
        }
        switch (c) {
        case 'm': method = optarg; break;
        case 'c': causal = 1; break;
        case 'p':
            if (nparams == 64)
                return cli_error(cmd, "too many --param flags");
            params[nparams++] = optarg;
            break;
        case 't':
            if (cli_parse_int(optarg, 1, 1024, &threads))
                return cli_error(cmd, "--threads '%s' is not an integer in [1, 1024]", optarg);
            threads_given = 1;
            break;
        case 'r':
            if (cli_parse_int(optarg, 1, 1024, &ranks))
                return cli_error(cmd, "--ranks '%s' is not an integer in [1, 1024]", optarg);
            break;
        case 'h': fputs(backward ? backward_usage : forward_usage, stdout); return 0;
        default: return cli_getopt_error(cmd, optopt, argv, optind);
        }
    }
    if (optind < argc)
        return cli_error(cmd, "unexpected argument '%s'", argv[optind]);
    attn_params p;
    int rc = cli_method(cmd, method, &p);
    for (int i = 0; !rc && i < nparams; i++)
        rc = cli_param(cmd, &p, params[i]);
    if (rc)
        return rc;
    static const char *const names[F_COUNT] = {"q", "k", "v", "dout", "out", "lse", "structure",
                                               "dq", "dk", "dv"};
    const int required[] = {F_OUT, F_DQ, F_DK, F_DV};
    for (int i = backward; i < (backward ? 4 : 1); i++)
        if (!path[required[i] - F_FIRST])
            return cli_error(cmd, "--%s is required", names[required[i] - F_FIRST]);
    if (backward && !p.method->backward)
        return cli_error(cmd, "%s: method %s has no backward pass",
                         attn_errname(ATTN_ENOBACKWARD), p.method->name);

    npy_array in[4];
    memset(in, 0, sizeof in);
    float *out = NULL, *lse = NULL, *grad[3] = {NULL, NULL, NULL};
    int32_t *structure = NULL;
    for (int i = 0; i < (backward ? 4 : 3) && !rc; i++)
        rc = read_input(cmd, names[i], path[i], &in[i], i ? &in[0] : NULL);
    if (rc)
        goto done;
    attn_shape shape = shape_of(&in[0], causal);
    const char *why;
    if ((rc = attn_check(&shape, &p, &why))) {
        rc = cli_check_error(cmd, &p, rc, why);
        goto done;
    }
    if (ranks) { /* the ring over MPI processes: they read the files themselves */
        if (strcmp(p.method->name, "ring") != 0) {
            rc = cli_error(cmd, "--ranks runs the ring method over MPI processes, not %s",
                           p.method->name);
        } else if (path[F_STRUCTURE - F_FIRST]) {
            rc = cli_error(cmd, "--structure: method ring has no discrete structure");
        } else if ((rc = attn_ring_check(&shape, &p, (int)ranks, &why))) {
            rc = cli_check_error(cmd, &p, rc, why);
        } else {
            const char *files[9];
            for (int i = 0; i < 9; i++) /* q k v dout out lse dq dk dv */
                files[i] = path[(i < 4 ? F_Q + i : i == 4 ? F_OUT : i == 5 ? F_LSE : F_DQ + i - 6) -
                                F_FIRST];
            /* ranks on this machine share its cores, unless told otherwise */
            const int64_t each = threads_given || threads / ranks < 1 ? (threads_given ? threads : 1)
                                                                        : threads / ranks;
            rc = ranks_files((int)ranks, &p, causal, (int)each, files);
        }
        goto done;
    }
    attn_cost cost;
    p.method->cost(&shape, &p, (int)threads, &cost);
    const size_t elems = attn_tensor_elems(&shape), nstruct = attn_structure_elems(&cost);
    if (path[F_STRUCTURE - F_FIRST] && !nstruct) { /* before any work or output */
        rc = cli_error(cmd, "--structure: method %s has no discrete structure", p.method->name);
        goto done;
    }
    const int64_t lse_shape[3] = {shape.B, shape.H, shape.n};
    out = malloc(elems * sizeof *out);
    lse = malloc((size_t)(shape.B * shape.H * shape.n) * sizeof *lse);
    structure = nstruct ? malloc(nstruct * sizeof *structure) : NULL;
    for (int i = 0; i < 3 && backward; i++)
        grad[i] = malloc(elems * sizeof(float));
    if (!out || !lse || (nstruct && !structure) ||
        (backward && (!grad[0] || !grad[1] || !grad[2]))) {
        rc = cli_fail(cmd, "out of memory for n=%lld", (long long)shape.n);
        goto done;
    }
    attn_tensors t = {.q = in[0].data, .k = in[1].data, .v = in[2].data, .out = out, .lse = lse,
                      .structure = structure};
    if ((rc = attn_forward_alloc(&shape, &p, &t, (int)threads))) {
        rc = cli_fail(cmd, "%s: %s", attn_errname(rc), attn_strerror(rc));
        goto done;
    }
    if ((rc = check_output(cmd, "output", &in[0], out)))
        goto done;
    char err[512];
    if (backward) {
        attn_grads g = {.q = in[0].data, .k = in[1].data, .v = in[2].data, .out = out,
                        .lse = lse, .dout = in[3].data, .structure = structure, .dq = grad[0],
                        .dk = grad[1], .dv = grad[2]};
        if ((rc = attn_backward_alloc(&shape, &p, &g, (int)threads))) {
            rc = cli_fail(cmd, "%s: %s", attn_errname(rc), attn_strerror(rc));
            goto done;
        }
        for (int i = 0; i < 3 && !rc; i++)
            rc = check_output(cmd, names[F_DQ - F_FIRST + i], &in[0], grad[i]);
        for (int i = 0; i < 3 && !rc; i++)
            if (npy_write(path[F_DQ - F_FIRST + i], "<f4", in[0].ndim, in[0].shape, grad[i], sizeof(float),
                          err, sizeof err)) {
                rc = cli_error(cmd, "%s", err);
                goto done;
            }
        goto done;
    }
    if (npy_write(path[F_OUT - F_FIRST], "<f4", in[0].ndim, in[0].shape, out, sizeof *out, err, sizeof err) ||
        (path[F_LSE - F_FIRST] && npy_write(path[F_LSE - F_FIRST], "<f4", in[0].ndim == 4 ? 3 : 1,
                                  in[0].ndim == 4 ? lse_shape : &shape.n, lse, sizeof *lse, err,
                                  sizeof err))) {
        rc = cli_error(cmd, "%s", err);
        goto done;
    }
    if (path[F_STRUCTURE - F_FIRST] &&
        npy_write(path[F_STRUCTURE - F_FIRST], "<i4", cost.structure_ndim, cost.structure_dims,
                  structure, sizeof *structure, err, sizeof err))
        rc = cli_error(cmd, "%s", err);
done:
    for (int i = 0; i < 4; i++)
        npy_free(&in[i]);
    free(out);
    free(lse);
    free(structure);
    for (int i = 0; i < 3; i++)
        free(grad[i]);
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
