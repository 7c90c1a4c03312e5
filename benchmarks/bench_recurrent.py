"""Time seqtorch's recurrent backends against torch.nn, side by side in one process.

For each shape and cell (LSTM, GRU, SimpleRNN), forward (inference, no grad) and forward+backward
(random upstream gradient) of one layer over a (T, B, I) input, for these candidates:

* ``torch.nn``: torch.nn.LSTM/GRU/RNN (cuDNN on GPU, ATen on CPU): every ratio is relative to it.
* ``seqtorch[<backend>]``: seqtorch's layer with ``backend=<backend>``, one candidate per backend
  (``reference``, ``cpu_fused``, ``triton``, ...: whatever ``--backends`` names, by default all that
  ``seqtorch.available_backends()`` lists and that can run on the device).
* ``cell loop + recdrop``: what a torch user writes today to get recurrent dropout: a Python loop over
  torch.nn.LSTMCell/GRUCell/RNNCell with one fixed dropout mask per sequence on h.
* ``seqtorch[<backend>] + recdrop``: the same recurrent dropout (p=0.25) with a seqtorch fused backend
  (training mode), to compare with the loop above.

Candidates are interleaved within each repetition (A B C A B C ...), so a change in machine load hits
all of them alike; the table shows medians and the ratio to torch.nn. On CPU, absolute times depend
on concurrent load and thread count: read the ratios. On GPU, times come from CUDA events.

    python benchmarks/bench_recurrent.py                      # default shapes, CPU or the current GPU
    python benchmarks/bench_recurrent.py --quick --shapes book --out bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

import seqtorch
from seqtorch.functional import resolve_backend

SHAPES = {  # name: (T, B, I, H)
    "book": (500, 128, 32, 32),        # Deep Learning with Python, chapter 6 (IMDB / Jena)
    "fastrnns": (100, 64, 512, 512),   # PyTorch's benchmarks/fastrnns default
    "small-batch": (100, 16, 256, 256),
}
CELLS = {"lstm": (seqtorch.LSTM, nn.LSTM, nn.LSTMCell), "gru": (seqtorch.GRU, nn.GRU, nn.GRUCell),
         "rnn": (seqtorch.SimpleRNN, nn.RNN, nn.RNNCell)}
RECURRENT_DROPOUT = 0.25
BASELINE = "torch.nn"


@dataclass
class Candidate:
    name: str
    module: nn.Module
    run: Callable[[torch.Tensor], torch.Tensor]  # input (T, B, I) -> output (T, B, *)


def cell_loop(cell: nn.Module, hidden: int, p: float, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The plain PyTorch recurrent-dropout loop: one mask per sequence, applied to h at every step."""

    def run(x: torch.Tensor) -> torch.Tensor:
        T, B, _ = x.shape
        h = x.new_zeros(B, hidden)
        c = x.new_zeros(B, hidden)
        mask = torch.bernoulli(x.new_full((B, hidden), 1 - p)) / (1 - p)
        outputs = []
        for t in range(T):
            if mode == "lstm":
                h, c = cell(x[t], (h * mask, c))
            else:
                h = cell(x[t], h * mask)
            outputs.append(h)
        return torch.stack(outputs)

    return run


def layer_run(layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: layer(x)[0]


def make_candidates(mode: str, I: int, H: int, device: torch.device, backends: list[str]) -> list[Candidate]:
    seq_cls, nn_cls, cell_cls = CELLS[mode]
    candidates = []
    torch.manual_seed(0)
    reference_layer = nn_cls(I, H).to(device)
    candidates.append(Candidate(BASELINE, reference_layer, layer_run(reference_layer)))
    for backend in backends:
        layer = seq_cls(I, H, backend=backend).to(device)
        layer.load_state_dict(reference_layer.state_dict())
        candidates.append(Candidate(f"seqtorch[{backend}]", layer, layer_run(layer)))
    cell = cell_cls(I, H).to(device)
    candidates.append(Candidate("cell loop + recdrop", cell, cell_loop(cell, H, RECURRENT_DROPOUT, mode)))
    for backend in backends:
        if backend == "reference":
            continue
        layer = seq_cls(I, H, backend=backend, recurrent_dropout=RECURRENT_DROPOUT).to(device)
        layer.train()
        candidates.append(Candidate(f"seqtorch[{backend}] + recdrop", layer, layer_run(layer)))
    return candidates


class Timer:
    """Wall time of a callable: CUDA events on GPU, perf_counter on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], None]) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


def measure(candidates: list[Candidate], x: torch.Tensor, grad_out: torch.Tensor, timer: Timer, *, backward: bool,
            budget_s: float, min_reps: int, max_reps: int) -> dict[str, list[float]]:
    """Interleaved repetitions; the count fits ``budget_s`` (after one warm-up round), within the bounds."""

    def job(candidate: Candidate) -> Callable[[], None]:
        if backward:
            def fn():
                out = candidate.run(x)
                out.backward(grad_out[..., : out.shape[-1]])
        else:
            def fn():
                with torch.no_grad():
                    candidate.run(x)
        return fn

    jobs = [(c, job(c)) for c in candidates]
    start = time.perf_counter()
    for c, fn in jobs:  # warm-up (allocator, lazy inits, kernel compiles); also sizes the repetitions
        c.module.zero_grad(set_to_none=True)
        fn()
    round_s = time.perf_counter() - start
    reps = int(min(max_reps, max(min_reps, budget_s // max(round_s, 1e-9))))
    times: dict[str, list[float]] = {c.name: [] for c in candidates}
    for rep in range(reps):
        order = jobs[rep % len(jobs):] + jobs[: rep % len(jobs)]  # rotate who goes first
        for c, fn in order:
            c.module.zero_grad(set_to_none=True)
            times[c.name].append(timer(fn))
    return times


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def usable_backends(requested: list[str] | None, device: torch.device, I: int, H: int) -> list[str]:
    """The seqtorch backends to time: those asked for (default: all available) that can run here."""
    names = requested or seqtorch.available_backends()
    probe = torch.zeros(2, 2, 4 * H, device=device)
    usable = []
    for name in names:
        try:
            resolve_backend(name, probe, H)
        except (RuntimeError, ValueError) as error:
            print(f"# skipping backend {name!r}: {error}", file=sys.stderr)
            continue
        usable.append(name)
    return usable


def format_table(rows: list[dict], names: list[str]) -> str:
    header = "| shape (T, B, I=H) | cell | pass | " + " | ".join(names) + " |"
    lines = [header, "|" + "---|" * (3 + len(names))]
    for row in rows:
        cells = []
        for name in names:
            if name not in row["median_ms"]:
                cells.append("")
                continue
            cells.append(f"{row['median_ms'][name]:.1f} ms ({row['ratio'][name]:.2f}x)")
        T, B, I, H = row["shape"]
        lines.append(f"| {row['shape_name']} ({T}, {B}, {H}) | {row['cell']} | {row['pass']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=None,
                        help="default: all on GPU; on CPU all but fastrnns (H=512 takes minutes a candidate "
                             "on a 2-core box: ask for it by name)")
    parser.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    parser.add_argument("--backends", nargs="+", default=None,
                        help="seqtorch backends to time (default: all available on the device)")
    parser.add_argument("--passes", nargs="+", choices=["fwd", "fwd+bwd"], default=["fwd", "fwd+bwd"])
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per (shape, cell, pass) after warm-up (default 3 on CPU, 2 on GPU)")
    parser.add_argument("--min-reps", type=int, default=5,
                        help="repetitions at least (this noisy 2-core box needs 5 for stable medians)")
    parser.add_argument("--max-reps", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="small budget, 2 repetitions minimum")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if args.shapes is None:
        args.shapes = list(SHAPES) if device.type == "cuda" else [s for s in SHAPES if s != "fastrnns"]
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = args.budget if args.budget is not None else (2.0 if device.type == "cuda" else 3.0)
    min_reps = args.min_reps
    if args.quick:
        budget, min_reps = min(budget, 0.5), 2
    timer = Timer(device)
    rows, names = [], []
    for shape_name in args.shapes:
        T, B, I, H = SHAPES[shape_name]
        backends = usable_backends(args.backends, device, I, H)
        x = torch.randn(T, B, I, device=device)
        grad_out = torch.randn(T, B, H, device=device)
        for mode in args.cells:
            candidates = make_candidates(mode, I, H, device, backends)
            for name in (c.name for c in candidates):
                if name not in names:
                    names.append(name)
            for pass_name in args.passes:
                times = measure(candidates, x, grad_out, timer, backward=pass_name == "fwd+bwd", budget_s=budget,
                                min_reps=min_reps, max_reps=args.max_reps)
                median_ms = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
                row = {"shape_name": shape_name, "shape": [T, B, I, H], "cell": mode, "pass": pass_name,
                       "reps": len(times[BASELINE]), "median_ms": median_ms,
                       "ratio": {name: ms / median_ms[BASELINE] for name, ms in median_ms.items()},
                       "times_ms": {name: [t * 1e3 for t in ts] for name, ts in times.items()}}
                rows.append(row)
                print(f"# {shape_name} {mode} {pass_name}: reps={row['reps']} " + ", ".join(
                    f"{name} {ms:.1f} ms ({row['ratio'][name]:.2f}x)" for name, ms in median_ms.items()),
                    file=sys.stderr, flush=True)
    result = {
        "device": device_name(device), "device_type": device.type, "torch": torch.__version__,
        "triton": triton_version(), "threads": torch.get_num_threads(), "python": platform.python_version(),
        "recurrent_dropout": RECURRENT_DROPOUT, "baseline": BASELINE, "rows": rows,
    }
    print(f"device: {result['device']} ({device.type}), torch {result['torch']}, triton {result['triton']}, "
          f"threads {result['threads']}")
    print(format_table(rows, names))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
