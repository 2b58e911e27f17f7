/* blas_env.c: see blas_env.h. */
#include "blas_env.h"

#include <cblas.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#define FORCED_MARK "ATTNBENCH_CORETYPE_FORCED"

void blas_env_fix_coretype(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE") || strcasecmp(openblas_get_corename(), "prescott") != 0)
        return;
    __builtin_cpu_init();
    const char *core = __builtin_cpu_supports("avx512bf16") ? "Cooperlake"
                       : __builtin_cpu_supports("avx512f") ? "SkylakeX"
                       : __builtin_cpu_supports("avx2")    ? "Haswell"
                                                           : NULL;
    if (!core)
        return;
    setenv("OPENBLAS_CORETYPE", core, 1);
    setenv(FORCED_MARK, "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the slow kernels; the context records which ones ran */
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv(FORCED_MARK);
}

const char *blas_env_corename(void)
{
    return openblas_get_corename();
}

const char *blas_env_coretype_source(void)
{
    if (getenv(FORCED_MARK))
        return "forced by attnbench: CPUID model unknown to this OpenBLAS";
    if (getenv("OPENBLAS_CORETYPE"))
        return "OPENBLAS_CORETYPE set by user";
    return "detected by OpenBLAS";
}
