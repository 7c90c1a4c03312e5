"""What autograd's transforms cost on seqtorch's layers: the fused path against torch.nn and the reference.

seqtorch's fused scans serve every transform (README, "Autograd: every transform, on every backend"):
some in the fused kernels (the backward, vmap over inputs), others through the reference scan (double
backward, the tangents of forward mode, the gradients under torch.func). This times each transform on
one layer, for three candidates, interleaved in one process:

* ``torch.nn``: torch.nn.LSTM/GRU (where it supports the transform; where it raises, the table says so);
* ``seqtorch[auto]``: seqtorch's layer on its default backend (what the README's table describes);
* ``seqtorch[reference]``: the same layer on ``backend="reference"``, plain autograd over the steps.

The transforms (:data:`TRANSFORMS`), each on the same weights, input and random upstream gradient:

* ``backward``: ``loss.backward()`` (for scale: the fused BPTT);
* ``func.grad``: ``torch.func.grad`` of the loss with respect to the parameters (``functional_call``);
* ``vmap(grad)``: per-sample gradients, ``vmap(grad(loss))`` over the batch's B samples;
* ``jvp``: ``torch.func.jvp`` of the output with respect to the input (forward mode);
* ``vmap``: the forward, vmapped over a stack of 4 inputs (no autograd);
* ``double backward``: a gradient penalty, ``autograd.grad(loss, x, create_graph=True)`` then the
  backward of ``|dloss/dx|^2`` to the parameters.

Before timing, each candidate's result (the gradients, tangents or outputs) is checked to equal the
reference's over the first steps. The table gives the medians and two ratios: seqtorch[auto]
over torch.nn, and over seqtorch[reference] (lower is better: under 1.00x seqtorch[auto] is faster). On
CPU read the ratios (the absolute times depend on load). ``--budget SECONDS`` bounds the whole run.

    OMP_NUM_THREADS=1 python benchmarks/bench_transforms.py --threads 1 --out runs/transforms.json
    python benchmarks/bench_transforms.py --cells lstm --only jvp "double backward" --repeats 5
    python benchmarks/bench_transforms.py --quick     # smoke test: a tiny shape
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

import harness
import seqtorch

CELLS = {"lstm": (seqtorch.LSTM, nn.LSTM), "gru": (seqtorch.GRU, nn.GRU)}
VMAP_SIZE = 4
CHECK_STEPS, CHECK_RTOL = 20, 1e-4  # the sameness check: this many steps, this |difference| / max |result|
TORCH_NN, AUTO, REFERENCE = "torch.nn", "seqtorch[auto]", "seqtorch[reference]"


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def params_of(layer: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in layer.named_parameters()}


def loss_of(layer: nn.Module, params: dict, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The scalar every gradient is of: the output (T, B, H) against the upstream gradient g (T, B, H)."""
    return (functional_call(layer, params, (x,))[0] * g).sum()


# Each transform: (layer, x (T, B, I), g (T, B, H)) -> a call doing the transform once and returning its
# result flattened (gradients, tangents or outputs), what the sameness check compares.
Transform = Callable[[nn.Module, torch.Tensor, torch.Tensor], Callable[[], torch.Tensor]]


def backward(layer, x, g):
    def fn():
        (layer(x)[0] * g).sum().backward()
        return flat(p.grad for p in layer.parameters())
    return fn


def func_grad(layer, x, g):
    return lambda: flat(grad(lambda p: loss_of(layer, p, x, g))(params_of(layer)).values())


def per_sample_grads(layer, x, g):
    def loss(p, sample, g_sample):  # one sample: (T, I) and (T, H), as a batch of one
        return loss_of(layer, p, sample.unsqueeze(1), g_sample.unsqueeze(1))

    return lambda: flat(vmap(grad(loss), in_dims=(None, 1, 1))(params_of(layer), x, g).values())


def forward_jvp(layer, x, g):
    tangent = torch.sin(torch.arange(x.numel(), dtype=x.dtype, device=x.device)).reshape(x.shape)
    return lambda: jvp(lambda x_: layer(x_)[0], (x,), (tangent,))[1].reshape(-1)


def vmap_inputs(layer, x, g):
    xs = torch.stack([x * (1 + k / VMAP_SIZE) for k in range(VMAP_SIZE)])

    def fn():
        with torch.no_grad():
            return vmap(lambda x_: layer(x_)[0])(xs).reshape(-1)
    return fn


def double_backward(layer, x, g):
    def fn():
        x_ = x.detach().requires_grad_()
        (dx,) = torch.autograd.grad((layer(x_)[0] * g).sum(), x_, create_graph=True)
        dx.square().sum().backward()
        return flat(p.grad for p in layer.parameters())
    return fn


TRANSFORMS: dict[str, Transform] = {"backward": backward, "func.grad": func_grad, "vmap(grad)": per_sample_grads,
                                    "jvp": forward_jvp, "vmap": vmap_inputs, "double backward": double_backward}


def candidates(cell: str, I: int, H: int, device: torch.device) -> dict[str, nn.Module]:
    seq_cls, nn_cls = CELLS[cell]
    torch.manual_seed(0)
    torch_layer = nn_cls(I, H).to(device)
    layers = {TORCH_NN: torch_layer}
    for name, backend in ((AUTO, "auto"), (REFERENCE, "reference")):
        layers[name] = seq_cls(I, H, backend=backend).to(device)
        layers[name].load_state_dict(torch_layer.state_dict())
    return layers


def check_and_keep(layers: dict[str, nn.Module], transform: Transform, x: torch.Tensor,
                   g: torch.Tensor) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """The layers that can run the transform, each checked to give the reference's result over the first
    :data:`CHECK_STEPS` steps; and those that raise, with their error. In the timed dtype, not float64:
    torch.nn runs other kernels in float64 (on CPU in float32 oneDNN's LSTM, which has no forward-mode
    formula and no batching rule; in float64 ATen's composite one, which has both), so only the timed
    dtype says what is supported. Hence a float32 tolerance, relative to the result's size."""
    results, unsupported = {}, {}
    for name, layer in layers.items():
        layer.zero_grad(set_to_none=True)
        try:
            results[name] = transform(layer, x[:CHECK_STEPS], g[:CHECK_STEPS])()
        except (RuntimeError, NotImplementedError) as error:
            unsupported[name] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
            print(f"# {name} cannot run this transform: {unsupported[name]}", file=sys.stderr)
        finally:
            layer.zero_grad(set_to_none=True)
    if REFERENCE not in results:
        raise RuntimeError(f"the reference backend cannot run this transform: {unsupported.get(REFERENCE)}")
    want = results[REFERENCE]
    atol = CHECK_RTOL * max(1.0, want.abs().max().item())
    for name, got in results.items():
        harness.check_same(name, got, REFERENCE, want, atol)
    return {name: layers[name] for name in results}, unsupported


def time_transform(cell: str, name: str, layers: dict[str, nn.Module], x: torch.Tensor, g: torch.Tensor,
                   run: harness.Run) -> dict:
    transform = TRANSFORMS[name]
    usable, unsupported = check_and_keep(layers, transform, x, g)
    jobs = []
    for candidate, layer in usable.items():
        fn = transform(layer, x, g)
        jobs.append(harness.Job(candidate, fn, lambda layer=layer: layer.zero_grad(set_to_none=True)))
    summary = harness.summarize(harness.measure(jobs, run.timer, run.budget))
    pairs = [harness.pair(summary, AUTO, versus) for versus in (TORCH_NN, REFERENCE) if versus in usable]
    record = {"id": f"{cell}/{name}", "cell": cell, "transform": name, **summary, "pairs": pairs,
              "unsupported": unsupported}
    print(f"# {cell} {name}: reps={summary['reps']} " + ", ".join(
        f"{p['ratio']:.2f}x {p['versus']}" for p in pairs) + harness.busy_note(record), file=sys.stderr, flush=True)
    return record


def table(records: list[dict]) -> str:
    names = (TORCH_NN, AUTO, REFERENCE)
    lines = []
    for r in records:
        times = [harness.time_text(r["median_ms"][n]) if n in r["median_ms"] else "raises" for n in names]
        ratios = {p["versus"]: f"{p['ratio']:.2f}x" for p in r["pairs"]}
        lines.append([r["cell"], r["transform"], *times, ratios.get(TORCH_NN, "-"), ratios.get(REFERENCE, "-")])
    notes = [f"- {r['cell']} {r['transform']}, {name} raises {error}" for r in records
             for name, error in r["unsupported"].items()]
    return "\n".join([harness.markdown_table(["cell", "transform", *names, "auto / torch.nn", "auto / reference"],
                                              lines), *([""] + notes if notes else [])])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(parser)
    parser.add_argument("--shape", nargs=4, type=int, default=(100, 32, 32, 32), metavar=("T", "B", "I", "H"),
                        help="the layer's input (T, B, I) and hidden size H (default 100 32 32 32)")
    parser.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    parser.add_argument("--only", nargs="+", choices=list(TRANSFORMS), default=list(TRANSFORMS),
                        metavar="TRANSFORM", help=f"transforms to time, of {list(TRANSFORMS)}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    T, B, I, H = (5, 3, 4, 6) if args.quick else args.shape
    requested = [f"{c}/{t}" for c in args.cells for t in args.only]
    run = harness.Run.start(args, device, settings={"shape": dict(T=T, B=B, I=I, H=H), "vmap_size": VMAP_SIZE,
                                                    "requested": requested}, measurements=len(requested))
    records = []
    for cell in args.cells:
        layers = candidates(cell, I, H, device)
        x, g = torch.randn(T, B, I, device=device), torch.randn(T, B, H, device=device)
        for name in args.only:
            if run.out_of_time():  # --budget is spent: the rest are listed as untimed
                break
            records.append(time_transform(cell, name, layers, x, g, run))
            run.save(records, table(records))
    return run.finish(records, table(records))


if __name__ == "__main__":
    main()
