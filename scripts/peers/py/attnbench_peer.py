"""attnbench_peer.py: the program's side of attnbench's external-workload protocol, so a peer
is a few lines: say which attnbench method it implements, and give a function that prepares
one forward on the point's inputs. See bench/launch/external.h for the protocol itself.

    import attnbench_peer as ab
    def prepare(point, q, k, v):          # numpy float32 (B, H, n, d)
        return lambda: my_attention(q, k, v), {"library": "1.2"}
    ab.main("full_stream", "my attention", prepare)

prepare() returns the forward (a callable whose result is the output, numpy or torch) and a
dict for the record's context (versions, threads, kernels). main() times each repetition
itself, so the interpreter's start-up and imports are not counted."""
import json
import os
import sys
import time


class Point:
    """The point attnbench asks for, from the environment."""

    def __init__(self, env=os.environ):
        def num(name):
            return int(env["ATTNBENCH_" + name])
        self.n, self.d, self.heads, self.batch = num("N"), num("D"), num("HEADS"), num("BATCH")
        self.causal = bool(num("CAUSAL"))
        self.dtype = env.get("ATTNBENCH_DTYPE", "fp32")  # bf16: store q, k, v and out as bf16
        self.seed, self.reps, self.warmup, self.threads = num("SEED"), num("REPS"), num("WARMUP"), num("THREADS")
        self.params = dict(kv.split("=", 1) for kv in env.get("ATTNBENCH_PARAMS", "").split(",") if kv)
        self.inputs = env["ATTNBENCH_INPUTS"]
        self.output = env.get("ATTNBENCH_OUTPUT", "")
        self.report_fd, self.control_fd = num("REPORT_FD"), num("CONTROL_FD")

    def param(self, name, cast=int):
        return cast(self.params[name])


def _send(point, **msg):
    os.write(point.report_fd, (json.dumps(msg) + "\n").encode())


def _numpy(x):
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().float().numpy()
    return x


def main(implements, summary, prepare, train=None, dtypes=("fp32",)):
    """Runs the protocol. train: "reversible" or "standard" for a training step of such a
    stack (the inputs are then the program's own; q, k, v are None). dtypes: the storage types
    the program runs ("bf16": point.dtype says which a point asks for; its q, k, v files hold
    bf16 values as float32)."""
    if "--describe" in sys.argv[1:]:
        d = {"implements": implements, "summary": summary, "dtypes": list(dtypes)}
        if train:
            d["train"] = train
        print(json.dumps(d))
        return
    point = Point()
    _send(point, event="start")
    import numpy as np
    q = k = v = None
    if not train:
        q, k, v = (np.load(os.path.join(point.inputs, f"{x}.npy")) for x in "qkv")
    forward, context = prepare(point, q, k, v)
    _send(point, event="ready")
    os.read(point.control_fd, 1)  # attnbench has read our RSS and reset the peak: go
    out = None
    for _ in range(point.warmup):
        out = forward()
    for _ in range(point.reps):
        t0 = time.perf_counter()
        out = forward()
        _send(point, event="rep", wall_s=time.perf_counter() - t0)
    if point.output:
        np.save(point.output, np.ascontiguousarray(_numpy(out), dtype=np.float32))
    _send(point, event="done", context=context)
    os.close(point.report_fd)
    while os.read(point.control_fd, 4096):  # attnbench reads our peak memory, then lets go
        pass


def torch_setup(point):
    """Threads as attnbench's point says, and what a record needs to say about torch's side:
    its version, threads, the CPU kernels it dispatches to and its BLAS."""
    import torch
    torch.set_num_threads(point.threads)
    torch.manual_seed(point.seed)
    config = torch.__config__.show()
    blas = [item.strip() for line in config.splitlines() for item in line.split(",")
            if "BLAS_INFO" in item or "LAPACK_INFO" in item]
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        capability = "unknown"
    preload = os.environ.get("LD_PRELOAD", "")
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_capability": capability, "blas": "; ".join(blas) or "see torch.__config__",
            "mkl_intel_path": "forced on this AMD CPU (scripts/peers/mkl_intel_path.c)"
            if "libmkl_intel_path" in preload else "as MKL chose",
            "dtype": "float32"}


def hf_training_step(model, x):
    """The step a training peer times: one forward and backward of a Hugging Face model on the
    embeddings x, loss 0.5 mean(y^2) (a zero target, as attnbench's own stacks use)."""
    def step():
        model.zero_grad(set_to_none=True)
        y = model(inputs_embeds=x).last_hidden_state
        loss = 0.5 * y.pow(2).mean()
        loss.backward()
        return y.detach()
    return step
