"""hf_block_sparse.py: Hugging Face BigBird's block-sparse attention kernel
(BigBirdBlockSparseAttention.bigbird_block_sparse_attention) on attnbench's q, k, v, with the
block size and random-block count of attnbench's block_sparse. In training mode, so it draws
random blocks (in eval mode HF draws none); or with attnbench's own table injected, for the
equality test. Shared by the hf_bigbird peer and tests/peers_test.py."""
import inspect

import numpy as np


def module(heads, d, n, params):
    from transformers import BigBirdConfig
    from transformers.models.big_bird.modeling_big_bird import BigBirdBlockSparseAttention
    config = BigBirdConfig(hidden_size=heads * d, num_attention_heads=heads,
                           block_size=int(params["block"]), num_random_blocks=int(params["n_rand"]),
                           max_position_embeddings=max(n, 4096), attention_type="block_sparse",
                           attention_probs_dropout_prob=0.0)
    return BigBirdBlockSparseAttention(config, seed=int(params.get("seed", 0))).train()


def inject(m, table):
    """Makes m use attnbench's random-block table (B, H, blocks, n_rand): HF's tables hold the
    rows of the middle blocks, 1 .. blocks - 2, per head."""
    heads = [table[0, h, 1:-1, :].astype(np.int32) for h in range(table.shape[1])]
    turn = {"head": 0}

    def per_call(*args, **kwargs):  # the paper's plans: called once per head
        h = turn["head"] % len(heads)
        turn["head"] += 1
        return heads[h]
    m._bigbird_block_rand_mask = per_call
    m._bigbird_block_rand_mask_with_head = lambda *args, **kwargs: list(heads)


def run(m, q, k, v):
    """(B, H, n, d) numpy q, k, v -> (B, H, n, d) torch output."""
    import torch
    from transformers.models.big_bird.modeling_big_bird import BigBirdModel
    b, h, n, d = q.shape
    block = m.block_size
    if getattr(m, "_masks_for", None) != (b, n):
        blocked, band, from_mask, to_mask = BigBirdModel.create_masks_for_block_sparse_attn(
            torch.ones(b, n), block)
        m._masks_for, m._masks = (b, n), (band, from_mask, to_mask, blocked)
    band, from_mask, to_mask, blocked = m._masks
    Q, K, V = (torch.from_numpy(x) for x in (q, k, v))
    # transformers 4 took output_attentions; 5 has no such argument (and always builds the
    # (B, H, n, n) probabilities it returns beside the output)
    extra = {"output_attentions": False} if "output_attentions" in inspect.signature(
        m.bigbird_block_sparse_attention).parameters else {}
    with torch.no_grad():
        out, _ = m.bigbird_block_sparse_attention(
            Q, K, V, band, from_mask, to_mask, blocked, blocked, h, m.num_random_blocks, d, block,
            block, b, n, n, seed=m.seed, plan_from_length=None, plan_num_rand_blocks=None, **extra)
    return out.reshape(b, n, h, d).permute(0, 2, 1, 3)
