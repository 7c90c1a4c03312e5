"""Inference time of an exported seqtorch LSTM in onnxruntime against seqtorch (and torch.nn) on CPU.

    OMP_NUM_THREADS=1 python benchmarks/onnx_inference.py                # the book's shape, 1 thread
    python benchmarks/onnx_inference.py --threads 2 --repeats 20

The book's shape by default: T=500, B=128, I=H=32, one LSTM layer, float32, eval mode, no autograd.
Every path runs in this process on the same input, with the same number of threads (torch's intra-op
threads and onnxruntime's); the figure is the median of ``--repeats`` timed runs after two warm-ups.
Also printed: the max abs difference of each ONNX output from seqtorch's, and the ONNX operators used.
The exports are made under ``torch.no_grad()`` (the lean inference graph); one row shows the graph
exported with autograd on.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

import numpy as np
import onnxruntime as ort
import torch

import seqtorch


def median_ms(fn, repeats: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def onnx_session(module, x, threads: int, dynamic: bool, grad: bool = False) -> tuple[ort.InferenceSession, list[str]]:
    with warnings.catch_warnings(), torch.set_grad_enabled(grad):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (x,), dynamo=True, verbose=False,
                                    dynamic_shapes=({0: "T", 1: "B"},) if dynamic else None)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(program.model_proto.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session, sorted({node.op_type for node in program.model.graph})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32, help="input and hidden size")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    T, B, size = args.steps, args.batch, args.size
    layer = seqtorch.LSTM(size, size).eval()
    reference = layer.to_torch_nn().eval()
    x = torch.randn(T, B, size)
    example = torch.randn(7, 3, size)  # exported at another shape: the axes are dynamic
    with torch.no_grad():
        want = layer(x)
    feeds = {"input": x.numpy()}
    rows = []
    for label, module in (("seqtorch", layer), ("torch.nn", reference)):
        with torch.no_grad():
            rows.append((f"{label} (PyTorch)", median_ms(lambda m=module: m(x), args.repeats), None, ""))
        # torch.nn's LSTM exported with a dynamic T keeps the example's T in a Reshape (torch 2.13), so it
        # is exported at the timed shape; seqtorch's at another one, its axes dynamic
        session, ops = onnx_session(module, example if label == "seqtorch" else x, args.threads,
                                    dynamic=label == "seqtorch")
        name = session.get_inputs()[0].name
        got = session.run(None, {name: feeds["input"]})
        error = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, (want[0], *want[1])))
        run = lambda s=session, n=name: s.run(None, {n: feeds["input"]})  # noqa: E731
        rows.append((f"{label} -> ONNX -> onnxruntime", median_ms(run, args.repeats), error, ", ".join(ops)))
    # exported with autograd on, the graph holds the op's training form (c's history, NaN where ONNX's
    # LSTM gives no value): the cost of not exporting under torch.no_grad()
    session, ops = onnx_session(layer, example, args.threads, dynamic=True, grad=True)
    name = session.get_inputs()[0].name
    rows.insert(2, ("seqtorch -> ONNX (exported with autograd on) -> onnxruntime",
                    median_ms(lambda: session.run(None, {name: feeds["input"]}), args.repeats), None, ", ".join(ops)))
    base = rows[0][1]
    print(f"LSTM T={T} B={B} I=H={size}, float32, {args.threads} thread(s); torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}, {platform.processor() or platform.machine()}")
    print("| path | median ms | vs seqtorch | max abs diff from seqtorch | ONNX operators |")
    print("|---|---|---|---|---|")
    for label, ms, error, ops in rows:
        diff = "" if error is None else f"{error:.2g}"
        print(f"| {label} | {ms:.1f} | {ms / base:.2f}x | {diff} | {ops} |")


if __name__ == "__main__":
    main()
