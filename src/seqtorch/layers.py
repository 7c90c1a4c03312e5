"""SimpleRNN, LSTM and GRU layers: torch.nn.RNN/LSTM/GRU's API to the letter, plus the options it lacks.

Same constructor arguments and defaults, parameter names and shapes (``weight_ih_l{k}{_reverse}``,
``weight_hh_*``, ``bias_ih_*``, ``bias_hh_*``), initialization and ``forward`` semantics as torch.nn:
a state_dict loads both ways with ``strict=True``. The extras are keyword-only and off by default:
``lengths=`` in forward, ``input_dropout``, ``recurrent_dropout``, ``activation``,
``recurrent_activation``, ``reset_after`` (GRU), ``init``, ``single_bias`` and ``backend``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import functional as SF
from . import init as sinit
from ._validation import (check_device, check_eps, check_layer_args, check_layer_input, check_lengths, check_like,
                          check_no_proj_size, check_options, check_rank, check_runnable, check_single_bias,
                          check_state_shape, check_steps, check_tensor)
from .recurrent_cells import get_cell
from .reference import cell_name


class RecurrentLayer(nn.Module):
    """Shared machinery of every recurrent layer: parameters (from the cell's spec, in torch.nn's names and
    order), checks, the input/output layouts (batch_first, unbatched, PackedSequence, lengths).

    ``single_bias=True`` trains one bias per gate, as Keras does: each ``bias_hh_*`` is a zero buffer
    instead of a parameter (the state_dict keeps torch.nn's keys, so it still loads into torch.nn).
    torch's two biases only ever enter as their sum, and both receive the same gradient, so any
    optimizer moves that sum twice as far per step as Keras moves its one bias: with RMSprop or
    Adam the bias learns at twice Keras' rate. The GRU qualifies only with ``reset_after=False``
    (with True, ``b_hn`` is multiplied by the reset gate: a bias of its own, in Keras too).
    """

    mode = "rnn"  # the layer family: "rnn", "lstm" (two states, hx = (h_0, c_0)) or "gru"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, cell: str, proj_size: int = 0, activation: str = "tanh",
                 recurrent_activation: str = "sigmoid", reset_after: bool = True, input_dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, zoneout: float = 0.0, init: str = "torch",
                 single_bias: bool = False, cell_args: tuple[float, ...] = (), backend: str = "auto") -> None:
        super().__init__()
        dropout, num_layers = check_layer_args(input_size=input_size, hidden_size=hidden_size,
                                               num_layers=num_layers, bias=bias, batch_first=batch_first,
                                               dropout=dropout, proj_size=proj_size)
        check_single_bias(single_bias, bias=bias, mode=self.mode, reset_after=reset_after)
        check_options(activation=activation, recurrent_activation=recurrent_activation, init=init,
                      backend=backend, dropouts={"input_dropout": input_dropout,
                                                 "recurrent_dropout": recurrent_dropout, "zoneout": zoneout})
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = dropout
        # Kept as given, as torch.nn does (any value builds; forward wants a bool: check_runnable).
        self.bidirectional = bidirectional
        self.proj_size = int(proj_size)
        self.activation = activation
        self.recurrent_activation = recurrent_activation
        self.reset_after = reset_after
        self.input_dropout = float(input_dropout)
        self.recurrent_dropout = float(recurrent_dropout)
        self.zoneout = float(zoneout)
        self.init = init
        self.single_bias = single_bias
        self.backend = backend
        self.cell = cell
        self.cell_args = tuple(float(a) for a in cell_args)

        spec = get_cell(cell)
        factory = {"device": device, "dtype": dtype}
        num_directions = 2 if bidirectional else 1
        P = self.proj_size or hidden_size
        self._flat_weights_names: list[str] = []
        # Same creation and registration order as torch.nn.RNNBase, so the same seed gives the same weights.
        for layer in range(num_layers):
            layer_input_size = input_size if layer == 0 else P * num_directions
            for direction in range(num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                for base, shape in spec.parameters(layer_input_size, hidden_size, P):
                    if base.startswith("bias_") and not bias:
                        continue
                    name, value = base + suffix, torch.empty(shape, **factory)
                    if single_bias and base == "bias_hh":
                        # A buffer keeps torch.nn's state_dict key and layout but is never trained.
                        self.register_buffer(name, value.zero_())
                    else:
                        setattr(self, name, nn.Parameter(value))
                    self._flat_weights_names.append(name)
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffixes(self) -> list[str]:
        return [f"_l{layer}" + ("_reverse" if direction == 1 else "")
                for layer in range(self.num_layers) for direction in range(self.num_directions)]

    def layer_weights(self) -> list[tuple[Tensor, Tensor, Tensor | None, Tensor | None]]:
        """``(w_ih, w_hh, b_ih, b_hh)`` for each layer and direction, row ``layer * D + direction``."""
        return [tuple(getattr(self, name + suffix, None) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                for suffix in self._suffixes()]

    def scan_weights(self) -> list[tuple[tuple[Tensor | None, ...], tuple[Tensor | None, ...]]]:
        """Per layer and direction (row ``layer * D + direction``): the cell's input weights and its
        recurrent weights, in the orders of its spec (``(w_ih, b_ih)``, ``(w_hh, b_hh)`` for the LSTM);
        None for an absent bias."""
        spec = get_cell(self.cell)
        return [(tuple(getattr(self, name + suffix, None) for name in spec.input_weights),
                 tuple(getattr(self, name + suffix, None) for name in spec.weights)) for suffix in self._suffixes()]

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Like torch.nn's: the parameters of each layer and direction, in registration order."""
        spec = get_cell(self.cell)
        layers = []
        for suffix in self._suffixes():
            names = [base + suffix for base, _ in spec.parameters(1, 1, 1)]
            layers.append([p for name in names if isinstance(p := getattr(self, name, None), nn.Parameter)])
        return layers

    def flatten_parameters(self) -> None:
        """No-op kept for torch.nn compatibility (there is no cuDNN weight buffer to compact)."""

    def reset_parameters(self) -> None:
        """Re-draw the parameters with the scheme named by ``init`` ("torch" or "keras"), then the cell's own
        initial values (LayerNorm gains 1, ...)."""
        spec = get_cell(self.cell)
        if self.init == "torch":
            sinit.torch_default_(self.parameters(), self.hidden_size)
        for suffix in self._suffixes():
            params = {base: getattr(self, base + suffix, None) for base, _ in spec.parameters(1, 1, 1)}
            if self.init == "keras":
                sinit.keras_(spec.family, params["weight_ih"], params["weight_hh"], params.get("bias_ih"),
                             params.get("bias_hh"))
            spec.init_({k: v for k, v in params.items() if v is not None}, self.init)

    def extra_repr(self) -> str:
        # torch.nn.RNNBase's options first, printed as torch.nn prints them (str(), each when it is not
        # the default), so a model's repr reads the same with either; then seqtorch's own non-defaults.
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        for name, default in self._extra_defaults().items():
            value = getattr(self, name)
            if value != default:
                s += f", {name}={value!r}"
        return s

    def _extra_defaults(self) -> dict:
        """seqtorch's own options and their defaults, in repr order (a subclass drops what it lacks)."""
        extras = {"activation": "tanh", "recurrent_activation": "sigmoid", "reset_after": True,
                  "input_dropout": 0.0, "recurrent_dropout": 0.0, "zoneout": 0.0, "init": "torch",
                  "single_bias": False, "backend": "auto"}
        if self.mode == "rnn":
            del extras["activation"]  # torch.nn.RNN's nonlinearity, which its repr does not show
            del extras["recurrent_activation"]
        if self.mode != "gru":
            del extras["reset_after"]
        return extras

    # ----------------------------------------------------------------------------------------------
    def _expected_state_shapes(self, batch: int) -> list[tuple[int, ...]]:
        """(L*D, B, width) for each state: h (width P: proj_size, else H), then c for the LSTM (H)."""
        widths = get_cell(self.cell).state_sizes(self.hidden_size, self.proj_size or self.hidden_size)
        return [(self.num_layers * self.num_directions, batch, w) for w in widths]

    def _given_states(self, hx, batched: bool, packed: bool) -> list[Tensor]:
        """The user's ``hx`` as a list of state tensors ([h_0], or [h_0, c_0, ...] for LSTM), with the
        checks torch.nn makes before it looks at the input's dtype: structure, then rank."""
        name = type(self).__name__
        if hx is None:
            return []
        if self.mode == "lstm":
            if isinstance(hx, Tensor):  # torch.nn indexes it as (h, c) and fails on their rank
                raise RuntimeError(f"{name}: hx must be a tuple (h_0, c_0) of two Tensors, got one Tensor of "
                                   f"shape {tuple(hx.shape)}")
            if not isinstance(hx, (tuple, list)):
                raise TypeError(f"{name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
            if len(hx) < 2:  # torch.nn: hx[1] -> IndexError
                raise IndexError(f"{name}: hx must be a tuple (h_0, c_0), got a {type(hx).__name__} of "
                                 f"{len(hx)}")
            states, labels = list(hx), ["hx[0]", "hx[1]"]  # more than two: RuntimeError in _check_run
        else:
            states, labels = [hx], ["hx"]
        rank = 3 if batched else 2
        for label, state in zip(labels, states):
            check_tensor(name, label, state)
            if not packed and state.dim() != rank:
                raise RuntimeError(f"{name}: for {'batched 3-D' if batched else 'unbatched 2-D'} input, {label} "
                                   f"should also be {rank}-D but got {state.dim()}-D tensor of shape "
                                   f"{tuple(state.shape)}")
        return states

    def _initial_states(self, states: list[Tensor], batch: int, batched: bool, like: Tensor) -> tuple[Tensor, ...]:
        """Every state as an (L*D, B, width) tensor from the given ones (zeros when there are none)."""
        name = type(self).__name__
        shapes = self._expected_state_shapes(batch)
        if not states:
            return tuple(torch.zeros(shape, dtype=like.dtype, device=like.device) for shape in shapes)
        labels = ("hx[0]", "hx[1]") if self.mode == "lstm" else ("hx",)
        states = states[:2] if batched else [s.unsqueeze(1) for s in states[:2]]
        for label, state, shape in zip(labels, states, shapes):
            check_state_shape(name, label, state, shape)
        return tuple(states)

    def _check_run(self, x: Tensor, states: list[Tensor], input_shape: tuple[int, ...]) -> None:
        """What torch.nn's ATen op checks after its Python checks: the argument types it takes, the
        number of states, devices and dtypes of the states, and at least one timestep."""
        name = type(self).__name__
        check_runnable(name, num_layers=self.num_layers, bidirectional=self.bidirectional)
        if len(states) > 2:
            raise RuntimeError(f"{name}: hx must be a tuple (h_0, c_0) of two Tensors, got {len(states)}")
        param = self.weight_ih_l0
        check_device(name, "input", x, param)
        for label, state in zip(("hx[0]", "hx[1]") if self.mode == "lstm" else ("hx",), states):
            check_like(name, label, state, param)
        check_steps(name, x.shape[0], input_shape)

    def forward(self, input: Tensor | PackedSequence, hx=None, lengths: Tensor | Sequence[int] | None = None):
        """Run the network over a sequence.

        Args:
            input: (T, B, I), or (B, T, I) with ``batch_first``, or unbatched (T, I), or a PackedSequence.
            hx: initial state(s), (L*D, B, H) each ((L*D, H) for unbatched input); zeros when None.
                LSTM takes ``(h_0, c_0)``; with ``proj_size`` P, h_0 is (L*D, B, P).
            lengths: optional (B,) ints (tensor on any device, or a list), 1 <= lengths <= T: the valid
                length of each padded sequence. Outputs past a length are 0, h_n/c_n are each sequence's
                state at its last valid step and the reverse direction starts there (as torch.nn with
                the equivalent PackedSequence). Not allowed with a PackedSequence (it has its own).

        Returns:
            ``(output, h_n)``, or ``(output, (h_n, c_n))`` for LSTM: output (T, B, D*H) (batch_first:
            (B, T, D*H); unbatched: (T, D*H); PackedSequence in, PackedSequence out), h_n and c_n
            (L*D, B, H) ((L*D, H) unbatched). B may be 0; T may not (RuntimeError, as torch.nn).

        Errors have torch.nn's types, checked in its order: input rank (ValueError), hx structure and
        rank (RuntimeError), input dtype (ValueError), feature size and state shapes (RuntimeError),
        devices, state dtypes and T=0 (RuntimeError); a non-Tensor is a :class:`NotATensorError`.
        """
        name = type(self).__name__
        param = self.weight_ih_l0
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError(f"{name}: lengths= cannot be combined with a PackedSequence input, "
                                 f"which carries its own lengths")
            check_tensor(name, "input.data", input.data)
        else:
            check_rank(name, "input", input, (2, 3))
        batched = packed or input.dim() == 3
        states = self._given_states(hx, batched, packed)
        data = input.data if packed else input
        check_layer_input(name, data, input_size=self.input_size, param=param)
        if packed:
            # pad_packed_sequence returns the batch in its original (unsorted) order, as hx is given.
            x, lengths_cpu = pad_packed_sequence(input, batch_first=False)
            lengths = lengths_cpu.to(x.device)
        elif not batched:
            x = input.unsqueeze(1)
        else:
            x = input.transpose(0, 1) if self.batch_first else input
        states0 = self._initial_states(states, x.shape[1], batched, x)
        self._check_run(x, states, tuple(data.shape))
        if lengths is not None and not packed:
            lengths = check_lengths(name, lengths, batch=x.shape[1], steps=x.shape[0], device=x.device,
                                    batch_first=self.batch_first, input_shape=tuple(input.shape))

        output, finals = SF.stack(
            self.cell, x, states0, self.scan_weights(), num_layers=self.num_layers,
            bidirectional=self.bidirectional, dropout=self.dropout, training=self.training, lengths=lengths,
            input_dropout=self.input_dropout, recurrent_dropout=self.recurrent_dropout, zoneout=self.zoneout,
            activation=self.activation, recurrent_activation=self.recurrent_activation,
            cell_args=self.cell_args, backend=self.backend)

        if packed:
            output = _repack(output, lengths_cpu, input)
        elif not batched:
            output, finals = output.squeeze(1), tuple(f.squeeze(1) for f in finals)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, (finals if len(finals) == 2 else finals[0])

    # ---- export and conversion: each delegates to its module ---------------------------------------
    def to_torch_nn(self) -> nn.Module:
        """The torch.nn.RNN/LSTM/GRU with this layer's weights (:func:`seqtorch.convert.to_torch_nn`)."""
        from .convert import to_torch_nn

        return to_torch_nn(self)

    @classmethod
    def from_torch_nn(cls, module: nn.Module, *, backend: str = "auto") -> "RecurrentLayer":
        """This class with a torch.nn.RNN/LSTM/GRU's weights (:func:`seqtorch.convert.from_torch_nn`)."""
        from .convert import from_torch_nn

        return from_torch_nn(cls, module, backend=backend)

    def __prepare_scriptable__(self):
        # torch.jit.script calls this on every submodule first (seqtorch.torchscript says why it refuses)
        from .torchscript import refuse_script

        refuse_script(self)

    def _slow_forward(self, *args, **kwargs):
        # nn.Module runs this instead of forward only under torch.jit.trace (also the legacy ONNX exporter)
        from .torchscript import refuse_trace

        refuse_trace(self)


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
    per sequence and layer), zoneout, init ("torch" or "keras"), single_bias, backend.

    Shapes: input (T, B, I) / (B, T, I) / (T, I); output (T, B, D*H); h_n (L*D, B, H).
    """

    mode = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *, input_dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, zoneout: float = 0.0, init: str = "torch",
                 single_bias: bool = False, backend: str = "auto", proj_size: None = None) -> None:
        check_no_proj_size(type(self).__name__, proj_size)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity {nonlinearity!r}. Select from 'tanh' or 'relu'.")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype, cell="rnn", activation=nonlinearity, input_dropout=input_dropout,
                         recurrent_dropout=recurrent_dropout, zoneout=zoneout, init=init, single_bias=single_bias,
                         backend=backend)

    @property
    def nonlinearity(self) -> str:
        return self.activation


class LSTM(RecurrentLayer):
    r"""Long short-term memory: torch.nn.LSTM's API (gate order i, f, g, o), projections included.

    Args (torch.nn.LSTM's, in its order): input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, proj_size=0 (> 0: ``h_t = W_hr (o * act(c_t))``
    of size proj_size, with ``weight_hr_l{k}`` (proj_size, hidden_size), as torch.nn), device=None,
    dtype=None. Keyword-only extras: input_dropout, recurrent_dropout, zoneout, activation ("tanh" or
    "relu"), recurrent_activation ("sigmoid", "hard_sigmoid", "hard_sigmoid_keras2", "hardsigmoid"),
    init ("torch" or "keras"), single_bias, backend.

    Shapes: input (T, B, I) / (B, T, I) / (T, I); output (T, B, D*P) with P = proj_size or H;
    h_n (L*D, B, P); c_n (L*D, B, H).
    """

    mode = "lstm"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None, *, input_dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, zoneout: float = 0.0, activation: str = "tanh",
                 recurrent_activation: str = "sigmoid", init: str = "torch", single_bias: bool = False,
                 backend: str = "auto") -> None:
        projected = not isinstance(proj_size, bool) and isinstance(proj_size, (int, float)) and proj_size > 0
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype, cell="lstm_proj" if projected else "lstm", proj_size=proj_size,
                         activation=activation, recurrent_activation=recurrent_activation,
                         input_dropout=input_dropout, recurrent_dropout=recurrent_dropout, zoneout=zoneout,
                         init=init, single_bias=single_bias, backend=backend)


class GRU(RecurrentLayer):
    r"""Gated recurrent unit: torch.nn.GRU's API (gate order r, z, n).

    Args (torch.nn.GRU's, in its order): input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None. Keyword-only extras:
    reset_after (True: torch's and Keras >= 2.3's GRU; False: Keras 2.0's, the book's, with the
    candidate computed from ``r * h``), input_dropout, recurrent_dropout, zoneout, activation,
    recurrent_activation, init, single_bias (needs reset_after=False), backend.

    Shapes: input (T, B, I) / (B, T, I) / (T, I); output (T, B, D*H); h_n (L*D, B, H).
    """

    mode = "gru"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, reset_after: bool = True, input_dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, zoneout: float = 0.0, activation: str = "tanh",
                 recurrent_activation: str = "sigmoid", init: str = "torch", single_bias: bool = False,
                 backend: str = "auto", proj_size: None = None) -> None:
        check_no_proj_size(type(self).__name__, proj_size)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype, cell=cell_name("gru", reset_after), activation=activation,
                         recurrent_activation=recurrent_activation, reset_after=reset_after,
                         input_dropout=input_dropout, recurrent_dropout=recurrent_dropout, zoneout=zoneout,
                         init=init, single_bias=single_bias, backend=backend)


class LayerNormLSTM(RecurrentLayer):
    r"""LSTM with layer normalization inside the recurrence (Ba et al. 2016; haste's LayerNormLSTM)::

        gates = LN(x W_ih^T) * g_ih + LN(h W_hh^T) * g_hh + b_ih + b_hh        (i, f, g, o)
        c' = sig(f) * c + sig(i) * act(g);   h' = sig(o) * act(LN(c') * g_c + b_c)

    ``LN`` normalizes over the last dimension (all 4H gate pre-activations; H for c') with the biased
    variance and ``eps``, no affine part of its own. Args: as :class:`LSTM` (no proj_size), plus
    keyword-only ``eps`` (1e-5). Parameters per layer and direction (suffix ``_l{k}{_reverse}``):
    ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` as the LSTM's, ``ln_ih_weight`` (4H),
    ``ln_hh_weight`` (4H), ``ln_cell_weight`` (H), ``ln_cell_bias`` (H); the gains start at 1, the bias at 0.

    Shapes: input (T, B, I) / (B, T, I) / (T, I); output (T, B, D*H); h_n, c_n (L*D, B, H).
    """

    mode = "lstm"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None, *, eps: float = 1e-5, input_dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 zoneout: float = 0.0, activation: str = "tanh", recurrent_activation: str = "sigmoid",
                 init: str = "torch", single_bias: bool = False, backend: str = "auto") -> None:
        check_eps(type(self).__name__, eps)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype, cell="layernorm_lstm", activation=activation,
                         recurrent_activation=recurrent_activation, input_dropout=input_dropout,
                         recurrent_dropout=recurrent_dropout, zoneout=zoneout, init=init, single_bias=single_bias,
                         cell_args=(eps,), backend=backend)
        self.eps = float(eps)

    def _extra_defaults(self) -> dict:
        return {"eps": 1e-5, **super()._extra_defaults()}


class LayerNormGRU(RecurrentLayer):
    r"""GRU with layer normalization inside the recurrence (Ba et al. 2016; haste's LayerNormGRU)::

        gx = LN(x W_ih^T) * g_ih + b_ih;   gh = LN(h W_hh^T) * g_hh + b_hh      (r, z, n)
        r = sig(gx_r + gh_r);  z = sig(gx_z + gh_z);  n = act(gx_n + r * gh_n);  h' = (1 - z) * n + z * h

    The reset gate acts after the product (torch's GRU form). Args: as :class:`GRU` without
    ``reset_after`` and ``single_bias`` (b_hn is scaled by r: a bias of its own), plus keyword-only ``eps``
    (1e-5). Parameters: the GRU's, plus ``ln_ih_weight`` and ``ln_hh_weight`` (3H each, starting at 1).

    Shapes: input (T, B, I) / (B, T, I) / (T, I); output (T, B, D*H); h_n (L*D, B, H).
    """

    mode = "gru"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None, *, eps: float = 1e-5, input_dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 zoneout: float = 0.0, activation: str = "tanh", recurrent_activation: str = "sigmoid",
                 init: str = "torch", backend: str = "auto") -> None:
        check_eps(type(self).__name__, eps)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype, cell="layernorm_gru", activation=activation,
                         recurrent_activation=recurrent_activation, input_dropout=input_dropout,
                         recurrent_dropout=recurrent_dropout, zoneout=zoneout, init=init, cell_args=(eps,),
                         backend=backend)
        self.eps = float(eps)

    def _extra_defaults(self) -> dict:
        extras = {"eps": 1e-5, **super()._extra_defaults()}
        del extras["reset_after"], extras["single_bias"]
        return extras


class IndRNN(RecurrentLayer):
    r"""Independently recurrent network (Li et al. 2018; haste's IndRNN)::

        h_t = act(x_t W_ih^T + b_ih + w_hh * h_{t-1} + b_hh)        w_hh (H,): elementwise

    Args: input_size, hidden_size, num_layers=1, nonlinearity="relu" ("relu" or "tanh"), bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None; keyword-only
    input_dropout, recurrent_dropout, zoneout, init, single_bias, backend. Parameters per layer and
    direction: ``weight_ih`` (H, I), ``weight_hh`` (H,) uniform in [0, 1] at first, ``bias_ih``,
    ``bias_hh`` (H,). To keep |w_hh| under a bound during training (Li et al.'s constraint), clamp it
    after each optimizer step or parametrize it (README).

    Shapes: input (T, B, I) / (B, T, I) / (T, I); output (T, B, D*H); h_n (L*D, B, H).
    """

    mode = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "relu",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, input_dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 zoneout: float = 0.0, init: str = "torch", single_bias: bool = False, backend: str = "auto") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity {nonlinearity!r}. Select from 'tanh' or 'relu'.")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype, cell="indrnn", activation=nonlinearity, input_dropout=input_dropout,
                         recurrent_dropout=recurrent_dropout, zoneout=zoneout, init=init, single_bias=single_bias,
                         backend=backend)

    @property
    def nonlinearity(self) -> str:
        return self.activation

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "relu" else "")
