"""hf_bert_train: one training step of a Hugging Face BertModel stack of L layers, the ordinary
(non-reversible) transformer, sized like attnbench's `--train --stack standard` points: d_model
= heads x d, d_ff, ReLU, no dropout, exact attention through PyTorch's scaled_dot_product_attention
(its fused kernels). Forward, loss 0.5 mean(y^2) (a zero target), backward; random embeddings
of its own as inputs."""
import attnbench_peer as ab


def prepare(point, q, k, v):
    import os
    import torch
    import transformers
    from transformers import BertConfig, BertModel
    context = ab.torch_setup(point)
    context["transformers"] = transformers.__version__
    env = os.environ
    layers, d_ff, D = int(env["ATTNBENCH_LAYERS"]), int(env["ATTNBENCH_D_FF"]), point.heads * point.d
    config = BertConfig(hidden_size=D, num_attention_heads=point.heads, intermediate_size=d_ff,
                        num_hidden_layers=layers, max_position_embeddings=point.n, hidden_act="relu",
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, vocab_size=2,
                        is_decoder=point.causal)
    config._attn_implementation = "sdpa"  # PyTorch's fused attention kernels
    model = BertModel(config, add_pooling_layer=False).train()
    x = torch.randn(point.batch, point.n, D)
    context.update(stack="standard (BertModel)", layers=layers, d_ff=d_ff, attention="sdpa",
                   target="zero: loss 0.5 mean(y^2)")
    return ab.hf_training_step(model, x), context


if __name__ == "__main__":
    ab.main("full_stream", "Hugging Face BertModel training step (standard layers, SDPA)", prepare,
            train="standard")
