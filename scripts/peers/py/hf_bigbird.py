"""hf_bigbird: Hugging Face BigBird's block-sparse attention (ITC: 2 global blocks, a window of
3, n_rand random blocks per row) with attnbench's block size and random-block count, forward
only, on attnbench's q, k, v; it draws its own random blocks (HF's "plans")."""
import attnbench_peer as ab
import hf_block_sparse


def prepare(point, q, k, v):
    import transformers
    context = ab.torch_setup(point)
    context["transformers"] = transformers.__version__
    m = hf_block_sparse.module(point.heads, point.d, point.n, point.params)
    return (lambda: hf_block_sparse.run(m, q, k, v)), context


if __name__ == "__main__":
    ab.main("block_sparse", "Hugging Face BigBirdBlockSparseAttention's kernel (ITC)", prepare)
