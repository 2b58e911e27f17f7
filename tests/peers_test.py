"""peers_test.py: attnbench's lsh and block_sparse against the Hugging Face implementations
they follow, with the same discrete structure: our LSH buckets passed to HF's
LSHSelfAttention, our random-block table injected into HF BigBird's block-sparse kernel. Then
the outputs must agree to float32 rounding. Needs the peers' environment
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

sys.path.insert(0, HERE)
from forward_numpy import lsh_reference  # noqa: E402

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


def compare(what, ours, theirs, exact=None):
    """ours against theirs to float32 rounding; where their own result strays from the exact
    float64 one (HF merges LSH rounds through float32 logsumexps of -1e5-masked logits, which
    keep about 1e-2 absolute precision), by no more than it strays, while ours must then
    equal the exact one."""
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    slack = 0 if exact is None else np.abs(theirs - exact)
    err = np.max((np.abs(ours - theirs) - slack) / (1 + np.abs(theirs)))
    ok = ours.shape == theirs.shape and err <= 2e-5
    note = ""
    if exact is not None:
        ours_exact = np.max(np.abs(ours - exact) / (1 + np.abs(exact)))
        theirs_exact = np.max(np.abs(theirs - exact) / (1 + np.abs(exact)))
        ok = ok and ours_exact <= 1e-5
        note = f"; against float64: ours {ours_exact:.1e}, theirs {theirs_exact:.1e}"
    print(f"{'ok  ' if ok else 'FAIL'} {what}: max rel err {err:.2e}{note}")
    return ok


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
            exact = np.stack([np.stack([lsh_reference(q[b, h], v[b, h], buckets[:, b, h],
                                                      params["chunk_len"], causal)[0]
                                        for h in range(2)]) for b in range(2)])
            good &= compare(f"lsh n={n} causal={causal} {params} vs HF LSHSelfAttention",
                            out, hf_lsh.run(m, q, v, buckets), exact)
        for block, nb, n_rand in [(16, 12, 2), (32, 8, 1), (16, 64, 3)]:
            n = block * nb
            q, k, v = (rng.standard_normal((1, 2, n, 16)).astype(np.float32) for _ in range(3))
            params = {"block": block, "n_rand": n_rand}
            out, table = forward(tmp, "block_sparse", q, k, v, params)
            m = hf_block_sparse.module(2, 16, n, {k: str(x) for k, x in params.items()})
            hf_block_sparse.inject(m, table)
            good &= compare(f"block_sparse n={n} block={block} n_rand={n_rand} vs HF BigBird",
                            out, hf_block_sparse.run(m, q, k, v))
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
