/* blas_env.h: makes sure OpenBLAS runs the kernels this CPU can run.
 *
 * OpenBLAS picks its kernels from the CPUID model at load time. Debian 12's 0.3.21 does not
 * know some newer CPUs (e.g. Intel model 207, Emerald Rapids) and silently falls back to its
 * "Prescott" SSE3 kernels, 4-5x slower than the AVX-512 ones on the same machine (measured
 * here: 29 vs 134 GFLOP/s for sgemm 2048^3). Every speed number would then measure the
 * fallback, not the machine. */
#ifndef BENCH_BLAS_ENV_H
#define BENCH_BLAS_ENV_H

/* If OpenBLAS fell back to Prescott on a CPU with AVX-512 or AVX2 and the user did not choose a
 * core type, re-executes the program with OPENBLAS_CORETYPE set to the matching kernels
 * (Cooperlake, SkylakeX or Haswell). Returns only if nothing needed fixing or exec failed. */
void blas_env_fix_coretype(char **argv);
/* The OpenBLAS kernel set in use ("Cooperlake") and how it was chosen ("detected",
 * "OPENBLAS_CORETYPE set by user", or "forced by attnbench: CPUID model unknown to OpenBLAS"). */
const char *blas_env_corename(void);
const char *blas_env_coretype_source(void);

#endif
