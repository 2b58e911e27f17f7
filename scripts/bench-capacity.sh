#!/usr/bin/env bash
# bench-capacity.sh: how well `attnbench capacity` predicts the longest sequence that fits.
# Each question calibrates on this machine with a small sweep of its own, predicts n_max, runs
# that point with the budget as its memory limit, and runs the next length, which must be
# refused as over the budget:
#   - one forward of every method in 512 MiB;
#   - a training step of a 2-layer standard stack over every method, and of the reversible
#     stack over lsh, in 1 GiB;
#   - the Reformer's step (12 reversible layers over lsh, 4 heads of 64) in 4 GiB.
# Writes results/capacity/results.jsonl (calibration and verified records; the verified ones
# carry `capacity`: what was predicted) and its report; docs/benchmarks.md's table of
# prediction errors is generated from it (`make docs`).
#   bash scripts/bench-capacity.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/attnbench
out=results/capacity
make -s
mkdir -p "$out"
rm -f "$out/results.jsonl"
"$bin" capacity --mem 512MiB --methods full,full_stream,lsh,block_sparse,etc --verify --out "$out/results.jsonl"
"$bin" capacity --mem 1GiB --train --layers 2 --methods full,full_stream,lsh,block_sparse,etc,reversible --verify --out "$out/results.jsonl"
"$bin" capacity --mem 4GiB --methods reversible --layers 12 --heads 4 --verify --out "$out/results.jsonl"
"$bin" report "$out/results.jsonl" --out "$out"
"$bin" table capacity-verified "$out/results.jsonl"
