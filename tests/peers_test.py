"""peers_test.py: attnbench's lsh and block_sparse against the Hugging Face implementations
they follow, with the same discrete structure: our LSH buckets passed to HF's
LSHSelfAttention, our random-block table injected into HF BigBird's block-sparse kernel. Then
the outputs must agree to float32 rounding, ours against theirs directly (against HF in
float64 where HF's own float32 path is off). The reversible training step (`attnbench
train-step`) against HF's ReformerModel on the same weights and buckets: loss, dx and every
weight gradient; the standard step over full_stream against the same network written in
PyTorch; full_stream in bf16 beside torch's SDPA in bf16. Each comparison is also run once on a deliberately wrong bucket, random
block or weight, which it must catch. Needs the peers' environment
(`scripts/install-deps.sh --peers`); `make test` runs it under that environment's python when
it exists and says it skipped otherwise."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts", "peers", "py"))
import hf_block_sparse  # noqa: E402
import hf_lsh  # noqa: E402
import hf_reformer_step  # noqa: E402

BIN = os.environ.get("ATTNBENCH", "build/attnbench")


def forward(tmp, method, q, k, v, params, causal=False, dtype="fp32"):
    for name, x in zip("qkv", (q, k, v)):
        np.save(f"{tmp}/{name}.npy", x)
    cmd = [BIN, "forward", "--method", method, "--q", f"{tmp}/q.npy", "--k", f"{tmp}/k.npy",
           "--v", f"{tmp}/v.npy", "--out", f"{tmp}/o.npy", "--dtype", dtype]
    has_structure = method not in ("full", "full_stream")
    if has_structure:
        cmd += ["--structure", f"{tmp}/s.npy"]
    cmd += sum((["--param", f"{k}={v}"] for k, v in params.items()), [])
    if causal:
        cmd.append("--causal")
    subprocess.run(cmd, check=True)
    return np.load(f"{tmp}/o.npy"), np.load(f"{tmp}/s.npy") if has_structure else None


def bf16_values(x):
    """x rounded to bfloat16 (nearest even), as float32."""
    import torch
    return torch.from_numpy(x).to(torch.bfloat16).float().numpy()


def sdpa_bf16(tmp, rng):
    """Our full_stream in bf16 beside torch's SDPA in bf16, on the same bf16 inputs, both against
    SDPA in float64: each should be one bf16 rounding from it (2^-9 relative, about 2e-3);
    ours is held to 4e-3 of 1 + |exact| per element, and torch's error is printed beside it."""
    import torch
    import torch.nn.functional as F
    good = True
    for causal in (False, True):
        q, k, v = (bf16_values(rng.standard_normal((2, 2, 300, 32)).astype(np.float32))
                   for _ in range(3))
        ours, _ = forward(tmp, "full_stream", q, k, v, {}, causal, dtype="bf16")
        t = [torch.from_numpy(x) for x in (q, k, v)]
        exact = F.scaled_dot_product_attention(*(x.double() for x in t), is_causal=causal)
        theirs = F.scaled_dot_product_attention(*(x.to(torch.bfloat16) for x in t),
                                                is_causal=causal).float().numpy()
        e = exact.numpy()
        err_t = np.max(np.abs(theirs - e) / (1 + np.abs(e)))
        good &= compare(f"full_stream bf16 causal={causal} vs SDPA float64 (torch's own bf16: "
                        f"{err_t:.2e})", ours, exact, tol=4e-3)
        good &= compare(f"full_stream bf16 causal={causal}, v changed (must differ)", ours,
                        F.scaled_dot_product_attention(t[0].double(), t[1].double(),
                                                       t[2].double() * 1.02, is_causal=causal),
                        tol=4e-3, expect_fail=True)
    return good


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


def train_step(tmp, layers, heads, d, n, d_ff, params, causal, x):
    """`attnbench train-step` of a reversible stack over lsh with its own weights and target.
    Returns the loss, dx, the gradients and weights as {(layer, name): array}, the target and
    each layer's buckets."""
    np.save(f"{tmp}/x.npy", x)
    out = f"{tmp}/step"
    subprocess.run(["rm", "-rf", out], check=True)
    cmd = [BIN, "train-step", "--stack", "reversible", "--method", "lsh", "--layers", str(layers),
           "--heads", str(heads), "--d-ff", str(d_ff), "--x", f"{tmp}/x.npy", "--out", out]
    cmd += sum((["--param", f"{k}={v}"] for k, v in params.items()), [])
    if causal:
        cmd.append("--causal")
    subprocess.run(cmd, check=True)
    with open(f"{out}/step.json") as f:
        loss = json.load(f)["loss"]
    keys = [(l, name) for l in range(layers) for name in hf_reformer_step.NAMES]
    grads = {k: np.load(f"{out}/grads/layer{k[0]}.{k[1]}.npy") for k in keys}
    weights = {k: np.load(f"{out}/weights/layer{k[0]}.{k[1]}.npy") for k in keys}
    buckets = [np.load(f"{out}/structure/layer{l}.npy") for l in range(layers)]
    return loss, np.load(f"{out}/dx.npy"), grads, weights, np.load(f"{out}/target.npy"), buckets


def compare_step(what, ours, theirs, tol=1e-5, expect_fail=False):
    """ours and theirs: (loss, dx, {(layer, name): gradient}). Each array is compared relative
    to its own largest element (a gradient sums over every row: its small elements are
    differences of large terms), the loss relative to itself. Returns whether all are within
    tol."""
    errs = {"loss": abs(ours[0] - theirs[0]) / abs(theirs[0]),
            "dx": np.max(np.abs(ours[1] - theirs[1])) / np.max(np.abs(theirs[1]))}
    for k, g in theirs[2].items():
        errs[f"layer{k[0]}.{k[1]}"] = np.max(np.abs(ours[2][k] - g)) / np.max(np.abs(g))
    worst = max(errs, key=errs.get)
    ok = errs[worst] <= tol
    detail = f"worst {worst} {errs[worst]:.2e}, loss {errs['loss']:.2e}, dx {errs['dx']:.2e}, {len(errs) - 2} gradients"
    if expect_fail:
        print(f"{'FAIL' if ok else 'ok  '} {what}: {'not caught' if ok else 'caught'}, {detail}")
        return not ok
    print(f"{'ok  ' if ok else 'FAIL'} {what}: {detail}")
    return ok


def reformer_steps(tmp, rng):
    """The reversible step against HF's ReformerModel, on L = 1 and 3, causal and not, 1 and 2
    hash rounds, two heads, a batch of two. The oracle is HF in float64: in float32 HF merges
    the rounds of a causal row whose only key is the token itself through logsumexps of -1e5
    logits, which keeps about 1e-3 of precision (printed, not tested)."""
    good = True
    heads, d, n, d_ff = 2, 16, 128, 64
    for layers, causal, n_hashes in [(1, False, 1), (1, True, 2), (3, False, 2), (3, True, 1),
                                     (3, True, 2)]:
        params = {"chunk_len": 16, "n_hashes": n_hashes}
        x = rng.standard_normal((2, n, heads * d)).astype(np.float32)
        loss, dx, grads, weights, target, buckets = train_step(tmp, layers, heads, d, n, d_ff,
                                                               params, causal, x)
        ours = (loss, dx, grads)
        m = hf_reformer_step.model(layers, heads * d, heads, d_ff, n, params, causal)
        hf_reformer_step.inject(m, buckets)
        hf_reformer_step.load(m, weights, "float64")
        what = f"reversible step L={layers} causal={causal} n_hashes={n_hashes} vs HF ReformerModel"
        theirs = hf_reformer_step.step(m, x, target, "float64")
        good &= compare_step(what, ours, theirs)
        if causal and n_hashes == 2:
            hf_reformer_step.load(m, weights, "float32")
            f32 = hf_reformer_step.step(m, x, target, "float32")
            off = max(np.max(np.abs(a - b)) / np.max(np.abs(b))
                      for a, b in zip([f32[1], *f32[2].values()], [theirs[1], *theirs[2].values()]))
            print(f"     (HF's own float32 step differs from its float64 one by up to {off:.1e})")
        if layers == 3 and causal and n_hashes == 2:  # the comparison can fail: show it once
            bad = dict(weights)
            bad[(1, "w1")] = bad[(1, "w1")].copy()
            bad[(1, "w1")][3, 5] += 1e-3
            hf_reformer_step.load(m, bad, "float64")
            good &= compare_step("reversible step, HF given one weight off by 1e-3 (must "
                                 "differ)", ours, hf_reformer_step.step(m, x, target, "float64"),
                                 expect_fail=True)
            hf_reformer_step.load(m, weights, "float64")
            hf_reformer_step.inject(m, [wrong_bucket(buckets[0])] + buckets[1:])
            good &= compare_step("reversible step, HF given one bucket moved (must differ)",
                                 ours, hf_reformer_step.step(m, x, target, "float64"),
                                 expect_fail=True)
    return good


def torch_standard_step(weights, layers, heads, x, target, causal):
    """The standard stack over exact attention written in PyTorch (float64) from torch's own
    modules' functions: x = x + F(x), x = x + G(x) with F = LayerNorm, Q, K, V projections,
    scaled_dot_product_attention, output projection; G = LayerNorm, Linear, ReLU, Linear.
    Returns the loss, dx and the gradients in attnbench's layout."""
    import torch
    import torch.nn.functional as nf
    w = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in weights.items()}
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    b, n, dm = x.shape
    h = xt
    for l in range(layers):
        p = {name: w[(l, name)] for (ll, name) in w if ll == l}
        xn = nf.layer_norm(h, (dm,), p["ln1_g"], p["ln1_b"], 1e-5)
        q, k, v = (nf.linear(xn, p[m].T).reshape(b, n, heads, dm // heads).transpose(1, 2)
                   for m in ("wq", "wk", "wv"))
        a = nf.scaled_dot_product_attention(q, k, v, is_causal=causal)
        h = h + nf.linear(a.transpose(1, 2).reshape(b, n, dm), p["wo"].T)
        xn = nf.layer_norm(h, (dm,), p["ln2_g"], p["ln2_b"], 1e-5)
        h = h + nf.linear(torch.relu(nf.linear(xn, p["w1"].T, p["b1"])), p["w2"].T, p["b2"])
    loss = 0.5 * torch.mean((h - torch.tensor(target, dtype=torch.float64)) ** 2)
    loss.backward()
    return loss.item(), xt.grad.numpy(), {k: t.grad.numpy() for k, t in w.items()}


def standard_steps(tmp, rng):
    """`train-step --stack standard` over full_stream against the same network in PyTorch."""
    good = True
    names = ["ln1_g", "ln1_b", "wq", "wk", "wv", "wo", "ln2_g", "ln2_b", "w1", "b1", "w2", "b2"]
    for layers, causal in [(1, False), (3, True)]:
        x = rng.standard_normal((2, 96, 32)).astype(np.float32)
        np.save(f"{tmp}/x.npy", x)
        out = f"{tmp}/std"
        subprocess.run(["rm", "-rf", out], check=True)
        cmd = [BIN, "train-step", "--stack", "standard", "--method", "full_stream", "--layers",
               str(layers), "--heads", "4", "--d-ff", "48", "--x", f"{tmp}/x.npy", "--out", out]
        subprocess.run(cmd + (["--causal"] if causal else []), check=True)
        with open(f"{out}/step.json") as f:
            loss = json.load(f)["loss"]
        keys = [(l, name) for l in range(layers) for name in names]
        weights = {k: np.load(f"{out}/weights/layer{k[0]}.{k[1]}.npy") for k in keys}
        grads = {k: np.load(f"{out}/grads/layer{k[0]}.{k[1]}.npy") for k in keys}
        theirs = torch_standard_step(weights, layers, 4, x, np.load(f"{out}/target.npy"), causal)
        good &= compare_step(f"standard step L={layers} causal={causal} vs the same network in "
                             "PyTorch", (loss, np.load(f"{out}/dx.npy"), grads), theirs)
    return good


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
        good &= reformer_steps(tmp, rng)
        good &= standard_steps(tmp, rng)
        good &= sdpa_bf16(tmp, rng)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
