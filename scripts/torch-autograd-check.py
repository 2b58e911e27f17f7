#!/usr/bin/python3
"""torch-autograd-check.py: `attnbench backward` for full and full_stream against PyTorch
autograd (float64) of softmax(QK^T/sqrt(d)) V on random inputs, causal and not.

    /usr/bin/python3 scripts/torch-autograd-check.py      (needs python3-torch: install-deps.sh --peer)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

BIN = os.environ.get("ATTNBENCH", os.path.join(os.path.dirname(__file__), "..", "build", "attnbench"))


def torch_grads(q, k, v, dout, causal):
    q, k, v = (torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in (q, k, v))
    s = q @ k.transpose(-1, -2) / np.sqrt(q.shape[-1])
    if causal:
        n = s.shape[-1]
        s = s.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), float("-inf"))
    out = torch.softmax(s, -1) @ v
    out.backward(torch.tensor(dout, dtype=torch.float64))
    return [x.grad.numpy() for x in (q, k, v)]


def main():
    rng = np.random.default_rng(7)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for shape in [(2, 4, 333, 64), (1, 1, 1000, 32), (257, 128)]:
            for causal in (False, True):
                q, k, v, dout = (rng.standard_normal(shape).astype(np.float32) for _ in range(4))
                for name, x in zip(["q", "k", "v", "dout"], (q, k, v, dout)):
                    np.save(f"{tmp}/{name}.npy", x)
                ref = torch_grads(q, k, v, dout, causal)
                for method in ("full", "full_stream"):
                    cmd = [BIN, "backward", "--method", method] + sum(
                        ([f"--{n}", f"{tmp}/{n}.npy"] for n in ["q", "k", "v", "dout", "dq", "dk", "dv"]), [])
                    subprocess.run(cmd + (["--causal"] if causal else []), check=True)
                    err = max(np.max(np.abs(np.load(f"{tmp}/{g}.npy") - r) / (1 + np.abs(r)))
                              for g, r in zip(["dq", "dk", "dv"], ref))
                    worst = max(worst, err)
                    print(f"{method:12s} {str(shape):18s} causal={causal!s:5s} "
                          f"max rel err vs torch autograd (float64): {err:.2e}")
    print(f"worst: {worst:.2e} ({'ok' if worst < 1e-4 else 'MISMATCH'})")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
