#!/usr/bin/env bash
# bench-accuracy.sh: an approximation's memory means little without its error. Runs lsh over
# n_hashes, block_sparse over n_rand and etc over radius, on random inputs and on clustered ones
# (q and k near n/32 centres), with --accuracy: each output against the exact attention it
# approximates (full shared-QK attention for lsh, standard attention otherwise), as the relative
# error of the whole output (rel_fro) and the share of the exact softmax mass that fell on the
# keys the method scored (mass_recall). Writes results/accuracy/ with its report and prints the
# table docs/benchmarks.md holds (`make docs` puts it there).
#   bash scripts/bench-accuracy.sh [N]      (default N = 8192)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-8192}
bin=build/attnbench
out=results/accuracy
make -s
mkdir -p "$out"
rm -f "$out/results.jsonl"
for inputs in random clustered; do
    "$bin" sweep --methods lsh,block_sparse,etc --n "$n" --reps 3 --inputs "$inputs" --accuracy \
        --param lsh.n_hashes=1,2,4,8 --param block_sparse.n_rand=0,1,3,8 \
        --param etc.radius=8,32,84,256 --out "$out/results.jsonl" --resume
done
"$bin" report "$out/results.jsonl" --out "$out"
"$bin" table machine "$out/results.jsonl"
"$bin" table points "$out/results.jsonl" \
    columns=method,inputs,varies,err_fro,recall,err_mean,scores_per_token,duplicates,time,peak_rss
