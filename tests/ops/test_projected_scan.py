"""The inference scan that projects its input inside the C++ loop (``seqtorch::scan_projected_cpp``,
:mod:`seqtorch.ops.projected`) against the reference scan of ``x W_ih^T + b_ih``: every cell with C++ code
whose input projection is the plain one, both directions, lengths of 1 and of T, zoneout's expectation,
no bias, T not a multiple of the eight-step chunk, one row chunk and two (two threads), float64 to the
table's tolerance and float32 against the float64 reference; and the rule that sends other calls to the
two-pass path. Fresh buffers of the C++ code are NaN-poisoned."""

import pytest
import torch

import seqtorch
from conftest import assert_close
from seqtorch.ops import native, projected
from seqtorch.ops.contract import ScanOptions
from seqtorch.recurrent_cells import get_cell
from seqtorch.ops.reference import scan_reference

pytestmark = [pytest.mark.skipif(native.load() is None, reason="the C++ library is not available"),
              pytest.mark.usefixtures("poison_cpu_buffers")]

CELLS = ["rnn", "lstm", "gru", "gru_reset_before", "indrnn", "lstm_proj"]


def _case(cell, T, B, I, H, dtype, bias=True, seed=0, scale=0.6):
    gen = torch.Generator().manual_seed(seed)
    spec = get_cell(cell)
    P = H // 2 if spec.projected else H
    shapes = dict(spec.parameters(I, H, P))

    def rand(*shape):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    x = rand(T, B, I)
    states = tuple(rand(B, w) for w in spec.state_sizes(H, P))
    input_weights = (rand(*shapes["weight_ih"]), rand(*shapes["bias_ih"]) if bias else None)
    weights = tuple(None if name.startswith("bias") and not bias else rand(*shapes[name]) for name in spec.weights)
    return x, states, input_weights, weights


def _reference(opts, x, states, input_weights, weights, lengths, zoneout):
    gx = opts.cell.input_projection(x, input_weights, opts.cell_args)
    return scan_reference(opts.cell, gx, states, weights, lengths=lengths, reverse=opts.reverse, acts=opts.acts,
                          keep=zoneout)


@pytest.mark.parametrize("gemm", ["all", "aten"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("cell", CELLS)
def test_projected_scan_equals_reference_float64(cell, reverse, threads, gemm, monkeypatch):
    """The projection's products add into rows filled with b_ih: through BLAS (beta = 1) and through
    at::addmm_out where libtorch has no BLAS (SEQTORCH_CPU_GEMM=aten)."""
    if gemm != "all":
        monkeypatch.setenv("SEQTORCH_CPU_GEMM", gemm)
    T, B, I, H = 13, 19, 5, 6  # 13 steps: a chunk of 8 and a tail; 19 rows: two row chunks on two threads
    x, states, input_weights, weights = _case(cell, T, B, I, H, torch.float64)
    lengths = torch.randint(1, T + 1, (B,), generator=torch.Generator().manual_seed(1))
    lengths[0], lengths[-1] = 1, T
    zoneout = tuple(torch.full((T, B, s.shape[-1]), 0.3, dtype=torch.float64) for s in states)
    opts = ScanOptions(cell, reverse=reverse)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            got = projected.scan(opts, x, input_weights, states, weights, lengths, None, zoneout)
    finally:
        torch.set_num_threads(old)
    want = _reference(opts, x, states, input_weights, weights, lengths, zoneout)
    for a, b in zip((got[0], *got[1]), (want[0], *want[1])):
        assert a.shape == b.shape
        assert_close(a, b)


@pytest.mark.parametrize("gemm", ["all", "blas", "aten"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_projected_scan_float32_against_float64_reference(cell, bias, gemm, monkeypatch):
    """float32 through each GEMM of gemm.h, the products added into the bias rows: 12 rows (brgemm takes 8 or
    more), W_ih of 18k-25k elements over 20 steps (MKL packs it under SEQTORCH_CPU_GEMM=blas: over
    kPackMinWeight, two chunks of 8 steps and more)."""
    if gemm != "all":
        monkeypatch.setenv("SEQTORCH_CPU_GEMM", gemm)
    # values at torch.nn's init scale (1/sqrt(H)): float32's rounding then stays at the scale of its tolerance
    x, states, input_weights, weights = _case(cell, 20, 12, 96, 64, torch.float64, bias=bias, seed=2, scale=0.125)
    want = _reference(ScanOptions(cell), x, states, input_weights, weights, None, None)

    def f32(ts):
        return tuple(None if t is None else t.float() for t in ts)

    with torch.no_grad():
        got = projected.scan(ScanOptions(cell), x.float(), f32(input_weights), f32(states), f32(weights))
    for a, b in zip((got[0], *got[1]), (want[0], *want[1])):
        assert_close(a.double(), b, dtype=torch.float32)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(13, 40, 200, 100), (13, 12, 37, 21)], ids=["blocks", "odd"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_projected_scan_float32_transposed_weights_and_summed_rows(cell, shape, threads):
    """float32 on brgemm: W_ih^T and W_hh^T copied by transpose.h (sizes that are, and are not, multiples of
    its 16 x 16 tiles), the projection of the last chunk's 5 steps on the first chunks' W_ih^T (with_rows; on two
    threads both split into column blocks, or not: "blocks"), and, for the cells whose pre-activations are a sum
    (rnn, lstm), the recurrent product added into the projected rows."""
    T, B, I, H = shape
    x, states, input_weights, weights = _case(cell, T, B, I, H, torch.float64, seed=3, scale=0.1)
    want = _reference(ScanOptions(cell), x, states, input_weights, weights, None, None)

    def f32(ts):
        return tuple(None if t is None else t.float() for t in ts)

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            got = projected.scan(ScanOptions(cell), x.float(), f32(input_weights), f32(states), f32(weights))
    finally:
        torch.set_num_threads(old)
    for a, b in zip((got[0], *got[1]), (want[0], *want[1])):
        assert_close(a.double(), b, dtype=torch.float32)


def test_layers_take_the_projected_scan_in_inference_only(monkeypatch):
    """A seqtorch layer in eval mode under no_grad runs the projected scan (every layer and direction), in
    training with a gradient the two-pass one; the same numbers."""
    calls = []
    original = projected.scan
    monkeypatch.setattr(projected, "scan", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    lstm = seqtorch.LSTM(4, 5, num_layers=2, bidirectional=True, dtype=torch.float64).eval()
    x = torch.randn(9, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        fast = lstm(x)
    assert len(calls) == 4
    slow = lstm(x)
    assert len(calls) == 4
    for a, b in zip((fast[0], *fast[1]), (slow[0], *slow[1])):
        assert_close(a, b.detach())


def test_masks_resets_and_every_steps_states_take_the_two_pass_scan(monkeypatch):
    """The projected op has no mask, resets or state histories: a call with any of them runs the two-pass scan
    (the same numbers as the reference layer)."""
    calls = []
    original = projected.scan
    monkeypatch.setattr(projected, "scan", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    torch.manual_seed(0)
    gru = seqtorch.GRU(4, 5, dtype=torch.float64).eval()
    reference = seqtorch.GRU(4, 5, dtype=torch.float64, backend="reference").eval()
    reference.load_state_dict(gru.state_dict())
    x = torch.randn(9, 3, 4, dtype=torch.float64)
    mask = torch.rand(9, 3) > 0.3
    resets = torch.rand(9, 3) > 0.7
    with torch.no_grad():
        for kwargs in (dict(mask=mask), dict(resets=resets), dict(return_all_states=True)):
            got, want = gru(x, **kwargs), reference(x, **kwargs)
            assert_close(got[0], want[0])
    assert not calls


def test_the_rule():
    spec = get_cell("lstm")
    x = torch.zeros(3, 2, 4)
    small = [torch.zeros(16, 4), torch.zeros(16, 4)]
    assert projected.serves("auto", True, spec, x, small, [])
    assert projected.serves("cpu_fused", True, spec, x, small, [])
    assert not projected.serves("reference", True, spec, x, small, [])
    assert not projected.serves("auto", True, spec, x.half(), small, [])
    assert not projected.serves("auto", True, spec, x, [torch.zeros(16, 4, requires_grad=True)], [])
    with torch.no_grad():
        assert projected.serves("auto", True, spec, x, [torch.zeros(16, 4, requires_grad=True)], [])
    assert not projected.serves("auto", True, spec, x, small, [torch.zeros(2, 4, dtype=torch.float64)])
    assert not projected.serves("auto", True, get_cell("layernorm_lstm"), x, small, [])  # its projection is not plain
    # over MAX_WEIGHT_BYTES (4 MB) of weights: W_ih is re-read per chunk, gx stays cheaper
    big = [torch.zeros(4 * 1024, 257)]
    assert not projected.serves("auto", True, spec, torch.zeros(3, 2, 257), big, [])
    assert projected.serves("auto", True, spec, torch.zeros(3, 2, 256), [torch.zeros(4 * 1024, 256)], [])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not projected.serves("auto", True, spec, x, small, [])
    assert not projected.serves("auto", False, spec, x, small, [])  # the C++ loop switched off


def test_unit_blocks_rule():
    """scan.cpp's unit_blocks: an inference scan of a unit-local cell (lstm, rnn) splits its hidden units over
    the threads where each block gets 64 units or more, unless the rows' loop would run chunks of more than
    32 rows (those need no barrier at all); never on one thread, never for other cells."""
    blocks = native.load().scan_unit_blocks
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert blocks("lstm", 16, 256) == 2  # the small batch: its product split by columns otherwise
        assert blocks("lstm", 20, 200) == 2  # the small language model: row chunks of 10 otherwise
        assert blocks("lstm", 8, 128) == 2  # a product too small to split, rows too few to chunk: one thread
        assert blocks("rnn", 8, 128) == 2
        assert blocks("lstm", 256, 128) == 1  # chunks of 128 rows
        assert blocks("lstm", 16, 127) == 1  # under 64 units a block
        assert blocks("gru", 16, 256) == 1  # its reset gate scales the recurrent product: not unit-local
        torch.set_num_threads(3)
        assert blocks("lstm", 16, 200) == 3
        assert blocks("lstm", 16, 150) == 2
        torch.set_num_threads(1)
        assert blocks("lstm", 16, 256) == 1
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_unit_blocks_equal_one_thread_and_the_reference(cell, threads, bias, reverse, dtype):
    """Inference by unit blocks (scan.cpp's forward_unit_blocks: each thread projects, multiplies and runs the
    gate math of its own hidden units, one barrier per step): H=200 in blocks of 96 and 104 units on 2 threads,
    64, 64 and 72 on 3 (more threads than this machine's cores: the barrier's waits give the core back), 11
    steps (a chunk of 8 and a tail). Each block's products are its columns of the whole ones: in float32 (on
    brgemm, which sums over K in the same order for any block of columns) the outputs equal the rows' loop on
    one thread exactly; float64 (BLAS, whose kernels change with the width) and both against the float64
    reference to the table's tolerance."""
    T, B, I, H = 11, 4, 24, 200
    x, states, input_weights, weights = _case(cell, T, B, I, H, torch.float64, bias=bias, seed=4, scale=0.1)
    opts = ScanOptions(cell, reverse=reverse)
    cast = lambda ts: tuple(None if t is None else t.to(dtype) for t in ts)  # noqa: E731
    args = (x.to(dtype), cast(input_weights), cast(states), cast(weights))
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        assert native.load().scan_unit_blocks(cell, B, H) == threads
        with torch.no_grad():
            blocks = projected.scan(opts, *args)
        torch.set_num_threads(1)
        with torch.no_grad():
            rows = projected.scan(opts, *args)
    finally:
        torch.set_num_threads(old)
    want = _reference(opts, x, states, input_weights, weights, None, None)
    for got, one_thread, ref in zip((blocks[0], *blocks[1]), (rows[0], *rows[1]), (want[0], *want[1])):
        if dtype == torch.float32:
            assert torch.equal(got, one_thread)
        assert_close(got.double(), ref, dtype=dtype)
