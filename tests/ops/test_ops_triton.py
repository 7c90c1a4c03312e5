"""The Triton scan against the reference scan: outputs, final states and every gradient.

Without a GPU the kernels run on CPU tensors in Triton's interpreter: this module turns
``TRITON_INTERPRET=1`` on for its own tests only (the kernels are decorated at their first launch, so
the variable need not be set before seqtorch is imported). With a GPU the same tests run the compiled
kernels on CUDA tensors, and the ``cuda``-marked tests add bf16 autocast and a timing sanity check.
"""

import os
import time

import pytest
import torch

pytest.importorskip("triton")

from conftest import assert_close  # noqa: E402
from seqtorch.ops.triton import alternating as alternating_loop  # noqa: E402  (`alternating` is a fixture here)
from seqtorch.ops.triton import common, persistent  # noqa: E402
from seqtorch.recurrent_cells import get_cell  # noqa: E402
from support.dispatching import resolve_backend, serving_kernel  # noqa: E402
from support.layer_families import GATES, recurrent_scan_reference, recurrent_scan_triton, rnn  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU; none on this machine")


@pytest.fixture(autouse=True, scope="module")
def _interpreter_without_gpu():
    """Run the kernels in Triton's CPU interpreter when there is no GPU (for this module only)."""
    old = os.environ.get("TRITON_INTERPRET")
    if not HAS_CUDA:
        os.environ["TRITON_INTERPRET"] = "1"
    yield
    if old is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = old


@pytest.fixture(autouse=True)
def _poison(monkeypatch):
    """Every buffer the launchers allocate starts as NaN: an element a kernel forgot to write fails."""
    monkeypatch.setattr(common, "POISON_NEW_BUFFERS", True)


def make_inputs(mode, T, B, H, *, dtype=torch.float32, lengths=None, mask=False, bias=True, seed=0):
    """Inputs of one scan, scaled so that gates are neither all saturated nor all linear."""
    gen = torch.Generator().manual_seed(seed)
    G = GATES[mode]

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen, dtype=torch.float64)).to(dtype).to(DEVICE)

    inputs = dict(
        gx=rand(T, B, G * H), h0=rand(B, H, scale=0.5),
        c0=rand(B, H, scale=0.5) if mode == "lstm" else None,
        w_hh=rand(G * H, H, scale=H ** -0.5), b_hh=rand(G * H, scale=0.5) if bias else None)
    options = dict(lengths=None if lengths is None else torch.tensor(lengths, dtype=torch.int64, device=DEVICE),
                   rec_mask=None)
    if mask:  # a dropout mask with p = 0.25: zeros and 1/(1-p)
        keep = torch.rand(B, H, generator=gen, dtype=torch.float64) > 0.25
        options["rec_mask"] = (keep / 0.75).to(dtype).to(DEVICE)
    return inputs, options


def run_scan(scan, mode, inputs, options, upstream, **kwargs):
    """Outputs of ``scan`` and the gradients of sum(output * upstream) w.r.t. every differentiable input."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items() if v is not None}
    args = {k: leaves.get(k) for k in inputs}
    out, h_n, c_n = scan(mode, args["gx"], args["h0"], args["c0"], args["w_hh"], args["b_hh"],
                         **options, **kwargs)
    results = [out, h_n] + ([c_n] if mode == "lstm" else [])
    loss = sum((r * u).sum() for r, u in zip(results, upstream))
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return results, dict(zip(leaves, grads))


def check_against_reference(mode, T, B, H, *, dtype=torch.float32, lengths=None, mask=False, bias=True,
                            **kwargs):
    inputs, options = make_inputs(mode, T, B, H, dtype=dtype, lengths=lengths, mask=mask, bias=bias)
    gen = torch.Generator().manual_seed(1)
    upstream = [torch.randn(T, B, H, generator=gen, dtype=dtype).to(DEVICE)]
    upstream += [torch.randn(B, H, generator=gen, dtype=dtype).to(DEVICE)
                 for _ in range(2 if mode == "lstm" else 1)]
    got, got_grads = run_scan(recurrent_scan_triton, mode, inputs, options, upstream, **kwargs)
    want, want_grads = run_scan(recurrent_scan_reference, mode, inputs, options, upstream, **kwargs)
    for name, a, b in zip(["output", "h_n", "c_n"], got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert_close(a, b, msg=name)
    assert got_grads.keys() == want_grads.keys()
    for name in want_grads:
        assert_close(got_grads[name], want_grads[name], msg=f"d{name}")


MODES = ["rnn", "lstm", "gru"]
MIXED = [1, 5, 3, 5]  # lengths of 1 and of T in one batch (T = 5, B = 4)

CASES = [
    # (id, T, B, H, options)
    ("plain", 5, 3, 7, {}),
    ("T1-B1", 1, 1, 5, {}),
    ("lengths", 5, 4, 6, dict(lengths=MIXED)),
    ("lengths-reverse-mask", 5, 4, 6, dict(lengths=MIXED, reverse=True, mask=True)),
    ("reverse-nobias", 4, 2, 5, dict(reverse=True, bias=False)),
    ("mask-hardsig-relu", 4, 3, 9, dict(mask=True, recurrent_activation="hard_sigmoid", activation="relu")),
    ("B17-H20", 3, 17, 20, dict(lengths=[3, 1, 2] * 5 + [3, 3])),  # two batch blocks, BLOCK_H 32
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("T,B,H,opts", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_matches_reference_float32(mode, T, B, H, opts):
    check_against_reference(mode, T, B, H, **opts)


@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
@pytest.mark.parametrize("opts", [
    dict(),
    dict(lengths=MIXED, reverse=True, mask=True),
    dict(lengths=MIXED, mask=True, bias=False, recurrent_activation="hard_sigmoid", activation="relu"),
], ids=["plain", "lengths-reverse-mask", "lengths-mask-nobias-hardsig-relu"])
def test_gru_reset_after_both_ways(reset_after, opts):
    check_against_reference("gru", 5, 4, 6, reset_after=reset_after, **opts)


@pytest.mark.parametrize("mode", MODES)
def test_matches_reference_float64(mode):
    check_against_reference(mode, 4, 4, 6, dtype=torch.float64, lengths=[4, 1, 2, 4], mask=True, reverse=True,
                            recurrent_activation="hard_sigmoid")


@pytest.mark.parametrize("mode,H", [("lstm", 40), ("gru", 70), ("rnn", 128)],
                         ids=["lstm-H40-on-chip", "gru-H70-from-L2", "rnn-H128-max"])
def test_larger_hidden_sizes(mode, H):
    """H up to MAX_HIDDEN; W_hh kept on chip or re-read each step depending on its size."""
    config = persistent._launch_config(get_cell(mode), H, torch.float32)
    assert config["W_ON_CHIP"] == (mode != "gru")
    check_against_reference(mode, 3, 2, H, lengths=[3, 2], mask=True)


@pytest.fixture
def alternating(monkeypatch):
    """The alternating loop (a GEMM and a launch per step) for every hidden size: the persistent kernels' limit
    lowered to 0."""
    monkeypatch.setattr(persistent, "MAX_HIDDEN", 0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("T,B,H,opts", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_alternating_loop_matches_reference_float32(mode, T, B, H, opts, alternating):
    assert serving_kernel("triton", mode, torch.zeros(1, 1, GATES[mode] * H, device=DEVICE), H) \
        is alternating_loop.KERNEL
    check_against_reference(mode, T, B, H, **opts)


@pytest.mark.parametrize("mode", MODES)
def test_alternating_loop_matches_reference_float64(mode, alternating):
    check_against_reference(mode, 4, 4, 6, dtype=torch.float64, lengths=[4, 1, 2, 4], mask=True, reverse=True,
                            recurrent_activation="hard_sigmoid")


@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_alternating_loop_takes_the_reset_after_gru_only(reset_after, alternating):
    """The reset-before GRU's second product needs r inside the step: the alternating loop refuses it, with
    the reason (auto then falls back), and the persistent kernels keep it up to their limit."""
    gx = torch.zeros(2, 3, 3 * 6, device=DEVICE)
    reason = alternating_loop.supports_cell(get_cell("gru" if reset_after else "gru_reset_before"))
    assert (reason is None) == reset_after
    if not reset_after:
        assert "2 recurrent products" in reason


@pytest.mark.parametrize("mode,H,opts", [
    ("lstm", 130, dict(lengths=[3, 1, 2], mask=True)),
    ("gru", 200, dict(lengths=[3, 3, 1], reverse=True)),
    ("rnn", 256, dict(mask=True, activation="relu")),
], ids=["lstm-H130", "gru-H200-reverse", "rnn-H256-relu"])
def test_hidden_sizes_above_the_persistent_kernels(mode, H, opts):
    """H > MAX_HIDDEN runs (the alternating loop, H split over column blocks of 128), against the reference."""
    assert serving_kernel("triton", mode, torch.zeros(1, 1, GATES[mode] * H, device=DEVICE), H) \
        is alternating_loop.KERNEL
    check_against_reference(mode, 3, 3, H, **opts)


@pytest.mark.parametrize("loop", ["persistent", "alternating"])
def test_inference_path_matches_without_grad(loop, monkeypatch):
    """Under no_grad the forward runs without saving the backward's buffers; same numbers."""
    if loop == "alternating":
        monkeypatch.setattr(persistent, "MAX_HIDDEN", 0)
    inputs, options = make_inputs("lstm", 4, 3, 5, lengths=[4, 2, 1], mask=True)
    with torch.no_grad():
        got = recurrent_scan_triton("lstm", *inputs.values(), **options, reverse=True)
        want = recurrent_scan_reference("lstm", *inputs.values(), **options, reverse=True)
    for a, b in zip(got, want):
        assert not a.requires_grad
        assert_close(a, b)


def test_poisoned_buffers_start_as_nan():
    buffer = common.new_buffer((2, 3), torch.float32, "cpu")
    assert torch.isnan(buffer).all()


@pytest.mark.parametrize("H", [6, 130], ids=["persistent-H6", "alternating-H130"])
def test_layer_stack_through_functional_matches_reference(H):
    """The dispatcher end to end: 2 layers, bidirectional, lengths, recurrent dropout masks."""
    gen = torch.Generator().manual_seed(2)
    T, B, I = 4, 3, 5
    # scaled as torch initializes them (1/sqrt(H)), so that gradients stay of order 1 at any H
    weights = [tuple(torch.randn(*shape, generator=gen).mul_(min(0.4, H ** -0.5)).to(DEVICE).requires_grad_(True)
                     for shape in [(4 * H, I if layer == 0 else 2 * H), (4 * H, H), (4 * H,), (4 * H,)])
               for layer in range(2) for _ in range(2)]
    x = torch.randn(T, B, I, generator=gen).to(DEVICE)
    h0, c0 = torch.zeros(4, B, H, device=DEVICE), torch.zeros(4, B, H, device=DEVICE)
    lengths = torch.tensor([4, 1, 3], device=DEVICE)
    results = {}
    for backend in ["triton", "reference"]:
        torch.manual_seed(3)  # the same dropout masks for both backends
        out, h_n, c_n = rnn("lstm", x, h0, c0, weights, num_layers=2, bidirectional=True,
                                       training=True, recurrent_dropout=0.3, lengths=lengths, backend=backend)
        grads = torch.autograd.grad((out.sum() + h_n.square().sum() + c_n.sum()), [w for ws in weights for w in ws])
        results[backend] = (out, h_n, c_n, *grads)
    for a, b in zip(results["triton"], results["reference"]):
        assert_close(a, b)


# ---------------------------------------------------------------------------------------------------
# supports_triton and the explicit fallback

def test_supports_triton_rules(monkeypatch):
    gx = torch.zeros(3, 2, 8, device=DEVICE)
    assert serving_kernel("triton", "lstm", gx, 8) is persistent.KERNEL
    assert serving_kernel("triton", "lstm", torch.zeros(3, 2, 4 * 129, device=DEVICE), 129) \
        is alternating_loop.KERNEL
    with pytest.raises(RuntimeError) as info:
        serving_kernel("triton", "gru_reset_before", torch.zeros(3, 2, 3 * 129, device=DEVICE), 129)
    assert "hidden_size 129 is above what the persistent kernel covers (128)" in str(info.value)
    assert "dtype torch.int32" in common.supports_device(gx.int())
    assert "non-empty" in common.supports_device(torch.zeros(0, 2, 8, device=DEVICE))
    if not HAS_CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        reason = common.supports_device(gx)
        assert "CUDA" in reason and "'cpu'" in reason


def test_auto_never_picks_triton_for_cpu_tensors():
    gx = torch.zeros(3, 2, 8)  # even under the interpreter, auto leaves CPU tensors to cpu_fused/reference
    assert resolve_backend("auto", gx, 8) != "triton"


def test_forced_triton_on_unsupported_input_raises_with_reason():
    gx = torch.zeros(2, 2, 3 * 129, device=DEVICE)
    with pytest.raises(RuntimeError, match=r"backend 'triton' cannot run this input: hidden_size 129"):
        resolve_backend("triton", gx, 129, cell="gru_reset_before")
    h0 = torch.zeros(2, 129, device=DEVICE)
    w = torch.zeros(3 * 129, 129, device=DEVICE)
    with pytest.raises(RuntimeError, match=r"hidden_size 129 is above .* \(128\) \(triton persistent\); .*2 recurrent "
                                           r"products .*\(triton alternating\)"):
        recurrent_scan_triton("gru", gx, h0, None, w, None, reset_after=False)


# ---------------------------------------------------------------------------------------------------
# CUDA only: compiled kernels, autocast, timing

@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("mode", MODES)
def test_cuda_bf16_autocast_matches_float32_math(mode):
    """Under autocast gx arrives in bf16; the state, weights and math stay float32 and only the output is
    stored in bf16, so it is the float32 result rounded: at most one bf16 ulp (2**-8 for |h| < 1) apart."""
    inputs, options = make_inputs(mode, 16, 32, 32, lengths=[16, 3] * 16)
    inputs["gx"] = inputs["gx"].bfloat16()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out, h_n, _ = recurrent_scan_triton(mode, *inputs.values(), **options)
    inputs["gx"] = inputs["gx"].float()
    want, want_h, _ = recurrent_scan_reference(mode, *inputs.values(), **options)
    assert out.dtype == torch.bfloat16 and h_n.dtype == torch.float32
    torch.testing.assert_close(out.float(), want, atol=2.0 ** -8, rtol=0)
    assert_close(h_n, want_h)


@pytest.mark.cuda
@needs_cuda
def test_cuda_faster_than_reference_loop():
    """Sanity, not a benchmark: one fused launch per direction beats T small autograd steps."""
    inputs, options = make_inputs("lstm", 256, 64, 64)
    leaves = {k: v.requires_grad_(True) for k, v in inputs.items()}

    def timed(scan):
        for _ in range(2):  # warm-up (compilation)
            scan("lstm", *leaves.values(), **options)[0].sum().backward()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(5):
            scan("lstm", *leaves.values(), **options)[0].sum().backward()
        torch.cuda.synchronize()
        return time.perf_counter() - start

    assert timed(recurrent_scan_triton) < timed(recurrent_scan_reference)
