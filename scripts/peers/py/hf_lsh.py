"""hf_lsh.py: Hugging Face's LSHSelfAttention set up as attnbench's lsh (shared QK, chunk_len,
n_hashes, n_buckets factorized as trax does, one chunk back, none ahead, no dropout, causal as
a decoder), fed attnbench's q and v directly: its two projections are replaced by modules that
return them, so what runs is the attention alone (hashing, sort, gathers, chunked softmax,
rounds merged). Shared by the hf_reformer_lsh peer and the equality test."""
import math

import numpy as np


def n_buckets(point_params, n):
    """attnbench's bucket count: auto = 2 n / chunk_len, over 128 factorized [f1, f2]."""
    c = min(int(point_params["chunk_len"]), n)
    nb = point_params.get("n_buckets", "auto")
    nb = 2 * max(n // c, 1) if nb == "auto" else int(nb)
    if nb <= 128:
        return nb
    f1 = 1 << math.ceil(math.log2(math.sqrt(nb)))
    return [f1, 2 * (nb // (2 * f1))]


def lsh_module(heads, d, n, causal, params):
    """An LSHSelfAttention of heads x d whose query_key and value return given tensors."""
    import torch
    from transformers import ReformerConfig
    from transformers.models.reformer.modeling_reformer import LSHSelfAttention

    chunk = min(int(params["chunk_len"]), n)
    config = ReformerConfig(
        hidden_size=heads * d, num_attention_heads=heads, attention_head_size=d,
        attn_layers=["lsh"], lsh_attn_chunk_length=chunk, num_hashes=int(params["n_hashes"]),
        num_buckets=n_buckets(params, n), lsh_num_chunks_before=1, lsh_num_chunks_after=0,
        lsh_attention_probs_dropout_prob=0.0, is_decoder=causal, max_position_embeddings=n)
    module = LSHSelfAttention(config).eval()

    class Given(torch.nn.Module):
        """Stands in for a projection: returns the tensor it holds, whatever its input."""

        def __init__(self):
            super().__init__()
            self.value = None

        def forward(self, hidden_states):
            return self.value

    module.query_key, module.value = Given(), Given()
    return module


def tokens(x):
    """(B, H, n, d) -> (B, n, H d), as the projections would have produced it."""
    b, h, n, d = x.shape
    return np.ascontiguousarray(x.transpose(0, 2, 1, 3).reshape(b, n, h * d))


def run(module, q, v, buckets=None, dtype="float32"):
    """The attention of (B, H, n, d) q (shared QK) and v; buckets (n_hashes, B, H, n) as
    `attnbench forward --structure` writes them, or None to let HF hash. dtype float64 runs HF's
    module in double precision (its masks as in float32). Returns (B, H, n, d)."""
    import torch
    b, h, n, d = q.shape
    module.to(getattr(torch, dtype))
    module.query_key.value = torch.from_numpy(tokens(q).astype(dtype))
    module.value.value = torch.from_numpy(tokens(v).astype(dtype))
    hf_buckets = None
    if buckets is not None:  # HF's layout: (B, H, rounds x n), round r offset by r x n_buckets
        nb = module.num_buckets if isinstance(module.num_buckets, int) else int(np.prod(module.num_buckets))
        rounds = buckets.shape[0]
        offset = (np.arange(rounds) * nb)[None, None, :, None]
        hf_buckets = torch.from_numpy((buckets.transpose(1, 2, 0, 3) + offset).reshape(b, h, rounds * n).astype(np.int64))
    if getattr(module, "_shape", None) != (b, n, h * d, dtype):  # only its shape is read
        module._shape = (b, n, h * d, dtype)
        module._hidden = torch.zeros(b, n, h * d, dtype=getattr(torch, dtype))
    with torch.no_grad():
        out = module(module._hidden, buckets=hf_buckets).hidden_states
    return out.reshape(b, n, h, d).permute(0, 2, 1, 3)
