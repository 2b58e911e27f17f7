#!/usr/bin/env bash
# bench-bf16.sh: precision as a memory axis, measured. The points of scripts/suites/bf16.suite
# (every method stored as fp32 and as bf16, forward and backward; each method's bf16 error
# against itself in fp32 at 4K; the Reformer's step at 4 and 12 layers, up to 2^20 tokens in
# bf16) into results/bf16/results.jsonl, then the tables docs/benchmarks.md holds (`make docs`).
# About half an hour on two cores, most of it the 12-layer steps.
#   bash scripts/bench-bf16.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/attnbench
out=results/bf16
make -s
mkdir -p "$out"
"$bin" sweep --suite scripts/suites/bf16.suite --out "$out/results.jsonl" --resume --counters sw
"$bin" table points "$out/results.jsonl" \
    columns=method,kind,n,heads,layers,dtype,time,peak_rss,model_bytes,rss_vs_fp32,time_vs_fp32,busy
"$bin" table points "$out/results.jsonl" where=err_vs_exact!=null columns=method,n,dtype,err_fp32,err_fro
