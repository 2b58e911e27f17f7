#!/usr/bin/python3
"""peer-torch.py: the textbook PyTorch attention, softmax(Q K^T / sqrt(d)) V, next to attnbench's
full and full_stream on the same inputs and thread counts, with OpenBLAS sgemm as the yardstick.

Run under Debian's Python (python3-torch, python3-numpy; `scripts/install-deps.sh --peer`):

    /usr/bin/python3 scripts/peer-torch.py --n 16384 --d 64 --threads 1,2

Each PyTorch measurement runs in a fresh interpreter, so its peak RSS (ru_maxrss) is its own;
the interpreter and torch themselves are part of that peak (reported separately as
"RSS before"). attnbench's numbers come from `attnbench run --json` (its own isolated child).
The inputs are the same: this file ports attnbench's counter-based generator (bench/inputs.c)
to NumPy and checks it against values the C generator produced.
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def mix64(z):
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def inputs_normal(count, seed, stream, sigma=1.0):
    """NumPy port of inputs_normal() in bench/inputs.c (same values, as float32)."""
    with np.errstate(over="ignore"):
        base = mix64(np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
                     ^ mix64(np.uint64(stream) + np.uint64(0x632BE59BD9B4E019)))
        pairs = np.arange((count + 1) // 2, dtype=np.uint64)
        u1 = ((mix64(base + np.uint64(2) * pairs) >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
        u2 = ((mix64(base + np.uint64(2) * pairs + np.uint64(1)) >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    r = sigma * np.sqrt(-2.0 * np.log(u1))
    t = 2.0 * math.pi * u2
    out = np.empty(2 * len(pairs), dtype=np.float64)
    out[0::2] = r * np.cos(t)
    out[1::2] = r * np.sin(t)
    return out[:count].astype(np.float32)


# The first values of inputs_normal(count, seed=1, stream=1), printed by the C generator
# (tests/test_harness.c checks the C side against the same numbers).
GOLDEN = [-0.89068007469177246, 0.019773859530687332, -0.82405012845993042, 1.5722371339797974]


def child(args):
    """One PyTorch measurement, in this fresh process; prints one JSON line."""
    import torch
    torch.set_num_threads(args.threads)
    n, d = args.n, args.d
    q, k, v = (torch.from_numpy(inputs_normal(n * d, args.seed, s).reshape(n, d)) for s in (1, 2, 3))
    scale = 1.0 / math.sqrt(d)

    def textbook():
        return torch.softmax(q @ k.T * scale, dim=-1) @ v

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with torch.no_grad():
        textbook()
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            textbook()
            times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"wall_s": times[len(times) // 2], "wall_s_min": times[0],
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "rss_before_bytes": rss_before, "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def mib(x):
    return f"{x / 2**20:,.1f} MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=16384)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "build", "attnbench"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.threads = int(args.threads)
        return child(args)

    got = inputs_normal(4, 1, 1)
    if not np.allclose(got, GOLDEN, rtol=1e-6, atol=0):
        sys.exit(f"peer-torch: the NumPy port of the input generator drifted from the C one: {got}")

    n, d = args.n, args.d
    flops = 4.0 * n * n * d
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        sg = run_json([args.bin, "sgemm", "--threads", str(threads), "--json"])
        sgemm = sg["gflops_median"]
        for method in ["full_stream", "full"]:
            rec = run_json([args.bin, "run", "--method", method, "--n", str(n), "--d", str(d),
                            "--threads", str(threads), "--reps", str(args.reps),
                            "--seed", str(args.seed), "--counters", "none", "--json"])
            if rec["status"] != "ok":
                rows.append((f"attnbench {method}", threads, None, None, None, None, None, rec["status"]))
                continue
            rows.append((f"attnbench {method}", threads, rec["wall_s"], flops / rec["wall_s"] / 1e9,
                         sgemm, rec["peak_rss_bytes"], rec["model_bytes"], ""))
        t = run_json([sys.executable, __file__, "--child", "--n", str(n), "--d", str(d),
                      "--threads", str(threads), "--reps", str(args.reps), "--seed", str(args.seed)])
        rows.append((f"PyTorch {t['torch']} textbook", threads, t["wall_s"], flops / t["wall_s"] / 1e9,
                     sgemm, t["peak_rss_bytes"], None, f"RSS before: {mib(t['rss_before_bytes'])}"))

    print(f"n = {n}, d = {d}, B = H = 1, {args.reps} timed repetitions (median), "
          f"GFLOP/s counting 4 n^2 d = {flops / 1e9:.1f} GFLOP\n")
    print("| implementation | threads | time (s) | GFLOP/s | % of sgemm | peak RSS | model bytes | note |")
    print("|---|---|---|---|---|---|---|---|")
    for name, threads, wall, gf, sgemm, rss, model, note in rows:
        if wall is None:
            print(f"| {name} | {threads} | | | | | | {note} |")
            continue
        model_s = f"{mib(model)} (RSS {100 * (rss - model) / model:+.1f}%)" if model else ""
        print(f"| {name} | {threads} | {wall:.3f} | {gf:.1f} | {100 * gf / sgemm:.0f}% of {sgemm:.0f} "
              f"| {mib(rss)} | {model_s} | {note} |")

    print()
    for threads in sorted({r[1] for r in rows}):
        by = {r[0].split()[1] if r[0].startswith("attnbench") else "torch": r for r in rows if r[1] == threads}
        fs, full, torch_row = by.get("full_stream"), by.get("full"), by.get("torch")
        if fs and torch_row and fs[2] and torch_row[2]:
            print(f"threads={threads}: full_stream is {torch_row[2] / fs[2]:.1f}x faster than PyTorch, "
                  f"peak RSS {fs[5] / torch_row[5]:.3f} of PyTorch's; "
                  f"full_stream reaches {100 * fs[3] / fs[4]:.0f}% of sgemm")
        if full and full[2]:
            print(f"threads={threads}: full peak RSS is {100 * (full[5] - full[6]) / full[6]:+.1f}% of its model bytes")


if __name__ == "__main__":
    main()
