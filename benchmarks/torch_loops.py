"""The torch-native programs a user writes where torch.nn has no layer: plain Python loops over time.

Each is what the benchmarks time seqtorch's layer against (``bench_recurrent.py``): written plainly, as a
torch user would, one step per iteration with torch.nn building blocks, and no tricks. Every module
maps (T, B, I) to the output sequence (T, B, H).

* :class:`CellLoop`: recurrent dropout (one mask per sequence and layer on h, in training) over torch.nn
  cells; :func:`cell_loop_state` gives it a torch.nn layer's weights.
* :class:`LayerNormLSTMLoop`: seqtorch.LayerNormLSTM's equations with ``nn.Linear`` and ``nn.LayerNorm``.
* :class:`IndRNNLoop`: seqtorch.IndRNN's equations with ``nn.Linear`` and an elementwise recurrent weight.
* :class:`ZoneoutLSTMLoop`: ``nn.LSTMCell`` with zoneout (a fresh mask per step, for h and for c).
* :class:`EquationLoop`: a cell written as equations (a ``seqtorch.PointwiseCell``'s ``forward``, torch
  ops) after two ``nn.Linear`` projections, as a torch user runs a custom cell.

Each takes the weights of the layer it is timed against (``copy_from``, :func:`cell_loop_state`), so the
benchmark can check that both compute the same numbers (in eval mode, where the random masks are off)
before it times them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CellLoop(nn.Module):
    """Stacked torch.nn cells (``nn.LSTMCell``/``GRUCell``/``RNNCell``, one per layer), each run over time;
    in training with one recurrent-dropout mask per sequence on h (inverted dropout, p): what a torch user
    writes to get recurrent dropout."""

    def __init__(self, cells: list[nn.Module], p: float) -> None:
        super().__init__()
        self.cells = nn.ModuleList(cells)
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        for cell in self.cells:
            B, H = x.shape[1], cell.hidden_size
            h = x.new_zeros(B, H)
            c = x.new_zeros(B, H)
            mask = torch.bernoulli(x.new_full((B, H), 1 - self.p)) / (1 - self.p) if self.training else None
            outputs = []
            for x_t in x:
                h_in = h * mask if mask is not None else h
                if isinstance(cell, nn.LSTMCell):
                    h, c = cell(x_t, (h_in, c))
                else:
                    h = cell(x_t, h_in)
                outputs.append(h)
            x = torch.stack(outputs)
        return x


def cell_loop_state(layer_state: dict[str, Tensor], num_layers: int) -> dict[str, Tensor]:
    """A torch.nn.LSTM/GRU/RNN state dict (``weight_ih_l{k}``, ...) in :class:`CellLoop`'s names
    (``cells.{k}.weight_ih``, ...)."""
    return {f"cells.{k}.{kind}": layer_state[f"{kind}_l{k}"] for k in range(num_layers)
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if f"{kind}_l{k}" in layer_state}


class LayerNormLSTMLoop(nn.Module):
    """One LayerNorm LSTM layer (Ba et al. 2016, seqtorch.LayerNormLSTM's form), step by step::

        gates = LN_ih(x W_ih^T) + LN_hh(h W_hh^T) + b_ih + b_hh;   i, f, g, o = gates.chunk(4)
        c = sig(f) * c + sig(i) * tanh(g);   h = sig(o) * tanh(LN_c(c))

    LN_ih, LN_hh: ``nn.LayerNorm(4H, bias=False)`` (a gain only); LN_c: ``nn.LayerNorm(H)``.
    """

    def __init__(self, input_size: int, hidden_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        G = 4 * hidden_size
        self.hidden_size = hidden_size
        self.ih = nn.Linear(input_size, G, bias=False)
        self.hh = nn.Linear(hidden_size, G, bias=False)
        self.bias_ih = nn.Parameter(torch.zeros(G))
        self.bias_hh = nn.Parameter(torch.zeros(G))
        self.ln_ih = nn.LayerNorm(G, eps=eps, bias=False)
        self.ln_hh = nn.LayerNorm(G, eps=eps, bias=False)
        self.ln_c = nn.LayerNorm(hidden_size, eps=eps)

    @torch.no_grad()
    def copy_from(self, layer: nn.Module) -> "LayerNormLSTMLoop":
        """Take a one-layer seqtorch.LayerNormLSTM's weights."""
        pairs = [(self.ih.weight, "weight_ih_l0"), (self.hh.weight, "weight_hh_l0"), (self.bias_ih, "bias_ih_l0"),
                 (self.bias_hh, "bias_hh_l0"), (self.ln_ih.weight, "ln_ih_weight_l0"),
                 (self.ln_hh.weight, "ln_hh_weight_l0"), (self.ln_c.weight, "ln_cell_weight_l0"),
                 (self.ln_c.bias, "ln_cell_bias_l0")]
        for mine, name in pairs:
            mine.copy_(getattr(layer, name))
        return self

    def forward(self, x: Tensor) -> Tensor:
        h = x.new_zeros(x.shape[1], self.hidden_size)
        c = torch.zeros_like(h)
        outputs = []
        for x_t in x:
            gates = self.ln_ih(self.ih(x_t)) + self.ln_hh(self.hh(h)) + self.bias_ih + self.bias_hh
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(self.ln_c(c))
            outputs.append(h)
        return torch.stack(outputs)


class IndRNNLoop(nn.Module):
    """One IndRNN layer (Li et al. 2018), step by step: ``h = relu(ih(x_t) + w_hh * h + b_hh)``, w_hh (H,)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.ih = nn.Linear(input_size, hidden_size)
        self.weight_hh = nn.Parameter(torch.zeros(hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(hidden_size))

    @torch.no_grad()
    def copy_from(self, layer: nn.Module) -> "IndRNNLoop":
        """Take a one-layer seqtorch.IndRNN's weights."""
        pairs = [(self.ih.weight, "weight_ih_l0"), (self.ih.bias, "bias_ih_l0"), (self.weight_hh, "weight_hh_l0"),
                 (self.bias_hh, "bias_hh_l0")]
        for mine, name in pairs:
            mine.copy_(getattr(layer, name))
        return self

    def forward(self, x: Tensor) -> Tensor:
        h = x.new_zeros(x.shape[1], self.hidden_size)
        outputs = []
        for x_t in x:
            h = torch.relu(self.ih(x_t) + self.weight_hh * h + self.bias_hh)
            outputs.append(h)
        return torch.stack(outputs)


class ZoneoutLSTMLoop(nn.Module):
    """``nn.LSTMCell`` over time with zoneout p (Krueger et al. 2017): in training each unit of h and of c
    keeps its previous value with probability p (a fresh mask per step and state); in evaluation the
    expectation ``p * previous + (1 - p) * new``."""

    def __init__(self, input_size: int, hidden_size: int, p: float) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.p = p

    @torch.no_grad()
    def copy_from(self, layer: nn.Module) -> "ZoneoutLSTMLoop":
        """Take a one-layer seqtorch.LSTM's weights."""
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(self.cell, name).copy_(getattr(layer, f"{name}_l0"))
        return self

    def zone(self, previous: Tensor, new: Tensor) -> Tensor:
        if self.training:
            keep = torch.bernoulli(torch.full_like(new, self.p))
            return keep * previous + (1 - keep) * new
        return self.p * previous + (1 - self.p) * new

    def forward(self, x: Tensor) -> Tensor:
        h = x.new_zeros(x.shape[1], self.cell.hidden_size)
        c = torch.zeros_like(h)
        outputs = []
        for x_t in x:
            h_new, c_new = self.cell(x_t, (h, c))
            h, c = self.zone(h, h_new), self.zone(c, c_new)
            outputs.append(h)
        return torch.stack(outputs)


class EquationLoop(nn.Module):
    """One layer of a cell written as equations, step by step as a torch user runs a custom cell: the
    projections with ``nn.Linear``, then the cell's own ``forward`` (its torch ops)::

        z = ih(x_t) + hh(h)                 (inputs="joint"; "separate": zx = ih(x_t), zh = hh(h) apart)
        h, ... = cell.forward(z, h, ..., *vectors)
    """

    def __init__(self, cell, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.equations, self.hidden_size = cell, hidden_size
        self.ih = nn.Linear(input_size, cell.gates * hidden_size)
        self.hh = nn.Linear(hidden_size, cell.gates * hidden_size)
        self.vectors = nn.ParameterList([nn.Parameter(torch.zeros(hidden_size)) for _ in cell.vectors])

    @torch.no_grad()
    def copy_from(self, layer: nn.Module) -> "EquationLoop":
        """Take a one-layer seqtorch.Recurrent's weights (over the same cell)."""
        pairs = [(self.ih.weight, "weight_ih_l0"), (self.ih.bias, "bias_ih_l0"), (self.hh.weight, "weight_hh_l0"),
                 (self.hh.bias, "bias_hh_l0")] + [(v, f"{name}_l0") for v, name in zip(self.vectors,
                                                                                       self.equations.vectors)]
        for mine, name in pairs:
            mine.copy_(getattr(layer, name))
        return self

    def forward(self, x: Tensor) -> Tensor:
        states = tuple(x.new_zeros(x.shape[1], self.hidden_size) for _ in self.equations.states)
        outputs = []
        for x_t in x:
            zx, zh = self.ih(x_t), self.hh(states[0])
            z = (zx + zh,) if self.equations.inputs == "joint" else (zx, zh)
            states = self.equations.forward(*z, *states, *self.vectors)
            states = states if isinstance(states, tuple) else (states,)
            outputs.append(states[0])
        return torch.stack(outputs)
