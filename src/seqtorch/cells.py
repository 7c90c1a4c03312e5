"""Single-step cells: torch.nn.RNNCell / LSTMCell / GRUCell's API, the equations of seqtorch.reference."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import init as sinit
from ._validation import (check_cell_input, check_cell_sizes, check_eps, check_like, check_options, check_rank,
                          check_single_bias, check_state_shape)
from .functional import zoneout_coefficients
from .recurrent_cells import get_cell
from .reference import ACTIVATIONS, cell_name


# The argument signatures (RecurrentCell._signature) that passed a cell's input checks; cleared when full.
_CHECKED: set[tuple] = set()
_CHECKED_MAX = 4096


class RecurrentCell(nn.Module):
    """Parameters (from the cell's spec, in torch.nn's names and order), initialization, input handling
    and the step shared by every cell Module.

    ``single_bias=True``: ``bias_hh`` is a zero buffer, one trained bias per gate as in Keras (see
    :class:`seqtorch.layers.RecurrentLayer`). ``zoneout=p``: each unit of each state keeps its previous
    value with probability p, a fresh mask per call in training; in evaluation the expectation,
    ``p * previous + (1 - p) * new``.
    """

    mode = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 cell: str = "rnn", activation: str = "tanh", recurrent_activation: str = "sigmoid",
                 init: str = "torch", single_bias: bool = False, reset_after: bool = True, zoneout: float = 0.0,
                 cell_args: tuple[float, ...] = ()) -> None:
        super().__init__()
        input_size, hidden_size = check_cell_sizes(input_size, hidden_size)
        check_single_bias(single_bias, bias=bias, mode=self.mode, reset_after=reset_after)
        # SimpleRNNCell's nonlinearity is checked in forward, where torch.nn.RNNCell checks it.
        check_options(activation=None if self.mode == "rnn" else activation,
                      recurrent_activation=recurrent_activation, init=init, dropouts={"zoneout": zoneout})
        self.input_size = input_size
        self.hidden_size = hidden_size
        # Any value, as torch.nn's cells take it: its truth says whether there are biases.
        self.bias = bias
        self.activation = activation
        self.recurrent_activation = recurrent_activation
        self.init = init
        self.single_bias = single_bias
        self.zoneout = float(zoneout)
        self.cell = cell
        self.cell_args = tuple(float(a) for a in cell_args)
        factory = {"device": device, "dtype": dtype}
        for name, shape in get_cell(cell).parameters(input_size, hidden_size, hidden_size):
            if name.startswith("bias_") and not bias:
                self.register_parameter(name, None)
            elif single_bias and name == "bias_hh":
                self.register_buffer(name, torch.zeros(shape, **factory))
            else:
                setattr(self, name, nn.Parameter(torch.empty(shape, **factory)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw the parameters with the scheme named by ``init`` ("torch" or "keras"), then the cell's own
        initial values (LayerNorm gains 1, ...)."""
        spec = get_cell(self.cell)
        if self.init == "torch":
            sinit.torch_default_(self.parameters(), self.hidden_size)
        else:
            sinit.keras_(spec.family, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        params = {name: getattr(self, name) for name, _ in spec.parameters(1, 1, 1)}
        spec.init_({k: v for k, v in params.items() if v is not None}, self.init)

    def _step(self, x: Tensor, states: list[Tensor]) -> tuple[Tensor, ...]:
        """One step of the cell on x (B, I) from ``states`` (B, width) each: the spec's equations, as one C++
        op where it serves (same numbers; the rule is :func:`seqtorch.ops.step.cell_step`'s)."""
        from .ops import step as step_op  # the kernels sit below this layer; imported on first use

        plan = step_op.plan(self.cell, self.activation, self.recurrent_activation, self.cell_args)
        params = self._parameters  # read directly where they are (getattr's Module.__getattr__ is slower)
        input_weights, weights = ([params[n] if n in params else getattr(self, n) for n in names]
                                  for names in (plan.spec.input_weights, plan.spec.weights))
        new = step_op.cell_step(plan, x, tuple(states), input_weights, weights)
        if self.zoneout > 0:
            keep = [zoneout_coefficients(1, *s.shape, self.zoneout, self.training, s)[0] for s in states]
            new = tuple(k * s + (1 - k) * n for k, s, n in zip(keep, states, new))
        return new

    def extra_repr(self) -> str:
        # torch.nn.RNNCellBase's options first, printed as torch.nn prints them; then seqtorch's own.
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.mode == "rnn" and self.activation != "tanh":
            s += f", nonlinearity={self.activation}"
        extras = {"activation": "tanh", "reset_after": True, "recurrent_activation": "sigmoid", "init": "torch",
                  "single_bias": False, "zoneout": 0.0}
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
        torch's cell op checks (number of states, sizes, batch, dtype, device) a RuntimeError. The checks
        depend only on what :meth:`_signature` holds: a call whose signature passed them before skips them
        (a few microseconds of a call that costs twenty at B=1)."""
        signature = self._signature(input, given)
        if signature is not None and signature in _CHECKED:
            batched = input.dim() == 2
            x = input if batched else input.unsqueeze(0)
            if given is None:
                return x, [torch.zeros((x.shape[0], self.hidden_size), dtype=x.dtype, device=x.device)] * (
                    2 if self.mode == "lstm" else 1), batched
            return x, given if batched else [s.unsqueeze(0) for s in given], batched
        prepared = self._prepare_checked(input, given)
        if signature is not None:
            if len(_CHECKED) >= _CHECKED_MAX:
                _CHECKED.clear()
            _CHECKED.add(signature)
        return prepared

    def _signature(self, input: Tensor, given: list[Tensor] | None) -> tuple | None:
        """Everything :meth:`_prepare_checked`'s checks read: the arguments' types, shapes, dtypes, devices,
        the parameters' dtypes and devices, and the Module's sizes and nonlinearity (None for arguments
        that are not all Tensors: the checks say what is wrong with them)."""
        if not isinstance(input, Tensor) or (given is not None and not all(isinstance(s, Tensor) for s in given)):
            return None
        params = self._parameters
        w_ih = params["weight_ih"] if "weight_ih" in params else self.weight_ih
        w_hh = params["weight_hh"] if "weight_hh" in params else self.weight_hh
        states = None if given is None else tuple((type(s), s.shape, s.dtype, s.device) for s in given)
        return (type(self), self.input_size, self.hidden_size, self.activation, type(input), input.shape,
                input.dtype, input.device, states, w_ih.dtype, w_ih.device, w_hh.dtype, w_hh.device)

    def _prepare_checked(self, input: Tensor, given: list[Tensor] | None) -> tuple[Tensor, list[Tensor], bool]:
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
    keyword-only ``init`` ("torch" or "keras"), ``single_bias``, ``zoneout``. Sizes may be 0, as in torch.nn.
    forward(input (B, I) or (I,), hx (B, H) or (H,) or None) -> h' (B, H) or (H,).
    """

    mode = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None, *, init: str = "torch", single_bias: bool = False,
                 zoneout: float = 0.0) -> None:
        # Any nonlinearity builds; forward raises RuntimeError for one other than "tanh" or "relu", as
        # torch.nn.RNNCell does.
        super().__init__(input_size, hidden_size, bias, device, dtype, cell="rnn", activation=nonlinearity, init=init,
                         single_bias=single_bias, zoneout=zoneout)

    @property
    def nonlinearity(self) -> str:
        return self.activation

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, None if hx is None else [hx])
        (h_new,) = self._step(x, [h])
        return h_new if batched else h_new.squeeze(0)


class LSTMCell(RecurrentCell):
    """LSTM cell (gates i, f, g, o): torch.nn.LSTMCell's API.

    Args: input_size, hidden_size, bias=True, device, dtype; keyword-only ``activation``,
    ``recurrent_activation``, ``init``, ``single_bias``, ``zoneout``.
    forward(input (B, I) or (I,), hx (h, c) each (B, H) or (H,), or None) -> (h', c').
    """

    mode = "lstm"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 activation: str = "tanh", recurrent_activation: str = "sigmoid", init: str = "torch",
                 single_bias: bool = False, zoneout: float = 0.0) -> None:
        super().__init__(input_size, hidden_size, bias, device, dtype, cell="lstm", activation=activation,
                         recurrent_activation=recurrent_activation, init=init, single_bias=single_bias,
                         zoneout=zoneout)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if hx is not None and (isinstance(hx, Tensor) or not isinstance(hx, (tuple, list))):
            raise TypeError(f"LSTMCell: hx must be a tuple (h, c) of two Tensors, got {type(hx).__name__}")
        x, (h, c), batched = self._prepare(input, None if hx is None else list(hx))
        h_new, c_new = self._step(x, [h, c])
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
                 init: str = "torch", single_bias: bool = False, zoneout: float = 0.0) -> None:
        super().__init__(input_size, hidden_size, bias, device, dtype, cell=cell_name("gru", reset_after),
                         activation=activation, recurrent_activation=recurrent_activation, init=init,
                         single_bias=single_bias, reset_after=reset_after, zoneout=zoneout)
        self.reset_after = reset_after

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, None if hx is None else [hx])
        (h_new,) = self._step(x, [h])
        return h_new if batched else h_new.squeeze(0)


class LayerNormLSTMCell(LSTMCell):
    """One step of :class:`seqtorch.LayerNormLSTM` (its equations; parameters ``weight_ih``, ``weight_hh``,
    ``bias_ih``, ``bias_hh``, ``ln_ih_weight``, ``ln_hh_weight``, ``ln_cell_weight``, ``ln_cell_bias``).

    Args: input_size, hidden_size, bias=True, device, dtype; keyword-only ``eps`` (1e-5), ``activation``,
    ``recurrent_activation``, ``init``, ``single_bias``, ``zoneout``.
    forward(input (B, I) or (I,), hx (h, c) each (B, H) or (H,), or None) -> (h', c').
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 eps: float = 1e-5, activation: str = "tanh", recurrent_activation: str = "sigmoid",
                 init: str = "torch", single_bias: bool = False, zoneout: float = 0.0) -> None:
        check_eps(type(self).__name__, eps)
        RecurrentCell.__init__(self, input_size, hidden_size, bias, device, dtype, cell="layernorm_lstm",
                               activation=activation, recurrent_activation=recurrent_activation, init=init,
                               single_bias=single_bias, zoneout=zoneout, cell_args=(eps,))
        self.eps = float(eps)


class LayerNormGRUCell(GRUCell):
    """One step of :class:`seqtorch.LayerNormGRU` (parameters: the GRU cell's, ``ln_ih_weight``,
    ``ln_hh_weight``).

    Args: input_size, hidden_size, bias=True, device, dtype; keyword-only ``eps`` (1e-5), ``activation``,
    ``recurrent_activation``, ``init``, ``zoneout``.
    forward(input (B, I) or (I,), hx (B, H) or (H,) or None) -> h'.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 eps: float = 1e-5, activation: str = "tanh", recurrent_activation: str = "sigmoid",
                 init: str = "torch", zoneout: float = 0.0) -> None:
        check_eps(type(self).__name__, eps)
        RecurrentCell.__init__(self, input_size, hidden_size, bias, device, dtype, cell="layernorm_gru",
                               activation=activation, recurrent_activation=recurrent_activation, init=init,
                               zoneout=zoneout, cell_args=(eps,))
        self.reset_after = True
        self.eps = float(eps)


class IndRNNCell(SimpleRNNCell):
    """One step of :class:`seqtorch.IndRNN`: ``h' = act(x W_ih^T + b_ih + w_hh * h + b_hh)``, w_hh (H,).

    Args: input_size, hidden_size, bias=True, nonlinearity="relu" ("relu" or "tanh"), device, dtype;
    keyword-only ``init``, ``single_bias``, ``zoneout``.
    forward(input (B, I) or (I,), hx (B, H) or (H,) or None) -> h'.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "relu",
                 device=None, dtype=None, *, init: str = "torch", single_bias: bool = False,
                 zoneout: float = 0.0) -> None:
        RecurrentCell.__init__(self, input_size, hidden_size, bias, device, dtype, cell="indrnn",
                               activation=nonlinearity, init=init, single_bias=single_bias, zoneout=zoneout)

    def extra_repr(self) -> str:
        s = super().extra_repr().replace(f", nonlinearity={self.nonlinearity}", "")
        return s + (f", nonlinearity={self.nonlinearity}" if self.nonlinearity != "relu" else "")
