/* attn.h: the attention library's one public interface.
 *
 * attn/ is pure compute: no I/O, no printing, no exit(), no allocation inside a kernel. Every
 * method is a const attn_method found by name in a registry (methods.def lists them), so the
 * harness, the CLI and the tests treat all of them alike.
 *
 * Dimension letters, used everywhere in attnbench:
 *   B batch, H heads, n sequence length, d head dimension.
 * Tensors are row-major (B, H, n, d), stored as the shape's dtype: fp32, or bf16 (the upper
 * half of an fp32, rounded to nearest even), in which case every method reads bf16 rows, computes
 * its scores, softmax and accumulators in fp32, and rounds once when it writes. The logsumexp is
 * fp32 in both. The softmax scale is 1/sqrt(d) unless a method's header says otherwise (lsh). The caller owns every buffer: it asks attn_cost() how many
 * workspace bytes a call needs, allocates them, and passes them in.
 */
#ifndef ATTN_H
#define ATTN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Errors: 0 is success; every other value has a name and a message (attn_strerror). */
#define ATTN_ERRORS(X)                                                                   \
    X(ATTN_OK, "ok")                                                                     \
    X(ATTN_EUNKNOWN_METHOD, "unknown method")                                            \
    X(ATTN_EUNKNOWN_PARAM, "unknown parameter")                                          \
    X(ATTN_EPARAM_VALUE, "malformed parameter value")                                    \
    X(ATTN_EPARAM_RANGE, "parameter out of range")                                       \
    X(ATTN_ESHAPE, "invalid shape (B, H, n and d must be positive)")                     \
    X(ATTN_EUNSUPPORTED, "shape or parameters not supported by this method")             \
    X(ATTN_ENOBACKWARD, "method has no backward pass")                                   \
    X(ATTN_ENOMEM, "out of memory")                                                      \
    X(ATTN_EEXCHANGE, "a transfer between ranks failed (ring)")

enum attn_error {
#define ATTN_ERROR_ENUM(name, msg) name,
    ATTN_ERRORS(ATTN_ERROR_ENUM)
#undef ATTN_ERROR_ENUM
    ATTN_NERRORS
};

/* Returns the message of an error code; never NULL. */
const char *attn_strerror(int err);
/* Returns the symbolic name of an error code ("ATTN_EPARAM_RANGE"); never NULL. */
const char *attn_errname(int err);

/* Work counters: what a call really did, counted by the kernels as they go (plain integers,
 * per thread, added up when the call ends), so the harness can put measured work beside the
 * analytical model (and expose it as PAPI software-defined events). One list makes the enum,
 * the names and the descriptions. */
#define ATTN_STATS(X)                                                                                \
    X(ATTN_STAT_SCORES, "SCORES", "query-key scores computed (dot products)")                   \
    X(ATTN_STAT_SCORES_MASKED, "SCORES_MASKED",                                                  \
      "computed scores masked out (causal, segments): they weigh nothing")                       \
    X(ATTN_STAT_EXPS, "EXPS", "exponentials evaluated in the softmax")                          \
    X(ATTN_STAT_TILES, "TILES", "query tile x key tile products")                               \
    X(ATTN_STAT_ROWS_GATHERED, "ROWS_GATHERED", "rows of Q, K or V read by index")              \
    X(ATTN_STAT_BYTES_GATHERED, "BYTES_GATHERED", "bytes of the rows read by index")            \
    X(ATTN_STAT_LSH_BUCKETS, "LSH_BUCKETS", "LSH: non-empty buckets, summed over rounds")       \
    X(ATTN_STAT_LSH_BUCKET_MAX, "LSH_BUCKET_MAX", "LSH: the largest bucket, summed over rounds")\
    X(ATTN_STAT_RANDOM_BLOCKS, "RANDOM_BLOCKS", "block_sparse: random blocks drawn")            \
    X(ATTN_STAT_GLOBAL_SCORES, "GLOBAL_SCORES", "etc: scores of or against global tokens")      \
    X(ATTN_STAT_LOCAL_SCORES, "LOCAL_SCORES", "etc: scores between long tokens")                \
    X(ATTN_STAT_BWD_SCORES, "BWD_SCORES", "scores recomputed by backward passes")               \
    X(ATTN_STAT_LAYERS_RECOMPUTED, "LAYERS_RECOMPUTED",                                          \
      "stacks: layers whose forward the reversible backward recomputed")                         \
    X(ATTN_STAT_FF_CHUNKS, "FF_CHUNKS", "stacks: feed-forward chunks run")

enum attn_stat {
#define ATTN_STAT_ENUM(name, text, help) name,
    ATTN_STATS(ATTN_STAT_ENUM)
#undef ATTN_STAT_ENUM
    ATTN_NSTATS
};

typedef struct attn_stats {
    uint64_t v[ATTN_NSTATS];
} attn_stats;

/* The name ("SCORES") and the description of a counter. */
const char *attn_stat_name(int i);
const char *attn_stat_help(int i);
/* total += part, atomically per counter: each thread adds its own counts once, at the end. */
void attn_stats_add(attn_stats *total, const attn_stats *part);

/* How q, k, v, out and the gradients are stored. ATTN_FP32 is 0, so a zeroed shape is fp32. */
typedef enum attn_dtype { ATTN_FP32 = 0, ATTN_BF16 = 1 } attn_dtype;
typedef uint16_t attn_bf16; /* the upper 16 bits of an IEEE binary32 */

/* Bytes of one element; the name ("fp32", "bf16"); parsing a name (0 or ATTN_EPARAM_VALUE). */
size_t attn_dtype_size(attn_dtype t);
const char *attn_dtype_name(attn_dtype t);
int attn_dtype_parse(const char *name, attn_dtype *t);

/* bf16 <-> fp32. Rounding is to nearest, ties to even, the same on every instruction set
 * (subnormals kept, not flushed); a NaN stays a NaN. Widening is exact. */
static inline float attn_bf16_to_f32(attn_bf16 h)
{
    union { uint32_t u; float f; } x = {.u = (uint32_t)h << 16};
    return x.f;
}
static inline attn_bf16 attn_f32_to_bf16(float f)
{
    union { float f; uint32_t u; } x = {.f = f};
    if ((x.u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet, never round it to inf */
        return (attn_bf16)((x.u >> 16) | 0x40u);
    return (attn_bf16)((x.u + 0x7fffu + ((x.u >> 16) & 1u)) >> 16);
}
/* Converts count elements between storage types (either may be fp32 or bf16; the same type
 * copies). */
void attn_convert(const void *src, attn_dtype from, void *dst, attn_dtype to, size_t count);
/* The address of element `elem` of a tensor stored as t. */
static inline const void *attn_elem(const void *base, attn_dtype t, size_t elem)
{
    return (const char *)base + elem * attn_dtype_size(t);
}
static inline void *attn_elem_mut(void *base, attn_dtype t, size_t elem)
{
    return (char *)base + elem * attn_dtype_size(t);
}
/* Element i of a tensor stored as t, as fp32 (for O(n d) passes: norms, checks, a few rows;
 * kernels widen whole rows). */
static inline float attn_value(const void *base, attn_dtype t, size_t i)
{
    return t == ATTN_BF16 ? attn_bf16_to_f32(((const attn_bf16 *)base)[i])
                          : ((const float *)base)[i];
}

typedef struct attn_shape {
    int64_t B, H, n, d;
    bool causal;      /* query i sees keys j <= i only */
    attn_dtype dtype; /* storage of q, k, v, out and the gradients */
} attn_shape;

/* A method's parameters are declared once, in a table of specs; values live in attn_params.v[],
 * indexed like the spec table. Integer and real parameters carry their accepted range; a
 * choice parameter stores the index of one of its choices. A spec whose `auto_ok` is set also
 * accepts the word "auto" (stored as ATTN_AUTO), resolved by the method from the shape. */
enum attn_param_kind { ATTN_PARAM_INT, ATTN_PARAM_REAL, ATTN_PARAM_CHOICE };
#define ATTN_AUTO (-1.0)
#define ATTN_MAX_PARAMS 8

typedef struct attn_param_spec {
    const char *name;
    const char *help;
    enum attn_param_kind kind;
    double def;                  /* default value (ATTN_AUTO allowed when auto_ok) */
    double min, max;             /* accepted range, inclusive (INT, REAL) */
    bool auto_ok;                /* "auto" is accepted */
    const char *const *choices;  /* CHOICE: NULL-terminated list of names */
} attn_param_spec;

typedef struct attn_method attn_method;

typedef struct attn_params {
    const attn_method *method;
    double v[ATTN_MAX_PARAMS];
} attn_params;

/* What one call of a method costs, from its analytical model. */
typedef struct attn_cost {
    size_t workspace_bytes;   /* scratch the caller must pass to forward() */
    double flops;             /* useful floating-point operations of the forward pass */
    double scores;            /* the query-key scores those flops are charged for (4 d flops
                                 each: one product for the score, one for its share of PV);
                                 what the kernels count (ATTN_STAT_SCORES) is compared with it */
    size_t bwd_workspace_bytes; /* scratch the caller must pass to backward() */
    double bwd_flops;         /* floating-point operations of the backward pass */
    int structure_ndim;       /* 0 when the method has no discrete structure */
    int64_t structure_dims[4];/* int32 elements, row-major, e.g. LSH buckets (n_hashes, B, H, n) */
} attn_cost;

/* Buffers of one forward call; all caller-owned, none aliasing another. */
typedef struct attn_tensors {
    const void *q, *k, *v;  /* (B, H, n, d), stored as the shape's dtype */
    void *out;              /* (B, H, n, d), the shape's dtype, every element written */
    float *lse;             /* (B, H, n): each row's logsumexp over the scaled scores */
    int32_t *structure;     /* attn_cost.structure_dims, written; NULL iff structure_ndim == 0 */
    bool reuse_structure;   /* structure holds a previous call's: use it, do not draw it again
                               (a reversible stack's recompute must see the same LSH buckets) */
    attn_stats *stats;      /* the call adds what it did here, or NULL: not counted */
    int64_t head_offset;    /* the index of this call's first head among the caller's heads:
                               methods that draw per-head randomness (LSH's rotations, BigBird's
                               random blocks) draw head h's as head head_offset + h, so a caller
                               running one head at a time gets what one call over every head
                               would draw */
} attn_tensors;

/* Buffers of one backward call: the forward's inputs and saved outputs (out, lse, structure:
 * saved, never recomputed), the gradient of the loss with respect to out, and the gradients
 * the call writes. All (B, H, n, d) but lse (B, H, n). */
typedef struct attn_grads {
    const void *q, *k, *v, *out, *dout; /* the shape's dtype */
    const float *lse;
    const int32_t *structure;
    void *dq, *dk, *dv;     /* the shape's dtype, every element written */
    attn_stats *stats;      /* the call adds what it did here, or NULL */
} attn_grads;

struct attn_method {
    const char *name;
    const char *summary;
    const attn_param_spec *params;
    int n_params;
    /* The keys are computed from the queries (Reformer's shared QK): the k input is ignored
     * and gets a zero gradient, so a layer needs no key projection. */
    bool shared_qk;
    /* Returns 0 if the method runs this shape with these (already range-checked) parameters,
     * ATTN_EUNSUPPORTED or ATTN_EPARAM_RANGE otherwise, pointing *why at a static sentence
     * naming the constraint. */
    int (*check)(const attn_shape *s, const attn_params *p, const char **why);
    /* Fills the cost of one forward call with `nthreads` worker threads. Only after check() == 0. */
    void (*cost)(const attn_shape *s, const attn_params *p, int nthreads, attn_cost *c);
    /* Runs forward on caller-owned buffers, `work` holding cost.workspace_bytes (64-byte aligned).
     * Returns 0, or an error without having written anything meaningful. Results do not depend
     * on nthreads. */
    int (*forward)(const attn_shape *s, const attn_params *p, const attn_tensors *t, void *work,
                   int nthreads);
    /* Writes dq, dk, dv from the saved forward state, `work` holding
     * cost.bwd_workspace_bytes. NULL: the method has no backward pass. */
    int (*backward)(const attn_shape *s, const attn_params *p, const attn_grads *g, void *work,
                    int nthreads);
    /* Optional: fills `exact` with the method and parameters whose output is the exact
     * attention this configuration approximates (lsh: full shared-QK attention). NULL means
     * standard attention, full_stream. */
    void (*exact)(const attn_shape *s, const attn_params *p, attn_params *exact);
    /* Optional: the (query, key) candidates that a forward with this structure output scored
     * more than once (LSH: a key in a query's chunks in two rounds, or twice in one through
     * the wrap-around), summed over queries and heads. Not a work counter: counting it inside
     * the forward would cost time there, so a caller runs this outside the timed calls, on the
     * structure a forward wrote; it allocates its own scratch. Returns 0 or ATTN_ENOMEM. */
    int (*duplicates)(const attn_shape *s, const attn_params *p, const int32_t *structure,
                      uint64_t *count, int nthreads);
    /* Optional: the exact softmax mass that falls on the distinct keys a forward with this
     * structure scored, summed over every query row: for row i, sum over those keys j of
     * exp(l_ij - lse_exact_i), with l the exact counterpart's logits and lse_exact its
     * logsumexp (B, H, n). t holds the inputs and the structure the forward wrote. NULL: every
     * key a query scored, it scored once, so the row's mass is exp(lse_i - lse_exact_i) from
     * the forward's own logsumexp (attn_mass_recall does that). Returns 0 or ATTN_ENOMEM. */
    int (*mass)(const attn_shape *s, const attn_params *p, const attn_tensors *t,
                const float *lse_exact, double *sum, int nthreads);
    /* Optional: the step between the lengths this method runs as its model says: lsh's
     * chunk_len (n must be a multiple), block_sparse's block (other lengths are padded). NULL:
     * any length. */
    int64_t (*granule)(const attn_params *p);
};

/* The mean over query rows of the exact softmax mass on the keys the forward with t scored
 * (t->lse its logsumexp, t->structure its structure): 1 for exact attention, below 1 by what a
 * sparse pattern or a hash missed. lse_exact: the exact counterpart's logsumexp on the same
 * inputs. Returns 0 or ATTN_ENOMEM. */
int attn_mass_recall(const attn_shape *s, const attn_params *p, const attn_tensors *t,
                     const float *lse_exact, double *recall, int nthreads);

/* The registry. attn_methods() returns the methods in methods.def order and sets *count. */
const attn_method *const *attn_methods(int *count);
/* Returns the method called `name`, or NULL. */
const attn_method *attn_find(const char *name);

/* Sets every parameter of `p` to its default for method `m`. */
void attn_params_default(const attn_method *m, attn_params *p);
/* Parses `value` for parameter `key` of p->method and stores it. Returns 0,
 * ATTN_EUNKNOWN_PARAM, ATTN_EPARAM_VALUE (not a number / not a choice) or ATTN_EPARAM_RANGE. */
int attn_params_set(attn_params *p, const char *key, const char *value);
/* Parses "key=value" (as attn_params_set). */
int attn_params_parse(attn_params *p, const char *assignment);
/* Returns the index of parameter `key` in p->method's table, or -1. */
int attn_param_index(const attn_method *m, const char *key);
/* Writes the value of parameter i as text ("64", "auto", "segment") into buf; returns buf. */
const char *attn_param_format(const attn_params *p, int i, char *buf, size_t size);

/* Validates shape and parameters together: ATTN_ESHAPE for non-positive or oversized sizes,
 * then the method's own check(). Returns 0 when forward() may be called; otherwise, if why is
 * not NULL, points *why at a static sentence saying what is wrong. */
int attn_check(const attn_shape *s, const attn_params *p, const char **why);
/* Elements of one (B, H, n, d) tensor. */
size_t attn_tensor_elems(const attn_shape *s);
/* Bytes of the caller-owned buffers of one forward call: q, k, v, out, lse and the structure. */
size_t attn_io_bytes(const attn_shape *s, const attn_cost *c);
/* Elements of the structure tensor (0 when the method has none). */
size_t attn_structure_elems(const attn_cost *c);

/* The exact counterpart of a configuration (see attn_method.exact). */
void attn_exact_params(const attn_shape *s, const attn_params *p, attn_params *exact);

/* A buffer of `bytes` aligned to 64 bytes (its size rounded up to 64), as workspaces and
 * tensors want; NULL for 0 bytes or when out of memory. free() releases it. */
void *attn_aligned_alloc(size_t bytes);

/* Runs one backward call after attn_check(), allocating the workspace itself. */
int attn_backward_alloc(const attn_shape *s, const attn_params *p, const attn_grads *g,
                        int nthreads);

/* Runs one forward call after attn_check(), allocating the workspace itself. A convenience
 * for tests and the CLI; the harness allocates the workspace explicitly so it can see it. */
int attn_forward_alloc(const attn_shape *s, const attn_params *p, const attn_tensors *t,
                       int nthreads);

#endif
