"""Time seqtorch's recurrent layers and cells against torch, side by side in one process.

Each row does one piece of work in several ways (the candidates), timed interleaved (A B C, B C A, ...)
so a change in the machine's load hits all alike, in passes:

* ``inference``: the forward of an eval-mode module under ``torch.no_grad``;
* ``forward``: the forward with autograd recording, training mode, no backward;
* ``fwd+bwd``: the forward, then the backward of a random upstream gradient, training mode.

Three groups of rows:

* ``layers/<shape>/<cell>``: a layer (stacked where the shape says so) over a (T, B, I) input, at the
  shapes of :data:`SHAPES`, against torch.nn.LSTM/GRU/RNN (cuDNN on GPU; on CPU ATen, which runs
  oneDNN's fused RNN kernels). In training passes also recurrent dropout (p=0.25): seqtorch's against
  the Python loop over torch.nn cells a torch user writes to get it (:class:`torch_loops.CellLoop`).
* ``steps/<cell>cell-b<B>``: a cell called step by step in a Python loop (decoders, generation loops),
  seqtorch's LSTMCell/GRUCell against torch.nn's, per call, at B=1 and B=32.
* ``new-cells/<name>``: seqtorch's cells that torch.nn lacks, at the book's shape, against the
  torch-native program a user would write instead (:mod:`torch_loops`): LayerNormLSTM against a loop
  with ``nn.LayerNorm``, IndRNN against a loop of torch ops, zoneout against an ``nn.LSTMCell`` loop with
  zoneout; and ``LSTM(proj_size)`` against ``torch.nn.LSTM(proj_size)``.

seqtorch's layers run on ``--backends`` (default ``auto``, shown with what it resolved to; add
``cpu_fused``, ``reference`` or ``triton`` to time them too). All candidates of a row compute the same numbers
in eval mode (same weights, masks off), which is checked in float64 before they are timed. The table gives each
seqtorch candidate's median time, its torch counterpart's, and their ratio, seqtorch / torch (lower is
better: under 1.00x seqtorch is faster); the JSON (``--out``) has every repetition. On CPU absolute times
depend on load and threads: read the ratios, and mind the busy-machine warning. On GPU the times are CUDA
events, TF32 off unless ``--tf32``. ``--budget SECONDS`` bounds the whole run.

    OMP_NUM_THREADS=1 python benchmarks/bench_recurrent.py --threads 1 --out runs/bench.json
    python benchmarks/bench_recurrent.py --only layers/word-lm --repeats 7
    python benchmarks/bench_recurrent.py --budget 120          # the whole grid in about two minutes
    python benchmarks/bench_recurrent.py --device cuda --grid gpu --out gpu.json --markdown gpu.md
    python benchmarks/bench_recurrent.py --device cuda --grid gpu-quick --cuda-graphs --row-seconds 0.5
    python benchmarks/bench_recurrent.py --quick      # smoke test: every row at a tiny shape
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass, field, replace
from typing import Callable, ContextManager

import torch
from torch import nn

import harness
import seqtorch
import torch_loops
from seqtorch.ops import dispatch
from seqtorch.ops.contract import ScanOptions
from seqtorch.recurrent_cells import get_cell

try:  # triton is optional: without it there is no alternating loop to time with CUDA graphs
    from seqtorch.ops.triton import alternating as triton_alternating, persistent as triton_scan
except ImportError:
    triton_alternating = triton_scan = None


@dataclass(frozen=True)
class Shape:
    """One layer shape: sequence length T, batch B, input size I, hidden size H, stacked layers."""

    T: int
    B: int
    I: int
    H: int
    layers: int = 1

    def text(self) -> str:
        return f"({self.T}, {self.B}, {self.I}, {self.H}, {self.layers})"


SHAPES = {
    "book": Shape(500, 128, 32, 32),              # Deep Learning with Python ch. 6 (IMDB)
    "word-lm-small": Shape(35, 20, 200, 200, 2),  # PyTorch's word_language_model example, small
    "word-lm-medium": Shape(35, 20, 650, 650, 2),  # ... and medium (bptt 35, batch 20)
    "small-batch": Shape(100, 16, 256, 256),
    "jena": Shape(240, 128, 14, 32),              # the book's Jena temperature GRU
    "fastrnns": Shape(100, 64, 512, 512),         # PyTorch's benchmarks/fastrnns default
    # every hidden size (on GPU: the persistent Triton kernels up to H=128, the alternating loop above)
    **{f"h{H}": Shape(100, 64, H, H) for H in (32, 128, 256, 512, 1024)},
}
LAYERS = {"lstm": (seqtorch.LSTM, nn.LSTM, nn.LSTMCell), "gru": (seqtorch.GRU, nn.GRU, nn.GRUCell),
          "rnn": (seqtorch.SimpleRNN, nn.RNN, nn.RNNCell)}


@dataclass(frozen=True)
class Steps:
    """A cell called ``calls`` times in a Python loop, batch B, input and hidden size H."""

    cell: str
    calls: int
    B: int
    H: int


# each cell at B=1 (generation, one sequence) and B=32 (a decoder over a batch)
STEPS = {f"{cell}cell-b{B}": Steps(cell, 200, B, 256) for cell in ("lstm", "gru") for B in (1, 32)}
STEP_CELLS = {"lstm": (seqtorch.LSTMCell, nn.LSTMCell), "gru": (seqtorch.GRUCell, nn.GRUCell)}
NEW_CELLS = ("layernorm-lstm", "indrnn", "zoneout-lstm", "lstm-proj")

# The grids: (group, name, cell) rows. "cpu" is the default run on CPU (the fastrnns shape and the
# hidden-size sweep take minutes on 2 cores: select them with --grid gpu --only), "gpu" the default on CUDA.
_COMMON_LAYERS = [("book", "lstm"), ("book", "gru"), ("book", "rnn"), ("word-lm-small", "lstm"),
                  ("word-lm-medium", "lstm"), ("small-batch", "lstm"), ("small-batch", "gru"),
                  ("small-batch", "rnn"), ("jena", "gru")]
_SWEEP = [("fastrnns", "lstm"), ("fastrnns", "gru")] + \
         [(f"h{H}", cell) for H in (32, 128, 256, 512, 1024) for cell in ("lstm", "gru")]
_OTHERS = [("steps", name, STEPS[name].cell) for name in STEPS] + [("new-cells", name, "") for name in NEW_CELLS]
# "gpu-quick": a short lease's grid (gpu_check.sh --quick), the most informative rows first: the book's shape
# (the persistent kernels), then the alternating loop at fastrnns' H=512, H=256 and H=1024, LSTM then GRU,
# then the cell steps and the language model
_GPU_QUICK = [("book", "lstm"), ("fastrnns", "lstm"), ("h256", "lstm"), ("h1024", "lstm"), ("book", "gru"),
              ("fastrnns", "gru"), ("h256", "gru"), ("h1024", "gru")]
GRIDS = {
    "cpu": [("layers", shape, cell) for shape, cell in _COMMON_LAYERS] + _OTHERS,
    "gpu": [("layers", shape, cell) for shape, cell in _COMMON_LAYERS + _SWEEP] + _OTHERS,
    "gpu-quick": [("layers", shape, cell) for shape, cell in _GPU_QUICK] +
                 [("steps", name, STEPS[name].cell) for name in STEPS] + [("layers", "word-lm-small", "lstm")],
}
PASSES = ("inference", "forward", "fwd+bwd")
DEFAULT_PASSES = {"layers": ("inference", "fwd+bwd"), "steps": PASSES, "new-cells": ("inference", "fwd+bwd")}

PROJ_SIZE_OF = 2          # proj_size = H // this
ZONEOUT = 0.1
RECURRENT_DROPOUT = 0.25
CHECK_STEPS, CHECK_ATOL = 50, 1e-8  # the sameness check: float64, this many steps, this max |difference|


def tiny(shape: Shape) -> Shape:
    """The shape cut down for a smoke test (``--quick``): the same layers, a few steps of a few units."""
    return replace(shape, T=min(shape.T, 5), B=min(shape.B, 3), I=min(shape.I, 6), H=min(shape.H, 8))


def row_id(group: str, name: str, cell: str) -> str:
    return "/".join(part for part in (group, name, cell) if part)


@dataclass
class Candidate:
    """One way of doing a row's work. A seqtorch candidate names the torch candidate it is compared to
    (``versus``); ``training_only`` ones (random masks) are left out of the inference pass, where eval
    mode switches their option off. In eval mode every candidate of a row computes the same numbers
    (deterministic, same weights), which :func:`check_row` checks."""

    name: str
    module: nn.Module
    run: Callable[[torch.Tensor], torch.Tensor]  # input (T, B, I) -> output (T, B, *)
    versus: str | None = None
    backend: str = ""
    training_only: bool = False
    context: Callable[[], ContextManager] = contextlib.nullcontext  # around each timed call (forward and backward)


@dataclass
class Row:
    """One row: candidates doing the same work on the same input; the first is the reference of the
    sameness check."""

    group: str
    name: str
    cell: str
    dims: dict
    candidates: list[Candidate]
    x: torch.Tensor
    grad_out: torch.Tensor
    label: str = ""         # the row as the table shows it
    calls: int = 1          # calls per run (cell steps), for per-call times
    extra: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return row_id(self.group, self.name, self.cell)


def layer_run(layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: layer(x)[0]


def steps_run(cell: nn.Module, lstm: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The decoder loop: one cell call per step of x (calls, B, I), the state fed back."""

    def run(x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[1], cell.hidden_size)
        state = (h, torch.zeros_like(h)) if lstm else h
        outputs = []
        for x_t in x:
            state = cell(x_t, state)
            outputs.append(state[0] if lstm else state)
        return torch.stack(outputs)

    return run


def seqtorch_backends(requested: list[str], device: torch.device, cell: str, H: int) -> list[tuple[str, str]]:
    """(label, backend) of each requested backend that has ``cell`` and can run it here: ``auto`` is
    labelled with what it resolves to (``auto->cpu_fused``); the others are skipped with the reason."""
    probe = torch.zeros(2, 2, get_cell(cell).gates * H, device=device)
    usable = []
    for name in requested:
        try:
            resolved = dispatch.choose_for(name, ScanOptions(cell), probe, H).backend
        except (RuntimeError, ValueError) as error:
            print(f"# skipping backend {name!r} for {cell} at H={H}: {error}", file=sys.stderr)
            continue
        usable.append((f"auto->{resolved}" if name == "auto" else name, name))
    return usable


def random_input(T: int, B: int, I: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The input (T, B, I) and a random upstream gradient (T, B, width) (cut to each output's width)."""
    return torch.randn(T, B, I, device=device), torch.randn(T, B, width, device=device)


def layer_row(shape_name: str, cell: str, shape: Shape, device: torch.device, backends: list[str],
              recdrop: bool, cuda_graphs: bool = False) -> Row:
    T, B, I, H, L = shape.T, shape.B, shape.I, shape.H, shape.layers
    seq_cls, nn_cls, cell_cls = LAYERS[cell]
    torch.manual_seed(0)
    reference = nn_cls(I, H, num_layers=L).to(device)
    torch_name = f"torch.nn.{nn_cls.__name__}"
    candidates = [Candidate(torch_name, reference, layer_run(reference))]
    usable = seqtorch_backends(backends, device, cell, H)
    for label, backend in usable:
        layer = seq_cls(I, H, num_layers=L, backend=backend).to(device)
        layer.load_state_dict(reference.state_dict())
        candidates.append(Candidate(f"seqtorch[{label}]", layer, layer_run(layer), torch_name, label))
    if recdrop:
        loop = torch_loops.CellLoop([cell_cls(I if k == 0 else H, H) for k in range(L)], RECURRENT_DROPOUT)
        loop.to(device).load_state_dict(torch_loops.cell_loop_state(reference.state_dict(), L))
        loop_name = f"{cell_cls.__name__} loop + recdrop"
        candidates.append(Candidate(loop_name, loop, loop, training_only=True))
        for label, backend in usable:
            if backend != "reference":
                layer = seq_cls(I, H, num_layers=L, backend=backend, recurrent_dropout=RECURRENT_DROPOUT).to(device)
                layer.load_state_dict(reference.state_dict())
                candidates.append(Candidate(f"seqtorch[{label}] + recdrop", layer, layer_run(layer), loop_name,
                                            f"{label} + recdrop", training_only=True))
    if cuda_graphs and triton_scan is not None and device.type == "cuda" and H > triton_scan.MAX_HIDDEN:
        for label, backend in usable:
            if label in ("auto->triton", "triton"):
                layer = next(c.module for c in candidates if c.backend == label)
                candidates.append(Candidate(f"seqtorch[{label}] + CUDA graphs", layer, layer_run(layer), torch_name,
                                            f"{label} + CUDA graphs", context=cuda_graphs_on))
    x, grad_out = random_input(T, B, I, H, device)
    return Row("layers", shape_name, cell, dict(T=T, B=B, I=I, H=H, layers=L), candidates, x, grad_out,
               label=f"{shape_name} {shape.text()} {cell}")


@contextlib.contextmanager
def cuda_graphs_on():
    """The alternating loop's CUDA graphs on (seqtorch.ops.triton.alternating.CUDA_GRAPHS) for one call."""
    previous = triton_alternating.CUDA_GRAPHS
    triton_alternating.CUDA_GRAPHS = True
    try:
        yield
    finally:
        triton_alternating.CUDA_GRAPHS = previous


def steps_row(name: str, spec: Steps, device: torch.device) -> Row:
    seq_cls, nn_cls = STEP_CELLS[spec.cell]
    torch.manual_seed(0)
    reference = nn_cls(spec.H, spec.H).to(device)
    mine = seq_cls(spec.H, spec.H).to(device)
    mine.load_state_dict(reference.state_dict())
    lstm = spec.cell == "lstm"
    torch_name = f"torch.nn.{nn_cls.__name__}"
    candidates = [Candidate(torch_name, reference, steps_run(reference, lstm)),
                  Candidate(f"seqtorch.{seq_cls.__name__}", mine, steps_run(mine, lstm), torch_name,
                            seq_cls.__name__)]
    x, grad_out = random_input(spec.calls, spec.B, spec.H, spec.H, device)
    label = f"{spec.calls} x {nn_cls.__name__} (B={spec.B}, I=H={spec.H}), per call"
    return Row("steps", name, spec.cell, dict(calls=spec.calls, B=spec.B, I=spec.H, H=spec.H), candidates, x,
               grad_out, label=label, calls=spec.calls)


def new_cell_parts(name: str, I: int, H: int):
    """(the cell's registry name, the torch-native alternative's name, make(backend) -> seqtorch layer,
    native(layer) -> the alternative with the layer's weights where it has them)."""
    if name == "layernorm-lstm":
        return ("layernorm_lstm", "loop: nn.Linear + nn.LayerNorm",
                lambda backend: seqtorch.LayerNormLSTM(I, H, backend=backend),
                lambda layer: torch_loops.LayerNormLSTMLoop(I, H).copy_from(layer))
    if name == "indrnn":
        return ("indrnn", "loop: relu(nn.Linear(x_t) + w_hh * h)",
                lambda backend: seqtorch.IndRNN(I, H, backend=backend),
                lambda layer: torch_loops.IndRNNLoop(I, H).copy_from(layer))
    if name == "zoneout-lstm":
        return ("lstm", f"loop: nn.LSTMCell + zoneout {ZONEOUT}",
                lambda backend: seqtorch.LSTM(I, H, zoneout=ZONEOUT, backend=backend),
                lambda layer: torch_loops.ZoneoutLSTMLoop(I, H, ZONEOUT).copy_from(layer))
    if name == "lstm-proj":
        proj = H // PROJ_SIZE_OF

        def native(layer: nn.Module) -> nn.Module:
            module = nn.LSTM(I, H, proj_size=proj)
            module.load_state_dict(layer.state_dict())
            return module

        return ("lstm_proj", f"torch.nn.LSTM(proj_size={proj})",
                lambda backend: seqtorch.LSTM(I, H, proj_size=proj, backend=backend), native)
    raise ValueError(f"unknown new-cell row {name!r}; expected one of {NEW_CELLS}")


def new_cell_row(name: str, shape: Shape, device: torch.device, backends: list[str]) -> Row:
    """A seqtorch cell torch.nn lacks, against the torch-native program a user writes instead."""
    T, B, I, H = shape.T, shape.B, shape.I, shape.H
    cell, alternative, make, native = new_cell_parts(name, I, H)
    torch.manual_seed(0)
    usable = seqtorch_backends(backends, device, cell, H)
    if not usable:
        raise RuntimeError(f"none of the backends {backends} can run {cell} on {device}")
    layers = [(label, make(backend).to(device)) for label, backend in usable]
    for _, layer in layers[1:]:
        layer.load_state_dict(layers[0][1].state_dict())
    baseline = native(layers[0][1]).to(device)
    run_baseline = layer_run(baseline) if isinstance(baseline, nn.LSTM) else baseline
    candidates = [Candidate(alternative, baseline, run_baseline)]
    candidates += [Candidate(f"seqtorch[{label}]", layer, layer_run(layer), alternative, label)
                   for label, layer in layers]
    x, grad_out = random_input(T, B, I, H, device)
    return Row("new-cells", name, "", dict(T=T, B=B, I=I, H=H, layers=1), candidates, x, grad_out,
               label=f"{name} ({T}, {B}, {I}, {H})", extra={"cell": cell})


def build_row(group: str, name: str, cell: str, args: argparse.Namespace, device: torch.device) -> Row:
    if group == "layers":
        shape = tiny(SHAPES[name]) if args.quick else SHAPES[name]
        return layer_row(name, cell, shape, device, args.backends, not args.no_recdrop, args.cuda_graphs)
    if group == "steps":
        spec = STEPS[name]
        return steps_row(name, replace(spec, calls=min(spec.calls, 4), H=min(spec.H, 8)) if args.quick else spec,
                         device)
    shape = tiny(SHAPES["book"]) if args.quick else SHAPES["book"]
    return new_cell_row(name, shape, device, args.backends)


def jobs_for(row: Row, pass_name: str) -> list[harness.Job]:
    """The pass's jobs, its modules in the pass's mode (eval for inference, training otherwise)."""
    training = pass_name != "inference"

    def job(candidate: Candidate) -> harness.Job:
        x, run, context = row.x, candidate.run, candidate.context
        candidate.module.train(training)
        if pass_name == "inference":
            def fn():
                with context(), torch.no_grad():
                    run(x)
        elif pass_name == "forward":
            def fn():
                with context():
                    run(x)
        else:
            def fn():
                with context():
                    out = run(x)
                    out.backward(row.grad_out[..., : out.shape[-1]])
        return harness.Job(candidate.name, fn, lambda: candidate.module.zero_grad(set_to_none=True))

    return [job(c) for c in row.candidates if training or not c.training_only]


def check_row(row: Row) -> None:
    """Every candidate computes the first one's numbers, in eval mode and float64 over the
    first :data:`CHECK_STEPS` steps. (Not in float32 over the whole sequence: some of these recurrences
    amplify rounding, the LayerNorm LSTM's at the book's shape to 1e-2 in 500 steps between float32 and
    float64, so two correct float32 programs can end far apart.) The modules go back to float32 unchanged
    (every float32 value is a float64 one)."""
    x = row.x[:CHECK_STEPS].double()

    def run(candidate: Candidate) -> torch.Tensor:
        candidate.module.double().eval()
        try:
            with candidate.context():
                return candidate.run(x)
        finally:
            candidate.module.float()

    with torch.no_grad():
        first = row.candidates[0]
        want = run(first)
        for candidate in row.candidates[1:]:
            harness.check_same(candidate.name, run(candidate), first.name, want, CHECK_ATOL)


def time_row(row: Row, passes: tuple[str, ...], timer: harness.Timer, budget: harness.Budget) -> list[dict]:
    check_row(row)
    records = []
    for pass_name in passes:
        summary = harness.summarize(harness.measure(jobs_for(row, pass_name), timer, budget))
        by_name = {c.name: c for c in row.candidates}
        pairs = [harness.pair(summary, c.name, c.versus, backend=c.backend)
                 for c in row.candidates if c.versus is not None and c.name in summary["median_ms"]]
        record = {"id": row.id, "group": row.group, "name": row.name, "cell": row.cell, "label": row.label,
                  "dims": row.dims, "pass": pass_name, "calls": row.calls, **row.extra, **summary, "pairs": pairs,
                  "kinds": {name: ("seqtorch" if by_name[name].versus else "torch") for name in summary["median_ms"]}}
        records.append(record)
        print(f"# {row.id} {pass_name}: reps={summary['reps']} " + ", ".join(
            f"{p['candidate']} {p['ratio']:.2f}x {p['versus']}" for p in pairs) + harness.busy_note(record),
            file=sys.stderr, flush=True)
    return records


TABLE_HEADER = ["row (T, B, I, H[, layers])", "pass", "seqtorch", "torch", "seqtorch time", "torch time", "ratio"]


def table(records: list[dict]) -> str:
    """One markdown table: a line per (row, pass, seqtorch candidate), its torch counterpart beside it."""
    lines = []
    for r in records:
        for p in r["pairs"]:
            times = [harness.time_text(p[key], r["calls"]) for key in ("candidate_ms", "versus_ms")]
            lines.append([r["label"], r["pass"], p["backend"], p["versus"], *times, f"{p['ratio']:.2f}x"])
    return harness.markdown_table(TABLE_HEADER, lines)


def selected_rows(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    rows = GRIDS[args.grid]
    if args.only:
        rows = [r for r in rows if any(s in row_id(*r) for s in args.only)]
        if not rows:
            raise SystemExit(f"--only {args.only} matches no row of grid {args.grid!r}; its rows: "
                             f"{[row_id(*r) for r in GRIDS[args.grid]]}")
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(parser)
    parser.add_argument("--grid", choices=list(GRIDS), default=None,
                        help="the rows: 'cpu' (the default on CPU), 'gpu' (the default on CUDA: adds the "
                             "fastrnns shape and the hidden-size sweep h32..h1024) or 'gpu-quick' (a short "
                             "lease's: book, fastrnns, H=256 and 1024 first)")
    parser.add_argument("--only", nargs="+", default=None, metavar="SUBSTRING",
                        help="only the rows whose id (layers/<shape>/<cell>, steps/<cell>cell-b<B>/<cell>, new-cells/<name>) "
                             "contains one of these")
    parser.add_argument("--list", action="store_true", help="print the grid's row ids and exit")
    parser.add_argument("--backends", nargs="+", default=["auto"],
                        help="seqtorch backends to time (default: auto; e.g. auto cpu_fused reference)")
    parser.add_argument("--passes", nargs="+", choices=PASSES, default=None,
                        help="passes for every row (default: inference and fwd+bwd; cell steps also forward)")
    parser.add_argument("--no-recdrop", action="store_true", help="leave out the recurrent-dropout candidates")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="CUDA: where a layer runs the alternating loop (H > 128), time it with CUDA graphs too "
                             "(SEQTORCH_CUDA_GRAPHS), beside it")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    args.grid = args.grid or ("gpu" if device.type == "cuda" else "cpu")
    rows = selected_rows(args)
    if args.list:
        print("\n".join(row_id(*r) for r in rows))
        return {}
    passes = {group: tuple(args.passes) if args.passes else DEFAULT_PASSES[group] for group, _, _ in rows}
    run = harness.Run.start(args, device, settings={
        "grid": args.grid, "backends": args.backends, "recurrent_dropout": RECURRENT_DROPOUT,
        "zoneout": ZONEOUT, "proj_size": f"H // {PROJ_SIZE_OF}", "cuda_graphs": args.cuda_graphs,
        "requested": [row_id(*r) for r in rows]}, measurements=sum(len(passes[group]) for group, _, _ in rows))
    records = []
    for group, name, cell in rows:
        if run.out_of_time():  # --budget is spent: the rest are listed as untimed
            break
        row = build_row(group, name, cell, args, device)
        records += time_row(row, passes[group], run.timer, run.budget)
        run.save(records, table(records))
    return run.finish(records, table(records))

if __name__ == "__main__":
    main()
