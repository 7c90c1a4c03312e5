r"""Single-step cells: :class:`RecurrentCell` over any cell, and torch.nn.RNNCell/LSTMCell/GRUCell's API.

:class:`RecurrentCell` holds a cell (:class:`~seqtorch.recurrent_cells.Cell`), builds its parameters in
torch.nn's names (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh`` and the cell's own), checks its
inputs as torch.nn's cells do and runs one step of the cell's equations. The public classes are a
signature, a docstring and the choice of cell each; seqtorch's options are declared in
:mod:`seqtorch.options`. They are instances of torch.nn's classes (``isinstance(seqtorch.LSTMCell(...),
nn.LSTMCell)``, ``nn.RNNCellBase``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from . import init as sinit
from . import options as O
from ._validation import (PassedChecks, check_cell_input, check_cell_sizes, check_like, check_rank,
                          check_single_bias, check_state_shape, tensor_signature)
from .functional import scan_options, zoneout_coefficients
from .ops import step as step_op
from .recurrent_cells import CELLS, Cell, get_cell
from .recurrent_cells.activations import ACTIVATIONS

_is_compiling = torch.compiler.is_compiling

# The argument signatures (RecurrentCell._signature) that passed a cell's input checks.
_CHECKED = PassedChecks()


class RecurrentCell(nn.RNNCellBase):
    r"""One step of any cell, with torch.nn.RNNCellBase's API: ``states' = cell.step(x W_ih^T + b_ih, states)``.

    Args:
        cell: the step (:class:`~seqtorch.recurrent_cells.Cell`), built in or your own.
        input_size, hidden_size, bias, device, dtype: torch.nn.RNNCellBase's. Sizes may be 0, as there.
        **options: seqtorch's options every cell Module takes (``zoneout``, ``init``, ``single_bias``) and
            those the cell lists (:attr:`~seqtorch.recurrent_cells.Cell.options`).

    Inputs: ``input, hx=None``: input ``(B, I)`` or ``(I,)``; hx the state, or a tuple of the states for a
    cell with more than one, each ``(B, H)`` or ``(H,)``; when None zeros, or the learned initial states with
    ``learn_initial_state`` (an explicit hx wins).
    Outputs: the new state, or the tuple of new states, shaped as hx.

    ``zoneout=p``: each unit of each state keeps its previous value with probability p, a fresh mask per
    call in training; in evaluation the expectation, ``p * previous + (1 - p) * new``.
    """

    _default_cell: Cell | None = None
    _own_options: tuple[str, ...] = ()
    _torch_named: tuple[str, ...] = ()
    _options: tuple[O.Option, ...] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        O.describe_public_class(cls, "cell")

    def __init__(self, cell: Cell, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None,
                 *, _fixed: dict[str, Any] | None = None, **options) -> None:
        nn.Module.__init__(self)
        name = type(self).__name__
        input_size, hidden_size = check_cell_sizes(input_size, hidden_size)
        allowed = self._options if self._default_cell is not None else O.applicable("cell", cell.options)
        values = O.resolve(name, allowed, options)
        check_single_bias(name, values.get("single_bias", False), bias=bias, cell=cell)
        self.cell = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        # Any value, as torch.nn's cells take it: its truth says whether there are biases.
        self.bias = bias
        self._shown_options = tuple(o.name for o in allowed)  # names: a pickled cell holds no Option
        for key, value in {**values, **(_fixed or {})}.items():
            setattr(self, key, value)
        factory = {"device": device, "dtype": dtype}
        for param, shape in cell.parameters(input_size, hidden_size, hidden_size):
            if param.startswith("bias_") and not bias:
                self.register_parameter(param, None)
            elif getattr(self, "single_bias", False) and param == "bias_hh":
                self.register_buffer(param, torch.zeros(shape, **factory))
            else:
                setattr(self, param, nn.Parameter(torch.empty(shape, **factory)))
        for state, width in zip(self.initial_state_names(), cell.state_sizes(hidden_size, hidden_size)):
            setattr(self, state, nn.Parameter(torch.zeros(width, **factory)))
        self.reset_parameters()

    def initial_state_names(self) -> list[str]:
        """The learned initial states' parameter names (``h0``, ``c0``, ...); empty without
        ``learn_initial_state``."""
        return [f"{state}0" for state in self.cell.states] if getattr(self, "learn_initial_state", False) else []

    def __getstate__(self):
        # the cell by its registered name: a pickled Module holds no class of the spec
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        return {**state, "cell": self.cell.name}

    def __setstate__(self, state) -> None:
        cell = state.get("cell")
        super().__setstate__({**state, "cell": get_cell(cell) if isinstance(cell, str) else cell})

    def option_values(self) -> dict[str, Any]:
        """seqtorch's option values this cell holds, by name (as it holds them now)."""
        return {o.name: getattr(self, o.name) for o in O.OPTIONS.values() if hasattr(self, o.name)}

    def reset_parameters(self) -> None:
        """Re-draw the parameters with the scheme named by ``init`` ("torch" or "keras"), then the cell's own
        initial values (LayerNorm gains 1, ...)."""
        init = getattr(self, "init", "torch")
        learned = set(self.initial_state_names())
        with torch.no_grad():
            for name in learned:
                getattr(self, name).zero_()
        if init == "torch":
            sinit.torch_default_([p for n, p in self.named_parameters() if n not in learned], self.hidden_size)
        else:
            sinit.keras_(self.cell.family, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        params = {name: getattr(self, name) for name, _ in self.cell.parameters(1, 1, 1)}
        self.cell.init_({k: v for k, v in params.items() if v is not None}, init)

    def _step(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, ...]:
        """One step of the cell on x (B, I) from ``states`` (B, width) each: the spec's equations, as one C++
        op where it serves (same numbers; the rule is :func:`seqtorch.ops.step.cell_step`'s)."""
        cell, values = self.cell, self.__dict__  # the options are plain attributes (Module.__getattr__ is slower)
        planner = step_op.traced_plan if _is_compiling() else step_op.plan
        plan = planner(cell, values.get("activation", "tanh"), values.get("recurrent_activation", "sigmoid"),
                       tuple(values[name] for name in cell.cell_args))
        params = self._parameters
        input_weights = [params[n] if n in params else getattr(self, n) for n in cell.input_weights]
        weights = [params[n] if n in params else getattr(self, n) for n in cell.weights]
        new = step_op.cell_step(plan, x, tuple(states), input_weights, weights)
        zoneout = values.get("zoneout", 0.0)
        if zoneout > 0:
            keep = [zoneout_coefficients(1, *s.shape, zoneout, self.training, s)[0] for s in states]
            new = tuple(k * s + (1 - k) * n for k, s, n in zip(keep, states, new))
        return new

    def extra_repr(self) -> str:
        # torch.nn.RNNCellBase's options first, printed as torch.nn prints them; then seqtorch's own.
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if "activation" in self._torch_named and self.activation != "tanh":
            s += f", nonlinearity={self.activation}"
        return s + O.non_defaults(self._shown_options, self.option_values())

    def _prepare(self, input: Tensor, given: list[Tensor] | None) -> tuple[Tensor, list[Tensor], bool]:
        """Check ``input`` (B, I) or (I,) and the ``given`` states (B, H) or (H,) each, or None; return them
        batched, with missing states as zeros, and whether the input was batched.

        Errors as torch.nn's cells raise them: a rank other than 1 or 2 is a ValueError, everything
        torch's cell op checks (number of states, sizes, batch, dtype, device) a RuntimeError. The checks
        depend only on what :meth:`_signature` holds: a call whose signature passed them before skips them
        (a few microseconds of a call that costs twenty at B=1)."""
        signature = self._signature(input, given)
        if signature is not None and signature in _CHECKED:
            batched = input.dim() == 2
            x = input if batched else input.unsqueeze(0)
            if given is None:
                return x, self._initial_states(x), batched
            return x, given if batched else [s.unsqueeze(0) for s in given], batched
        prepared = self._prepare_checked(input, given)
        if signature is not None:
            _CHECKED.add(signature)
        return prepared

    def _initial_states(self, x: Tensor) -> list[Tensor]:
        """The states of a call without hx, (B, width) each: the learned initial states (one row per
        sequence) with ``learn_initial_state``, else zeros."""
        learned = self.initial_state_names()
        if learned:
            return [getattr(self, n).unsqueeze(0).expand(x.shape[0], -1) for n in learned]
        shape = (x.shape[0], self.hidden_size)
        return [torch.zeros(shape, dtype=x.dtype, device=x.device)] * len(self.cell.states)

    def _signature(self, input: Tensor, given: list[Tensor] | None) -> tuple | None:
        """Everything :meth:`_prepare_checked`'s checks read: the arguments' types, shapes, dtypes, devices,
        the parameters' dtypes and devices, and the Module's sizes and nonlinearity (None for arguments
        that are not all Tensors: the checks say what is wrong with them; and under torch.compile, which runs the
        checks once, when it traces them, with no guard on the kept signatures)."""
        if not isinstance(input, Tensor) or (given is not None and not all(isinstance(s, Tensor) for s in given)):
            return None
        if torch.compiler.is_compiling():
            return None
        params = self._parameters
        w_ih = params["weight_ih"] if "weight_ih" in params else self.weight_ih
        w_hh = params["weight_hh"] if "weight_hh" in params else self.weight_hh
        states = None if given is None else tuple([tensor_signature(s) for s in given])
        return (type(self), self.input_size, self.hidden_size, self.__dict__.get("activation"), type(input),
                input.shape, input.dtype, input.device, states, w_ih.dtype, w_ih.device, w_hh.dtype, w_hh.device)

    def _prepare_checked(self, input: Tensor, given: list[Tensor] | None) -> tuple[Tensor, list[Tensor], bool]:
        name = type(self).__name__
        count = len(self.cell.states)
        labels = [f"hx[{i}]" for i in range(len(given))] if count > 1 and given else ["hx"]
        check_rank(name, "input", input, (1, 2))
        for label, state in zip(labels, given or []):
            check_rank(name, label, state, (1, 2))
        if "activation" in self._torch_named and self.activation not in ACTIVATIONS:
            raise RuntimeError(f"{name}: Unknown nonlinearity {self.activation!r}. Select from 'tanh' or 'relu'.")
        if given is not None and len(given) != count:
            raise RuntimeError(f"{name}: hx must be a tuple (h, c) of two Tensors, got {len(given)}")
        check_cell_input(name, input, input_size=self.input_size, param=self.weight_ih)
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        if given is None:
            return x, self._initial_states(x), batched
        shape = (x.shape[0], self.hidden_size)
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

    def forward(self, input: Tensor, hx=None):
        """One step: ``input`` (B, I) or (I,), ``hx`` the state(s) or None; returns the new state(s)."""
        if len(self.cell.states) == 1:
            x, states, batched = self._prepare(input, None if hx is None else [hx])
        else:
            if hx is not None and (isinstance(hx, Tensor) or not isinstance(hx, (tuple, list))):
                raise TypeError(f"{type(self).__name__}: hx must be a tuple (h, c) of two Tensors, got "
                                f"{type(hx).__name__}")
            x, states, batched = self._prepare(input, None if hx is None else list(hx))
        new = self._step(x, states)
        if not batched:
            new = tuple(s.squeeze(0) for s in new)
        return new[0] if len(new) == 1 else new

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


_ARGS = """
    Args:
        input_size: the number of features ``I`` of the input.
        hidden_size: the number of features ``H`` of the state.
        bias: if False, no ``b_ih`` and ``b_hh`` (default True).{extra}
        device, dtype: where and in which dtype the parameters are made.

    Inputs: ``input, hx=None``: input ``(B, I)`` or ``(I,)``; hx {hx}, each ``(B, H)`` or ``(H,)``; zeros
    when None. Outputs: {out}, shaped as hx.
"""


class SimpleRNNCell(RecurrentCell, nn.RNNCell):
    r"""An Elman RNN cell, torch.nn.RNNCell's API and numbers.

    .. math::
        h' = \tanh(x W_{ih}^T + b_{ih} + h W_{hh}^T + b_{hh})

    (:math:`\text{ReLU}` with ``nonlinearity="relu"``; any value builds, forward raises RuntimeError for
    one other than those two, as torch.nn.RNNCell does).
""" + _ARGS.format(extra="\n        nonlinearity: ``\"tanh\"`` (default) or ``\"relu\"``.", hx="the state h",
                   out="h'") + r"""
    Attributes:
        weight_ih ``(H, I)``, weight_hh ``(H, H)``, bias_ih and bias_hh ``(H,)``: uniform in
        :math:`(-1/\sqrt{H}, 1/\sqrt{H})` at first, as torch.nn's.

    Example::

        >>> cell = seqtorch.SimpleRNNCell(10, 20)
        >>> h = torch.zeros(3, 20)
        >>> for x in torch.randn(6, 3, 10):
        ...     h = cell(x, h)
        >>> h.shape
        torch.Size([3, 20])
    """

    _default_cell = CELLS["rnn"]
    _torch_named = ("activation",)

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None, **options) -> None:
        # Any nonlinearity builds; forward raises RuntimeError for one other than "tanh" or "relu", as
        # torch.nn.RNNCell does.
        super().__init__(CELLS["rnn"], input_size, hidden_size, bias, device, dtype,
                         _fixed={"activation": nonlinearity}, **options)

    @property
    def nonlinearity(self) -> str:
        return self.activation


class LSTMCell(RecurrentCell, nn.LSTMCell):
    r"""An LSTM cell (gates ``i, f, g, o``), torch.nn.LSTMCell's API and numbers.

    .. math::
        \begin{array}{ll}
        i = \sigma(x W_{ii}^T + b_{ii} + h W_{hi}^T + b_{hi}), \quad
        f = \sigma(x W_{if}^T + b_{if} + h W_{hf}^T + b_{hf}) \\
        g = \tanh(x W_{ig}^T + b_{ig} + h W_{hg}^T + b_{hg}), \quad
        o = \sigma(x W_{io}^T + b_{io} + h W_{ho}^T + b_{ho}) \\
        c' = f \odot c + i \odot g, \quad h' = o \odot \tanh(c')
        \end{array}
""" + _ARGS.format(extra="", hx="the tuple ``(h, c)``", out="``(h', c')``") + r"""
    Attributes:
        weight_ih ``(4H, I)``, weight_hh ``(4H, H)``, bias_ih and bias_hh ``(4H,)``, the gates stacked in
        the order ``i, f, g, o``; uniform in :math:`(-1/\sqrt{H}, 1/\sqrt{H})` at first.

    Example::

        >>> cell = seqtorch.LSTMCell(10, 20)
        >>> h, c = torch.zeros(3, 20), torch.zeros(3, 20)
        >>> for x in torch.randn(6, 3, 10):
        ...     h, c = cell(x, (h, c))
        >>> h.shape, c.shape
        (torch.Size([3, 20]), torch.Size([3, 20]))
    """

    _default_cell = CELLS["lstm"]

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None,
                 **options) -> None:
        super().__init__(CELLS["lstm"], input_size, hidden_size, bias, device, dtype, **options)


class GRUCell(RecurrentCell, nn.GRUCell):
    r"""A GRU cell (gates ``r, z, n``), torch.nn.GRUCell's API and numbers.

    .. math::
        \begin{array}{ll}
        r = \sigma(x W_{ir}^T + b_{ir} + h W_{hr}^T + b_{hr}), \quad
        z = \sigma(x W_{iz}^T + b_{iz} + h W_{hz}^T + b_{hz}) \\
        n = \tanh(x W_{in}^T + b_{in} + r \odot (h W_{hn}^T + b_{hn})), \quad
        h' = (1 - z) \odot n + z \odot h
        \end{array}

    ``reset_after=False``: Keras 2.0's candidate, :math:`n = \tanh(x W_{in}^T + b_{in} + (r \odot h)
    W_{hn}^T + b_{hn})`.
""" + _ARGS.format(extra="", hx="the state h", out="h'") + r"""
    Attributes:
        weight_ih ``(3H, I)``, weight_hh ``(3H, H)``, bias_ih and bias_hh ``(3H,)``, the gates stacked in
        the order ``r, z, n``; uniform in :math:`(-1/\sqrt{H}, 1/\sqrt{H})` at first.

    Example::

        >>> cell = seqtorch.GRUCell(10, 20, reset_after=False)
        >>> cell(torch.randn(3, 10)).shape
        torch.Size([3, 20])
    """

    _default_cell = CELLS["gru"]
    _own_options = ("reset_after",)

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None,
                 **options) -> None:
        reset_after = O.OPTIONS["reset_after"].check("reset_after", options.get("reset_after", True))
        super().__init__(CELLS["gru" if reset_after else "gru_reset_before"], input_size, hidden_size, bias,
                         device, dtype, **options)


class LayerNormLSTMCell(RecurrentCell):
    r"""One step of :class:`seqtorch.LayerNormLSTM` (its equations there).
""" + _ARGS.format(extra="", hx="the tuple ``(h, c)``", out="``(h', c')``") + r"""
    Attributes:
        the LSTM cell's, and ``ln_ih_weight``, ``ln_hh_weight`` ``(4H,)``, ``ln_cell_weight`` ``(H,)`` (gains,
        starting at 1), ``ln_cell_bias`` ``(H,)`` (at 0).

    Example::

        >>> cell = seqtorch.LayerNormLSTMCell(10, 20)
        >>> h, c = cell(torch.randn(3, 10))
        >>> h.shape
        torch.Size([3, 20])
    """

    _default_cell = CELLS["layernorm_lstm"]

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None,
                 **options) -> None:
        super().__init__(CELLS["layernorm_lstm"], input_size, hidden_size, bias, device, dtype, **options)


class LayerNormGRUCell(RecurrentCell):
    r"""One step of :class:`seqtorch.LayerNormGRU` (its equations there).
""" + _ARGS.format(extra="", hx="the state h", out="h'") + r"""
    Attributes:
        the GRU cell's, and ``ln_ih_weight``, ``ln_hh_weight`` ``(3H,)``, starting at 1.

    Example::

        >>> cell = seqtorch.LayerNormGRUCell(10, 20)
        >>> cell(torch.randn(3, 10)).shape
        torch.Size([3, 20])
    """

    _default_cell = CELLS["layernorm_gru"]

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None,
                 **options) -> None:
        super().__init__(CELLS["layernorm_gru"], input_size, hidden_size, bias, device, dtype, **options)

    @property
    def reset_after(self) -> bool:
        return True


class IndRNNCell(RecurrentCell):
    r"""One step of :class:`seqtorch.IndRNN`: :math:`h' = \mathrm{ReLU}(x W_{ih}^T + b_{ih} + w_{hh} \odot h +
    b_{hh})`, :math:`w_{hh}` a vector ``(H,)``.
""" + _ARGS.format(extra="\n        nonlinearity: ``\"relu\"`` (default) or ``\"tanh\"``.", hx="the state h",
                   out="h'") + r"""
    Attributes:
        weight_ih ``(H, I)``, weight_hh ``(H,)`` (uniform in [0, 1] at first), bias_ih and bias_hh ``(H,)``.

    Example::

        >>> cell = seqtorch.IndRNNCell(10, 20)
        >>> cell(torch.randn(3, 10)).shape
        torch.Size([3, 20])
    """

    _default_cell = CELLS["indrnn"]
    _torch_named = ("activation",)

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "relu",
                 device=None, dtype=None, **options) -> None:
        super().__init__(CELLS["indrnn"], input_size, hidden_size, bias, device, dtype,
                         _fixed={"activation": nonlinearity}, **options)

    @property
    def nonlinearity(self) -> str:
        return self.activation

    def extra_repr(self) -> str:
        s = super().extra_repr().replace(f", nonlinearity={self.nonlinearity}", "")
        return s + (f", nonlinearity={self.nonlinearity}" if self.nonlinearity != "relu" else "")
