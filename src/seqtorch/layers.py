"""SimpleRNN, LSTM and GRU layers: torch.nn.RNN/LSTM/GRU's API to the letter, plus the options it lacks.

Same constructor arguments and defaults, parameter names and shapes (``weight_ih_l{k}{_reverse}``,
``weight_hh_*``, ``bias_ih_*``, ``bias_hh_*``), initialization and ``forward`` semantics as torch.nn:
a state_dict loads both ways with ``strict=True``. The extras are keyword-only and off by default:
``lengths=`` in forward, ``input_dropout``, ``recurrent_dropout``, ``activation``,
``recurrent_activation``, ``reset_after`` (GRU), ``init``, ``single_bias`` and ``backend``.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import functional as SF
from . import init as sinit
from ._validation import (check_input, check_lengths, check_options, check_single_bias, check_sizes,
                          check_state)
from .reference import GATES


class RecurrentLayer(nn.Module):
    """Shared machinery of :class:`SimpleRNN`, :class:`LSTM` and :class:`GRU`: parameters, checks,
    the input/output layouts (batch_first, unbatched, PackedSequence, lengths).

    ``single_bias=True`` trains one bias per gate, as Keras does: each ``bias_hh_*`` is a zero buffer
    instead of a parameter (the state_dict keeps torch.nn's keys, so it still loads into torch.nn).
    torch's two biases only ever enter as their sum, and both receive the same gradient, so any
    optimizer moves that sum twice as far per step as Keras moves its one bias: with RMSprop or
    Adam the bias learns at twice Keras' rate. The GRU qualifies only with ``reset_after=False``
    (with True, ``b_hn`` is multiplied by the reset gate: a bias of its own, in Keras too).
    """

    mode = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, activation: str = "tanh", recurrent_activation: str = "sigmoid",
                 reset_after: bool = True, input_dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 init: str = "torch", single_bias: bool = False, backend: str = "auto") -> None:
        super().__init__()
        check_sizes(input_size, hidden_size, num_layers)
        check_single_bias(single_bias, bias=bias, mode=self.mode, reset_after=reset_after)
        check_options(activation=activation, recurrent_activation=recurrent_activation, init=init,
                      backend=backend, dropouts={"input_dropout": input_dropout,
                                                 "recurrent_dropout": recurrent_dropout})
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout should be a number in range [0, 1] representing the probability of "
                             f"an element being zeroed, got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"dropout option adds dropout after all but last recurrent layer, so non-zero "
                          f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                          f"num_layers={num_layers}; use input_dropout/recurrent_dropout for one layer")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.activation = activation
        self.recurrent_activation = recurrent_activation
        self.reset_after = reset_after
        self.input_dropout = float(input_dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.init = init
        self.single_bias = single_bias
        self.backend = backend

        factory = {"device": device, "dtype": dtype}
        gate_size = GATES[self.mode] * hidden_size
        num_directions = 2 if bidirectional else 1
        self._flat_weights_names: list[str] = []
        # Same creation and registration order as torch.nn.RNNBase, so the same seed gives the same weights.
        for layer in range(num_layers):
            layer_input_size = input_size if layer == 0 else hidden_size * num_directions
            for direction in range(num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                params = {f"weight_ih{suffix}": torch.empty(gate_size, layer_input_size, **factory),
                          f"weight_hh{suffix}": torch.empty(gate_size, hidden_size, **factory)}
                if bias:
                    params[f"bias_ih{suffix}"] = torch.empty(gate_size, **factory)
                    params[f"bias_hh{suffix}"] = torch.empty(gate_size, **factory)
                for name, value in params.items():
                    if single_bias and name.startswith("bias_hh"):
                        # A buffer keeps torch.nn's state_dict key and layout but is never trained.
                        self.register_buffer(name, value.zero_())
                    else:
                        setattr(self, name, nn.Parameter(value))
                    self._flat_weights_names.append(name)
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def layer_weights(self) -> list[tuple[Tensor, Tensor, Tensor | None, Tensor | None]]:
        """``(w_ih, w_hh, b_ih, b_hh)`` for each layer and direction, row ``layer * D + direction``."""
        weights = []
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                weights.append((getattr(self, f"weight_ih{suffix}"), getattr(self, f"weight_hh{suffix}"),
                                getattr(self, f"bias_ih{suffix}", None), getattr(self, f"bias_hh{suffix}", None)))
        return weights

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Like torch.nn's: the parameters of each layer and direction, in registration order."""
        return [[w for w in ws if w is not None] for ws in self.layer_weights()]

    def flatten_parameters(self) -> None:
        """No-op kept for torch.nn compatibility (there is no cuDNN weight buffer to compact)."""

    def reset_parameters(self) -> None:
        """Re-draw the parameters with the scheme named by ``init`` ("torch" or "keras")."""
        if self.init == "torch":
            sinit.torch_default_(self.parameters(), self.hidden_size)
        else:
            for weights in self.layer_weights():
                sinit.keras_(self.mode, *weights)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        defaults = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0,
                    "bidirectional": False, "activation": "tanh", "recurrent_activation": "sigmoid",
                    "reset_after": True, "input_dropout": 0.0, "recurrent_dropout": 0.0, "init": "torch",
                    "single_bias": False, "backend": "auto"}
        for name, default in defaults.items():
            if name == "activation" and self.mode == "rnn":
                continue  # shown as nonlinearity by SimpleRNN
            if name == "reset_after" and self.mode != "gru":
                continue
            value = getattr(self, name)
            if value != default:
                s += f", {name}={value!r}" if isinstance(value, str) else f", {name}={value}"
        return s

    # ----------------------------------------------------------------------------------------------
    def _expected_state_shape(self, batch: int) -> tuple[int, ...]:
        return (self.num_layers * self.num_directions, batch, self.hidden_size)

    def _initial_states(self, hx, batch: int, batched: bool, like: Tensor) -> tuple[Tensor, Tensor | None]:
        """(h0, c0) as (L*D, B, H) tensors from the user's ``hx`` (zeros when None)."""
        name = type(self).__name__
        shape = self._expected_state_shape(batch)
        if hx is None:
            zeros = torch.zeros(shape, dtype=like.dtype, device=like.device)
            return zeros, (zeros if self.mode == "lstm" else None)
        if self.mode == "lstm":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"{name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
            states = list(hx)
        else:
            if isinstance(hx, (tuple, list)):
                raise TypeError(f"{name}: hx must be a Tensor h_0, got a {type(hx).__name__}")
            states = [hx]
        param = self.weight_hh_l0
        what = ("hx[0]", "hx[1]") if self.mode == "lstm" else ("hx",)
        if not batched:
            for label, state in zip(what, states):
                if isinstance(state, Tensor) and state.dim() != 2:
                    raise RuntimeError(f"{name}: for unbatched 2-D input, {label} should also be 2-D but got "
                                       f"{state.dim()}-D tensor of shape {tuple(state.shape)}")
            states = [s.unsqueeze(1) for s in states]
        for label, state in zip(what, states):
            check_state(name, label, state, shape if batched else (shape[0], 1, shape[2]), param)
        return states[0], (states[1] if self.mode == "lstm" else None)

    def forward(self, input: Tensor | PackedSequence, hx=None, lengths: Tensor | Sequence[int] | None = None):
        """Run the network over a sequence.

        Args:
            input: (T, B, I), or (B, T, I) with ``batch_first``, or unbatched (T, I), or a PackedSequence.
            hx: initial state(s), (L*D, B, H) each ((L*D, H) for unbatched input); zeros when None.
                LSTM takes ``(h_0, c_0)``.
            lengths: optional (B,) ints (tensor on any device, or a list), 1 <= lengths <= T: the valid
                length of each padded sequence. Outputs past a length are 0, h_n/c_n are each sequence's
                state at its last valid step and the reverse direction starts there (as torch.nn with
                the equivalent PackedSequence). Not allowed with a PackedSequence (it has its own).

        Returns:
            ``(output, h_n)``, or ``(output, (h_n, c_n))`` for LSTM: output (T, B, D*H) (batch_first:
            (B, T, D*H); unbatched: (T, D*H); PackedSequence in, PackedSequence out), h_n and c_n
            (L*D, B, H) ((L*D, H) unbatched).
        """
        name = type(self).__name__
        param = self.weight_ih_l0
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError(f"{name}: lengths= cannot be combined with a PackedSequence input, "
                                 f"which carries its own lengths")
            check_input(name, input.data, feature_size=self.input_size, param=param, batched_dims=2)
            # pad_packed_sequence returns the batch in its original (unsorted) order, as hx is given.
            x, lengths_cpu = pad_packed_sequence(input, batch_first=False)
            batched = True
            lengths = lengths_cpu.to(x.device)
        else:
            check_input(name, input, feature_size=self.input_size, param=param, batched_dims=3)
            batched = input.dim() == 3
            if not batched:
                x = input.unsqueeze(1)
            else:
                x = input.transpose(0, 1) if self.batch_first else input
            if lengths is not None:
                lengths = check_lengths(name, lengths, batch=x.shape[1], steps=x.shape[0], device=x.device,
                                        batch_first=self.batch_first, input_shape=tuple(input.shape))
        h0, c0 = self._initial_states(hx, x.shape[1], batched, x)

        output, h_n, c_n = SF.rnn(
            self.mode, x, h0, c0, self.layer_weights(), num_layers=self.num_layers,
            bidirectional=self.bidirectional, dropout=self.dropout, training=self.training, lengths=lengths,
            input_dropout=self.input_dropout, recurrent_dropout=self.recurrent_dropout,
            activation=self.activation, recurrent_activation=self.recurrent_activation,
            reset_after=self.reset_after, backend=self.backend)

        if packed:
            output = _repack(output, lengths_cpu, input)
        elif not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, ((h_n, c_n) if self.mode == "lstm" else h_n)


def _repack(output: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack a padded (T, B, F) output, in original batch order, exactly as ``like`` is packed."""
    order = like.sorted_indices
    if order is not None:
        output, lengths = output.index_select(1, order), lengths.index_select(0, order.cpu())
    data = pack_padded_sequence(output, lengths, enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


class SimpleRNN(RecurrentLayer):
    r"""Elman RNN, ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``: torch.nn.RNN's API.

    Args (torch.nn.RNN's, in its order): input_size, hidden_size, num_layers=1, nonlinearity="tanh"
    ("tanh" or "relu"), bias=True, batch_first=False, dropout=0.0 (between layers), bidirectional=False,
    device=None, dtype=None. Keyword-only extras: input_dropout, recurrent_dropout (variational, one mask
    per sequence and layer), init ("torch" or "keras"), single_bias, backend.

    Shapes: input (T, B, I) / (B, T, I) / (T, I); output (T, B, D*H); h_n (L*D, B, H).
    """

    mode = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *, input_dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, init: str = "torch", single_bias: bool = False,
                 backend: str = "auto") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity {nonlinearity!r}. Select from 'tanh' or 'relu'.")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype, activation=nonlinearity, input_dropout=input_dropout,
                         recurrent_dropout=recurrent_dropout, init=init, single_bias=single_bias,
                         backend=backend)

    @property
    def nonlinearity(self) -> str:
        return self.activation

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s


class LSTM(RecurrentLayer):
    r"""Long short-term memory: torch.nn.LSTM's API (gate order i, f, g, o).

    Args (torch.nn.LSTM's, in its order): input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, proj_size=0 (only 0 is supported), device=None,
    dtype=None. Keyword-only extras: input_dropout, recurrent_dropout, activation ("tanh" or "relu"),
    recurrent_activation ("sigmoid" or "hard_sigmoid"), init ("torch" or "keras"), single_bias, backend.

    Shapes: input (T, B, I) / (B, T, I) / (T, I); output (T, B, D*H); h_n, c_n (L*D, B, H).
    """

    mode = "lstm"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None, *, input_dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, activation: str = "tanh",
                 recurrent_activation: str = "sigmoid", init: str = "torch", single_bias: bool = False,
                 backend: str = "auto") -> None:
        if proj_size != 0:
            raise NotImplementedError(f"seqtorch.LSTM does not support proj_size (got {proj_size}); "
                                      f"use torch.nn.LSTM for projections")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype, activation=activation, recurrent_activation=recurrent_activation,
                         input_dropout=input_dropout, recurrent_dropout=recurrent_dropout, init=init,
                         single_bias=single_bias, backend=backend)
        self.proj_size = 0


class GRU(RecurrentLayer):
    r"""Gated recurrent unit: torch.nn.GRU's API (gate order r, z, n).

    Args (torch.nn.GRU's, in its order): input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None. Keyword-only extras:
    reset_after (True: torch's and Keras >= 2.3's GRU; False: Keras 2.0's, the book's, with the
    candidate computed from ``r * h``), input_dropout, recurrent_dropout, activation,
    recurrent_activation, init, single_bias (needs reset_after=False), backend.

    Shapes: input (T, B, I) / (B, T, I) / (T, I); output (T, B, D*H); h_n (L*D, B, H).
    """

    mode = "gru"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, reset_after: bool = True, input_dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, activation: str = "tanh",
                 recurrent_activation: str = "sigmoid", init: str = "torch", single_bias: bool = False,
                 backend: str = "auto") -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype, activation=activation, recurrent_activation=recurrent_activation,
                         reset_after=reset_after, input_dropout=input_dropout,
                         recurrent_dropout=recurrent_dropout, init=init, single_bias=single_bias,
                         backend=backend)
