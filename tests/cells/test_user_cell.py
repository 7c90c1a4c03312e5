"""A cell written in this file, not in the package, as a user writes one: it runs on the C++ loop (its own
generated library), the Python loop and the Triton kernels (generated code; the interpreter here), passes the
registry's generic checks on each, and behaves as a cell in every layer, step Module, pickle and transform; a
cell the generators cannot write runs on the reference, said once.

``Gated`` uses most of what the generators take: ``inputs = "separate"``, slices and chunks, a vector, two
states, a where, a maximum, softplus (decomposed into exp/log1p), a division, a relu of a state.
"""

import copy
import io
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import seqtorch
from conftest import assert_close
from seqtorch.ops import dispatch, native, native_cells
from seqtorch.ops.contract import ScanOptions
from seqtorch.recurrent_cells import get_cell
from support.cell_checks import CellChecks, make, poison  # noqa: F401 (poison: autouse)
from support.dispatching import serving_kernel


class Gated(seqtorch.PointwiseCell):
    gates = 3
    states = ("h", "a")
    vectors = ("leak",)
    inputs = "separate"

    def forward(self, zx, zh, h, a, leak):
        H = h.shape[-1]
        r, u, n = zx[:, :H], zx[:, H:2 * H], zx[:, 2 * H:]  # slices (a slice_backward in the backward graph)
        rh, uh, nh = zh.chunk(3, dim=-1)
        r = torch.sigmoid(r + rh)
        cand = torch.tanh(n + r * nh)
        a = torch.maximum(a * torch.sigmoid(leak), F.softplus(u + uh))
        h = torch.where(cand > 0, cand, 0.5 * cand) * a / (1 + a) + 0.1 * torch.relu(h)
        return h, a


def gated_equations(zx, zh, h, a, leak):
    """The same step, written out with other torch ops (the reference runs Gated.forward itself)."""
    H = h.shape[-1]
    r = 1 / (1 + torch.exp(-(zx[:, :H] + zh[:, :H])))
    cand = torch.tanh(zx[:, 2 * H:] + r * zh[:, 2 * H:])
    a = torch.max(a / (1 + torch.exp(-leak)), torch.log(1 + torch.exp(zx[:, H:2 * H] + zh[:, H:2 * H])))
    return (torch.where(cand > 0, cand, cand / 2) * a / (1 + a) + 0.1 * h.clamp(min=0), a)


CELL = Gated()


class TestGated(CellChecks):
    cell = CELL


def test_the_cell_is_its_equations():
    g = torch.Generator().manual_seed(0)
    zx, zh = torch.randn(2, 4, 15, generator=g, dtype=torch.float64)
    h, a, leak = torch.randn(4, 5, generator=g, dtype=torch.float64), torch.rand(4, 5, dtype=torch.float64), \
        torch.randn(5, dtype=torch.float64)
    for got, want in zip(CELL.forward(zx, zh, h, a, leak), gated_equations(zx, zh, h, a, leak)):
        assert_close(got, want)


def test_its_name_is_its_class_and_a_hash_of_its_equations():
    assert CELL.name.startswith("Gated_") and len(CELL.name) == len("Gated_") + 10
    assert get_cell(CELL.name) is CELL
    assert Gated().name == CELL.name  # the same equations: the same name, traced once per class


def test_the_cpp_loop_that_serves_it_is_its_own_library(monkeypatch):
    """Not the main library's op pair, not the Python loop: ops in the cell's own namespace."""
    monkeypatch.setattr(dispatch, "USE_NATIVE", True)
    gx = torch.zeros(2, 3, 15)
    kernel = serving_kernel("cpu_fused", CELL.name, gx, 5)
    assert kernel is dispatch.cpp_kernel(CELL.name) is not None
    assert kernel.forward.namespace.startswith("seqtorch_gen_")
    assert CELL.name not in native.cpp_cells()
    directory = native_cells.cache_root() / kernel.forward.namespace
    assert (directory / f"{CELL.name}.h").read_text() == CELL.generated_cpp()
    assert (directory / f"{CELL.name}_loop.py").read_text() == CELL.generated_python()


def run_layer(layer, x):
    torch.manual_seed(1)  # the same dropout and zoneout draws on every backend
    out, (h_n, a_n) = layer(x, lengths=torch.tensor([6, 1, 4]))
    return out, h_n, a_n, *torch.autograd.grad(out.square().sum() + a_n.sum(), list(layer.parameters()))


def test_a_layer_of_it_has_torch_nn_names_and_every_option():
    """Stacked, bidirectional, batch_first, recurrent dropout, zoneout, lengths: the C++ loop against the
    reference, outputs and every parameter's gradient."""
    torch.manual_seed(0)
    layer = seqtorch.Recurrent(Gated(), input_size=4, hidden_size=5, num_layers=2, bidirectional=True,
                               batch_first=True, recurrent_dropout=0.2, zoneout=0.1, backend="cpu_fused")
    names = {name for name, _ in layer.named_parameters()}
    assert {"weight_ih_l1_reverse", "weight_hh_l0", "bias_ih_l1", "bias_hh_l0_reverse", "leak_l0",
            "leak_l1_reverse"} <= names
    assert layer.weight_ih_l0.shape == (15, 4) and layer.leak_l0.shape == (5,)
    assert layer.mode == CELL.name  # no gate layout of torch.nn's
    x = torch.randn(3, 6, 4)
    got = run_layer(layer, x)
    assert got[0].shape == (3, 6, 10) and got[1].shape == got[2].shape == (4, 3, 5)
    reference = copy.deepcopy(layer)
    reference.backend = "reference"
    for a, b in zip(got, run_layer(reference, x)):
        assert_close(a, b)


def test_a_step_module_of_it_runs_its_equations():
    step = seqtorch.RecurrentCell(Gated(), 4, 5)
    assert step.leak.shape == (5,) and step.weight_hh.shape == (15, 5)
    x, h, a = torch.randn(3, 4), torch.randn(3, 5), torch.rand(3, 5)
    with torch.no_grad():
        zx = F.linear(x, step.weight_ih, step.bias_ih)
        zh = F.linear(h, step.weight_hh, step.bias_hh)
        want = gated_equations(zx, zh, h, a, step.leak)
        got = step(x, (h, a))
    for g, w in zip(got, want):
        assert_close(g, w, dtype=torch.float32)


def test_vector_initial_values():
    class Init(seqtorch.PointwiseCell):
        vectors = ("one", "half", "drawn")
        vector_init = {"one": torch.nn.init.ones_, "half": 0.5}

        def forward(self, z, h, one, half, drawn):
            return torch.tanh(z * one + half * h + drawn)

    layer = seqtorch.Recurrent(Init(), 2, 50)
    assert (layer.one_l0 == 1).all() and (layer.half_l0 == 0.5).all()
    assert 0 < layer.drawn_l0.abs().max() <= 50 ** -0.5  # unlisted: the "torch" scheme's uniform draw
    assert (seqtorch.Recurrent(Init(), 2, 50, init="keras").drawn_l0 == 0).all()


def test_a_module_of_it_pickles_and_loads_in_a_process_that_defines_the_class(tmp_path):
    """The Module keeps the cell's registered name; a fresh process that defines the class (here: imports
    this file) finds the cell again, and its C++ library in the cache, without a build."""
    layer = seqtorch.Recurrent(Gated(), 4, 5, backend="cpu_fused")
    x = torch.randn(6, 2, 4)
    out, _ = layer(x)
    buffer = io.BytesIO()
    torch.save({"layer": layer, "x": x, "out": out}, buffer)
    assert copy.deepcopy(layer).cell is CELL
    path = tmp_path / "layer.pt"
    path.write_bytes(buffer.getvalue())
    here = Path(__file__).parent
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path[:0] = [{str(here)!r}, {str(here.parent)!r}]
        import test_user_cell  # defines Gated
        saved = torch.load({str(path)!r}, weights_only=False)
        out, _ = saved["layer"](saved["x"])
        assert torch.equal(out, saved["out"]), (out - saved["out"]).abs().max()
        from seqtorch.ops import dispatch
        assert dispatch.cpp_kernel(saved["layer"].cell.name) is not None
        print("loaded", saved["layer"].cell.name)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here.parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"loaded {CELL.name}" in result.stdout
    assert "compiling" not in result.stderr  # the library came from the cache


def test_double_backward_and_vmap_go_through_the_reference(monkeypatch):
    """Every transform of the scan's one autograd layer: the gradient of a gradient, vmap over a batch."""
    monkeypatch.setattr(dispatch, "USE_NATIVE", True)
    gx, states, weights, _, _ = make(CELL)
    out, _ = seqtorch.functional.scan(CELL, gx, states, weights)
    (g,) = torch.autograd.grad(out.sum(), gx, create_graph=True)
    (gg,) = torch.autograd.grad(g.square().sum(), weights[2])
    out_r, _ = seqtorch.functional.scan(CELL, gx, states, weights, backend="reference")
    (g_r,) = torch.autograd.grad(out_r.sum(), gx, create_graph=True)
    (gg_r,) = torch.autograd.grad(g_r.square().sum(), weights[2])
    assert_close(gg, gg_r)
    batched = torch.func.vmap(lambda x: seqtorch.functional.scan(CELL, x, states, weights)[0], in_dims=1)(gx[:, None])
    assert_close(batched[0], out)


def test_compile_is_one_graph_and_export_holds_its_own_op(monkeypatch):
    """torch.compile(fullgraph=True) traces a layer of it as one graph with its backward; torch.export keeps
    its own library's op (a dynamic T) and runs it (the op's fake kernel is registered in its namespace)."""
    import torch._dynamo

    monkeypatch.setattr(dispatch, "USE_NATIVE", True)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # reset() keeps the counters: count this test's graphs only
    torch.manual_seed(0)
    layer = seqtorch.Recurrent(Gated(), 4, 5)
    compiled = torch.compile(layer, fullgraph=True, dynamic=True, backend="aot_eager")
    for steps in (5, 9):
        x = torch.randn(steps, 3, 4)
        out, (h, a) = compiled(x)
        want, (_, want_a) = layer(x)
        assert_close(out, want, dtype=torch.float32)
        got = torch.autograd.grad(out.sum() + a.sum(), list(layer.parameters()))
        for g, w in zip(got, torch.autograd.grad(want.sum() + want_a.sum(), list(layer.parameters()))):
            assert_close(g, w, dtype=torch.float32)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    program = torch.export.export(layer.eval(), (torch.randn(6, 3, 4),),
                                  dynamic_shapes=({0: torch.export.Dim("steps", min=2, max=64)},))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert f"{dispatch.cpp_kernel(CELL.name).forward.namespace}.scan_forward_cpp.default" in targets, targets
    x = torch.randn(11, 3, 4)
    assert_close(program.module()(x)[0], layer(x)[0], dtype=torch.float32)


# ---- refused equations ------------------------------------------------------------------------------

TWO = torch.tensor([2.0])

class RowNorm(seqtorch.PointwiseCell):
    """Normalizes over the hidden units: a reduction no generator writes."""

    def forward(self, z, h):
        return torch.tanh(z - z.mean(dim=-1, keepdim=True) + h)


def test_refused_equations_run_on_the_reference_and_say_so_once():
    with pytest.warns(RuntimeWarning, match=r"RowNorm: a reduction \(aten\.mean\.dim\).*runs on the reference scan"):
        cell = RowNorm()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RowNorm()  # said once per class
    assert "aten.mean.dim" in cell.reference_only
    gx, states, weights, _, _ = make(cell)
    assert dispatch.choose_for("auto", ScanOptions(cell), gx, 3).name == "reference"
    with pytest.raises(RuntimeError, match=r"aten\.mean\.dim.*\(C\+\+ loop\)"):
        dispatch.choose_for("cpu_fused", ScanOptions(cell), gx, 3)
    layer = seqtorch.Recurrent(cell, 3, 4)
    out, h_n = layer(torch.randn(5, 2, 3))
    assert out.shape == (5, 2, 4)


@pytest.mark.parametrize("forward, match", [
    (lambda self, z, h: torch.tanh(z @ torch.ones(z.shape[-1], z.shape[-1]) + h), "matrix product"),
    (lambda self, z, h: torch.tanh(z[:, :2] + h[:, :2]).repeat(1, h.shape[-1] // 2 + 1)[:, :h.shape[-1]],
     "not whole blocks"),
    (lambda self, z, h: torch.tanh(z.cumsum(0) + h), "outside the ops|reduction"),
    (lambda self, z, h: torch.tanh(z * TWO + h), "reads a tensor besides its arguments"),
    (lambda self, z, h: torch.tanh(z + h) if bool(z.sum() > 0) else h, "without branches on tensor values"),
], ids=["matmul", "partial-block", "cumsum", "tensor-constant", "branch"])
def test_what_the_generators_refuse_is_named(forward, match):
    cls = type("Refused", (seqtorch.PointwiseCell,), {"forward": forward})
    with pytest.warns(RuntimeWarning, match=match):
        cell = cls()
    assert cell.reference_only is not None and cell.generated_cpp() is None


def test_proj_size_is_refused_at_construction():
    with pytest.raises(ValueError, match="proj_size=2 projects only the LSTM's"):
        seqtorch.Recurrent(Gated(), 4, 5, proj_size=2)


@pytest.mark.parametrize("attrs, error, match", [
    (dict(gates=0), ValueError, "gates must be a positive int"),
    (dict(states=["h"]), ValueError, "states must be a tuple of names"),
    (dict(vectors=("weight_hh",)), ValueError, "distinct and not one of"),
    (dict(inputs="both"), ValueError, "inputs must be one of"),
    (dict(vector_init={"w": 1.0}), ValueError, "not among its vectors"),
    (dict(states=("h", "c")), TypeError, r"forward must take \(z, h, c\)"),
    (dict(forward=lambda self, z, h: (h, h)), TypeError, "must return its 1 new state"),
    (dict(gates=2, forward=lambda self, z, h: z), ValueError, r"new state 0 has shape \(5, 14\)"),
], ids=["gates", "states-list", "reserved", "inputs", "vector-init", "arity", "count", "shape"])
def test_a_declaration_that_does_not_fit_is_a_clear_error(attrs, error, match):
    body = {"gates": 1, "forward": lambda self, z, h: torch.tanh(z + h), **attrs}
    cls = type("Bad", (seqtorch.PointwiseCell,), body)
    with pytest.raises(error, match=match):
        cls()
