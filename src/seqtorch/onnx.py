"""ONNX export: seqtorch's scan op written as ONNX's ``RNN``, ``LSTM`` and ``GRU`` operators.

``torch.onnx.export(model, args, dynamo=True)`` (torch's default exporter) exports any model holding
seqtorch layers once seqtorch is imported: nothing to pass. The exported graph holds, per layer and
direction, the input projection and one ONNX recurrent operator (no unrolled loop), so batch size and
sequence length stay dynamic.

How it is wired. The exporter first captures the model with ``torch.export``; each seqtorch layer
becomes ``aten.linear`` (the input projection ``gx = x W_ih^T + b_ih``) followed by one
``seqtorch::scan_forward_<impl>`` node per layer and direction (``impl`` = ``cpp``, ``loop`` or
``triton``: every implementation keeps one schema, :mod:`seqtorch.ops.contract`, so one translation,
:func:`scan_to_onnx`, serves them all). The exporter then looks each node up in its registry of ONNX
translations. torch 2.13 offers a user three ways in: ``custom_translation_table=`` (per call),
``torch.onnx.ops.symbolic`` (ONNX nodes written into the model's own forward), or the registry itself.
The per-call table would make every user pass it; ``torch.onnx.ops.symbolic`` belongs in the layers'
forward and would duplicate their dispatch. So seqtorch adds its translation to the registry the
exporter builds for every call: the list torch's own translations are appended to
(``torch.onnx._internal.exporter._torchlib._torchlib_registry``, keyed by the op's name, so the C++
library may load later). That module is private and imports onnxscript (over a second), so it is not
imported with seqtorch: a post-import hook adds the translation the moment torch's exporter module is
first imported (:func:`install`). If a torch version moves that list, the hook warns once and
``custom_translation_table=seqtorch.onnx.translation_table()``, the public route, does the same.

The mapping, per scan (one layer, one direction -> one single-direction ONNX node):

* ``X``/``W``: ONNX's recurrent ops take the raw input and apply ``W`` themselves. When ``gx`` comes
  straight from the projection (``Add(MatMul(x, Transpose(W_ih)), b_ih)``, how torch writes
  ``aten.linear``), the node takes ``X = x``, ``W = W_ih`` and ``Wb = b_ih`` in ONNX's gate order, as
  torch.nn's own layers export; the projection left behind is dead and the exporter's optimizer drops
  it. Any other ``gx`` (a future layer that builds it differently) is fed as ``X = gx`` with ``W`` the
  permutation that puts its gate blocks in ONNX's order: the same numbers, one more GEMM.
* gate order: torch's LSTM ``i, f, g, o`` -> ONNX ``i, o, f, c``; GRU ``r, z, n`` -> ``z, r, h``.
* ``activations``: ``sigmoid`` -> ``Sigmoid``, ``hard_sigmoid_keras2`` -> ``HardSigmoid`` (alpha 0.2,
  beta 0.5), ``hardsigmoid`` -> ``HardSigmoid`` (alpha 1/6, beta 0.5), ``tanh`` -> ``Tanh``,
  ``relu`` -> ``Relu``; the list is ``[activation]`` (RNN), ``[rec, act, act]`` (LSTM), ``[rec, act]``
  (GRU), so the one HardSigmoid is always first and takes the first alpha and beta.
* GRU ``linear_before_reset``: 1 for cell ``"gru"`` (torch's, ``reset_after=True``), 0 for
  ``"gru_reset_before"`` (Keras 2.0's).
* the peephole LSTM written as equations (:class:`seqtorch.equations.PeepholeLSTM`, whose registered name
  carries the hash of its equations, so it is matched by its class): ONNX's ``LSTM`` with its vectors
  ``w_ci, w_cf, w_co`` as ``P`` (ONNX's order i, o, f). Its scan is the op of its own C++ library
  (``seqtorch_gen_<hash>::scan_forward_cpp``), whose translation is registered when the library loads.
* ``lengths`` -> ``sequence_lens`` (int32); ``reverse`` -> ``direction="reverse"``, which ONNX runs
  from each sequence's own end, as seqtorch does; the initial states -> ``initial_h``/``initial_c``;
  ``b_hh`` -> ``Rb`` (with ``single_bias`` it is the zero buffer, exported as such); no bias -> no ``B``.
* the op's outputs (:mod:`seqtorch.ops.contract`): h's history is rebuilt exactly from ``Y`` and
  ``Y_h`` (frozen past each length: the final state forward, the initial state in reverse); the other
  outputs are what an inference graph reads, the final ``c``. What ONNX's operators do not give (c's
  intermediate states, the buffers saved for a backward) is filled with NaN, so that a graph reading
  them could not pass unnoticed; seqtorch's layers read none of them and the optimizer removes them.

What ONNX cannot express is refused at export with :class:`OnnxExportError` naming the option: a cell
without an ONNX operator (every other cell written as equations, named), recurrent dropout in training mode (export in ``eval()``), zoneout, a cell's
numeric options (``cell_args``), an activation outside the list above.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass

import numpy as np

from ._import_hooks import after_import
from .ops import native_cells
from .options import OPTIONS
from .recurrent_cells import Acts, PointwiseCell, Sizes, equations, get_cell

# Every implementation of the scan registers seqtorch::scan_forward_<name> (seqtorch.ops.contract).
IMPLEMENTATIONS = ("cpp", "loop", "triton", "triton_alternating")


class OnnxExportError(ValueError):
    """A seqtorch option that ONNX's recurrent operators cannot express."""


@dataclass(frozen=True)
class OnnxCell:
    """How one seqtorch cell maps onto an ONNX operator."""

    op_type: str                       # "RNN", "LSTM" or "GRU"
    order: tuple[int, ...]             # ONNX's gate k is seqtorch's (torch's) gate block order[k]
    attributes: tuple[tuple[str, int], ...] = ()
    peepholes: tuple[int, ...] = ()    # LSTM's P: the recurrent weights (by index) in ONNX's order i, o, f

    def activations(self, acts: Acts) -> list[str]:
        """The seqtorch activations in the order of the ONNX op's ``activations`` attribute."""
        if self.op_type == "RNN":
            return [acts.activation]
        if self.op_type == "LSTM":
            return [acts.recurrent, acts.activation, acts.activation]
        return [acts.recurrent, acts.activation]


ONNX_CELLS: dict[str, OnnxCell] = {
    "rnn": OnnxCell("RNN", (0,)),
    "lstm": OnnxCell("LSTM", (0, 3, 1, 2)),
    "gru": OnnxCell("GRU", (1, 0, 2), (("linear_before_reset", 1),)),
    "gru_reset_before": OnnxCell("GRU", (1, 0, 2), (("linear_before_reset", 0),)),
}
# cells written as equations, by class (their names carry a hash): weights W_hh, b_hh, w_ci, w_cf, w_co
ONNX_EQUATION_CELLS: dict[type, OnnxCell] = {equations.PeepholeLSTM: OnnxCell("LSTM", (0, 3, 1, 2), peepholes=(2, 4, 3))}


def onnx_cell(cell: str) -> OnnxCell | None:
    """How the cell registered as ``cell`` maps onto an ONNX operator, or None if it does not."""
    if cell in ONNX_CELLS:
        return ONNX_CELLS[cell]
    return ONNX_EQUATION_CELLS.get(type(get_cell(cell)))

# seqtorch's canonical activation name -> ONNX's name and (alpha, beta) where the function takes them
ONNX_ACTIVATIONS: dict[str, tuple[str, tuple[float, float] | None]] = {
    "tanh": ("Tanh", None),
    "relu": ("Relu", None),
    "sigmoid": ("Sigmoid", None),
    "hard_sigmoid_keras2": ("HardSigmoid", (0.2, 0.5)),
    "hardsigmoid": ("HardSigmoid", (1.0 / 6.0, 0.5)),
}


# ---------------------------------------------------------------------------------------------------
# the translation

def check_exportable(cell: str, activation: str, recurrent_activation: str, cell_args, rec_mask,
                     keep, mask=None, restart=None) -> OnnxCell:
    """The ONNX mapping of one scan's options, or :class:`OnnxExportError` naming the one ONNX lacks."""
    mapping = onnx_cell(cell)
    if mapping is None:
        spec = get_cell(cell)
        what = (f"the cell written as equations {type(spec).__qualname__} ({cell!r})"
                if isinstance(spec, PointwiseCell) else f"seqtorch cell {cell!r}")
        raise OnnxExportError(f"{what} has no ONNX operator: ONNX has RNN, LSTM and GRU, which express the cells "
                              f"{sorted(ONNX_CELLS)} and {', '.join(c.__name__ for c in ONNX_EQUATION_CELLS)}")
    if len(cell_args):
        raise OnnxExportError(f"seqtorch cell {cell!r} with cell_args={list(cell_args)}: ONNX's "
                              f"{mapping.op_type} has no attribute for them")
    if mask is not None:
        raise OnnxExportError("mask= has no ONNX equivalent (ONNX's recurrent operators skip only the steps past "
                              "each sequence's length, sequence_lens); for a right-padded batch pass lengths=")
    if restart is not None:
        raise OnnxExportError("resets= has no ONNX equivalent (ONNX's recurrent operators never restart a sequence "
                              "from the initial state); export a model called without resets")
    if rec_mask is not None:
        raise OnnxExportError(OPTIONS["recurrent_dropout"].onnx)
    if any(k is not None for k in keep):
        raise OnnxExportError(OPTIONS["zoneout"].onnx)
    for role, name in (("activation", activation), ("recurrent_activation", recurrent_activation)):
        if name not in ONNX_ACTIVATIONS:
            raise OnnxExportError(f"{role}={name!r} has no ONNX activation; exportable: {sorted(ONNX_ACTIVATIONS)}")
    return mapping


def scan_to_onnx(cell, activation, recurrent_activation, reverse, cell_args, save, gx, states, weights, lengths,
                 mask, restart, reset_states, rec_mask, keep):
    """ONNX nodes computing ``seqtorch::scan_forward_<impl>``'s outputs (same arguments, as the exporter
    passes them: strings and flags as Python values, tensors as ONNX values).

    gx (T, B, G*H); states h0 (B, H) (LSTM also c0); weights (w_hh (G*H, H), b_hh (G*H,) or None);
    lengths (B,) int64 or None. Returns the op's output list (:mod:`seqtorch.ops.contract`).
    """
    from onnxscript import opset18 as op

    mapping = check_exportable(cell, activation, recurrent_activation, cell_args, rec_mask, keep, mask, restart)
    spec = get_cell(cell)
    acts = Acts(activation, recurrent_activation)
    w_hh, b_hh = weights[0], weights[1]
    G = spec.gates
    H = w_hh.shape[0] // G
    dtype = _numpy_dtype(gx)

    rows = op.Constant(value=_ir_tensor(np.array(_rows(mapping.order, H), dtype=np.int64)))

    def reorder(t):
        """Gate blocks (axis 0) from torch's order to ONNX's (a Gather the exporter folds into the weights)."""
        return t if G == 1 else op.Gather(t, rows, axis=0)

    projection = _projection(gx)
    if projection is not None:
        X, w_ih, b_ih = projection
        W = reorder(w_ih)
    else:  # gx fed as the input: W moves each gate block of gx to ONNX's place
        X, b_ih = gx, None
        W = op.Constant(value=_ir_tensor(np.eye(G * H, dtype=dtype)[_rows(mapping.order, H)]))
    zeros = op.Constant(value=_ir_tensor(np.zeros(G * H, dtype=dtype)))
    B = None
    if b_ih is not None or b_hh is not None:
        B = op.Unsqueeze(op.Concat(zeros if b_ih is None else reorder(b_ih),
                                   zeros if b_hh is None else reorder(b_hh), axis=0), [0])
    names, alphas, betas = [], [], []
    for name in mapping.activations(acts):
        onnx_name, alpha_beta = ONNX_ACTIVATIONS[name]
        names.append(onnx_name)
        if alpha_beta is not None:
            alphas.append(alpha_beta[0])
            betas.append(alpha_beta[1])
    attributes = dict(mapping.attributes, direction="reverse" if reverse else "forward", hidden_size=H,
                      activations=names)
    if alphas:
        attributes.update(activation_alpha=alphas, activation_beta=betas)
    seq_lens = None if lengths is None else op.Cast(lengths, to=6)  # 6: INT32
    h0 = op.Unsqueeze(states[0], [0])                                 # (1, B, H)
    inputs = [X, op.Unsqueeze(W, [0]), op.Unsqueeze(reorder(w_hh), [0]), B, seq_lens, h0]
    if mapping.op_type == "LSTM":
        c0 = op.Unsqueeze(states[1], [0])
        P = op.Unsqueeze(op.Concat(*(weights[k] for k in mapping.peepholes), axis=0), [0]) if mapping.peepholes \
            else None
        Y, Y_h, Y_c = op.LSTM(*inputs, c0, P, **attributes)
    elif mapping.op_type == "GRU":
        Y, Y_h = op.GRU(*inputs, **attributes)
    else:
        Y, Y_h = op.RNN(*inputs, **attributes)

    # sizes from X, not gx: a matched projection must stay unread to be dropped
    steps = op.Shape(X, start=0, end=1)
    batch = op.Shape(X, start=1, end=2)
    Y = op.Squeeze(Y, [1])                                            # (T, B, H)
    valid = None
    if lengths is not None:                                           # (T, B, 1): step t inside sequence b
        t = op.Range(op.Constant(value_int=0), op.Squeeze(steps, [0]), op.Constant(value_int=1))
        valid = op.Unsqueeze(op.Less(op.Unsqueeze(t, [1]), op.Unsqueeze(lengths, [0])), [2])
    # h's history: the state after step t in slot t+1 (slot t in reverse), frozen past each length
    if reverse:
        history = op.Concat(Y if valid is None else op.Where(valid, Y, h0), h0, axis=0)
    else:
        history = op.Concat(h0, Y if valid is None else op.Where(valid, Y, Y_h), axis=0)
    outputs = [history]

    def nan(*shape):
        """A NaN tensor of ``shape`` (ONNX values or ints): what ONNX's operators do not compute."""
        dims = op.Concat(*[d if not isinstance(d, int) else op.Constant(value_ints=[d]) for d in shape], axis=0)
        return op.ConstantOfShape(dims, value=_ir_tensor(np.full(1, np.nan, dtype=dtype)))

    def empty():
        return op.Constant(value=_ir_tensor(np.zeros(0, dtype=dtype)))

    if mapping.op_type == "LSTM":
        if not save:
            outputs.append(op.Squeeze(Y_c, [0]))
        else:  # c's history: ONNX gives the initial and the final state only
            middle = nan(op.Sub(steps, op.Constant(value_ints=[1])), batch, H)
            outputs.append(op.Concat(Y_c, middle, c0, axis=0) if reverse else op.Concat(c0, middle, Y_c, axis=0))
    if save:  # the buffers only a backward reads
        outputs.append(empty())                                       # HM: no recurrent-dropout mask
        u = spec.u_width(H, H)
        outputs.append(nan(steps, batch, u) if u else empty())
        for _, width in spec.saved(Sizes(1, 1, H, H), acts):
            outputs.append(nan(steps, batch, width) if width else empty())
    return outputs


def _rows(order: tuple[int, ...], H: int) -> list[int]:
    """Row indices that put gate blocks of width H into ``order``."""
    return [k * H + j for k in order for j in range(H)]


def _numpy_dtype(value):
    import onnx_ir as ir

    types = {ir.DataType.FLOAT: np.float32, ir.DataType.DOUBLE: np.float64, ir.DataType.FLOAT16: np.float16}
    if value.dtype not in types:
        raise OnnxExportError(f"a scan in {value.dtype}: ONNX's recurrent operators take float16, float32 or "
                              f"float64 (export the model in float32)")
    return types[value.dtype]


def _ir_tensor(array: np.ndarray):
    import onnx_ir as ir

    return ir.tensor(array)


def _projection(gx):
    """``(x, W_ih, b_ih or None)`` if ``gx`` is ``x W_ih^T + b_ih`` as torch's exporter writes
    ``aten.linear`` for a 3-D input (``Add(MatMul(x, Transpose(W)), b)`` or ``MatMul(x, Transpose(W))``),
    else None. The graph is only read here: the projection stays for any other reader of gx."""
    node = gx.producer()
    bias = None
    if node is not None and node.op_type == "Add" and node.domain == "" and len(node.inputs) == 2:
        product, bias = node.inputs
        if bias is None or bias.shape is None or bias.shape.rank() != 1:
            return None
        node = product.producer()
    if node is None or node.op_type != "MatMul" or node.domain != "":
        return None
    x, transposed = node.inputs
    transpose = transposed.producer()
    if transpose is None or transpose.op_type != "Transpose" or x.shape is None or x.shape.rank() != 3:
        return None
    perm = transpose.attributes.get("perm")
    if perm is None or list(perm.as_ints()) != [1, 0]:
        return None
    return x, transpose.inputs[0], bias


# ---------------------------------------------------------------------------------------------------
# registration with torch's exporter

def translation_table() -> dict:
    """``{seqtorch::scan_forward_<impl> op: scan_to_onnx}`` for the implementations loaded now, for
    ``torch.onnx.export(..., custom_translation_table=seqtorch.onnx.translation_table())``: the public
    route, the same translation (run the model once first so that the C++ library is loaded)."""
    import torch

    table = {}
    for name in IMPLEMENTATIONS:
        packet = getattr(torch.ops.seqtorch, f"scan_forward_{name}", None)
        if packet is not None:
            table[packet.default] = scan_to_onnx
    for namespace in native_cells.loaded():
        table[getattr(torch.ops, namespace).scan_forward_cpp.default] = scan_to_onnx
    return table


_REGISTRATION = "torch.onnx._internal.exporter._registration"
_TORCHLIB_REGISTRY = "torch.onnx._internal.exporter._torchlib._torchlib_registry"
_state = {"registered": False, "warned": False}


def _register_with_exporter() -> None:
    """Append the translation to torch's exporter registry, once, when both of its modules are complete
    (they import each other, so either may finish first)."""
    if _state["registered"]:
        return
    registration, torchlib = sys.modules.get(_REGISTRATION), sys.modules.get(_TORCHLIB_REGISTRY)
    if registration is None or torchlib is None or not hasattr(registration, "OnnxDecompMeta") \
            or not hasattr(torchlib, "_registry"):
        return
    def register(target: str) -> None:
        torchlib._registry.append(registration.OnnxDecompMeta(
            onnx_function=scan_to_onnx, fx_target=target, signature=None, is_custom=True,
            skip_signature_inference=True))

    try:
        for name in IMPLEMENTATIONS:
            register(f"seqtorch::scan_forward_{name}")
        # the libraries of cells written as equations, those loaded and those to come (the exporter builds its
        # table after it has traced the model, so a library loaded while tracing is in it)
        native_cells.on_load(lambda namespace: register(f"{namespace}::scan_forward_cpp"))
        _state["registered"] = True
    except Exception as error:  # noqa: BLE001 - a torch whose internals moved: say so, name the public route
        if not _state["warned"]:
            _state["warned"] = True
            warnings.warn(f"seqtorch could not register its ONNX translation with this torch's exporter "
                          f"({type(error).__name__}: {error}); pass custom_translation_table="
                          f"seqtorch.onnx.translation_table() to torch.onnx.export", RuntimeWarning, stacklevel=2)


def install() -> None:
    """Make torch's exporter find :func:`scan_to_onnx` (called when seqtorch is imported; idempotent)."""
    after_import((_REGISTRATION, _TORCHLIB_REGISTRY), _register_with_exporter)


install()
