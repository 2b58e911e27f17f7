"""torch_textbook: softmax(Q K^T / sqrt(d)) V in PyTorch, the n x n scores materialized, forward
only under no_grad: what attention costs written the obvious way."""
import math

import attnbench_peer as ab


def prepare(point, q, k, v):
    import torch
    context = ab.torch_setup(point)
    Q, K, V = (torch.from_numpy(x) for x in (q, k, v))
    mask = None
    if point.causal:
        mask = torch.full((point.n, point.n), float("-inf")).triu(1)

    def forward():
        with torch.no_grad():
            s = Q @ K.transpose(-1, -2) / math.sqrt(point.d)
            if mask is not None:
                s = s + mask
            return torch.softmax(s, dim=-1) @ V
    return forward, context


if __name__ == "__main__":
    ab.main("full", "softmax(QK^T/sqrt(d))V in PyTorch, materialized", prepare)
