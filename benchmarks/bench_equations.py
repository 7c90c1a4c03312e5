"""Time cells written as equations (seqtorch.PointwiseCell) against the hand-written cells and torch loops.

Side by side in one process, candidates interleaved (``harness.py``), at the book's shape (T=500, B=128,
I=H=32) by default, inference (``no_grad``, eval mode) and fwd+bwd (the forward, then the backward of a random
upstream gradient). Each row's candidates are first checked to compute the same numbers (float64, 50 steps),
where they are the same computation. Rows, with the targets of issue 20 (ratio = the first candidate's time
over the second's; lower is better):

* ``peephole/lstm``: the peephole LSTM as a user cell (:class:`PeepholeUser`, defined here) against the
  hand-written LSTM (``seqtorch.LSTM``'s C++ loop), same weights, peepholes 0 for the sameness check:
  target <= 1.15x.
* ``peephole/reference``: the same against itself on ``backend="reference"`` (the plain autograd loop):
  target <= 0.3x.
* ``generated/lstm``, ``generated/gru``: the LSTM and torch's GRU written as equations against the built-in
  hand-written cells (``cpu.h``), same weights, equal values: target <= 1.10x.
* ``ops/<cell>-forward``, ``ops/<cell>-backward``: the same cells' C++ scan ops alone (pass ``op``), the
  generated code against ``cpu.h`` without the layer around it.
* ``shipped/<cell>``: each cell of ``seqtorch.equations`` against the same equations in a torch loop
  (``torch_loops.EquationLoop``: ``nn.Linear`` projections and the cell's torch ops per step).
* ``compile``: the first use of a new cell in a fresh process with an empty cache (``SEQTORCH_CACHE``): the
  trace (with the first import of AOTAutograd) and the C++ library's build, in seconds.

    OMP_NUM_THREADS=1 python benchmarks/bench_equations.py --threads 1 --out runs/bench-equations.json
    python benchmarks/bench_equations.py --only peephole generated --repeats 9
    python benchmarks/bench_equations.py --quick       # smoke test: tiny shapes, no build timed
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

import harness
import seqtorch
import torch_loops
from seqtorch.recurrent_cells import get_cell

BOOK = dict(T=500, B=128, I=32, H=32)
QUICK = dict(T=5, B=3, I=6, H=8)
CHECK_STEPS, CHECK_ATOL = 50, 1e-8


class PeepholeUser(seqtorch.equations.PeepholeLSTM):
    """The peephole LSTM as a user cell: a class of this script (its own name, its own C++ library) with the
    equations of issue 20's example, which the shipped one has."""


class LSTMEquations(seqtorch.PointwiseCell):
    """torch's LSTM (gates i, f, g, o), written as equations."""

    family = "lstm"
    gates = 4
    states = ("h", "c")

    def forward(self, z, h, c):
        i, f, g, o = z.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class GRUEquations(seqtorch.PointwiseCell):
    """torch's GRU (gates r, z, n; the candidate's product scaled by r), written as equations."""

    family = "gru"
    gates = 3
    inputs = "separate"

    def forward(self, zx, zh, h):
        xr, xz, xn = zx.chunk(3, dim=-1)
        hr, hz, hn = zh.chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h


@dataclass
class Row:
    """Candidates (name, module, run) doing the same work; the first is timed over the second."""

    id: str
    candidates: list[tuple[str, nn.Module, Callable]]
    target: str = ""
    check: bool = True  # whether the candidates compute the same numbers, checked before timing


def layer(cell, dims, backend="auto", **kwargs) -> nn.Module:
    return seqtorch.Recurrent(cell, dims["I"], dims["H"], backend=backend, **kwargs)


def first_output(module):
    return lambda x: module(x)[0]


def peephole_rows(dims) -> list[Row]:
    torch.manual_seed(0)
    user = layer(PeepholeUser(), dims)
    with torch.no_grad():
        for name in PeepholeUser.vectors:
            getattr(user, f"{name}_l0").zero_()  # as an LSTM, for the sameness check; the cost is the same
    lstm = seqtorch.LSTM(dims["I"], dims["H"])
    lstm.load_state_dict({k: v for k, v in user.state_dict().items() if not k.startswith("w_c")})
    reference = layer(PeepholeUser(), dims, backend="reference")
    reference.load_state_dict(user.state_dict())
    return [Row("peephole/lstm", [("PeepholeLSTM (user cell)", user, first_output(user)),
                                  ("seqtorch.LSTM (hand-written)", lstm, first_output(lstm))], "<= 1.15x"),
            Row("peephole/reference", [("PeepholeLSTM (user cell)", user, first_output(user)),
                                       ("backend=reference", reference, first_output(reference))], "<= 0.30x")]


def generated_rows(dims) -> list[Row]:
    rows = []
    for name, cell, builtin in (("lstm", LSTMEquations(), seqtorch.LSTM), ("gru", GRUEquations(), seqtorch.GRU)):
        torch.manual_seed(0)
        generated = layer(cell, dims)
        hand = builtin(dims["I"], dims["H"])
        hand.load_state_dict(generated.state_dict())
        rows.append(Row(f"generated/{name}", [(f"{name} from equations", generated, first_output(generated)),
                                               (f"seqtorch.{builtin.__name__} (cpu.h)", hand, first_output(hand))],
                        "<= 1.10x"))
    return rows


def shipped_rows(dims) -> list[Row]:
    rows = []
    for cls in seqtorch.equations.SHIPPED:
        torch.manual_seed(0)
        cell = cls()
        ours = layer(cell, dims)
        loop = torch_loops.EquationLoop(cell, dims["I"], dims["H"]).copy_from(ours)
        rows.append(Row(f"shipped/{cls.__name__}", [(f"seqtorch.Recurrent({cls.__name__}())", ours,
                                                     first_output(ours)), ("torch loop of its equations", loop,
                                                                           loop)]))
    return rows


def scan_ops(cell, dims) -> tuple[Callable, Callable]:
    """The C++ loop's forward and backward ops of ``cell`` on random inputs: the code of the cell alone, with
    no Module, input projection or weight gradients around it."""
    from seqtorch.ops import dispatch
    from seqtorch.ops.contract import ScanOptions

    g = torch.Generator().manual_seed(0)
    T, B, H = dims["T"], dims["B"], dims["H"]
    gx = torch.randn(T, B, cell.gates * H, generator=g)
    states = [torch.randn(B, H, generator=g) * 0.5 for _ in cell.states]
    weights = [torch.randn(*shape, generator=g) * 0.3 for shape in cell.weight_shapes(H, H)]
    kernel, args = dispatch.cpp_kernel(cell.name), ScanOptions(cell).op_args()
    none = [None] * len(states)
    # the per-step inputs, all absent: lengths, mask, restart, reset_states, rec_mask, keep
    absent = (None, None, None, none, None, none)
    outputs = kernel.forward(*args, True, gx, states, weights, *absent)
    grads = [torch.randn_like(outputs[0])] + none[1:]
    return (lambda x: kernel.forward(*args, True, gx, states, weights, *absent)[0],
            lambda x: kernel.backward(*args, grads, list(outputs), weights, *absent)[0])


def op_rows(dims) -> list[Row]:
    """The generated LSTM's and GRU's scan ops against the built-in cells' (``cpu.h``), forward and backward
    apart (pass ``op``; the numbers differ only by rounding, which the layer rows check)."""
    from seqtorch.ops import dispatch

    if not dispatch.USE_NATIVE:
        print("# skipping the ops rows: the C++ loop is off", file=sys.stderr)
        return []
    rows = []
    for name, cell in (("lstm", LSTMEquations()), ("gru", GRUEquations())):
        generated, hand = scan_ops(cell, dims), scan_ops(get_cell(name), dims)
        for k, kind in enumerate(("forward", "backward")):
            rows.append(Row(f"ops/{name}-{kind}", [(f"{name} from equations", nn.Module(), generated[k]),
                                                    (f"{name} cpu.h", nn.Module(), hand[k])], "<= 1.10x", check=False))
    return rows


ROWS = {"peephole": peephole_rows, "generated": generated_rows, "ops": op_rows, "shipped": shipped_rows}


def check(row: Row, x: torch.Tensor) -> None:
    """The candidates compute the same numbers (float64, eval mode, the first steps): a ratio between
    different computations would mean nothing."""
    x = x[:CHECK_STEPS].double()
    outputs = []
    with torch.no_grad():
        for name, module, run in row.candidates:
            module.double().eval()
            try:
                outputs.append((name, run(x)))
            finally:
                module.float()
    for name, out in outputs[1:]:
        harness.check_same(name, out, outputs[0][0], outputs[0][1], CHECK_ATOL)


def jobs(row: Row, pass_name: str, x: torch.Tensor, grad_out: torch.Tensor) -> list[harness.Job]:
    def job(name, module, run):
        module.train(pass_name != "inference")
        if pass_name == "op":
            def fn():
                run(x)
        elif pass_name == "inference":
            def fn():
                with torch.no_grad():
                    run(x)
        else:
            def fn():
                run(x).backward(grad_out)
        return harness.Job(name, fn, lambda: module.zero_grad(set_to_none=True))

    return [job(*c) for c in row.candidates]


COMPILE_SCRIPT = textwrap.dedent('''
    import json, sys, time
    start = time.perf_counter()
    import torch, seqtorch
    imported = time.perf_counter()

    class FreshCell(seqtorch.PointwiseCell):  # a cell this cache has not seen (its constant: the run's salt)
        gates, states, vectors = 4, ("h", "c"), ("w",)
        def forward(self, z, h, c, w):
            i, f, g, o = z.chunk(4, dim=-1)
            c = torch.sigmoid(f + w * c) * c + torch.sigmoid(i) * torch.tanh(g) * SALT
            return torch.sigmoid(o) * torch.tanh(c), c

    SALT = float(sys.argv[1])
    cell = FreshCell()
    traced = time.perf_counter()
    seqtorch.Recurrent(cell, 8, 8)(torch.randn(3, 2, 8))
    built = time.perf_counter()
    print(json.dumps({"import_s": imported - start, "trace_s": traced - imported, "build_s": built - traced}))
''')


def compile_record(quick: bool) -> dict:
    """The first use of a new cell, in a fresh process with an empty SEQTORCH_CACHE (``--quick``: with the C++
    loops off, so only the trace is timed)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "SEQTORCH_CACHE": cache, "PYTHONPATH": os.pathsep.join(sys.path)}
        if quick:
            env["SEQTORCH_NATIVE"] = "0"
        result = subprocess.run([sys.executable, "-c", COMPILE_SCRIPT, str(1.0 + os.getpid() % 997 / 1e4)],
                                capture_output=True, text=True, env=env, timeout=1200)
    if result.returncode != 0:
        raise RuntimeError(f"the compile-time run failed:\n{result.stderr[-3000:]}")
    return {"id": "compile", **json.loads(result.stdout.strip().splitlines()[-1]), "native": not quick}


TABLE_HEADER = ["row", "pass", "candidate", "versus", "candidate time", "versus time", "ratio", "target"]


def table(records: list[dict]) -> str:
    lines = []
    for r in records:
        if r["id"] == "compile":
            build = f"C++ build {r['build_s']:.1f} s" if r["native"] else "(C++ loops off)"
            lines.append(["compile (a new cell, empty cache)", "first use", f"trace {r['trace_s']:.1f} s", build,
                          "", "", "", ""])
            continue
        p = r["pairs"][0]
        lines.append([r["id"], r["pass"], p["candidate"], p["versus"], harness.time_text(p["candidate_ms"]),
                      harness.time_text(p["versus_ms"]), f"{p['ratio']:.2f}x", r["target"]])
    return harness.markdown_table(TABLE_HEADER, lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(parser)
    parser.add_argument("--only", nargs="+", default=None, metavar="GROUP", choices=[*ROWS, "compile"],
                        help="only these groups of rows (default: all)")
    parser.add_argument("--passes", nargs="+", choices=("inference", "fwd+bwd"), default=["inference", "fwd+bwd"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type != "cpu":
        raise SystemExit("bench_equations times the C++ loop: run it with --device cpu")
    groups = args.only or [*ROWS, "compile"]
    dims = QUICK if args.quick else BOOK
    rows = [row for group in groups if group in ROWS for row in ROWS[group](dims)]
    run = harness.Run.start(args, device, settings={"dims": dims, "requested": [r.id for r in rows]},
                            measurements=len(rows) * len(args.passes))
    x, grad_out = torch.randn(dims["T"], dims["B"], dims["I"]), torch.randn(dims["T"], dims["B"], dims["H"])
    records = []
    for row in rows:
        if run.out_of_time():
            break
        if row.check:
            check(row, x)
        for pass_name in args.passes if row.check else ("op",):
            summary = harness.summarize(harness.measure(jobs(row, pass_name, x, grad_out), run.timer, run.budget))
            record = {"id": row.id, "pass": pass_name, "target": row.target, **summary,
                      "pairs": [harness.pair(summary, row.candidates[0][0], row.candidates[1][0])]}
            records.append(record)
            print(f"# {row.id} {pass_name}: {record['pairs'][0]['ratio']:.2f}x{harness.busy_note(record)}",
                  file=sys.stderr, flush=True)
            run.save(records, table(records))
    if "compile" in groups and not run.out_of_time():
        records.append(compile_record(args.quick))
    return run.finish(records, table(records))


if __name__ == "__main__":
    main()
