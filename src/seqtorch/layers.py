r"""Recurrent layers: :class:`Recurrent` over any cell, and torch.nn.RNN/LSTM/GRU's API to the letter.

:class:`Recurrent` is the one layer: it holds a cell (:class:`~seqtorch.recurrent_cells.Cell`, the
spec of one step), builds its parameters in torch.nn's names and order (``weight_ih_l{k}{_reverse}``,
``weight_hh_*``, ``bias_ih_*``, ``bias_hh_*`` and the cell's own), checks its inputs as torch.nn does and
runs :func:`seqtorch.functional.stack`. The public classes (:class:`SimpleRNN`, :class:`LSTM`,
:class:`GRU`, :class:`LayerNormLSTM`, :class:`LayerNormGRU`, :class:`IndRNN`) are a signature, a docstring
and the choice of cell each. seqtorch's own options (dropouts, zoneout, activations, ...) are declared
once, in :mod:`seqtorch.options`, and taken as keyword-only arguments.

They are instances of torch.nn's classes: ``isinstance(seqtorch.LSTM(...), nn.LSTM)`` and
``isinstance(layer, nn.RNNBase)`` hold, and what ``nn.RNNBase`` gives (``_flat_weights``, ``all_weights``,
``.to()``, pickling, ``weight_norm``/pruning) behaves. torch.compile traces them into one graph
(:mod:`seqtorch._compile`).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from . import _compile
from . import functional as SF
from . import init as sinit
from . import options as O
from ._validation import (PassedChecks, check_device, check_layer_args, check_layer_input, check_lengths,
                          check_like, check_no_proj_size, check_rank, check_runnable, check_single_bias,
                          check_state_shape, check_step_flags, check_steps, check_tensor, tensor_signature)
from .recurrent_cells import CELLS, Cell, get_cell

_TORCH_MODES = {"lstm": "LSTM", "gru": "GRU"}
# The call signatures (Recurrent._signature) that passed a layer's input checks.
_CHECKED = PassedChecks()


@functools.lru_cache(maxsize=256)
def _scan_weight_names(cell: Cell, num_layers: int, directions: int) -> tuple[tuple[list[str], list[str]], ...]:
    """:meth:`Recurrent.scan_weights`' parameter names, per layer and direction (computed once per layout: a
    layer call reads them every time)."""
    return tuple(([name + suffix for name in cell.input_weights], [name + suffix for name in cell.weights])
                 for suffix in _layer_suffixes(num_layers, directions))


@functools.lru_cache(maxsize=256)
def _layer_suffixes(num_layers: int, directions: int) -> tuple[str, ...]:
    """The parameter names' suffix of each layer and direction (``_l0``, ``_l0_reverse``, ``_l1`` ...)."""
    return tuple(f"_l{layer}" + ("_reverse" if direction == 1 else "")
                 for layer in range(num_layers) for direction in range(directions))


class Recurrent(nn.RNNBase):
    r"""A stacked, optionally bidirectional recurrent layer of any cell, with torch.nn.RNNBase's API.

    Each layer ``l`` and direction computes, for every step ``t`` of its input sequence ``x_t``, the
    cell's step on the input projection ``z_t = x_t W_ih^T + b_ih`` and the previous states (``h`` first,
    the one the recurrent products read)::

        (h_t, ...) = cell.step(z_t, h_{t-1}, ...)        # e.g. the LSTM: i, f, g, o gates, c_t, h_t

    Layer ``l > 0`` reads the concatenated outputs of layer ``l - 1`` (with torch.nn's ``dropout``
    between them in training).

    Args:
        cell: the step (:class:`~seqtorch.recurrent_cells.Cell`): a built-in one
            (``seqtorch.recurrent_cells.CELLS["lstm"]``) or one of your own.
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype:
            torch.nn.RNNBase's, with its defaults and checks.
        proj_size: the size of ``h`` for a projecting cell (the LSTM's ``proj_size``), else 0.
        **options: seqtorch's options (:mod:`seqtorch.options`) every layer takes, and those the cell lists
            (:attr:`~seqtorch.recurrent_cells.Cell.options`).

    Inputs: ``input, hx=None, *, lengths=None``, as :meth:`forward`. Outputs: ``(output, h_n)``, or
    ``(output, (h_n, c_n, ...))`` for a cell with more than one state.

    Attributes:
        weight_ih_l[k], weight_hh_l[k], bias_ih_l[k], bias_hh_l[k], and the cell's own parameters: the
            shapes of :meth:`~seqtorch.recurrent_cells.Cell.parameters` (``_reverse`` for the second
            direction).
        cell: the cell.
    """

    # A public subclass names its cell (for its signature and docstring), the options it adds (GRU:
    # reset_after) and those its torch.nn signature already takes under torch's name (nonlinearity).
    _default_cell: Cell | None = None
    _own_options: tuple[str, ...] = ()
    _torch_named: tuple[str, ...] = ()
    _options: tuple[O.Option, ...] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        O.describe_public_class(cls, "layer")

    def __init__(self, cell: Cell, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None, *, proj_size: int = 0, _fixed: dict[str, Any] | None = None, **options) -> None:
        nn.Module.__init__(self)
        name = type(self).__name__
        dropout, num_layers = check_layer_args(input_size=input_size, hidden_size=hidden_size,
                                               num_layers=num_layers, bias=bias, batch_first=batch_first,
                                               dropout=dropout, proj_size=proj_size)
        allowed = self._options if self._default_cell is not None else O.applicable("layer", cell.options)
        values = O.resolve(name, allowed, options)
        check_single_bias(name, values.get("single_bias", False), bias=bias, cell=cell)
        self.cell = cell
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        # Kept as given, as torch.nn does (any value builds; forward wants a bool: check_runnable).
        self.bidirectional = bidirectional
        self.proj_size = int(proj_size)
        self._shown_options = tuple(o.name for o in allowed)  # names: a pickled layer holds no Option
        for key, value in {**values, **(_fixed or {})}.items():
            setattr(self, key, value)
        self._create_parameters({"device": device, "dtype": dtype})
        self.reset_parameters()

    def _create_parameters(self, factory: dict) -> None:
        """Every layer's and direction's parameters, in torch.nn.RNNBase's creation and registration order
        (the same seed then draws the same weights); ``single_bias`` makes each ``bias_hh`` a zero buffer."""
        P = self.proj_size or self.hidden_size
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(self.num_layers):
            layer_input_size = self.input_size if layer == 0 else P * self.num_directions
            for suffix in self._suffixes()[layer * self.num_directions: (layer + 1) * self.num_directions]:
                trained = []
                for base, shape in self.cell.parameters(layer_input_size, self.hidden_size, P):
                    if base.startswith("bias_") and not self.bias:
                        continue
                    name, value = base + suffix, torch.empty(shape, **factory)
                    if getattr(self, "single_bias", False) and base == "bias_hh":
                        # A buffer keeps torch.nn's state_dict key and layout but is never trained.
                        self.register_buffer(name, value.zero_())
                    else:
                        setattr(self, name, nn.Parameter(value))
                        trained.append(name)
                    self._flat_weights_names.append(name)
                self._all_weights.append(trained)
        if getattr(self, "learn_initial_state", False):
            widths = self.cell.state_sizes(self.hidden_size, P)
            for name in self.initial_state_names():
                state = name.split("0_l")[0]
                setattr(self, name, nn.Parameter(torch.zeros(widths[self.cell.states.index(state)], **factory)))
        self._init_flat_weights()

    def initial_state_names(self) -> list[str]:
        """The learned initial states' parameter names (``h0_l{k}{sfx}``, ``c0_l{k}{sfx}``, ...), state by
        state, each in layer and direction order; empty without ``learn_initial_state``."""
        if not getattr(self, "learn_initial_state", False):
            return []
        return [f"{state}0{suffix}" for state in self.cell.states for suffix in self._suffixes()]

    @property
    def mode(self) -> str:
        """torch.nn.RNNBase's name for the computation (``"LSTM"``, ``"GRU"``, ``"RNN_TANH"``,
        ``"RNN_RELU"``), from the cell's family; the cell's registered name for other families."""
        if self.cell.family == "rnn":
            return "RNN_RELU" if getattr(self, "activation", "tanh") == "relu" else "RNN_TANH"
        return _TORCH_MODES.get(self.cell.family, self.cell.name)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffixes(self) -> list[str]:
        return list(_layer_suffixes(self.num_layers, self.num_directions))

    def __getstate__(self):
        # the cell by its registered name: a pickled Module holds no class of the spec
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        return {**state, "cell": self.cell.name}

    def __setstate__(self, state) -> None:
        cell = state.get("cell")
        super().__setstate__({**state, "cell": get_cell(cell) if isinstance(cell, str) else cell})

    def option_values(self) -> dict[str, Any]:
        """seqtorch's option values this layer holds, by name (as it holds them now: the options are plain
        attributes of the instance, each set when it is built)."""
        values = self.__dict__  # read directly: Module.__getattr__ raises and catches for every absent one
        return {name: values[name] for name in O.OPTIONS if name in values}

    def layer_weights(self) -> list[tuple[Tensor, Tensor, Tensor | None, Tensor | None]]:
        """``(w_ih, w_hh, b_ih, b_hh)`` for each layer and direction, row ``layer * D + direction``."""
        return [tuple(getattr(self, name + suffix, None) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                for suffix in self._suffixes()]

    def scan_weights(self) -> list[tuple[tuple[Tensor | None, ...], tuple[Tensor | None, ...]]]:
        """Per layer and direction (row ``layer * D + direction``): the cell's input weights and its
        recurrent weights, in the orders of its spec (``(w_ih, b_ih)``, ``(w_hh, b_hh)`` for the LSTM);
        None for an absent bias."""
        return [(self._weights(input_names), self._weights(names))
                for input_names, names in _scan_weight_names(self.cell, self.num_layers, self.num_directions)]

    def _weights(self, names: list[str]) -> tuple[Tensor | None, ...]:
        """The weights ``names`` as ``getattr`` gives them (None when absent), read from ``_parameters`` where
        they are there (``getattr`` reaches a parameter through ``Module.__getattr__``, a microsecond each); a
        buffer (``single_bias``) or a parametrization is getattr's."""
        params = self._parameters
        return tuple([params[name] if name in params else getattr(self, name, None) for name in names])

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Like torch.nn's: the trained parameters of each layer and direction, in registration order."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """No-op kept for torch.nn compatibility (there is no cuDNN weight buffer to compact)."""

    def reset_parameters(self) -> None:
        """Re-draw the parameters with the scheme named by ``init`` ("torch" or "keras"), then the cell's own
        initial values (LayerNorm gains 1, ...)."""
        init = getattr(self, "init", "torch")
        learned = set(self.initial_state_names())
        if init == "torch":
            sinit.torch_default_([p for n, p in self.named_parameters() if n not in learned], self.hidden_size)
        with torch.no_grad():
            for name in learned:
                getattr(self, name).zero_()
        for suffix in self._suffixes():
            params = {base: getattr(self, base + suffix, None) for base, _ in self.cell.parameters(1, 1, 1)}
            if init == "keras":
                sinit.keras_(self.cell.family, params["weight_ih"], params["weight_hh"], params.get("bias_ih"),
                             params.get("bias_hh"))
            self.cell.init_({k: v for k, v in params.items() if v is not None}, init)

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
        return s + O.non_defaults(self._shown_options, self.option_values())

    # ----------------------------------------------------------------------------------------------
    def _state_labels(self) -> tuple[str, ...]:
        return ("hx",) if len(self.cell.states) == 1 else tuple(f"hx[{k}]" for k in range(len(self.cell.states)))

    def _expected_state_shapes(self, batch: int) -> list[tuple[int, ...]]:
        """(L*D, B, width) for each state: h (width P: proj_size, else H), then c for the LSTM (H)."""
        widths = self.cell.state_sizes(self.hidden_size, self.proj_size or self.hidden_size)
        return [(self.num_layers * self.num_directions, batch, w) for w in widths]

    def _given_states(self, hx, batched: bool, packed: bool, checked: bool = False) -> list[Tensor]:
        """The user's ``hx`` as a list of state tensors ([h_0], or [h_0, c_0, ...] for LSTM), with the
        checks torch.nn makes before it looks at the input's dtype: structure, then rank (not when
        ``checked``: a call of the same signature passed them)."""
        name = type(self).__name__
        if hx is None:
            return []
        if checked:
            return list(hx) if len(self.cell.states) > 1 else [hx]
        labels = self._state_labels()
        if len(labels) > 1:
            if isinstance(hx, Tensor):  # torch.nn indexes it as (h, c) and fails on their rank
                raise RuntimeError(f"{name}: hx must be a tuple (h_0, c_0) of two Tensors, got one Tensor of "
                                   f"shape {tuple(hx.shape)}")
            if not isinstance(hx, (tuple, list)):
                raise TypeError(f"{name}: hx must be a tuple (h_0, c_0), got {type(hx).__name__}")
            if len(hx) < len(labels):  # torch.nn: hx[1] -> IndexError
                raise IndexError(f"{name}: hx must be a tuple (h_0, c_0), got a {type(hx).__name__} of "
                                 f"{len(hx)}")
            states = list(hx)  # more than two: RuntimeError in _check_run
        else:
            states = [hx]
        rank = 3 if batched else 2
        for label, state in zip(labels, states):
            check_tensor(name, label, state)
            if not packed and state.dim() != rank:
                raise RuntimeError(f"{name}: for {'batched 3-D' if batched else 'unbatched 2-D'} input, {label} "
                                   f"should also be {rank}-D but got {state.dim()}-D tensor of shape "
                                   f"{tuple(state.shape)}")
        return states

    def default_states(self, batch: int, like: Tensor) -> tuple[Tensor, ...]:
        """The states a sequence starts from when ``hx`` is None, each (L*D, B, width): the learned initial
        states (``learn_initial_state``), else zeros (one tensor for the states of one shape, the LSTM's h and
        c: every scan only reads its initial states)."""
        shapes = self._expected_state_shapes(batch)
        names = self.initial_state_names()
        if not names:
            zeros: dict[int, Tensor] = {}  # by width, an int (the batch may be symbolic under torch.export)
            for shape in shapes:
                if shape[-1] not in zeros:
                    zeros[shape[-1]] = torch.zeros(shape, dtype=like.dtype, device=like.device)
            return tuple([zeros[shape[-1]] for shape in shapes])
        rows = len(self._suffixes())
        return tuple(torch.stack([getattr(self, n) for n in names[k * rows:(k + 1) * rows]]).unsqueeze(1).expand(shape)
                     for k, shape in enumerate(shapes))

    def _initial_states(self, states: list[Tensor], batch: int, batched: bool, like: Tensor,
                        checked: bool = False) -> tuple[Tensor, ...]:
        """Every state as an (L*D, B, width) tensor from the given ones (the default states when there are
        none), their shapes checked (not when ``checked``)."""
        if not states:
            return self.default_states(batch, like)
        count = len(self.cell.states)
        states = states[:count] if batched else [s.unsqueeze(1) for s in states[:count]]
        if not checked:
            name = type(self).__name__
            for label, state, shape in zip(self._state_labels(), states, self._expected_state_shapes(batch)):
                check_state_shape(name, label, state, shape)
        return tuple(states)

    def _signature(self, input, hx) -> tuple | None:
        """Everything the checks of a call read before its optional arguments (``lengths=``, ``mask=``,
        ``resets=``, which are checked every time): the Module's sizes and layout (with the types of
        ``num_layers`` and ``bidirectional``, which must be an int and a bool to run), the dtype and device of
        ``weight_ih_l0``, and the input's and the states' :func:`~seqtorch._validation.tensor_signature`. None,
        so that the call is checked, for an input or a state that is not a Tensor (a PackedSequence too), and
        under torch.compile, which runs the checks once, when it traces them."""
        if not isinstance(input, Tensor) or torch.compiler.is_compiling():
            return None
        if hx is None or isinstance(hx, Tensor):
            states = hx if hx is None else tensor_signature(hx)
        elif isinstance(hx, (tuple, list)) and all(isinstance(s, Tensor) for s in hx):
            states = (type(hx),) + tuple(tensor_signature(s) for s in hx)
        else:
            return None
        param = self._weights(["weight_ih_l0"])[0]
        if param is None:
            return None
        layers, bidirectional = self.num_layers, self.bidirectional
        return (type(self), self.cell, self.input_size, self.hidden_size, self.proj_size, layers, type(layers),
                bidirectional, type(bidirectional), self.batch_first, param.dtype, param.device,
                tensor_signature(input), states)

    def _check_run(self, x: Tensor, states: list[Tensor], input_shape: tuple[int, ...]) -> None:
        """What torch.nn's ATen op checks after its Python checks: the argument types it takes, the
        number of states, devices and dtypes of the states, and at least one timestep."""
        name = type(self).__name__
        check_runnable(name, num_layers=self.num_layers, bidirectional=self.bidirectional)
        labels = self._state_labels()
        if len(states) > len(labels):
            raise RuntimeError(f"{name}: hx must be a tuple (h_0, c_0) of two Tensors, got {len(states)}")
        param = self.weight_ih_l0
        check_device(name, "input", x, param)
        for label, state in zip(labels, states):
            check_like(name, label, state, param)
        check_steps(name, x.shape[0], input_shape)

    def forward(self, input: Tensor | PackedSequence, hx=None, lengths: Tensor | Sequence[int] | None = None, *,
                mask: Tensor | None = None, resets: Tensor | None = None, return_all_states: bool = False):
        """Run the network over a sequence.

        Args:
            input: (T, B, I), or (B, T, I) with ``batch_first``, or unbatched (T, I), or a PackedSequence.
            hx: initial state(s), (L*D, B, H) each ((L*D, H) for unbatched input); when None, zeros, or the
                learned initial states with ``learn_initial_state`` (an explicit ``hx`` wins over them).
                LSTM takes ``(h_0, c_0)``; with ``proj_size`` P, h_0 is (L*D, B, P).
            lengths: optional (B,) ints (tensor on any device, or a list), 1 <= lengths <= T: the valid
                length of each padded sequence. Outputs past a length are 0, h_n/c_n are each sequence's
                state at its last valid step and the reverse direction starts there (as torch.nn with
                the equivalent PackedSequence). Not allowed with a PackedSequence (it has its own).
            mask: optional bool, (B, T) with ``batch_first`` else (T, B) ((T,) unbatched), on the input's
                device: False skips the step, which leaves every state as it was and outputs 0. Each
                direction computes as if the masked steps were not in the sequence, so a left-padded batch
                with its padding masked equals each sequence run alone (``lengths=`` is the case of a
                right-padded mask). A sequence masked at every step outputs zeros and ends in its initial
                state. Not with ``lengths`` or a PackedSequence.
            resets: optional bool, the layout of ``mask``: True at step t starts a new segment there, from
                the layer's initial state (zeros, or the learned one; not ``hx``, which the first segment
                starts from). Each segment computes as a sequence of its own, in both directions; h_n is the
                state after the last segment (for the reverse direction, the first).
            return_all_states: also return every step's states of the last layer.

        Returns:
            ``(output, h_n)``, or ``(output, (h_n, c_n))`` for LSTM: output (T, B, D*H) (batch_first:
            (B, T, D*H); unbatched: (T, D*H); PackedSequence in, PackedSequence out), h_n and c_n
            (L*D, B, H) ((L*D, H) unbatched). B may be 0; T may not (RuntimeError, as torch.nn). With
            ``return_all_states``, a third element shaped as the states: every step's states of the last
            layer, (T, B, D*width) each in the input's layout (the LSTM's ``(h_all, c_all)``), zero at
            skipped steps.

        Errors have torch.nn's types, checked in its order: input rank (ValueError), hx structure and
        rank (RuntimeError), input dtype (ValueError), feature size and state shapes (RuntimeError),
        devices, state dtypes and T=0 (RuntimeError); a non-Tensor is a :class:`NotATensorError`.
        """
        name = type(self).__name__
        packed = isinstance(input, PackedSequence)
        # a call whose signature passed the checks before skips them (they read nothing else)
        signature = None if packed else self._signature(input, hx)
        checked = signature is not None and signature in _CHECKED  # None under torch.compile: no guard on the set
        if packed:
            for given, what in ((lengths, "lengths="), (mask, "mask="), (resets, "resets=")):
                if given is not None:
                    raise ValueError(f"{name}: {what} cannot be combined with a PackedSequence input, "
                                     f"which carries its own lengths")
            check_tensor(name, "input.data", input.data)
        elif not checked:
            check_rank(name, "input", input, (2, 3))
        batched = packed or input.dim() == 3
        states = self._given_states(hx, batched, packed, checked)
        data = input.data if packed else input
        if not checked:
            check_layer_input(name, data, input_size=self.input_size, param=self.weight_ih_l0)
        if packed:
            # pad_packed_sequence returns the batch in its original (unsorted) order, as hx is given.
            x, lengths = pad_packed_sequence(input, batch_first=False)
            lengths = lengths.to(x.device)
        elif not batched:
            x = input.unsqueeze(1)
        else:
            x = input.transpose(0, 1) if self.batch_first else input
        states0 = self._initial_states(states, x.shape[1], batched, x, checked)
        if not checked:
            self._check_run(x, states, tuple(data.shape))
            if signature is not None:
                _CHECKED.add(signature)
        if lengths is not None and not packed:
            if mask is not None:
                raise ValueError(f"{name}: give lengths= or mask=, not both (lengths= is a right-padded mask)")
            lengths = check_lengths(name, lengths, batch=x.shape[1], steps=x.shape[0], device=x.device,
                                    batch_first=self.batch_first, input_shape=tuple(input.shape))
        if mask is not None or resets is not None:
            layout = dict(steps=x.shape[0], batch=x.shape[1], batched=batched, batch_first=self.batch_first, like=x)
            mask = check_step_flags(name, "mask", mask, **layout)
            resets = check_step_flags(name, "resets", resets, **layout)
        # a reset restarts from the layer's own initial states: those given as hx are only the first segment's
        reset_states = self.default_states(x.shape[1], x) if resets is not None and states else ()

        output, finals, *every = SF.stack(
            self.cell, x, states0, self.scan_weights(), num_layers=self.num_layers, bidirectional=self.bidirectional,
            dropout=self.dropout, training=self.training, lengths=lengths, options=self.option_values(),
            packing=input if packed else None, mask=mask, resets=resets, reset_states0=reset_states,
            all_states=return_all_states)

        if packed:
            output = PackedSequence(SF.pack_as(output, input), input.batch_sizes, input.sorted_indices,
                                    input.unsorted_indices)
            every = [tuple(PackedSequence(SF.pack_as(s, input), input.batch_sizes, input.sorted_indices,
                                          input.unsorted_indices) for s in every[0])] if every else []
        elif not batched:
            output, finals = output.squeeze(1), tuple(f.squeeze(1) for f in finals)
            every = [tuple(s.squeeze(1) for s in every[0])] if every else []
        elif self.batch_first:
            output = output.transpose(0, 1)
            every = [tuple(s.transpose(0, 1) for s in every[0])] if every else []
        result = output, (finals if len(finals) > 1 else finals[0])
        if return_all_states:
            result += (every[0] if len(every[0]) > 1 else every[0][0],)
        return result

    def stream(self, hx=None):
        """A :class:`~seqtorch.streaming.Stream` over this layer: it carries the state from one call to the
        next (truncated BPTT, online inference), starting from ``hx`` (None: the layer's initial state)."""
        from .streaming import Stream

        return Stream(self, hx)

    # ---- export and conversion: each delegates to its module ---------------------------------------
    def to_torch_nn(self) -> nn.Module:
        """The torch.nn.RNN/LSTM/GRU with this layer's weights (:func:`seqtorch.convert.to_torch_nn`)."""
        from .convert import to_torch_nn

        return to_torch_nn(self)

    @classmethod
    def from_torch_nn(cls, module: nn.Module, *, backend: str = "auto") -> "Recurrent":
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


def _check_nonlinearity(nonlinearity) -> str:
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"Unknown nonlinearity {nonlinearity!r}. Select from 'tanh' or 'relu'.")
    return nonlinearity


_SHAPES = r"""
    Inputs: ``input, hx=None, *, lengths=None``
        * **input**: ``(T, B, I)``, ``(B, T, I)`` with ``batch_first=True``, ``(T, I)`` unbatched, or a
          :class:`~torch.nn.utils.rnn.PackedSequence`.
        * **hx**: the initial state{states}, each ``(L*D, B, {h_width})`` (``(L*D, {h_width})`` unbatched);
          zeros when None.
        * **lengths** (seqtorch): ``(B,)`` ints in ``[1, T]``, the valid length of each sequence of a padded
          batch: outputs past a length are 0, the final states are each sequence's last valid ones, and
          the reverse direction starts at each sequence's own end (torch.nn's numbers for the same
          PackedSequence).

    Outputs: ``output, {finals}``
        * **output**: ``(T, B, D*{h_width})`` (``(B, T, D*{h_width})`` with ``batch_first``), the last
          layer's ``h_t`` for every ``t``; a PackedSequence for a PackedSequence input.
        * **{finals}**: the final state{states} of every layer and direction, ``(L*D, B, width)``.

    ``L`` = num_layers, ``D`` = 2 if bidirectional else 1.
"""


class SimpleRNN(Recurrent, nn.RNN):
    r"""An Elman RNN (the book's ``SimpleRNN``), torch.nn.RNN's API and numbers.

    For each element of the input sequence each layer computes

    .. math::
        h_t = \tanh(x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh})

    (:math:`\text{ReLU}` instead of :math:`\tanh` with ``nonlinearity="relu"``), where :math:`h_t` is the
    hidden state at time ``t``, :math:`x_t` the input at time ``t`` (the previous layer's :math:`h_t` for
    layer ``l > 0``, with dropout in training when ``dropout > 0``) and :math:`h_{t-1}` the hidden state
    at time ``t-1`` or the initial state ``hx`` at time 0.

    Args:
        input_size: the number of features ``I`` of the input.
        hidden_size: the number of features ``H`` of the hidden state.
        num_layers: stacked layers (default 1).
        nonlinearity: ``"tanh"`` (default) or ``"relu"``.
        bias: if False, no ``b_ih`` and ``b_hh`` (default True).
        batch_first: input and output as ``(B, T, F)`` instead of ``(T, B, F)`` (default False).
        dropout: dropout on each layer's output except the last, in training (default 0).
        bidirectional: a second direction that reads the sequence backwards (default False).
        device, dtype: where and in which dtype the parameters are made.
""" + _SHAPES.format(states="", h_width="H", finals="h_n") + r"""
    Attributes:
        weight_ih_l[k]: ``(H, I)`` for ``k = 0``, else ``(H, D*H)``.
        weight_hh_l[k]: ``(H, H)``.
        bias_ih_l[k], bias_hh_l[k]: ``(H,)``. The second direction's end in ``_reverse``. All start
        uniform in :math:`(-1/\sqrt{H}, 1/\sqrt{H})`, as torch.nn's (the same seed, the same weights).

    Example::

        >>> rnn = seqtorch.SimpleRNN(10, 20, 2)
        >>> output, h_n = rnn(torch.randn(5, 3, 10), torch.zeros(2, 3, 20))
        >>> output.shape, h_n.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]))
    """

    _default_cell = CELLS["rnn"]
    _torch_named = ("activation",)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, proj_size: None = None, **options) -> None:
        check_no_proj_size(type(self).__name__, proj_size)
        super().__init__(CELLS["rnn"], input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, _fixed={"activation": _check_nonlinearity(nonlinearity)},
                         **options)

    @property
    def nonlinearity(self) -> str:
        return self.activation


class LSTM(Recurrent, nn.LSTM):
    r"""Long short-term memory, torch.nn.LSTM's API and numbers (projections included).

    For each element of the input sequence each layer computes

    .. math::
        \begin{array}{ll}
        i_t = \sigma(x_t W_{ii}^T + b_{ii} + h_{t-1} W_{hi}^T + b_{hi}) \\
        f_t = \sigma(x_t W_{if}^T + b_{if} + h_{t-1} W_{hf}^T + b_{hf}) \\
        g_t = \tanh(x_t W_{ig}^T + b_{ig} + h_{t-1} W_{hg}^T + b_{hg}) \\
        o_t = \sigma(x_t W_{io}^T + b_{io} + h_{t-1} W_{ho}^T + b_{ho}) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    with the gates in torch's order ``i, f, g, o`` in the stacked weights. With ``proj_size = P > 0``,
    :math:`h_t = W_{hr} (o_t \odot \tanh(c_t))` of size P, as torch.nn's. ``activation`` and
    ``recurrent_activation`` replace :math:`\tanh` and :math:`\sigma` (Keras' options).

    Args:
        input_size: the number of features ``I`` of the input.
        hidden_size: the number of features ``H`` of the cell state.
        num_layers: stacked layers (default 1).
        bias: if False, no ``b_ih`` and ``b_hh`` (default True).
        batch_first: input and output as ``(B, T, F)`` instead of ``(T, B, F)`` (default False).
        dropout: dropout on each layer's output except the last, in training (default 0).
        bidirectional: a second direction that reads the sequence backwards (default False).
        proj_size: ``P``, the size of ``h`` when > 0 (default 0: ``P = H``).
        device, dtype: where and in which dtype the parameters are made.
""" + _SHAPES.format(states="s ``(h_0, c_0)``", h_width="P", finals="(h_n, c_n)") + r"""
    ``h_0``/``h_n`` have width ``P`` (``H`` without projection), ``c_0``/``c_n`` width ``H``.

    Attributes:
        weight_ih_l[k]: ``(4H, I)`` for ``k = 0``, else ``(4H, D*P)``: :math:`W_{ii}|W_{if}|W_{ig}|W_{io}`.
        weight_hh_l[k]: ``(4H, P)``: :math:`W_{hi}|W_{hf}|W_{hg}|W_{ho}`.
        bias_ih_l[k], bias_hh_l[k]: ``(4H,)``.
        weight_hr_l[k]: ``(P, H)``, with ``proj_size > 0`` only. The second direction's end in ``_reverse``;
        all start uniform in :math:`(-1/\sqrt{H}, 1/\sqrt{H})`, as torch.nn's.

    Example::

        >>> lstm = seqtorch.LSTM(10, 20, 2, batch_first=True, recurrent_dropout=0.25)
        >>> output, (h_n, c_n) = lstm(torch.randn(3, 5, 10), lengths=torch.tensor([5, 2, 4]))
        >>> output.shape, h_n.shape, c_n.shape
        (torch.Size([3, 5, 20]), torch.Size([2, 3, 20]), torch.Size([2, 3, 20]))
    """

    _default_cell = CELLS["lstm"]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None, **options) -> None:
        projected = not isinstance(proj_size, bool) and isinstance(proj_size, (int, float)) and proj_size > 0
        super().__init__(CELLS["lstm_proj" if projected else "lstm"], input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, device, dtype, proj_size=proj_size, **options)


class GRU(Recurrent, nn.GRU):
    r"""Gated recurrent unit, torch.nn.GRU's API and numbers (gates ``r, z, n``).

    For each element of the input sequence each layer computes

    .. math::
        \begin{array}{ll}
        r_t = \sigma(x_t W_{ir}^T + b_{ir} + h_{t-1} W_{hr}^T + b_{hr}) \\
        z_t = \sigma(x_t W_{iz}^T + b_{iz} + h_{t-1} W_{hz}^T + b_{hz}) \\
        n_t = \tanh(x_t W_{in}^T + b_{in} + r_t \odot (h_{t-1} W_{hn}^T + b_{hn})) \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{array}

    With ``reset_after=False`` (Keras 2.0's GRU, the book's) the candidate reads the reset state:
    :math:`n_t = \tanh(x_t W_{in}^T + b_{in} + (r_t \odot h_{t-1}) W_{hn}^T + b_{hn})`.

    Args:
        input_size: the number of features ``I`` of the input.
        hidden_size: the number of features ``H`` of the hidden state.
        num_layers: stacked layers (default 1).
        bias: if False, no ``b_ih`` and ``b_hh`` (default True).
        batch_first: input and output as ``(B, T, F)`` instead of ``(T, B, F)`` (default False).
        dropout: dropout on each layer's output except the last, in training (default 0).
        bidirectional: a second direction that reads the sequence backwards (default False).
        device, dtype: where and in which dtype the parameters are made.
""" + _SHAPES.format(states="", h_width="H", finals="h_n") + r"""
    Attributes:
        weight_ih_l[k]: ``(3H, I)`` for ``k = 0``, else ``(3H, D*H)``: :math:`W_{ir}|W_{iz}|W_{in}`.
        weight_hh_l[k]: ``(3H, H)``: :math:`W_{hr}|W_{hz}|W_{hn}`.
        bias_ih_l[k], bias_hh_l[k]: ``(3H,)``. The second direction's end in ``_reverse``; all start
        uniform in :math:`(-1/\sqrt{H}, 1/\sqrt{H})`, as torch.nn's.

    Example::

        >>> gru = seqtorch.GRU(14, 32, reset_after=False, init="keras", single_bias=True)   # the book's
        >>> output, h_n = gru(torch.randn(120, 8, 14))
        >>> output.shape, h_n.shape
        (torch.Size([120, 8, 32]), torch.Size([1, 8, 32]))
    """

    _default_cell = CELLS["gru"]
    _own_options = ("reset_after",)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, proj_size: None = None, **options) -> None:
        check_no_proj_size(type(self).__name__, proj_size)
        reset_after = O.OPTIONS["reset_after"].check("reset_after", options.get("reset_after", True))
        super().__init__(CELLS["gru" if reset_after else "gru_reset_before"], input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, device, dtype, **options)


class LayerNormLSTM(Recurrent):
    r"""LSTM with layer normalization inside the recurrence (Ba et al. 2016; haste's LayerNormLSTM).

    .. math::
        \begin{array}{ll}
        (i, f, g, o) = \mathrm{LN}(x_t W_{ih}^T) g_{ih} + \mathrm{LN}(h_{t-1} W_{hh}^T) g_{hh} + b_{ih} + b_{hh} \\
        c_t = \sigma(f) \odot c_{t-1} + \sigma(i) \odot \tanh(g) \\
        h_t = \sigma(o) \odot \tanh(\mathrm{LN}(c_t) g_c + b_c)
        \end{array}

    ``LN`` normalizes over the last dimension (all 4H gate pre-activations; H for :math:`c_t`) with the
    biased variance and ``eps``, no affine part of its own.

    Args: as :class:`LSTM` without ``proj_size``.
""" + _SHAPES.format(states="s ``(h_0, c_0)``", h_width="H", finals="(h_n, c_n)") + r"""
    Attributes:
        the LSTM's, and per layer and direction ``ln_ih_weight_l[k]``, ``ln_hh_weight_l[k]`` ``(4H,)``,
        ``ln_cell_weight_l[k]`` ``(H,)`` (the gains, starting at 1) and ``ln_cell_bias_l[k]`` ``(H,)`` (at 0).

    Example::

        >>> ln = seqtorch.LayerNormLSTM(32, 64, num_layers=2, eps=1e-5)
        >>> output, (h_n, c_n) = ln(torch.randn(7, 4, 32))
        >>> output.shape
        torch.Size([7, 4, 64])
    """

    _default_cell = CELLS["layernorm_lstm"]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None, **options) -> None:
        super().__init__(CELLS["layernorm_lstm"], input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, **options)


class LayerNormGRU(Recurrent):
    r"""GRU with layer normalization inside the recurrence (Ba et al. 2016; haste's LayerNormGRU).

    .. math::
        \begin{array}{ll}
        (x_r, x_z, x_n) = \mathrm{LN}(x_t W_{ih}^T) g_{ih} + b_{ih}, \quad
        (h_r, h_z, h_n) = \mathrm{LN}(h_{t-1} W_{hh}^T) g_{hh} + b_{hh} \\
        r = \sigma(x_r + h_r), \quad z = \sigma(x_z + h_z), \quad n = \tanh(x_n + r \odot h_n) \\
        h_t = (1 - z) \odot n + z \odot h_{t-1}
        \end{array}

    The reset gate acts after the product (torch's GRU form); ``single_bias`` is refused (``b_hn`` is
    scaled by ``r``).

    Args: as :class:`GRU` without ``reset_after``.
""" + _SHAPES.format(states="", h_width="H", finals="h_n") + r"""
    Attributes:
        the GRU's, and ``ln_ih_weight_l[k]``, ``ln_hh_weight_l[k]`` ``(3H,)``, the gains, starting at 1.

    Example::

        >>> lng = seqtorch.LayerNormGRU(32, 64)
        >>> output, h_n = lng(torch.randn(7, 4, 32))
        >>> h_n.shape
        torch.Size([1, 4, 64])
    """

    _default_cell = CELLS["layernorm_gru"]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, device=None,
                 dtype=None, **options) -> None:
        super().__init__(CELLS["layernorm_gru"], input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, **options)


class IndRNN(Recurrent):
    r"""Independently recurrent network (Li et al. 2018; haste's IndRNN).

    .. math::
        h_t = \mathrm{ReLU}(x_t W_{ih}^T + b_{ih} + w_{hh} \odot h_{t-1} + b_{hh})

    with a recurrent weight *vector* :math:`w_{hh}` (H,): each unit recurs on itself only.
    ``nonlinearity="tanh"`` replaces the ReLU. Li et al. keep :math:`|w_{hh}|` under a bound (``2^{1/T}``
    for T steps keeps the gradient from exploding): clamp it after each optimizer step, or parametrize it.

    Args: input_size, hidden_size, num_layers=1, nonlinearity="relu", bias=True, batch_first=False,
        dropout=0.0, bidirectional=False, device=None, dtype=None, as :class:`SimpleRNN` (ReLU by default).
""" + _SHAPES.format(states="", h_width="H", finals="h_n") + r"""
    Attributes:
        weight_ih_l[k] ``(H, I)``; weight_hh_l[k] ``(H,)``, uniform in [0, 1] at first; bias_ih_l[k],
        bias_hh_l[k] ``(H,)``.

    Example::

        >>> ind = seqtorch.IndRNN(32, 64)
        >>> output, h_n = ind(torch.randn(7, 4, 32))
        >>> ind.weight_hh_l0.shape
        torch.Size([64])
    """

    _default_cell = CELLS["indrnn"]
    _torch_named = ("activation",)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "relu",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, **options) -> None:
        super().__init__(CELLS["indrnn"], input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, _fixed={"activation": _check_nonlinearity(nonlinearity)},
                         **options)

    @property
    def nonlinearity(self) -> str:
        return self.activation

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "relu" else "")


_compile.trace_layers_as_one_graph(Recurrent)
