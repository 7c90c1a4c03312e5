"""The contract every fused scan implementation keeps: its two ops' schema, their outputs, their shapes.

Each implementation (the Python loop, the C++ loop, the Triton kernels) registers a pair of
``torch.library`` ops with the same schema, ``seqtorch::scan_forward_<impl>`` and
``seqtorch::scan_backward_<impl>``; :mod:`.autograd` links them into one differentiable scan and
:mod:`.dispatch` picks the implementation. The options travel as one :class:`ScanOptions`, unpacked into
the schema's leading ``str``/``bool`` arguments.

Inputs besides the options: gx (T, B, G*H), the initial states, the cell's recurrent weights, and the
optional per-step ones of :class:`ScanInputs` (``lengths``, ``mask``, ``restart``, ``rec_mask``,
``keep``), which every implementation honours the same way (the reference says how).

Forward outputs (``save`` True when a backward may follow; unused entries are 0-element tensors)::

    [0]        h history (T+1, B, P): the initial state in slot 0 (slot T when reverse), the state after
               step t in slot t+1 (slot t when reverse); frozen over a sequence's invalid steps
    [1..K-1]   the other states (LSTM: c): their history (T+1, B, width) if save, else the final state
    if save:   HM (T, B, P) = the h the products read at each step, ``(restart ? h_0 : h) * rec_mask``
               (0-element without rec_mask and restart), U (T, B, U) the vector a two-product cell's first
               stage wrote (0-element otherwise), then the cell's saved buffers
               (:meth:`~seqtorch.recurrent_cells.base.Cell.saved`), each (T, B, width)

Backward inputs: the gradients of the K state outputs (history-shaped, or None for zero), every forward
output, the weights and the per-step inputs. Outputs: ``dgx`` (T, B, G*H), the gradient of each initial
state (B, width), of each reset state when they were given, then the cell's per-step gradient buffers
(:meth:`~.base.Cell.grad_buffers`); the weights' gradients follow from those after the loop
(:meth:`~.base.Cell.weight_grads`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..recurrent_cells import Acts, Cell, Sizes, get_cell

# cell_args: a cell's numeric options (LayerNorm's eps); the per-step inputs as ScanInputs says.
_STEP_INPUTS = ("Tensor? lengths, Tensor? mask, Tensor? restart, Tensor?[] reset_states, Tensor? rec_mask, "
                "Tensor?[] keep")
FORWARD_SCHEMA = ("(str cell, str activation, str recurrent_activation, bool reverse, float[] cell_args, "
                  f"bool save, Tensor gx, Tensor[] states, Tensor?[] weights, {_STEP_INPUTS}) -> Tensor[]")
BACKWARD_SCHEMA = ("(str cell, str activation, str recurrent_activation, bool reverse, float[] cell_args, "
                   f"Tensor?[] grads, Tensor[] saved, Tensor?[] weights, {_STEP_INPUTS}) -> Tensor[]")


@dataclass(frozen=True)
class ScanInputs:
    """One scan's tensors: gx, the states and weights, and the optional per-step inputs (each None when
    unused), in the order the ops take them. Every implementation honours them as
    :func:`seqtorch.ops.reference.scan_reference` does:

    * ``lengths`` (B,) int64, 1 <= lengths <= T: step t of sequence b is valid while t < lengths[b].
    * ``mask`` (T, B) bool: step t of sequence b is valid where True (with ``lengths``, where both say so).
      An invalid step leaves every state as it was and outputs 0; it gets no gradient.
    * ``restart`` (T, B) bool: where True, the states entering step t are the reset states (a reset), in
      this direction's step order.
    * ``reset_states``: the states a reset restarts from, (B, width) each; empty: the initial states. (A
      layer given ``hx`` restarts from its own initial state, zeros or learned, not from ``hx``.) The ops
      take one entry per state, None for none.
    * ``rec_mask`` (B, P): recurrent dropout's mask on h where the products read it.
    * ``keep``: per state, None or the (T, B, width) coefficients k of ``state = k * previous + (1 - k) * new``
      (zoneout's: 0/1 masks in training, the probability in evaluation); not differentiated.
    """

    gx: Tensor
    states: tuple[Tensor, ...]
    weights: tuple[Tensor | None, ...]
    lengths: Tensor | None = None
    mask: Tensor | None = None
    restart: Tensor | None = None
    reset_states: tuple[Tensor, ...] = ()
    rec_mask: Tensor | None = None
    keep: tuple[Tensor | None, ...] | None = None




@dataclass(frozen=True)
class Kernel:
    """One implementation's op pair: ``seqtorch::scan_forward_<name>`` and ``scan_backward_<name>``."""

    name: str
    forward: object   # OpOverload
    backward: object  # OpOverload


@dataclass(frozen=True)
class ScanOptions:
    """What a scan does besides its tensors: the cell, its activations (canonical names), its numeric
    options, the direction. Built once per layer by :func:`seqtorch.functional.stack`; the ops get it as
    their schema's leading arguments (:meth:`op_args`), with the cell by its registered name."""

    cell: Cell
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    reverse: bool = False
    cell_args: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.cell, str):  # a registered cell by name (the ops' schema, tests)
            object.__setattr__(self, "cell", get_cell(self.cell))

    @property
    def acts(self) -> Acts:
        return Acts(self.activation, self.recurrent_activation)

    def op_args(self) -> tuple[str, str, str, bool, list[float]]:
        return self.cell.name, self.activation, self.recurrent_activation, self.reverse, list(self.cell_args)

    @staticmethod
    def from_op_args(cell: str, activation: str, recurrent_activation: str, reverse: bool,
                     cell_args=()) -> "ScanOptions":
        return ScanOptions(get_cell(cell), activation, recurrent_activation, bool(reverse),
                           tuple(float(a) for a in cell_args))


def sizes_of(cell: Cell, gx: Tensor, states: list[Tensor]) -> Sizes:
    T, B, width = gx.shape
    return Sizes(T=T, B=B, H=width // cell.gates, P=states[0].shape[-1])


@dataclass
class ForwardLayout:
    """Names for the forward op's outputs (see the module docstring)."""

    states: list[Tensor]       # per state: history (T+1, B, w), or (state k >= 1 without save) final (B, w)
    hm: Tensor | None
    u: Tensor | None
    saved: dict[str, Tensor]

    @staticmethod
    def split(cell: Cell, outputs: list[Tensor], save: bool) -> "ForwardLayout":
        K = len(cell.states)
        states = list(outputs[:K])
        if not save:
            return ForwardLayout(states, None, None, {})
        hm, u = outputs[K], outputs[K + 1]
        saved = dict(zip(buffer_names(cell)[0], outputs[K + 2:]))
        return ForwardLayout(states, hm if hm.numel() else None, u if u.numel() else None, saved)


_BUFFER_NAMES: dict[Cell, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def buffer_names(cell: Cell) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``cell``'s saved buffers' and gradient buffers' names (:meth:`~seqtorch.recurrent_cells.base.Cell.saved_names`,
    :meth:`~seqtorch.recurrent_cells.base.Cell.grad_buffer_names`), asked once per cell: a spec's buffers are
    fixed, and every backward reads them."""
    names = _BUFFER_NAMES.get(cell)
    if names is None:
        names = _BUFFER_NAMES[cell] = (tuple(cell.saved_names()), tuple(cell.grad_buffer_names()))
    return names


def forward_shapes(cell: Cell, opts: ScanOptions, gx: Tensor, states: list[Tensor], has_hm: bool,
                   save: bool) -> list[tuple[int, ...]]:
    """The shape of each forward output: what the fake (meta) implementations allocate."""
    sizes = sizes_of(cell, gx, states)
    T, B = sizes.T, sizes.B
    widths = cell.state_sizes(sizes.H, sizes.P)
    shapes = [(T + 1, B, widths[0])]
    shapes += [(T + 1, B, w) if save else (B, w) for w in widths[1:]]
    if save:
        shapes.append((T, B, sizes.P) if has_hm else (0,))
        u = cell.u_width(sizes.H, sizes.P)
        shapes.append((T, B, u) if u else (0,))
        shapes += [(T, B, w) if w else (0,) for _, w in cell.saved(sizes, opts.acts)]
    return shapes


def backward_shapes(cell: Cell, saved: list[Tensor], weights: list[Tensor | None],
                    resets: bool = False) -> list[tuple[int, ...]]:
    """The shape of each backward output, from the forward's outputs, the weights and whether reset states
    were given."""
    K = len(cell.states)
    T1, B, P = saved[0].shape
    widths = [s.shape[-1] for s in saved[:K]]
    H = cell.hidden_size(weights)
    sizes = Sizes(T1 - 1, B, H, P)
    shapes = [(T1 - 1, B, cell.gates * H)] + [(B, w) for w in widths] * (2 if resets else 1)
    shapes += [(T1 - 1, B, w) for _, w in cell.grad_buffers(sizes)]
    return shapes


def fake_forward(cell: str, activation: str, recurrent_activation: str, reverse: bool, cell_args: list[float],
                 save: bool, gx: Tensor, states: list[Tensor], weights: list[Tensor | None], lengths: Tensor | None,
                 mask: Tensor | None, restart: Tensor | None, reset_states: list[Tensor | None], rec_mask: Tensor | None,
                 keep: list[Tensor | None]) -> list[Tensor]:
    """Meta implementation of every forward op (the same shape function for all of them)."""
    opts = ScanOptions.from_op_args(cell, activation, recurrent_activation, reverse, cell_args)
    shapes = forward_shapes(opts.cell, opts, gx, list(states), rec_mask is not None or restart is not None, save)
    return [gx.new_empty(shape) for shape in shapes]


def fake_backward(cell: str, activation: str, recurrent_activation: str, reverse: bool, cell_args: list[float],
                  grads: list[Tensor | None], saved: list[Tensor], weights: list[Tensor | None],
                  lengths: Tensor | None, mask: Tensor | None, restart: Tensor | None,
                  reset_states: list[Tensor | None], rec_mask: Tensor | None, keep: list[Tensor | None]) -> list[Tensor]:
    """Meta implementation of every backward op."""
    shapes = backward_shapes(get_cell(cell), list(saved), list(weights), any(r is not None for r in reset_states))
    return [saved[0].new_empty(shape) for shape in shapes]


def define(name: str, forward_impl, backward_impl, *, device_types=None):
    """Define ``seqtorch::scan_forward_<name>`` / ``scan_backward_<name>`` from Python with the contract's
    schema, implementations and fake kernels; returns the two OpOverloads."""
    lib = _library()
    ops = []
    for kind, schema, impl, fake in (("forward", FORWARD_SCHEMA, forward_impl, fake_forward),
                                     ("backward", BACKWARD_SCHEMA, backward_impl, fake_backward)):
        op_name = f"scan_{kind}_{name}"
        lib.define(op_name + schema)
        lib.impl(op_name, impl, "CompositeExplicitAutograd")
        torch.library.register_fake(f"seqtorch::{op_name}", fake, lib=lib)
        ops.append(getattr(torch.ops.seqtorch, op_name).default)
    return ops[0], ops[1]


def register_fakes(forward_op, backward_op) -> None:
    """Fake kernels for a pair of ops defined elsewhere (a C++ library's, in its op namespace)."""
    lib = _library(forward_op.namespace)
    torch.library.register_fake(forward_op, fake_forward, lib=lib)
    torch.library.register_fake(backward_op, fake_backward, lib=lib)


_LIBS: dict[str, torch.library.Library] = {}


def _library(namespace: str = "seqtorch") -> torch.library.Library:
    # FRAGMENT: the C++ library may own the namespace's definitions; Python adds to it.
    if namespace not in _LIBS:
        _LIBS[namespace] = torch.library.Library(namespace, "FRAGMENT")
    return _LIBS[namespace]
