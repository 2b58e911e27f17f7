#!/usr/bin/env bash
# bench-kernels.sh: how close the kernels come to the machine's sgemm, measured in one run
# with the same OpenBLAS kernels and threads: full_stream at n = 16384 on one and two threads,
# lsh, block_sparse and etc at 2^20 on two, and every streaming method's forward + backward
# (run --backward) with B = H = 1 on one thread and on two. Each sweep measures OpenBLAS sgemm
# at its thread counts before its points and its records carry it (context.yardstick), so every
# row's "of sgemm" is against the machine as it was at that moment. Writes
# results/kernels/results.jsonl and prints the table docs/benchmarks.md holds (`make docs`).
#   bash scripts/bench-kernels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/attnbench
out=results/kernels
make -s
mkdir -p "$out"
rm -f "$out/results.jsonl"
rm -f "$out"/sgemm-*.json # the yardsticks live in the records now
common=(--reps 3 --counters sw --out "$out/results.jsonl" --resume)
"$bin" sweep --methods full_stream --n 16K --threads 1 "${common[@]}"
"$bin" sweep --methods full_stream --n 16K --threads 2 "${common[@]}"
"$bin" sweep --methods lsh,block_sparse,etc --n 1M --threads 2 "${common[@]}"
for t in 1 2; do
    "$bin" sweep --methods full_stream --n 16K --backward --threads $t "${common[@]}"
    "$bin" sweep --methods lsh,block_sparse,etc --n 256K --backward --threads $t "${common[@]}"
done
"$bin" table machine "$out/results.jsonl"
"$bin" table points "$out/results.jsonl" columns=method,kind,n,threads,time,gflops,sgemm_share,busy
