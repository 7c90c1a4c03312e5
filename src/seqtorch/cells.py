"""Single-step cells: torch.nn.RNNCell / LSTMCell / GRUCell's API, the equations of seqtorch.reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import init as sinit
from ._validation import (check_cell_input, check_cell_sizes, check_like, check_options, check_rank,
                          check_single_bias, check_state_shape)
from .reference import ACTIVATIONS, GATES, gru_step, lstm_step, rnn_step


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
        input_size, hidden_size = check_cell_sizes(input_size, hidden_size)
        check_single_bias(single_bias, bias=bias, mode=self.mode, reset_after=reset_after)
        # SimpleRNNCell's nonlinearity is checked in forward, where torch.nn.RNNCell checks it.
        check_options(activation=None if self.mode == "rnn" else activation,
                      recurrent_activation=recurrent_activation, init=init, dropouts={})
        self.input_size = input_size
        self.hidden_size = hidden_size
        # Any value, as torch.nn's cells take it: its truth says whether there are biases.
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
        # torch.nn.RNNCellBase's options first, printed as torch.nn prints them; then seqtorch's own.
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.mode == "rnn" and self.activation != "tanh":
            s += f", nonlinearity={self.activation}"
        extras = {"activation": "tanh", "reset_after": True, "recurrent_activation": "sigmoid", "init": "torch",
                  "single_bias": False}
        if self.mode == "rnn":
            del extras["activation"]  # shown above, as nonlinearity
        for name, default in extras.items():
            value = getattr(self, name, default)  # reset_after: GRUCell only
            if value != default:
                s += f", {name}={value!r}"
        return s

    def _prepare(self, input: Tensor, given: list[Tensor] | None) -> tuple[Tensor, list[Tensor], bool]:
        """Check ``input`` (B, I) or (I,) and the ``given`` states (B, H) or (H,) each, or None; return them
        batched, with missing states as zeros, and whether the input was batched.

        Errors as torch.nn's cells raise them: a rank other than 1 or 2 is a ValueError, everything
        torch's cell op checks (number of states, sizes, batch, dtype, device) a RuntimeError."""
        name = type(self).__name__
        count = 2 if self.mode == "lstm" else 1
        labels = [f"hx[{i}]" for i in range(len(given))] if count == 2 and given else ["hx"]
        check_rank(name, "input", input, (1, 2))
        for label, state in zip(labels, given or []):
            check_rank(name, label, state, (1, 2))
        if self.mode == "rnn" and self.activation not in ACTIVATIONS:
            raise RuntimeError(f"{name}: Unknown nonlinearity {self.activation!r}. Select from 'tanh' or 'relu'.")
        if given is not None and len(given) != count:
            raise RuntimeError(f"{name}: hx must be a tuple (h, c) of two Tensors, got {len(given)}")
        check_cell_input(name, input, input_size=self.input_size, param=self.weight_ih)
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        shape = (x.shape[0], self.hidden_size)
        if given is None:
            return x, [torch.zeros(shape, dtype=x.dtype, device=x.device)] * count, batched
        out = []
        for label, state in zip(labels, given):
            if state.dim() != input.dim():
                raise RuntimeError(f"{name}: expected {label} to be {input.dim()}D like the input, "
                                   f"got {state.dim()}D tensor of shape {tuple(state.shape)}")
            state = state if batched else state.unsqueeze(0)
            check_state_shape(name, label, state, shape)
            check_like(name, label, state, self.weight_hh)
            out.append(state)
        return x, out, batched

    def _input_projection(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias_ih)

    # ---- export and conversion: each delegates to its module ---------------------------------------
    def to_torch_nn(self) -> nn.Module:
        """The torch.nn.RNNCell/LSTMCell/GRUCell with this cell's weights (:func:`seqtorch.convert.to_torch_nn`)."""
        from .convert import to_torch_nn

        return to_torch_nn(self)

    @classmethod
    def from_torch_nn(cls, module: nn.Module) -> "RecurrentCell":
        """This class with a torch.nn cell's weights (:func:`seqtorch.convert.from_torch_nn`)."""
        from .convert import from_torch_nn

        return from_torch_nn(cls, module)

    def __prepare_scriptable__(self):
        # torch.jit.script calls this on every submodule first (seqtorch.torchscript says why it refuses)
        from .torchscript import refuse_script

        refuse_script(self)


class SimpleRNNCell(RecurrentCell):
    """Elman RNN cell, ``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``: torch.nn.RNNCell's API.

    Args: input_size, hidden_size, bias=True, nonlinearity="tanh" ("tanh" or "relu"; torch.nn.RNNCell
    builds with any value and so does this, forward then raises RuntimeError), device, dtype;
    keyword-only ``init`` ("torch" or "keras"), ``single_bias``. Sizes may be 0, as in torch.nn.
    forward(input (B, I) or (I,), hx (B, H) or (H,) or None) -> h' (B, H) or (H,).
    """

    mode = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None, *, init: str = "torch", single_bias: bool = False) -> None:
        # Any nonlinearity builds; forward raises RuntimeError for one other than "tanh" or "relu", as
        # torch.nn.RNNCell does.
        super().__init__(input_size, hidden_size, bias, device, dtype, activation=nonlinearity, init=init,
                         single_bias=single_bias)

    @property
    def nonlinearity(self) -> str:
        return self.activation

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, None if hx is None else [hx])
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
        if hx is not None and (isinstance(hx, Tensor) or not isinstance(hx, (tuple, list))):
            raise TypeError(f"LSTMCell: hx must be a tuple (h, c) of two Tensors, got {type(hx).__name__}")
        x, (h, c), batched = self._prepare(input, None if hx is None else list(hx))
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
        x, (h,), batched = self._prepare(input, None if hx is None else [hx])
        h_new = gru_step(self._input_projection(x), h, self.weight_hh, self.bias_hh, activation=self.activation,
                         recurrent_activation=self.recurrent_activation, reset_after=self.reset_after)
        return h_new if batched else h_new.squeeze(0)
