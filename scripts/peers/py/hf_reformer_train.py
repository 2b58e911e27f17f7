"""hf_reformer_train: one training step of a Hugging Face ReformerModel stack of L layers (LSH
attention, reversible residual layers, chunked feed-forward), sized like attnbench's
`--train --stack reversible` points over lsh: d_model = heads x d, d_ff, ff_chunk, chunk_len,
n_hashes, n_buckets. The step is forward, loss 0.5 mean(y^2) (a zero target: no target array),
backward. Its inputs are random embeddings of its own; positions are axial (a few KiB of
parameters, not an n x d_model table)."""
import math

import attnbench_peer as ab
import hf_lsh


def axial_shape(n):
    """Two factors of n as close to sqrt(n) as powers of two allow."""
    a = 1 << (int(math.log2(n)) // 2)
    while n % a:
        a //= 2
    return a, n // a


def prepare(point, q, k, v):
    import os
    import torch
    import transformers
    from transformers import ReformerConfig, ReformerModel
    context = ab.torch_setup(point)
    context["transformers"] = transformers.__version__
    env = os.environ
    layers, d_ff = int(env["ATTNBENCH_LAYERS"]), int(env["ATTNBENCH_D_FF"])
    ff_chunk, D = int(env["ATTNBENCH_FF_CHUNK"]), point.heads * point.d
    config = ReformerConfig(
        attn_layers=["lsh"] * layers, hidden_size=D, num_attention_heads=point.heads,
        attention_head_size=point.d, feed_forward_size=d_ff, chunk_size_feed_forward=ff_chunk,
        lsh_attn_chunk_length=min(point.param("chunk_len"), point.n),
        num_hashes=point.param("n_hashes"), num_buckets=hf_lsh.n_buckets(point.params, point.n),
        lsh_num_chunks_before=1, lsh_num_chunks_after=0, is_decoder=point.causal,
        hidden_dropout_prob=0.0, lsh_attention_probs_dropout_prob=0.0, max_position_embeddings=point.n,
        axial_pos_embds=True, axial_pos_shape=axial_shape(point.n), axial_pos_embds_dim=(D // 2, D - D // 2),
        hidden_act="relu", vocab_size=2)
    model = ReformerModel(config).train()
    x = torch.randn(point.batch, point.n, D)
    context.update(stack="reversible (ReformerModel)", layers=layers, d_ff=d_ff, ff_chunk=ff_chunk,
                   target="zero: loss 0.5 mean(y^2)")
    return ab.hf_training_step(model, x), context


if __name__ == "__main__":
    ab.main("lsh", "Hugging Face ReformerModel training step (reversible, LSH)", prepare,
            train="reversible")
