#!/usr/bin/env bash
# bench-scale.sh: the subquadratic methods at 2^16..2^20 tokens (d = 64, B = H = 1, both cores,
# default parameters) next to the machine's sgemm yardstick. Writes results/scale/ (records,
# report with the fitted exponents) and prints the 2^20 table that README.md shows.
#   bash scripts/bench-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/attnbench
out=results/scale
make -s
mkdir -p "$out"
rm -f "$out/results.jsonl"
"$bin" sgemm --threads 2 --json >"$out/sgemm.json"
"$bin" sweep --methods lsh,block_sparse,etc --n 64K:1M --reps 3 --out "$out/results.jsonl"
"$bin" report "$out/results.jsonl" --out "$out" --fit-from 65536
/usr/bin/python3 - "$out" <<'PY'
import json, re, sys
d = sys.argv[1]
sgemm = json.load(open(f"{d}/sgemm.json"))["gflops_median"]
recs = [json.loads(l) for l in open(f"{d}/results.jsonl")]
md = open(f"{d}/report.md").read()
print(f"sgemm yardstick, 2 threads: {sgemm:.0f} GFLOP/s\n")
print("| method | n | status | time (s) | GFLOP/s | % of sgemm | peak RSS | bound 1.25 qkvo + 64 MiB | memory exponent 2^16..2^20 |")
print("|---|---|---|---|---|---|---|---|---|")
for r in recs:
    if r["n"] != 2**20:
        continue
    qkvo = 4 * r["n"] * r["d"] * 4 * r["batch"] * r["heads"]
    bound = 1.25 * qkvo + 64 * 2**20
    m = re.search(r"^\| %s \| \d+ \| [^|]+ \| ([^|]+) \|" % re.escape(r["method"]), md, re.M)
    print(f"| {r['method']} | 2^20 | {r['status']} | {r['wall_s']:.3f} | {r['gflops']:.1f} | "
          f"{100 * r['gflops'] / sgemm:.0f}% | {r['peak_rss_bytes'] / 2**20:.0f} MiB | "
          f"{bound / 2**20:.0f} MiB | {m.group(1).strip() if m else '?'} |")
PY
