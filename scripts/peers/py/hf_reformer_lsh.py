"""hf_reformer_lsh: Hugging Face's LSHSelfAttention (the Reformer's attention) with settings
equal to attnbench's lsh, forward only, on attnbench's q (shared QK) and v; it draws its own
rotations."""
import attnbench_peer as ab
import hf_lsh


def prepare(point, q, k, v):
    import transformers
    context = ab.torch_setup(point)
    context["transformers"] = transformers.__version__
    module = hf_lsh.lsh_module(point.heads, point.d, point.n, point.causal, point.params)
    context["num_buckets"] = module.num_buckets
    return (lambda: hf_lsh.run(module, q, v)), context


if __name__ == "__main__":
    ab.main("lsh", "Hugging Face LSHSelfAttention (Reformer), shared QK, attention only", prepare)
