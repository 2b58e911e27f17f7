/* external.h: workloads that are someone else's program (`--method ext:NAME`), measured by
 * the same harness as attnbench's own methods.
 *
 * NAME is an executable in scripts/peers/ (next to the attnbench binary's build folder, or in
 * $ATTNBENCH_PEERS), or a path when it holds a '/'. `PROGRAM --describe` prints one JSON line
 * {"implements": METHOD, "summary": "...", "train": "reversible"|"standard" (optional)}: the
 * attnbench method whose cost model the records carry (so RSS/model and GFLOP/s mean the same
 * on both sides) and whose parameters --param sets; with "train", the program runs a training
 * step of such a stack and the model is the stack's. The protocol of a run, from the program's
 * side:
 *
 *   environment  ATTNBENCH_N, _D, _HEADS, _BATCH, _CAUSAL (0/1), _SEED, _REPS, _WARMUP,
 *                _THREADS, _PARAMS ("k=v,k=v": the implemented method's, every one given),
 *                _INPUTS (a folder with q.npy, k.npy, v.npy, float32 (B, H, n, d), from
 *                attnbench's own generator and seed), _OUTPUT (where to save out.npy, for
 *                --accuracy; empty otherwise), _REPORT_FD and _CONTROL_FD; training programs
 *                also _STACK, _LAYERS, _D_FF, _FF_CHUNK (and no inputs: their own x)
 *   reports      one JSON object a line on the report fd: {"event": "start"} once imported,
 *                {"event": "ready"} with the inputs loaded, then it reads one byte from
 *                the control fd (attnbench has read the RSS and reset the peak), {"event":
 *                "rep", "wall_s": T}
 *                after each timed repetition (timed by the program, so its start-up is not),
 *                {"event": "done", "context": {...}} (versions, threads, BLAS, dtype)
 *   then         it waits until the control fd reaches end of file, and exits 0
 *
 * The harness measures the process from outside: VmHWM reset at "ready" and read at "done"
 * (before the process may exit), VmRSS at "start" and "ready", PAPI counters attached to each
 * of its threads at "ready" (and to the threads they create) until "done", CPU time and page
 * faults over
 * the repetitions from /proc, wait4's ru_maxrss; jemalloc fields are null with the reason.
 * scripts/peers/attnbench_peer.py implements the program's side for Python. */
#ifndef BENCH_EXTERNAL_H
#define BENCH_EXTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "../point/point.h"

typedef struct external_peer {
    char name[128];       /* as given: "ext:torch_sdpa" */
    char path[1024];      /* the executable */
    char implements[32];  /* an attnbench method */
    char train[16];       /* "standard" or "reversible": the program runs a training step of
                             such a stack over `implements` (--layers, --d-ff, --ff-chunk as
                             for attnbench's own); "" for one attention forward */
    char summary[256];
    bool bf16;            /* --describe lists "bf16" in "dtypes": the program runs bf16 points
                             (ATTNBENCH_DTYPE=bf16; its inputs are the fp32 files of the point's
                             bf16 values); otherwise fp32 only */
} external_peer;

/* Resolves "ext:NAME" and asks the program what it implements. Returns the peer (resolved
 * once per name, alive until exit), or NULL with one line in why. */
const external_peer *external_resolve(const char *method, char *why, size_t size);

/* In the point's child: writes the inputs, runs the program and measures it through the one
 * pipeline (measure.h), filling the measured fields of r and the harness's timings. Returns the
 * point status; why is set when it is not ok. */
int external_measure(const point_spec *s, json_t *r, json_t *harness, char *why, size_t size);

#endif
