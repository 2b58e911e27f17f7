"""torch_sdpa: torch.nn.functional.scaled_dot_product_attention on CPU, fp32 or bf16: PyTorch 2's
fused attention (its CPU flash kernel where it applies), forward only, under no_grad. In bf16, q,
k and v are torch.bfloat16 tensors (exact: the point's files hold bf16 values) and torch's kernel
accumulates in fp32, as ours does. The record says which backend torch chose."""
import attnbench_peer as ab


def prepare(point, q, k, v):
    import torch
    import torch.nn.functional as F
    context = ab.torch_setup(point)
    Q, K, V = (torch.from_numpy(x) for x in (q, k, v))
    if point.dtype == "bf16":
        Q, K, V = (x.to(torch.bfloat16) for x in (Q, K, V))
    context["dtype"] = str(Q.dtype)
    try:
        from torch.nn.attention import SDPBackend
        choice = torch._fused_sdp_choice(Q, K, V, None, 0.0, point.causal)
        context["sdpa_backend"] = SDPBackend(choice).name
    except Exception as e:  # an older torch: say so rather than guess
        context["sdpa_backend"] = f"unknown ({type(e).__name__})"

    def forward():
        with torch.no_grad():
            return F.scaled_dot_product_attention(Q, K, V, is_causal=point.causal)
    return forward, context


if __name__ == "__main__":
    ab.main("full_stream", "PyTorch 2 scaled_dot_product_attention (CPU, fp32 or bf16)", prepare,
            dtypes=("fp32", "bf16"))
