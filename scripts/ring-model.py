#!/usr/bin/python3
"""ring-model.py: what ring attention would take on a real cluster, from a rate measured here.

    /usr/bin/python3 scripts/ring-model.py results/ring/results.jsonl [--rate-from ring|full_stream]

The model (Ring Attention, Liu et al. 2023, section 3; fp32, one head of width d, non-causal):
each of P nodes holds c = n / P rows. A step computes its c queries against one block of c keys,
4 d c^2 FLOPs at the node's rate R, while the next block (K and V: 2 c d floats, 8 c d bytes)
crosses a link of bandwidth W. Compute hides the transfer when 4 d c^2 / R >= 8 c d / W, that is
when c >= 2 R / W rows (d cancels: a block's work grows as c^2, its bytes as c). Then the P steps
take P * 4 d c^2 / R = 4 d n^2 / (P R): exact attention's work split P ways. Otherwise the link
sets the pace: P * (8 c d / W + latency). Causal with zigzag rows (balanced): half the work.

R is measured, not assumed: the GFLOP/s of a non-causal point in the results file (by default the
best ring point over ranks on this machine, per node = per machine here). Link bandwidths are
nominal line rates; a real link delivers less, so the smallest hiding block is a lower bound.
"""
import json
import sys

LINKS = [("10 GbE", 10e9 / 8), ("25 GbE", 25e9 / 8), ("100 GbE", 100e9 / 8),
         ("InfiniBand HDR (200 Gb/s)", 200e9 / 8)]
LATENCY_S = 5e-6  # per message, a typical MPI latency over Ethernet (InfiniBand: ~1-2 us)


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    source = "ring"
    if "--rate-from" in args:
        i = args.index("--rate-from")
        source = args[i + 1]
        del args[i:i + 2]
    recs = [json.loads(line) for path in args for line in open(path) if line.strip()]
    ok = [r for r in recs if r["status"] == "ok" and not r["causal"] and r["method"] == source
          and r.get("gflops")]
    if not ok:
        sys.exit(f"ring-model: no non-causal ok {source} point in {' '.join(args)}")
    best = max(ok, key=lambda r: r["gflops"])
    R = best["gflops"] * 1e9
    d = best["d"]
    ranks = (best.get("ranks") or {}).get("count", 1)
    ctx = best["context"]
    print(f"Measured rate R = {best['gflops']:.1f} GFLOP/s: {source} at n = {best['n']}, d = {d}, "
          f"{ranks} rank(s) x {best['threads']} thread(s) on {ctx.get('cpu_model', '?')} "
          f"({ctx.get('cores', '?')} cores), point {best['point_id']}.\n")
    print("| link | bandwidth | smallest block hiding the transfer (rows, 2R/W) | its K+V bytes |")
    print("|---|---|---|---|")
    for name, W in LINKS:
        c = 2 * R / W
        print(f"| {name} | {W / 1e9:.2f} GB/s | {c:,.0f} | {8 * c * d / 1024:,.0f} KiB |")
    print()
    print(f"Predicted time of one exact forward (non-causal, d = {d}, one head; per-node memory: "
          "q, k, v, out of c rows plus the two blocks in flight, 32 c d bytes):\n")
    nodes = [8, 32, 256]
    print("| n | " + " | ".join(f"{p} nodes" for p in nodes) + " |")
    print("|---|" + "---|" * len(nodes))
    hidden = True
    for e in (20, 22, 24):
        n = 2 ** e
        cells = []
        for P in nodes:
            c = n / P
            compute = 4 * d * n * n / (P * R)
            link = P * (8 * c * d / LINKS[0][1] + LATENCY_S)  # the slowest link listed
            t = max(compute, link)
            mem = 32 * c * d / 2 ** 30
            bound = "" if compute >= link else " (10 GbE-bound)"
            hidden = hidden and compute >= link
            cells.append(f"{fmt_time(t)}{bound}, {mem:.2g} GiB/node")
        print(f"| 2^{e} | " + " | ".join(cells) + " |")
    print("\n" + ("Even over 10 GbE every block of these sizes hides its transfer (c = n / P is "
                  "above 2R/W), so each time is the work split P ways. " if hidden else
                  "Where marked, the link and not the compute sets the time. ") +
          "The model leaves out the first block's transfer, stragglers and the softmax merge "
          "(O(c d) a step).")


def fmt_time(s):
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


if __name__ == "__main__":
    main()
