"""seqtorch under torch.compile(fullgraph=True) on CPU: the fused scan is a torch.library custom op, so the
recurrent core is no graph break (fullgraph raises on one). Two compiles in all, each compared to eager
(outputs and gradients)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import seqtorch
from conftest import TOL
from support.layer_families import recurrent_scan


class TinyModel(nn.Module):
    """Embedding -> bidirectional LSTM with recurrent dropout -> book GRU (reset_after=False) -> linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.lstm = seqtorch.LSTM(8, 6, bidirectional=True, recurrent_dropout=0.25, backend="cpu_fused")
        self.gru = seqtorch.GRU(12, 5, reset_after=False, backend="cpu_fused")
        self.head = nn.Linear(5, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)         # (T, B, 8)
        x, _ = self.lstm(x)            # (T, B, 12)
        _, h_n = self.gru(x)           # (1, B, 5)
        return self.head(h_n[-1]).squeeze(-1)  # (B,)


def _grads_after(fn, params, *args):
    for p in params:
        p.grad = None
    torch.manual_seed(123)  # the same recurrent-dropout masks in both runs
    out = fn(*args)
    (out * torch.linspace(-1.0, 2.0, out.numel()).view_as(out)).sum().backward()
    return [out.detach()] + [p.grad.clone() for p in params]


def test_compiled_model_matches_eager_fullgraph():
    torch.manual_seed(0)
    model = TinyModel()
    tokens = torch.randint(0, 20, (7, 3))
    params = list(model.parameters())
    eager = _grads_after(model, params, tokens)
    got = _grads_after(torch.compile(model, fullgraph=True, backend="aot_eager"), params, tokens)
    for a, b in zip(got, eager):
        torch.testing.assert_close(a, b, **TOL[torch.float32])


def test_compiled_scan_with_lengths_matches_eager_fullgraph():
    """The op with every optional input given (c0, b_hh, lengths, rec_mask) and reverse."""
    torch.manual_seed(0)
    T, B, H = 6, 3, 4
    gx = torch.randn(T, B, 4 * H, requires_grad=True)
    h0, c0 = torch.randn(B, H, requires_grad=True), torch.randn(B, H, requires_grad=True)
    w_hh, b_hh = (torch.randn(4 * H, H) * 0.3).requires_grad_(), torch.randn(4 * H, requires_grad=True)
    lengths, rec_mask = torch.tensor([6, 1, 4]), torch.bernoulli(torch.full((B, H), 0.5)) * 2

    def scan(gx, h0, c0, w_hh, b_hh):
        out, h_n, c_n = recurrent_scan("lstm", gx, h0, c0, w_hh, b_hh, lengths=lengths, rec_mask=rec_mask,
                                       reverse=True, recurrent_activation="hard_sigmoid", backend="cpu_fused")
        return torch.cat([out.flatten(), h_n.flatten(), 2 * c_n.flatten()])

    params = [gx, h0, c0, w_hh, b_hh]
    eager = _grads_after(scan, params, *params)
    got = _grads_after(torch.compile(scan, fullgraph=True, backend="aot_eager"), params, *params)
    for a, b in zip(got, eager):
        torch.testing.assert_close(a, b, **TOL[torch.float32])


def test_lengths_compile_to_one_graph_and_are_still_checked():
    """``lengths=`` under torch.compile(fullgraph=True): one graph, no break (torch._dynamo.explain), the
    eager numbers, and lengths out of range refused by a runtime assertion inside the graph."""
    torch.manual_seed(0)
    layer = seqtorch.LSTM(4, 5, 2, batch_first=True, bidirectional=True)
    x, lengths = torch.randn(3, 6, 4), torch.tensor([6, 2, 4])
    explained = torch._dynamo.explain(layer)(x, lengths=lengths)
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    got, (h_n, c_n) = compiled(x, lengths=lengths)
    want, (want_h, want_c) = layer(x, lengths=lengths)
    for a, b in ((got, want), (h_n, want_h), (c_n, want_c)):
        torch.testing.assert_close(a, b, **TOL[torch.float32])
    with pytest.raises(RuntimeError, match=r"lengths must be in \[1, 6\]"):
        compiled(x, lengths=torch.tensor([7, 2, 4]))
