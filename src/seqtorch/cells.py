"""Single-step cells: torch.nn.RNNCell / LSTMCell / GRUCell's API, the equations of seqtorch.reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import init as sinit
from ._validation import check_input, check_options, check_single_bias, check_sizes, check_state
from .reference import GATES, gru_step, lstm_step, rnn_step


class RecurrentCell(nn.Module):
    """Parameters, initialization and input handling shared by the three cells.

    ``single_bias=True``: ``bias_hh`` is a zero buffer, one trained bias per gate as in Keras (see
    :class:`seqtorch.layers.RecurrentLayer`).
    """

    mode = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 activation: str = "tanh", recurrent_activation: str = "sigmoid", init: str = "torch",
                 single_bias: bool = False, reset_after: bool = True) -> None:
        super().__init__()
        check_sizes(input_size, hidden_size)
        check_single_bias(single_bias, bias=bias, mode=self.mode, reset_after=reset_after)
        check_options(activation=activation, recurrent_activation=recurrent_activation, init=init, dropouts={})
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.activation = activation
        self.recurrent_activation = recurrent_activation
        self.init = init
        self.single_bias = single_bias
        factory = {"device": device, "dtype": dtype}
        gate_size = GATES[self.mode] * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gate_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(gate_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gate_size, **factory))
            if single_bias:
                self.register_buffer("bias_hh", torch.zeros(gate_size, **factory))
            else:
                self.bias_hh = nn.Parameter(torch.empty(gate_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw the parameters with the scheme named by ``init`` ("torch" or "keras")."""
        if self.init == "torch":
            sinit.torch_default_(self.parameters(), self.hidden_size)
        else:
            sinit.keras_(self.mode, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        for name, default in (("reset_after", True), ("recurrent_activation", "sigmoid"), ("init", "torch"),
                              ("single_bias", False)):
            value = getattr(self, name, default)  # reset_after: GRUCell only
            if value != default:
                s += f", {name}={value!r}"
        return s

    def _prepare(self, input: Tensor, states: list[Tensor | None]) -> tuple[Tensor, list[Tensor], bool]:
        """Check ``input`` (B, I) or (I,) and the states (B, H) or (H,); return them batched, with
        missing states as zeros, and whether the input was batched."""
        name = type(self).__name__
        check_input(name, input, feature_size=self.input_size, param=self.weight_ih, batched_dims=2)
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        shape = (x.shape[0], self.hidden_size)
        labels = ("hx[0]", "hx[1]") if len(states) == 2 else ("hx",)
        out = []
        for label, state in zip(labels, states):
            if state is None:
                out.append(torch.zeros(shape, dtype=x.dtype, device=x.device))
                continue
            if isinstance(state, Tensor) and state.dim() != input.dim():
                raise ValueError(f"{name}: expected {label} to be {input.dim()}D like the input, "
                                 f"got {state.dim()}D tensor of shape {tuple(state.shape)}")
            state = state if batched else state.unsqueeze(0)
            check_state(name, label, state, shape, self.weight_hh)
            out.append(state)
        return x, out, batched

    def _input_projection(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias_ih)


class SimpleRNNCell(RecurrentCell):
    """Elman RNN cell, ``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``: torch.nn.RNNCell's API.

    Args: input_size, hidden_size, bias=True, nonlinearity="tanh" ("tanh" or "relu"), device, dtype;
    keyword-only ``init`` ("torch" or "keras"), ``single_bias``.
    forward(input (B, I) or (I,), hx (B, H) or (H,) or None) -> h' (B, H) or (H,).
    """

    mode = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None, *, init: str = "torch", single_bias: bool = False) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity {nonlinearity!r}. Select from 'tanh' or 'relu'.")
        super().__init__(input_size, hidden_size, bias, device, dtype, activation=nonlinearity, init=init,
                         single_bias=single_bias)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, [hx])
        h_new = rnn_step(self._input_projection(x), h, self.weight_hh, self.bias_hh, activation=self.activation)
        return h_new if batched else h_new.squeeze(0)


class LSTMCell(RecurrentCell):
    """LSTM cell (gates i, f, g, o): torch.nn.LSTMCell's API.

    Args: input_size, hidden_size, bias=True, device, dtype; keyword-only ``activation``,
    ``recurrent_activation``, ``init``, ``single_bias``.
    forward(input (B, I) or (I,), hx (h, c) each (B, H) or (H,), or None) -> (h', c').
    """

    mode = "lstm"

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"LSTMCell: hx must be a tuple (h, c), got {type(hx).__name__}")
        x, (h, c), batched = self._prepare(input, [None, None] if hx is None else list(hx))
        h_new, c_new = lstm_step(self._input_projection(x), h, c, self.weight_hh, self.bias_hh,
                                 activation=self.activation, recurrent_activation=self.recurrent_activation)
        return (h_new, c_new) if batched else (h_new.squeeze(0), c_new.squeeze(0))


class GRUCell(RecurrentCell):
    """GRU cell (gates r, z, n): torch.nn.GRUCell's API.

    Args: input_size, hidden_size, bias=True, device, dtype; keyword-only ``reset_after`` (False: Keras
    2.0's candidate from ``r * h``), ``activation``, ``recurrent_activation``, ``init``, ``single_bias``
    (needs ``reset_after=False``).
    forward(input (B, I) or (I,), hx (B, H) or (H,) or None) -> h'.
    """

    mode = "gru"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 reset_after: bool = True, activation: str = "tanh", recurrent_activation: str = "sigmoid",
                 init: str = "torch", single_bias: bool = False) -> None:
        super().__init__(input_size, hidden_size, bias, device, dtype, activation=activation,
                         recurrent_activation=recurrent_activation, init=init, single_bias=single_bias,
                         reset_after=reset_after)
        self.reset_after = reset_after

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, [hx])
        h_new = gru_step(self._input_projection(x), h, self.weight_hh, self.bias_hh, activation=self.activation,
                         recurrent_activation=self.recurrent_activation, reset_after=self.reset_after)
        return h_new if batched else h_new.squeeze(0)
