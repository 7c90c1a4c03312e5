"""The C++ library on its own: found, kept fresh, and enough to run an exported model without seqtorch.

A model holding seqtorch layers is exported (``torch.export`` and an AOTInductor package) in this
process; a fresh Python process that loads only the library (``torch.ops.load_library``, seqtorch's
Python blocked from import) then runs it at another batch size and sequence length, and its outputs must
be this process's. The rest checks how :mod:`seqtorch.ops.native` finds a prebuilt library and that a
binary built from other sources is never loaded.
"""

import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import seqtorch
from seqtorch.ops import dispatch, native
from support.dispatching import serving_kernel
from seqtorch.ops.contract import ScanOptions

from conftest import assert_close

# the fresh process: seqtorch's Python cannot be imported there at all, only the library is loaded
RUNNER = textwrap.dedent("""
    import sys, importlib.abc

    class NoSeqtorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "seqtorch":
                raise ImportError(f"{name} must not be imported here")

    sys.meta_path.insert(0, NoSeqtorch())
    import torch

    library, kind, program, inputs, outputs = sys.argv[1:]
    torch.ops.load_library(library)
    if kind == "export":
        model = torch.export.load(program).module()
    else:
        model = torch._inductor.aoti_load_package(program)
    with torch.no_grad():
        result = model(*torch.load(inputs))
    torch.save(result, outputs)
""")


class Stack(nn.Module):
    """Every cell with a C++ kernel, stacked, bidirectional, batch-first, with initial states."""

    def __init__(self):
        super().__init__()
        self.rnn = seqtorch.SimpleRNN(5, 6, batch_first=True)
        self.lstm = seqtorch.LSTM(6, 7, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = seqtorch.GRU(14, 4, batch_first=True)
        self.gru_before = seqtorch.GRU(4, 3, reset_after=False, batch_first=True)

    def forward(self, x, h0):
        y, _ = self.rnn(x, h0)
        y, (h, c) = self.lstm(y)
        y, _ = self.gru(y)
        y, h_n = self.gru_before(y)
        return y, h_n, c


def example(batch, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, steps, 5, generator=generator), torch.randn(1, batch, 6, generator=generator)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Stack().eval()


@pytest.fixture(scope="module")
def exported(model):
    assert native.load() is not None, "the C++ library did not load; see the RuntimeWarning above"
    batch, steps = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("steps", min=2, max=4096)
    with torch.no_grad():
        return torch.export.export(model, example(3, 6, seed=1),
                                   dynamic_shapes=({0: batch, 1: steps}, {1: batch}))


def run_fresh(tmp_path, kind, program, inputs):
    """Run ``program`` on ``inputs`` in a process that has only the library; its outputs."""
    torch.save(inputs, tmp_path / "inputs.pt")
    done = subprocess.run([sys.executable, "-c", RUNNER, str(native.library_path()), kind, str(program),
                           str(tmp_path / "inputs.pt"), str(tmp_path / "outputs.pt")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[:3000]
    return torch.load(tmp_path / "outputs.pt")


def assert_same_outputs(model, got, inputs):
    with torch.no_grad():
        want = model(*inputs)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        assert_close(a, b)


def test_exported_program_holds_the_cpp_op(exported):
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert "seqtorch.scan_forward_cpp.default" in targets, targets


def test_exported_program_runs_with_only_the_library(tmp_path, model, exported):
    torch.export.save(exported, tmp_path / "model.pt2")
    inputs = example(5, 11, seed=2)  # neither the example's batch size nor its sequence length
    assert_same_outputs(model, run_fresh(tmp_path, "export", tmp_path / "model.pt2", inputs), inputs)


# Slow: AOTInductor compiles the graph to C++ (a minute on 2 cores); by default
# test_exported_program_runs_with_only_the_library runs the same op in a process with only the library.
@pytest.mark.slow
def test_aoti_package_runs_with_only_the_library(tmp_path, model, exported):
    """AOTInductor compiles the graph around the op into C++ (a minute on 2 cores); the op itself is
    called through the dispatcher, so the package needs the library loaded and nothing of seqtorch."""
    package = torch._inductor.aoti_compile_and_package(exported, package_path=str(tmp_path / "model_aoti.pt2"))
    inputs = example(4, 9, seed=3)
    assert_same_outputs(model, run_fresh(tmp_path, "aoti", package, inputs), inputs)


def test_build_command_prints_the_loaded_library():
    done = subprocess.run([sys.executable, "-m", "seqtorch.ops.build", "--print-path"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(native.library_path())
    report = subprocess.run([sys.executable, "-m", "seqtorch.ops.build"], capture_output=True, text=True,
                            timeout=600)
    assert report.returncode == 0, report.stderr
    assert f"loaded ({native.origin()}) from {native.library_path()}" in report.stdout
    # the library's own list of cells (cpp_cells) is every registered cell with a cpu.h
    assert f"C++ kernels: {', '.join(native.cell_headers())}\n" in report.stdout


def test_build_command_says_why_there_is_no_library(monkeypatch):
    monkeypatch.setenv("SEQTORCH_NATIVE", "0")
    done = subprocess.run([sys.executable, "-m", "seqtorch.ops.build"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 1
    assert "turned off (SEQTORCH_NATIVE=0)" in done.stdout


def copy_sources(tmp_path, monkeypatch):
    """Point native at a copy of csrc/ and the cells' folders in another place."""
    csrc, cells = tmp_path / "ops" / "csrc", tmp_path / "recurrent_cells"
    shutil.copytree(native.CSRC, csrc)
    shutil.copytree(native.CELLS_DIR, cells, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(native, "CSRC", csrc)
    monkeypatch.setattr(native, "CELLS_DIR", cells)
    return csrc, cells


def test_build_name_is_the_same_wherever_the_sources_lie(tmp_path, monkeypatch):
    """pip builds in the source tree and the package runs from site-packages: one name for both."""
    name, header = native.build_name(), native.generated_header()
    copy_sources(tmp_path, monkeypatch)
    assert native.generated_header() == header
    assert native.build_name() == name


def test_each_source_tree_has_its_own_jit_build(tmp_path, monkeypatch):
    """Two trees of the same sources share the build name (a prebuilt library serves both) but not the JIT
    build's folder: torch's builder rebuilds a library whose compile command changed, and the command names
    the sources' paths, so with one folder the trees took turns rebuilding it."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "extensions"))
    name, jit_name, library = native.build_name(), native.jit_name(), native.jit_library()
    copy_sources(tmp_path / "tree", monkeypatch)
    assert native.build_name() == name
    assert native.jit_name() != jit_name and native.jit_name().startswith(name + "_")
    assert native.jit_library().parent != library.parent
    assert native.jit_library() == tmp_path / "extensions" / native.jit_name() / f"{native.jit_name()}.so"


@pytest.mark.parametrize("edited", ["ops/csrc/scan.cpp", "ops/csrc/scan.h", "recurrent_cells/lstm/cpu.h"])
def test_build_name_changes_with_any_source(tmp_path, monkeypatch, edited):
    """A prebuilt or cached binary of other sources has another name, so it is never loaded."""
    name, prebuilt = native.build_name(), native.prebuilt_path()
    copy_sources(tmp_path, monkeypatch)
    path = tmp_path / edited
    path.write_text(path.read_text() + "\n// edited\n")
    assert native.build_name() != name
    assert native.prebuilt_path() != prebuilt


# a process whose package folder is another one; the JIT build is replaced by a marker, so a run shows
# whether the library came from that folder or would have been compiled
LOADER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from seqtorch.ops import native

    def no_jit():
        raise RuntimeError("JIT build asked for")

    native.PACKAGE_DIR, native._build_jit = Path(sys.argv[1]), no_jit
    native.load()
    print(native.origin(), native.library_path(), native.failure())
""")


def load_from(folder):
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", LOADER, str(folder)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_prebuilt_library_is_loaded_without_a_build(tmp_path):
    """What ``pip install`` left next to the package is loaded; no JIT build is asked for."""
    prebuilt = tmp_path / native.prebuilt_path().name
    shutil.copy(native.library_path(), prebuilt)
    assert load_from(tmp_path) == f"prebuilt {prebuilt} None"


def test_a_stale_prebuilt_library_is_not_loaded(tmp_path):
    """A binary built from other sources (another hash in its name) next to the package is left alone
    (here it is not even a library: loading it would fail) and the JIT build is asked for instead."""
    stale = native.prebuilt_path().name.replace(native.build_name(), native.build_name()[:-10] + "0" * 10)
    (tmp_path / stale).write_bytes(b"not a library")
    assert load_from(tmp_path) == "None None RuntimeError: JIT build asked for"


# Every kind of recurrent product, through the layers: one product of all rows (LSTM, GRU, SimpleRNN),
# row blocks and a second product from u (reset-before GRU), the projection (proj_size). T=1 makes
# unpacked BLAS calls, T=6 packed ones (float32: brgemm with W^T copied once), the backward brgemm in
# float32 (9 rows: gemm.h's kBrgemmMinRows is 8). (The LayerNorm cells' products are the LSTM's and GRU's.)
GEMM_LAYERS = [("LSTM", {}), ("LSTM", {"proj_size": 3}), ("GRU", {}), ("GRU", {"reset_after": False}),
               ("SimpleRNN", {})]


@pytest.mark.parametrize("gemm", ["all", "blas", "aten"])
@pytest.mark.parametrize("steps", [1, 6])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name, options", GEMM_LAYERS, ids=[f"{n}{o}" for n, o in GEMM_LAYERS])
def test_each_product_path_matches_reference(monkeypatch, name, options, dtype, steps, gemm):
    """The C++ loop's recurrent products take ATen's brgemm (float32: the backward, and the forward over
    T >= 4), the Fortran BLAS GEMM (float64; float32 under SEQTORCH_CPU_GEMM=blas, these W being too small
    for MKL's packing: the split test below packs) or, where libtorch has no BLAS symbols, at::mm_out:
    SEQTORCH_CPU_GEMM=aten sends every product there. Each gives the float64 reference's values and
    gradients."""
    if gemm != "all":
        monkeypatch.setenv("SEQTORCH_CPU_GEMM", gemm)
    torch.manual_seed(0)
    kwargs = dict(options, bidirectional=True)  # one layer: the products are what is under test
    fused = getattr(seqtorch, name)(4, 5, backend="cpu_fused", dtype=dtype, **kwargs)
    reference = getattr(seqtorch, name)(4, 5, backend="reference", dtype=torch.float64, **kwargs)
    reference.load_state_dict(fused.state_dict())
    assert serving_kernel("cpu_fused", fused.cell.name, torch.empty(1, 1, fused.cell.gates, dtype=dtype), 1) is native.kernel(fused.cell.name)
    x = torch.randn(steps, 9, 4, dtype=torch.float64)
    _, state = reference(x)
    # random initial states, so that even a one-step scan's products (and their gradients) are not zero
    hx0 = [torch.randn(s.shape, dtype=torch.float64) for s in (state if isinstance(state, tuple) else (state,))]

    def run(layer):
        dt = next(layer.parameters()).dtype
        xi = x.to(dt).requires_grad_()
        hx = [h.to(dt).requires_grad_() for h in hx0]
        out, state = layer(xi, tuple(hx) if len(hx) > 1 else hx[0])
        states = state if isinstance(state, tuple) else (state,)
        g = torch.Generator().manual_seed(1)
        # the same upstream gradients in both dtypes: drawn in float64
        loss = sum((t * torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)).sum()
                   for t in (out, *states))
        layer.zero_grad()
        loss.backward()
        return [out, *states, xi.grad, *(h.grad for h in hx)] + [p.grad for p in layer.parameters()]

    for a, b in zip(run(fused), run(reference)):
        assert_close(a.double(), b, dtype=dtype)


@pytest.mark.parametrize("gemm", ["all", "blas"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name, options, H", [("LSTM", {}, 512), ("GRU", {"reset_after": False}, 600),
                                              ("SimpleRNN", {}, 1000)])
def test_products_split_by_columns_over_two_threads_match_reference(name, options, H, dtype, gemm, monkeypatch):
    """On two threads a product of 4 MFLOP or more (gemm.h's kThreadedFlops) is split into two column blocks,
    one GEMM per thread, where the recurrent weights are too large for row chunks (scan.cpp's row_chunks:
    over 3 MiB for the backward): B=32 and these H (4-4.3 MB of W_hh) make every product of these layers
    that large, forward (W_hh's rows) and backward (its columns); the reset-before GRU's second product and
    its row blocks too. In float32 through brgemm (each block's W in panels) and, under
    SEQTORCH_CPU_GEMM=blas, MKL's packed GEMM (5 steps, W over kPackMinWeight). Values and gradients against
    the float64 reference."""
    if gemm != "all":
        monkeypatch.setenv("SEQTORCH_CPU_GEMM", gemm)
    torch.manual_seed(0)
    fused = getattr(seqtorch, name)(8, H, backend="cpu_fused", dtype=dtype, **options)
    reference = getattr(seqtorch, name)(8, H, backend="reference", dtype=torch.float64, **options)
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(5, 32, 8, dtype=torch.float64)

    def run(layer):
        xi = x.to(next(layer.parameters()).dtype).requires_grad_()
        out, state = layer(xi)
        states = state if isinstance(state, tuple) else (state,)
        g = torch.Generator().manual_seed(1)
        # upstream gradients of 0.1: the weights' gradients, sums of 160 rows, then stay near 1, where
        # float32's absolute tolerance means what it says
        loss = sum((t * (0.1 * torch.randn(t.shape, generator=g, dtype=torch.float64)).to(t.dtype)).sum()
                   for t in (out, *states))
        layer.zero_grad()
        loss.backward()
        return [out, *states, xi.grad] + [p.grad for p in layer.parameters()]

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = run(fused)
        with torch.no_grad():
            inference = fused(x.to(dtype))[0]
    finally:
        torch.set_num_threads(old)
    want = run(reference)
    for a, b in zip(got, want):
        assert_close(a.double(), b, dtype=dtype)
    assert_close(inference.double(), want[0].detach(), dtype=dtype)


# (transposed_w, M, K, N): a forward's W^T and a backward's W, over 1 MiB (gemm.h's kPanelMinBytes) whole and
# in each of two threads' column blocks, and one under it.
STEP_GEMM_CASES = [(True, 20, 260, 2100), (False, 20, 2100, 260), (True, 16, 200, 800)]


@pytest.mark.parametrize("gemm", ["all", "blas"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("pack", [True, False], ids=["pack", "as-stored"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("transposed_w, M, K, N", STEP_GEMM_CASES, ids=["forward-panels", "backward-panels", "small"])
def test_step_products_in_panels_exact(monkeypatch, transposed_w, M, K, N, dtype, pack, threads, gemm):
    """A scan's recurrent product (gemm.h's StepGemm): a float32 W over 1 MiB that a scan packs is copied into
    brgemm panels of columns (64 wide for a forward's W^T, 32 for a backward's W), ragged last panel included;
    otherwise B stays whole. On small integers, whose products and sums are exact in float32: an element
    computed wrong, skipped or added twice shows."""
    if gemm != "all":
        monkeypatch.setenv("SEQTORCH_CPU_GEMM", gemm)
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(-3, 4, (M, K), generator=gen).to(dtype)
    w = torch.randint(-3, 4, (N, K) if transposed_w else (K, N), generator=gen).to(dtype)
    want = a.double() @ (w.double().t() if transposed_w else w.double())
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    native.load()
    try:
        got, panel = torch.ops.seqtorch.step_gemm(a, w, transposed_w, pack)
    finally:
        torch.set_num_threads(old)
    assert got.dtype == dtype and torch.equal(got.double(), want)
    panelled = gemm == "all" and dtype == torch.float32 and pack and K * N * 4 > 2**20
    assert panel == ((64 if transposed_w else 32) if panelled else 0)


@pytest.mark.parametrize("threads", [1, 2])
def test_float32_layer_with_panelled_weights_within_tolerance_of_float64_reference(threads):
    """An LSTM whose W_hh (4 * 420 x 420, 2.8 MB) the scans lay out in panels, forward and backward, on one
    thread and in two threads' column blocks (B=32: each product over gemm.h's kThreadedFlops; 1.4 MB a
    block), against the float64 reference: values, the input's and every weight's gradient, and the
    inference forward."""
    torch.manual_seed(0)
    fused = seqtorch.LSTM(24, 420, backend="cpu_fused")
    reference = seqtorch.LSTM(24, 420, backend="reference", dtype=torch.float64)
    reference.load_state_dict(fused.state_dict())
    x = torch.randn(6, 32, 24, dtype=torch.float64)

    def run(layer):
        xi = x.to(next(layer.parameters()).dtype).requires_grad_()
        out, (h, c) = layer(xi)
        g = torch.Generator().manual_seed(1)
        loss = sum((t * (0.1 * torch.randn(t.shape, generator=g, dtype=torch.float64)).to(t.dtype)).sum()
                   for t in (out, h, c))
        layer.zero_grad()
        loss.backward()
        return [out, h, c, xi.grad] + [p.grad for p in layer.parameters()]

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = run(fused)
        with torch.no_grad():
            inference = fused(x.float())[0]
    finally:
        torch.set_num_threads(old)
    want = run(reference)
    for a, b in zip(got, want):
        assert_close(a.double(), b, dtype=torch.float32)
    assert_close(inference.double(), want[0].detach(), dtype=torch.float32)
