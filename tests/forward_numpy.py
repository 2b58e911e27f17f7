"""forward_numpy.py: `attnbench forward` against an independent NumPy computation (float64)
on random inputs, for every exact method, causal and not, 2-D and 4-D. Run by `make test`
under /usr/bin/python3 (Debian's python3-numpy). Exit status 1 on any mismatch."""
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
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
