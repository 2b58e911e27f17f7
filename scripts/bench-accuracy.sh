#!/usr/bin/env bash
# bench-accuracy.sh: an approximation's memory means little without its error. Runs lsh over
# n_hashes, block_sparse over n_rand and etc over radius on clustered inputs (q and k near n/32
# centres) with --accuracy, which compares each output with the exact attention it
# approximates (full shared-QK attention for lsh, standard attention otherwise). Writes
# results/accuracy/ and prints the table README.md shows, with the scores each method's kernels
# counted per token and, for lsh, the share of its candidates that repeat a (query, key) pair.
#   bash scripts/bench-accuracy.sh [N]      (default N = 8192)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-8192}
bin=build/attnbench
out=results/accuracy
make -s
mkdir -p "$out"
rm -f "$out/results.jsonl"
"$bin" sweep --methods lsh,block_sparse,etc --n "$n" --reps 3 --inputs clustered --accuracy \
    --param lsh.n_hashes=1,2,4,8 --param block_sparse.n_rand=0,1,3,8 \
    --param etc.radius=8,32,84,256 --out "$out/results.jsonl"
"$bin" report "$out/results.jsonl" --out "$out"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(f"{sys.argv[1]}/results.jsonl")]
knob = {"lsh": "n_hashes", "block_sparse": "n_rand", "etc": "radius"}
print(f"n = {recs[0]['n']}, d = {recs[0]['d']}, clustered inputs, both cores\n")
print("| method | parameter | mean rel. error | max rel. error | scores per token | duplicate candidates | time (s) | peak RSS | heap peak |")
print("|---|---|---|---|---|---|---|---|---|")
for r in recs:
    e = r["err_vs_exact"] or {}
    w = r["work"] or {}
    k = knob[r["method"]]
    dup = f"{100 * w['duplicates_share']:.1f}%" if w.get("duplicates") is not None else ""
    print(f"| {r['method']} | {k}={r['params'][k]} | {e.get('mean_rel', float('nan')):.3f} | "
          f"{e.get('max_rel', float('nan')):.3f} | {w.get('scores_per_token', float('nan')):.0f} | "
          f"{dup} | {r['wall_s']:.4f} | "
          f"{r['peak_rss_bytes'] / 2**20:.1f} MiB | {r['heap_peak_bytes'] / 2**20:.2f} MiB |")
print(f"\nexact references: " + "; ".join(sorted({r['method'] + ': ' + (r['err_vs_exact'] or {}).get('reference', '?').split(' ')[0] for r in recs})))
PY
