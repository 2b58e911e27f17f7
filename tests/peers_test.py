"""peers_test.py: attnbench's lsh and block_sparse against the Hugging Face implementations
they follow, with the same discrete structure: our LSH buckets passed to HF's
LSHSelfAttention, our random-block table injected into HF BigBird's block-sparse kernel. Then
the outputs must agree to float32 rounding, ours against theirs directly (against HF in
float64 where HF's own float32 path is off). Each comparison is also run once on a deliberately
wrong bucket or random block, which it must catch. Needs the peers' environment
(`scripts/install-deps.sh --peers`); `make test` runs it under that environment's python when
it exists and says it skipped otherwise."""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts", "peers", "py"))
import hf_block_sparse  # noqa: E402
import hf_lsh  # noqa: E402

BIN = os.environ.get("ATTNBENCH", "build/attnbench")


def forward(tmp, method, q, k, v, params, causal=False):
    for name, x in zip("qkv", (q, k, v)):
        np.save(f"{tmp}/{name}.npy", x)
    cmd = [BIN, "forward", "--method", method, "--q", f"{tmp}/q.npy", "--k", f"{tmp}/k.npy",
           "--v", f"{tmp}/v.npy", "--out", f"{tmp}/o.npy", "--structure", f"{tmp}/s.npy"]
    cmd += sum((["--param", f"{k}={v}"] for k, v in params.items()), [])
    if causal:
        cmd.append("--causal")
    subprocess.run(cmd, check=True)
    return np.load(f"{tmp}/o.npy"), np.load(f"{tmp}/s.npy")


def compare(what, ours, theirs32, theirs64=None, tol=2e-5, expect_fail=False):
    """Ours against theirs, element by element, to float32 rounding (relative to 1 + |theirs|).
    Where HF's own float32 result strays from its float64 one (HF merges LSH rounds through
    float32 logsumexps of -1e5-masked logits: a causal row whose only candidate is the query
    itself keeps about 1e-2 absolute precision), the row is compared with HF run in float64
    instead. Returns whether every element is within tol."""
    t32 = theirs32.detach().numpy() if hasattr(theirs32, "detach") else theirs32
    want = t32.astype(np.float64)
    note = ""
    if theirs64 is not None:
        t64 = theirs64.detach().numpy()
        off = np.max(np.abs(t32 - t64) / (1 + np.abs(t64)), axis=-1) > tol  # rows HF32 misses
        want = np.where(off[..., None], t64, want)
        note = f"; {int(off.sum())} of {off.size} rows against HF in float64"
    err = np.max(np.abs(ours - want) / (1 + np.abs(want))) if ours.shape == want.shape else np.inf
    ok = bool(err <= tol)
    if expect_fail:  # a test of the test: the comparison must see the difference
        print(f"{'FAIL' if ok else 'ok  '} {what}: {'not caught' if ok else 'caught'}, max rel err {err:.2e}")
        return not ok
    print(f"{'ok  ' if ok else 'FAIL'} {what}: max rel err {err:.2e}{note}")
    return ok


def wrong_bucket(buckets):
    """The same buckets with one query moved to a far bucket (half the buckets away, so it
    lands in other chunks): a structure that is not the one our forward used, so the
    comparison must fail (a test of the test)."""
    bad = buckets.copy()
    nb = int(buckets.max()) + 1
    bad[0, 0, 0, 5] = (bad[0, 0, 0, 5] + nb // 2) % nb
    return bad


def main():
    import torch
    torch.set_num_threads(2)
    rng = np.random.default_rng(20261130)
    good = True
    with tempfile.TemporaryDirectory() as tmp:
        lsh_cases = [({"chunk_len": 32, "n_hashes": 2}, 256, False),
                     ({"chunk_len": 16, "n_hashes": 3, "n_buckets": 256}, 192, True),
                     ({"chunk_len": 64, "n_hashes": 1}, 512, False)]
        for params, n, causal in lsh_cases:
            q, v = (rng.standard_normal((2, 2, n, 16)).astype(np.float32) for _ in range(2))
            out, buckets = forward(tmp, "lsh", q, q, v, params, causal)
            full = dict(params, n_buckets=params.get("n_buckets", "auto"))
            m = hf_lsh.lsh_module(2, 16, n, causal, {k: str(x) for k, x in full.items()})
            theirs = (hf_lsh.run(m, q, v, buckets), hf_lsh.run(m, q, v, buckets, "float64"))
            good &= compare(f"lsh n={n} causal={causal} {params} vs HF LSHSelfAttention",
                            out, *theirs)
            if params["n_hashes"] == 2:  # the comparison can fail: a wrong bucket must show
                bad = wrong_bucket(buckets)
                good &= compare(f"lsh n={n}, HF given one bucket moved (must differ)", out,
                                hf_lsh.run(m, q, v, bad), hf_lsh.run(m, q, v, bad, "float64"),
                                expect_fail=True)
        for block, nb, n_rand in [(16, 12, 2), (32, 8, 1), (16, 64, 3)]:
            n = block * nb
            q, k, v = (rng.standard_normal((1, 2, n, 16)).astype(np.float32) for _ in range(3))
            params = {"block": block, "n_rand": n_rand}
            out, table = forward(tmp, "block_sparse", q, k, v, params)
            m = hf_block_sparse.module(2, 16, n, {k: str(x) for k, x in params.items()})
            hf_block_sparse.inject(m, table)
            good &= compare(f"block_sparse n={n} block={block} n_rand={n_rand} vs HF BigBird",
                            out, hf_block_sparse.run(m, q, k, v))
            if n_rand == 2:  # a wrong random block must show too
                bad = table.copy()
                bad[0, 0, 3, 0] = (bad[0, 0, 3, 0] + 5) % nb
                hf_block_sparse.inject(m, bad)
                good &= compare(f"block_sparse n={n}, HF given one random block moved (must "
                                "differ)", out, hf_block_sparse.run(m, q, k, v), expect_fail=True)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
