/* mkl_intel_path.c: lets Intel MKL (PyTorch's BLAS in its PyPI wheels) take its own fast code
 * paths on an AMD CPU. MKL asks mkl_serv_intel_cpu_true() whether the CPU is Intel's and, if not,
 * runs generic kernels: on a 2-core AMD EPYC with AVX-512, torch's sgemm 4096^3 ran at 142
 * GFLOP/s where OpenBLAS ran at 388. Preloaded, this answer makes MKL dispatch by the CPU's
 * features instead of its vendor, so a PyTorch peer runs on its best kernels as attnbench does
 * (scripts/peers/_python preloads it on AMD CPUs; the peer's record says so). The long-known
 * workaround since MKL 2020 dropped MKL_DEBUG_CPU_TYPE. Built by scripts/install-deps.sh --peers. */
int mkl_serv_intel_cpu_true(void);
int mkl_serv_intel_cpu_true(void)
{
    return 1;
}
