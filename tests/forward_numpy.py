"""forward_numpy.py: `attnbench forward` against an independent NumPy computation (float64)
on random inputs: the exact methods, causal and not, 2-D and 4-D; and lsh, block_sparse and
etc, whose patterns are rebuilt here from the structure `forward --structure` writes (bucket
ids, random-block table, segment ids), so every output element is checked. Run by
`make test` under /usr/bin/python3 (Debian's python3-numpy). Exit status 1 on any mismatch."""
import os
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.environ.get("ATTNBENCH", "build/attnbench")


def reference(q, k, v, causal):
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if causal:
        n = s.shape[-1]
        s = np.where(np.tril(np.ones((n, n), dtype=bool)), s, -np.inf)
    m = s.max(-1, keepdims=True)
    p = np.exp(s - m)
    z = p.sum(-1, keepdims=True)
    return (p / z) @ v, (m + np.log(z))[..., 0]


def softmax_rows(logits, mult, v):
    """One softmax per row over candidates with multiplicities (0 = not a candidate)."""
    logits = np.where(mult > 0, logits, -np.inf)
    m = logits.max(-1, keepdims=True)
    p = mult * np.exp(logits - m)
    z = p.sum(-1, keepdims=True)
    return (p / z) @ v, (m + np.log(z))[..., 0]


def lsh_reference(q, v, buckets, chunk_len, causal):
    """HF/trax v2 LSH for one head from its bucket ids (n_hashes, n)."""
    n = buckets.shape[1]
    mult = lsh_multiplicity(buckets, chunk_len)
    q = q.astype(np.float64)
    k = q / np.sqrt((q * q).mean(-1, keepdims=True) + 1e-6) / np.sqrt(q.shape[-1])
    logits = q @ k.T
    idx = np.arange(n)
    if causal:
        logits = np.where(idx[None, :] > idx[:, None], -1e9, logits)
    logits[idx, idx] = -1e5
    return softmax_rows(logits, mult, v.astype(np.float64))


def block_sparse_reference(q, k, v, table, block):
    mult = block_sparse_mult(q.shape[0], block, table)
    logits = q.astype(np.float64) @ k.T.astype(np.float64) / np.sqrt(q.shape[-1])
    return softmax_rows(logits, mult, v.astype(np.float64))


def etc_reference(q, k, v, segments, radius, g, l2g, g2l):
    mult = etc_mult(q.shape[0], segments, radius, g, l2g, g2l)
    logits = q.astype(np.float64) @ k.T.astype(np.float64) / np.sqrt(q.shape[-1])
    return softmax_rows(logits, mult, v.astype(np.float64))


def run_structured(tmp, rng):
    """lsh, block_sparse and etc against references rebuilt from their own structure."""
    cases = [
        ("lsh", (2, 2, 256, 32), ["chunk_len=32", "n_hashes=2"], False),
        ("lsh", (1, 1, 192, 16), ["chunk_len=16", "n_hashes=3", "n_buckets=512"], True),
        ("block_sparse", (1, 2, 700, 32), ["block=32", "n_rand=2"], False),
        ("etc", (2, 1, 500, 16), ["radius=7", "globals=12"], False),
        ("etc", (1, 1, 400, 16), ["radius=5", "tokens_per_global=8", "l2g=segment", "g2l=segment"], False),
    ]
    bad = 0
    for method, shape, params, causal in cases:
        q, k, v = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
        for name, x in zip("qkv", (q, k, v)):
            np.save(f"{tmp}/{name}.npy", x)
        cmd = [BIN, "forward", "--method", method, "--q", f"{tmp}/q.npy", "--k", f"{tmp}/k.npy",
               "--v", f"{tmp}/v.npy", "--out", f"{tmp}/o.npy", "--lse", f"{tmp}/l.npy",
               "--structure", f"{tmp}/s.npy"]
        for p in params:
            cmd += ["--param", p]
        if causal:
            cmd.append("--causal")
        subprocess.run(cmd, check=True)
        out, lse, st = np.load(f"{tmp}/o.npy"), np.load(f"{tmp}/l.npy"), np.load(f"{tmp}/s.npy")
        kv = dict(p.split("=") for p in params)
        B, H, n, d = shape
        err = err_lse = 0.0
        for b in range(B):
            for h in range(H):
                if method == "lsh":
                    ref, ref_lse = lsh_reference(q[b, h], v[b, h], st[:, b, h], int(kv["chunk_len"]), causal)
                elif method == "block_sparse":
                    ref, ref_lse = block_sparse_reference(q[b, h], k[b, h], v[b, h], st[b, h], int(kv["block"]))
                else:
                    g = n - len(st)
                    ref, ref_lse = etc_reference(q[b, h], k[b, h], v[b, h], st, int(kv["radius"]), g,
                                                 kv.get("l2g", "all"), kv.get("g2l", "all"))
                err = max(err, np.max(np.abs(out[b, h] - ref) / (1 + np.abs(ref))))
                err_lse = max(err_lse, np.max(np.abs(lse[b, h] - ref_lse) / (1 + np.abs(ref_lse))))
        ok = err <= 1e-5 and err_lse <= 1e-5
        bad += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {method:12s} {str(shape):16s} causal={causal!s:5s} "
              f"{' '.join(params)}: max rel err {err:.2e} lse {err_lse:.2e}")
    return bad


def grads_reference(q, k, v, dout, mult, logits_fn):
    """Analytic gradients of softmax attention over a candidate multiset, float64.
    logits_fn(q, k) returns (logits, kk, back) where kk are the keys used and back maps the
    keys' gradient to (dq_extra, dk); replaced (masked) logits carry no gradient."""
    q, k, v, dout = (x.astype(np.float64) for x in (q, k, v, dout))
    logits, kk, masked, back = logits_fn(q, k)
    logits = np.where(mult > 0, logits, -np.inf)
    m = logits.max(-1, keepdims=True)
    p = mult * np.exp(logits - m)
    p /= p.sum(-1, keepdims=True)
    out = p @ v
    dv = p.T @ dout
    ds = p * (dout @ v.T - (dout * out).sum(-1, keepdims=True))
    ds = np.where(masked, 0.0, ds)
    dq = ds @ kk
    dq_extra, dk = back(ds.T @ q)
    return dq + dq_extra, dk, dv


def dense_logits(n, d):
    """logits_fn of grads_reference for scaled dot-product attention."""
    def logits_fn(qq, kk):
        s = 1 / np.sqrt(d)
        return qq @ kk.T * s, kk * s, np.zeros((n, n), bool), lambda gk: (0.0, gk * s)
    return logits_fn


def lsh_logits(n, d, causal):
    """logits_fn of grads_reference for LSH's shared QK: the keys are the normalized queries,
    the causal and self masks replace the logit (no gradient), k gets none."""
    idx = np.arange(n)
    def logits_fn(qq, kk_unused):
        rho = 1 / np.sqrt((qq * qq).mean(-1, keepdims=True) + 1e-6)
        khat = qq * rho / np.sqrt(d)
        lg = qq @ khat.T
        masked = (idx[None, :] > idx[:, None]) if causal else np.zeros((n, n), bool)
        lg = np.where(masked, -1e9, lg)
        masked = masked | (idx[None, :] == idx[:, None])
        lg[idx, idx] = -1e5
        def back(gk):
            dx = rho / np.sqrt(d) * (gk - qq * rho**2 * (qq * gk).sum(-1, keepdims=True) / d)
            return dx, np.zeros_like(qq)
        return lg, khat, masked, back
    return logits_fn


def run_backward_checks(tmp, rng):
    """attnbench backward against the NumPy gradients above."""
    bad = 0
    cases = [("full", (2, 2, 57, 16), [], False), ("full", (1, 1, 40, 8), [], True),
             ("full_stream", (1, 2, 130, 32), ["tile_q=32", "tile_k=48"], True),
             ("full_stream", (64, 16), [], False),
             ("block_sparse", (1, 1, 96, 8), ["block=8", "n_rand=2"], False),
             ("etc", (1, 1, 70, 8), ["radius=4", "globals=5"], False),
             ("lsh", (1, 1, 64, 8), ["chunk_len=8", "n_hashes=2"], True),
             ("lsh", (1, 1, 48, 8), ["chunk_len=8", "n_hashes=3", "n_buckets=4"], False)]
    for method, shape, params, causal in cases:
        q, k, v, dout = (rng.standard_normal(shape).astype(np.float32) for _ in range(4))
        for name, x in zip(["q", "k", "v", "dout"], (q, k, v, dout)):
            np.save(f"{tmp}/{name}.npy", x)
        common = ["--method", method, "--q", f"{tmp}/q.npy", "--k", f"{tmp}/k.npy",
                  "--v", f"{tmp}/v.npy"] + sum((["--param", p] for p in params), []) + (["--causal"] if causal else [])
        subprocess.run([BIN, "backward"] + common + ["--dout", f"{tmp}/dout.npy", "--dq", f"{tmp}/dq.npy",
                                                     "--dk", f"{tmp}/dk.npy", "--dv", f"{tmp}/dv.npy"], check=True)
        st = None
        if method in ("lsh", "block_sparse", "etc"):  # the same structure as the backward's
            subprocess.run([BIN, "forward"] + common + ["--out", f"{tmp}/o.npy", "--structure", f"{tmp}/s.npy"],
                           check=True)
            st = np.load(f"{tmp}/s.npy")
        got = [np.load(f"{tmp}/{x}.npy") for x in ("dq", "dk", "dv")]
        kv = dict(p.split("=") for p in params)
        q4, k4, v4, do4 = (x.reshape((1, 1) + x.shape) if x.ndim == 2 else x for x in (q, k, v, dout))
        B, H, n, d = q4.shape
        err = 0.0
        for b in range(B):
            for h in range(H):
                if method == "lsh":
                    mult = lsh_multiplicity(st[:, b, h], int(kv["chunk_len"]))
                    logits_fn = lsh_logits(n, d, causal)
                else:
                    if method == "block_sparse":
                        mult = block_sparse_mult(n, int(kv["block"]), st[b, h])
                    elif method == "etc":
                        mult = etc_mult(n, st, int(kv["radius"]), n - len(st), "all", "all")
                    else:
                        mult = np.tril(np.ones((n, n))) if causal else np.ones((n, n))
                    logits_fn = dense_logits(n, d)
                ref = grads_reference(q4[b, h], k4[b, h], v4[b, h], do4[b, h], mult, logits_fn)
                for g, r in zip(got, ref):
                    g4 = g.reshape(q4.shape)[b, h]
                    err = max(err, np.max(np.abs(g4 - r) / (1 + np.abs(r))))
        ok = err <= 1e-4
        bad += not ok
        print(f"{'ok  ' if ok else 'FAIL'} backward {method:12s} {str(shape):16s} causal={causal!s:5s} "
              f"{' '.join(params)}: max rel err {err:.2e}")
    return bad


def lsh_multiplicity(buckets, chunk_len):
    h, n = buckets.shape
    c = min(chunk_len, n)
    order = np.concatenate([np.argsort(buckets[r], kind="stable") for r in range(h)])
    chunks = order.reshape(h * n // c, c)
    mult = np.zeros((n, n))
    for a in range(len(chunks)):
        keys = chunks[a] if len(chunks) == 1 else np.concatenate([chunks[a - 1], chunks[a]])
        for i in chunks[a]:
            np.add.at(mult[i], keys, 1)
    return mult


def block_sparse_mult(n, block, table):
    nb = table.shape[0]
    blk = np.arange(n) // block
    mask = np.zeros((nb, nb), dtype=bool)
    mask[[0, -1], :] = mask[:, [0, -1]] = True
    for i in range(nb):
        mask[i, max(0, i - 1):i + 2] = True
        mask[i, [b for b in table[i] if b >= 0]] = True
    return mask[blk][:, blk].astype(np.float64)


def etc_mult(n, segments, radius, g, l2g, g2l):
    glob = np.arange(n) < g
    seg = np.concatenate([np.arange(g), segments])
    pos = np.arange(n)
    mult = np.zeros((n, n))
    mult[~glob[:, None] & ~glob[None, :] & (np.abs(pos[:, None] - pos[None, :]) <= radius)] = 1
    mult[glob[:, None] & glob[None, :]] = 1
    mult[glob[:, None] & ~glob[None, :] & ((g2l == "all") | (seg[:, None] == seg[None, :]))] = 1
    mult[~glob[:, None] & glob[None, :] & ((l2g == "all") | (seg[:, None] == seg[None, :]))] = 1
    return mult


def main():
    rng = np.random.default_rng(20261129)
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for shape in [(129, 64), (2, 3, 77, 16), (1, 1, 300, 128)]:
            q, k, v = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
            for name, x in zip("qkv", (q, k, v)):
                np.save(f"{tmp}/{name}.npy", x)
            for method in ["full", "full_stream"]:
                for causal in [False, True]:
                    cmd = [BIN, "forward", "--method", method, "--q", f"{tmp}/q.npy",
                           "--k", f"{tmp}/k.npy", "--v", f"{tmp}/v.npy",
                           "--out", f"{tmp}/o.npy", "--lse", f"{tmp}/l.npy"]
                    if causal:
                        cmd.append("--causal")
                    subprocess.run(cmd, check=True)
                    out, lse = np.load(f"{tmp}/o.npy"), np.load(f"{tmp}/l.npy")
                    ref, ref_lse = reference(q, k, v, causal)
                    err = np.max(np.abs(out - ref) / (1 + np.abs(ref)))
                    err_lse = np.max(np.abs(lse - ref_lse) / (1 + np.abs(ref_lse)))
                    ok = out.shape == shape and err <= 1e-5 and err_lse <= 1e-5
                    bad += not ok
                    print(f"{'ok  ' if ok else 'FAIL'} {method:12s} {str(shape):16s} "
                          f"causal={causal!s:5s} max rel err {err:.2e} lse {err_lse:.2e}")
        bad += run_structured(tmp, rng)
        bad += run_backward_checks(tmp, rng)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
