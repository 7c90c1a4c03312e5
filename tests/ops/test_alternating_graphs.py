"""The alternating loop's CUDA-graph path (``SEQTORCH_CUDA_GRAPHS=1``, seqtorch/ops/triton/alternating.py),
its structure tested on CPU: the kernels run in Triton's interpreter and a recording stand-in takes the
place of torch.cuda's graphs (the loop is "captured" by running it, "replayed" by running it again on the
static buffers and writing the results into the captured outputs, which is what a replay does to them).
Checked: one capture per scan shape (forward and backward apart), every tensor argument copied into the
static buffers before a replay (new inputs give new results), outputs cloned out (a later call does not
change an earlier result), the reference's values and gradients, and no capture while the flag is off.
On a GPU the same tests run the real graphs (benchmarks/gpu_check.sh runs this file there).
"""

import pytest
import torch

triton = pytest.importorskip("triton")

HAS_CUDA = torch.cuda.is_available()

from conftest import assert_close  # noqa: E402
from seqtorch.functional import scan  # noqa: E402
from seqtorch.ops.triton import alternating as triton_alternating  # noqa: E402
from seqtorch.ops.triton import persistent  # noqa: E402

DEVICE = "cuda" if HAS_CUDA else "cpu"


class RecordingGraphs:
    """The graph API on CPU: capture runs the loop (as the real capture's warm-up and recording do), replay
    runs it again on the same static buffers and writes the results into the captured outputs."""

    device_type = "cpu"

    def __init__(self):
        self.captures = 0
        self.replays = 0

    def capture(self, run):
        self.captures += 1
        outputs = run()

        def replay():
            self.replays += 1
            for out, fresh in zip(outputs, run()):
                out.copy_(fresh)

        return outputs, replay


@pytest.fixture
def graphs(monkeypatch):
    """The alternating loop for every hidden size, with graphs on and a fresh cache of captured loops."""
    if not HAS_CUDA:  # the kernels are decorated at their first launch: the variable is read then
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(persistent, "MAX_HIDDEN", 0)
    monkeypatch.setattr(triton_alternating, "CUDA_GRAPHS", True)
    monkeypatch.setattr(triton_alternating, "_CAPTURED", type(triton_alternating._CAPTURED)())
    if not HAS_CUDA:
        monkeypatch.setattr(triton_alternating, "GRAPHS", RecordingGraphs())
    return triton_alternating.GRAPHS


def _inputs(T, B, H, seed):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return (torch.randn(*shape, generator=gen) * 0.5).to(DEVICE).requires_grad_()

    return dict(gx=rand(T, B, 4 * H), h0=rand(B, H), c0=rand(B, H), w_hh=rand(4 * H, H), b_hh=rand(4 * H))


def _run(backend, inputs, upstream, lengths):
    """An LSTM scan on ``backend`` ("triton": the alternating loop here), its output, final states, gradients."""
    out, (h_n, c_n) = scan("lstm", inputs["gx"], (inputs["h0"], inputs["c0"]), (inputs["w_hh"], inputs["b_hh"]),
                           lengths=lengths, backend=backend)
    grads = torch.autograd.grad((out * upstream).sum() + h_n.sum() + c_n.sum(), list(inputs.values()))
    return [out, h_n, c_n], list(grads)


def test_captured_loop_replays_with_new_inputs_and_clones_its_outputs(graphs):
    T, B, H = 4, 3, 6
    lengths = torch.tensor([4, 2, 3], device=DEVICE)
    first_inputs, second_inputs = _inputs(T, B, H, 0), _inputs(T, B, H, 1)
    upstream = torch.randn(T, B, H).to(DEVICE)
    first = _run("triton", first_inputs, upstream, lengths)
    kept = [t.clone() for t in first[0] + first[1]]
    second = _run("triton", second_inputs, upstream, lengths)
    if not HAS_CUDA:
        assert graphs.captures == 2 and graphs.replays == 4  # forward and backward: captured once, run per call
    assert len(triton_alternating._CAPTURED) == 2
    for got, was in zip(first[0] + first[1], kept):  # the second call did not write into the first's results
        assert torch.equal(got, was)
    for inputs, (outs, grads) in ((first_inputs, first), (second_inputs, second)):
        want = _run("reference", inputs, upstream, lengths)
        for a, b in zip(outs + grads, want[0] + want[1]):
            assert_close(a, b)


def test_another_shape_is_another_capture(graphs):
    upstream = torch.randn(5, 2, 6).to(DEVICE)
    _run("triton", _inputs(4, 2, 6, 0), upstream[:4], None)
    _run("triton", _inputs(5, 2, 6, 0), upstream, None)
    assert len(triton_alternating._CAPTURED) == 4
    if not HAS_CUDA:
        assert graphs.captures == 4 and graphs.replays == 4


def test_no_capture_with_the_flag_off(graphs, monkeypatch):
    monkeypatch.setattr(triton_alternating, "CUDA_GRAPHS", False)
    _run("triton", _inputs(3, 2, 6, 0), torch.randn(3, 2, 6).to(DEVICE), None)
    assert len(triton_alternating._CAPTURED) == 0
