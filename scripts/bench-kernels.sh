#!/usr/bin/env bash
# bench-kernels.sh: how close the kernels come to the machine's sgemm, measured in one run
# with the same OpenBLAS kernels and threads: full_stream at n = 16384 on one and two threads,
# lsh, block_sparse and etc at 2^20 on two, and every streaming method's forward + backward
# (run --backward) with B = H = 1 on one thread and on two. Writes results/kernels/ (records
# and sgemm yardsticks) and prints the table README.md shows.
#   bash scripts/bench-kernels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/attnbench
out=results/kernels
make -s
mkdir -p "$out"
rm -f "$out/results.jsonl"
for t in 1 2; do "$bin" sgemm --threads $t --json >"$out/sgemm-$t.json"; done
common=(--reps 3 --counters sw --out "$out/results.jsonl" --resume)
"$bin" sweep --methods full_stream --n 16K --threads 1 "${common[@]}"
"$bin" sweep --methods full_stream --n 16K --threads 2 "${common[@]}"
"$bin" sweep --methods lsh,block_sparse,etc --n 1M --threads 2 "${common[@]}"
for t in 1 2; do
    "$bin" sweep --methods full_stream --n 16K --backward --threads $t "${common[@]}"
    "$bin" sweep --methods lsh,block_sparse,etc --n 256K --backward --threads $t "${common[@]}"
done
/usr/bin/python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
sg = {t: json.load(open(f"{d}/sgemm-{t}.json")) for t in (1, 2)}
recs = [json.loads(l) for l in open(f"{d}/results.jsonl")]
ctx = recs[0]["context"]
print(f"{ctx['cpu_model']}, OpenBLAS {ctx['openblas_core']} kernels; sgemm "
      f"{sg[1]['gflops_median']:.0f} GFLOP/s on 1 thread, {sg[2]['gflops_median']:.0f} on 2\n")
print("| what | n | threads | time (s) | GFLOP/s | % of sgemm (same threads) |")
print("|---|---|---|---|---|---|")
for r in recs:
    what = r["method"] + (" forward + backward" if r.get("backward") else "")
    pct = 100 * r["gflops"] / sg[r["threads"]]["gflops_median"]
    print(f"| {what} | {r['n']} | {r['threads']} | {r['wall_s']:.3f} | {r['gflops']:.1f} | {pct:.0f}% |")
print("\n| forward + backward, B = H = 1 | n | 1 thread (s) | 2 threads (s) | speed-up |")
print("|---|---|---|---|---|")
for m in ("full_stream", "lsh", "block_sparse", "etc"):
    t = {r["threads"]: r["wall_s"] for r in recs if r["method"] == m and r.get("backward")}
    n = next(r["n"] for r in recs if r["method"] == m and r.get("backward"))
    print(f"| {m} | {n} | {t[1]:.3f} | {t[2]:.3f} | {t[1] / t[2]:.2f}x |")
PY
