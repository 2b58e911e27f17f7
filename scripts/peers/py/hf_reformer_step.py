"""hf_reformer_step.py: one training step of Hugging Face's ReformerModel set up as attnbench's
reversible stack over lsh, on attnbench's weights and LSH buckets, so `attnbench train-step`
can be compared with it gradient by gradient (tests/peers_test.py).

Inside a layer the two are the same architecture (LayerNorm, shared-QK and V projections
without bias, LSH attention, output projection without bias; LayerNorm, Linear + ReLU, Linear;
Y1 = X1 + F(X2), Y2 = X2 + G(Y1), the input copied into both streams). What differs is bridged:
- config: no dropout, LayerNorm eps 1e-5, ReLU, one chunk back and none ahead, explicit bucket
  count, no axial position embeddings, causal as a decoder;
- edges: the position embedding is zeroed, the encoder's final LayerNorm over [Y1 | Y2] is an
  identity, and the loss is attnbench's, 0.5 mean((y - target)^2) over (B, n, 2 d_model);
- weights: attnbench stores a matrix as (in, out), a torch Linear's weight is its transpose;
- buckets: each layer's `_hash_vectors` returns attnbench's buckets (round r offset by
  r * n_buckets, as HF offsets its own); HF's backward reuses the forward's buckets."""
import numpy as np

from hf_lsh import n_buckets

# attnbench's parameter names -> the HF module holding them, per layer
LINEAR = {"wq": "attention.self_attention.query_key", "wv": "attention.self_attention.value",
          "wo": "attention.output.dense", "w1": "feed_forward.dense.dense",
          "w2": "feed_forward.output.dense"}
BIAS = {"b1": "feed_forward.dense.dense", "b2": "feed_forward.output.dense"}
NORM = {"ln1_g": ("attention.layer_norm", "weight"), "ln1_b": ("attention.layer_norm", "bias"),
        "ln2_g": ("feed_forward.layer_norm", "weight"), "ln2_b": ("feed_forward.layer_norm", "bias")}
NAMES = ["ln1_g", "ln1_b", "wq", "wv", "wo", "ln2_g", "ln2_b", "w1", "b1", "w2", "b2"]


def _module(layer, path):
    for part in path.split("."):
        layer = getattr(layer, part)
    return layer


def _param(layer, name):
    """The torch parameter holding attnbench parameter `name`, and whether it is transposed."""
    if name in LINEAR:
        return _module(layer, LINEAR[name]).weight, True
    if name in BIAS:
        return _module(layer, BIAS[name]).bias, False
    path, attr = NORM[name]
    return getattr(_module(layer, path), attr), False


def model(layers, d_model, heads, d_ff, n, params, causal):
    """A ReformerModel of `layers` LSH layers configured as attnbench's reversible stack; params
    are attnbench's lsh parameters (chunk_len, n_hashes, n_buckets)."""
    import torch
    from transformers import ReformerConfig, ReformerModel

    config = ReformerConfig(
        hidden_size=d_model, num_attention_heads=heads, attention_head_size=d_model // heads,
        attn_layers=["lsh"] * layers, feed_forward_size=d_ff, hidden_act="relu",
        hidden_dropout_prob=0.0, lsh_attention_probs_dropout_prob=0.0, layer_norm_eps=1e-5,
        axial_pos_embds=False, max_position_embeddings=n, is_decoder=causal, use_cache=False,
        num_buckets=n_buckets(params, n), num_hashes=int(params["n_hashes"]),
        lsh_attn_chunk_length=min(int(params["chunk_len"]), n), lsh_num_chunks_before=1,
        lsh_num_chunks_after=0, chunk_size_feed_forward=0, vocab_size=8)
    m = ReformerModel(config)
    with torch.no_grad():
        m.embeddings.position_embeddings.embedding.weight.zero_()
    m.encoder.layer_norm = torch.nn.Identity()
    return m.train()


def load(m, weights, dtype):
    """weights: {(layer, name): array} in attnbench's layout."""
    import torch
    m.to(getattr(torch, dtype))
    with torch.no_grad():
        for (l, name), w in weights.items():
            p, transposed = _param(m.encoder.layers[l], name)
            p.copy_(torch.from_numpy(np.ascontiguousarray(w.T if transposed else w)))


def inject(m, buckets):
    """buckets[l]: layer l's LSH buckets (n_hashes, B, H, n), as `train-step` writes them."""
    import torch
    for layer, b in zip(m.encoder.layers, buckets):
        att = layer.attention.self_attention
        nb = att.num_buckets if isinstance(att.num_buckets, int) else int(np.prod(att.num_buckets))
        rounds, bsz, h, n = b.shape
        offset = (np.arange(rounds) * nb)[None, None, :, None]
        hf = torch.from_numpy((b.transpose(1, 2, 0, 3) + offset).reshape(bsz, h, rounds * n)
                              .astype(np.int64))
        att._hash_vectors = lambda *args, hf=hf, **kw: hf


def step(m, x, target, dtype="float32"):
    """One training step on x (B, n, D) against target (B, n, 2D). Returns the loss, dx and
    {(layer, name): gradient} in attnbench's layout."""
    import torch
    m.zero_grad()
    xt = torch.from_numpy(x.astype(dtype)).requires_grad_()
    y = m(inputs_embeds=xt).last_hidden_state
    loss = 0.5 * torch.mean((y - torch.from_numpy(target.astype(dtype))) ** 2)
    loss.backward()
    grads = {}
    for l, layer in enumerate(m.encoder.layers):
        for name in NAMES:
            p, transposed = _param(layer, name)
            g = p.grad.detach().numpy()
            grads[(l, name)] = g.T if transposed else g
    return loss.item(), xt.grad.detach().numpy(), grads
