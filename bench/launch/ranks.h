/* ranks.h: a `ring` point over P MPI processes (`--ranks P`), measured by the harness like any
 * other point.
 *
 * The harness never initializes MPI (it forks a child per point, and MPI forbids forking after
 * MPI_Init): the point's child execs `mpirun -np P build/attnbench-rank --point JSON --record
 * FILE` (bench/mpi/ring_rank.c). Inside a Slurm allocation Open MPI's mpirun starts the ranks
 * through Slurm itself; ATTNBENCH_MPIRUN replaces the launcher ("srun --mpi=pmix", or mpirun
 * with a hostfile), its words followed by `-np P` and the rank program.
 *
 * Each rank measures itself (its VmHWM reset once its inputs exist, its wait for blocks, the
 * bytes it sent); rank 0 gathers them and writes the measured fields of the record: wall time
 * per repetition (the slowest rank's), peak_rss_bytes (the largest rank's), and `ranks`: the
 * count, the sum of the ranks' peaks, each rank's peak, model bytes, bytes sent against the
 * model's, and share of time spent waiting. A rank that dies ends the point as `crashed`, with
 * the rank named from mpirun's report; mpirun takes the other ranks down with it, and every rank
 * dies with mpirun (PR_SET_PDEATHSIG), which dies with the point's child. */
#ifndef BENCH_RANKS_H
#define BENCH_RANKS_H

#include <jansson.h>
#include <stddef.h>

#include "../point/point.h"

/* In the point's child: runs the ranks and fills the measured fields of r. Returns the point
 * status; reason is set when it is not ok. */
int ranks_measure(const point_spec *s, json_t *r, char *reason, size_t size);

/* `attnbench forward|backward --ranks P`: the ring over P processes on .npy files. paths, by
 * q, k, v, dout, out, lse, dq, dk, dv (NULL: none; dout for backward), were checked by the
 * caller. Returns 0, or 1 after the ranks or the launcher said why on stderr. */
int ranks_files(int ranks, const attn_params *p, int causal, int threads, const char *const *paths);

/* The rank program next to this binary (build/attnbench-rank) into path; 0, or -1 when it was
 * not built (no MPI when building) with the reason in path. */
int ranks_program(char *path, size_t size);

#endif
