"""What both Triton scans share: the device rule, buffers and arguments, the cell flags, lazy decoration.

The persistent kernels (:mod:`.persistent`) and the alternating loop (:mod:`.alternating`) launch different
kernels over the same cells and the same op contract. Here, once for both:

* :func:`supports_device`, :func:`cell_refusal` (:func:`has_cell`): what any Triton kernel can run, and
  :func:`cell_module`, where a cell's step is: its folder's ``triton.py``, or for a cell written as its
  equations the module generated from them (written to the cache of generated cells, imported from there);
* the launchers' side: :func:`new_buffer` (and the NaN poisoning the tests switch on,
  :data:`POISON_NEW_BUFFERS`), :func:`cell_flags` (the constexprs that describe the cell and the math
  dtype), and the packing of the cell's per-step buffers, extra weights, numeric options and zoneout
  coefficients into the kernels' fixed argument slots (:func:`slot_pointers`, :func:`cell_weights`,
  :func:`zoneout_args`), the (T, B) ``mask`` and ``restart`` flags as bytes (:func:`step_bytes`) and the
  states a reset reads (:func:`reset_args`);
* the device side: the loads of W_hh as a vector and of b_hh's gate rows that both kernel families
  hand to a cell (:func:`load_weight_vector`, :func:`load_bias_rows`), and which rows of a block take a
  step and which restart there (:func:`step_valid`, :func:`any_valid`, :func:`step_restarts`);
* the lazy ``triton.jit`` decoration: :func:`device_helpers` (the cells' interface,
  :mod:`seqtorch.recurrent_cells.triton_math`, and the loads above) and :func:`decorate_cells` (each cell's
  step, :class:`CellSteps`: a cell from equations on its first launch). ``triton.jit`` reads ``TRITON_INTERPRET`` when it decorates; decorating on first launch,
  once per mode, lets the tests switch the interpreter on after seqtorch was imported, and keeps importing
  seqtorch free of any Triton compilation.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import types
from pathlib import Path

import torch
import triton
import triton.language as tl
from torch import Tensor

from ...fileio import read_cache_entry, write_cache_entry
from ...recurrent_cells import CELLS, Cell, PointwiseCell, triton_math
from ...recurrent_cells.pointwise import triton_code
from ...recurrent_cells.triton_math import GATE_IDS, _add, extra_weights
from .. import native_cells
from ..contract import ScanOptions

GX_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

#: Tests set this: every buffer the launchers allocate is filled with NaN first, so an element a
#: kernel forgot to write cannot pass a comparison.
POISON_NEW_BUFFERS = False

# The kernels' fixed argument slots, handed to a cell as its tuples (recurrent_cells/triton_math.py):
MAX_SAVED = 6          # per-step buffers a cell may save (the kernels' SV0..SV5: ``saved``)
MAX_GRAD_BUFFERS = 2   # per-step gradient buffers it may write (G0, G1: ``grads``)
MAX_EXTRA_WEIGHTS = 3  # recurrent weights after W_hh and b_hh (W2..W4: ``extra``)


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``) right now."""
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


# ----------------------------------------------------------------------------------------------------
# what a Triton kernel can run

def _has_folder_code(name: str) -> bool:
    """Whether cell ``name`` has a folder with a ``triton.py``."""
    return (importlib.util.find_spec(f"seqtorch.recurrent_cells.{name}") is not None
            and importlib.util.find_spec(f"seqtorch.recurrent_cells.{name}.triton") is not None)


def cell_refusal(cell: Cell) -> str | None:
    """Why the Triton kernels cannot run ``cell``, or None. Its step is a ``triton.py`` in its folder, or the
    code generated from its equations (:meth:`~seqtorch.recurrent_cells.Cell.generated_triton`; what it
    refuses: :func:`seqtorch.recurrent_cells.pointwise.triton_code.limits`); and its buffers and extra weights
    fit the kernels' argument slots (:data:`MAX_SAVED`, :data:`MAX_GRAD_BUFFERS`, :data:`MAX_EXTRA_WEIGHTS`)."""
    generated = cell.generated_triton() is not None
    if not generated and isinstance(cell, PointwiseCell):
        why = cell.reference_only or triton_code.limits(cell.gates, len(cell.states))
        return f"cell {cell.name!r} has no Triton kernels: {why}"
    if not generated and not _has_folder_code(cell.name):
        return f"cell {cell.name!r} has no Triton kernels (no triton.py in its folder)"
    for what, names, slots in (("saved buffers", cell.saved_names(), MAX_SAVED),
                               ("gradient buffers", cell.grad_buffer_names(), MAX_GRAD_BUFFERS),
                               ("extra weights (after weight_hh, bias_hh)", extra_weights(cell), MAX_EXTRA_WEIGHTS)):
        if len(names) > slots:
            return (f"cell {cell.name!r} has {len(names)} {what} ({', '.join(names)}); the Triton kernels have "
                    f"{slots} slots for them")
    return None


def has_cell(cell: Cell) -> bool:
    """Whether the Triton kernels run ``cell`` (:func:`cell_refusal` says why not)."""
    return cell_refusal(cell) is None


def cell_names() -> list[str]:
    """The registered cells the Triton kernels run: those with a ``triton.py`` in their folder, and the cells
    written as equations (registered when made) whose generated code fits the kernels."""
    return [name for name, cell in CELLS.items() if has_cell(cell)]


_GENERATED: dict[str, types.ModuleType] = {}


def cell_module(cell: Cell) -> types.ModuleType:
    """The module of ``cell``'s Triton step (plain ``forward`` and ``backward``): its folder's ``triton.py``,
    or the module generated from its equations. That one is written to the cache of generated cells
    (:func:`seqtorch.ops.native_cells.cache_root`, ``triton/<cell name>_<hash of the source>.py``) and
    imported from there: Triton's ``jit`` reads a function's source from its file."""
    source = cell.generated_triton()
    if source is None:
        return importlib.import_module(f"seqtorch.recurrent_cells.{cell.name}.triton")
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    module_name = f"seqtorch_triton_{cell.name}_{digest}"
    if module_name not in _GENERATED:
        path = native_cells.cache_root() / "triton" / f"{cell.name}_{digest}.py"
        if read_cache_entry(path, Path.read_text) != source:  # absent, or damaged (its name hashes its text)
            write_cache_entry(path, lambda f: f.write(source.encode()))
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _GENERATED[module_name] = module
    return _GENERATED[module_name]


def supports_device(gx: Tensor) -> str | None:
    """Why no Triton kernel can run a scan on ``gx`` (T, B, G*H), or None: CUDA tensors (CPU only under
    ``TRITON_INTERPRET=1``), gx in float32/float64/float16/bfloat16, T >= 1, B >= 1, and fewer than 2**31
    elements per tensor (the kernels use 32-bit offsets). Both Triton implementations check this first."""
    if gx.device.type != "cuda" and not (gx.device.type == "cpu" and interpreting()):
        return (f"Triton kernels need CUDA tensors, got device {gx.device.type!r} "
                f"(CPU tensors run only in Triton's interpreter, TRITON_INTERPRET=1)")
    if gx.dtype not in GX_DTYPES:
        return f"dtype {gx.dtype} is not supported (supported: {', '.join(map(str, GX_DTYPES))})"
    if gx.dim() != 3 or gx.shape[0] == 0 or gx.shape[1] == 0:
        return f"needs a non-empty (T, B, G*H) input projection, got shape {tuple(gx.shape)}"
    if gx.numel() >= 2**31:
        return f"gx has {gx.numel()} elements; the kernels use 32-bit offsets (< 2**31 elements)"
    return None


# ----------------------------------------------------------------------------------------------------
# the launchers' side: buffers, flags, argument slots

def new_buffer(shape, dtype: torch.dtype, device) -> Tensor:
    """An uninitialized buffer for a kernel to fill (NaN-filled when :data:`POISON_NEW_BUFFERS` is set)."""
    buffer = torch.empty(shape, dtype=dtype, device=device)
    if POISON_NEW_BUFFERS:
        buffer.fill_(float("nan"))
    return buffer


def cell_flags(opts: ScanOptions, dtype: torch.dtype) -> dict:
    """The constexprs both kernel families take for the cell, its activations and the math dtype ``dtype``."""
    spec = opts.cell
    return dict(NUM_GATES=spec.gates, HAS_C=len(spec.states) == 2, W_VECTOR=len(spec.products) == 0,
                ACC=tl.float64 if dtype == torch.float64 else tl.float32,
                RELU=opts.activation == "relu", GATE=GATE_IDS[opts.recurrent_activation])


def slot_pointers(buffers: list[Tensor], dummy: Tensor, slots: int) -> list[Tensor]:
    """Per-step buffers (or one step's rows of them) in ``slots`` kernel arguments; unused slots and
    0-element buffers point at ``dummy`` (never read or written: a cell touches only the buffers it declares)."""
    return [b if b.numel() else dummy for b in buffers] + [dummy] * (slots - len(buffers))


def slot_widths(buffers: list[Tensor], slots: int) -> list[int]:
    """The widths (last dimension) of per-step buffers in ``slots`` kernel arguments, 0 where unused."""
    if len(buffers) > slots:
        raise ValueError(f"{len(buffers)} per-step buffers, the Triton kernels have {slots} slots for them")
    return [b.shape[-1] if b.numel() else 0 for b in buffers] + [0] * (slots - len(buffers))


def cell_weights(spec: Cell, weights: list[Tensor | None],
                 cell_args: list[float] | tuple[float, ...]) -> tuple[list[Tensor | None], Tensor]:
    """The weights the cell reads itself, in the kernels' W2..W4 (its ``extra``: those
    :func:`~seqtorch.recurrent_cells.triton_math.extra_weights` names, in that order; None where it has
    fewer), and its numeric options as a tensor in W_hh's dtype (the kernels' CARGS, the cell's ``p_args``;
    one 0 when it has none)."""
    extra = [weights[spec.weights.index(name)] for name in extra_weights(spec)]
    if len(extra) > MAX_EXTRA_WEIGHTS:
        raise ValueError(f"cell {spec.name!r} has {len(extra)} extra weights, the Triton kernels have "
                         f"{MAX_EXTRA_WEIGHTS} slots for them")
    extra = [None if w is None else w.contiguous() for w in extra] + [None] * (MAX_EXTRA_WEIGHTS - len(extra))
    w_hh = weights[0]
    return extra, torch.tensor(list(cell_args) or [0.0], dtype=w_hh.dtype, device=w_hh.device)


def zoneout_args(zoneout: list[Tensor | None], states: int) -> tuple[Tensor | None, Tensor | None]:
    """The zoneout coefficients of h and (LSTM) c, contiguous, or None."""
    zoneout = list(zoneout) + [None] * (2 - len(zoneout))
    return tuple(None if z is None or k >= states else z.contiguous() for k, z in enumerate(zoneout[:2]))


def given_resets(reset_states: list[Tensor | None]) -> list[Tensor]:
    """The reset states an op was given: its ``Tensor?[]`` argument holds one entry per state, all None where
    none are given (a restarting row then reads the initial states)."""
    return [r for r in reset_states if r is not None]


def reset_args(states: list[Tensor], restart: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """The kernels' RH, RC: the states a restarting row reads (the scan's reset states, else its initial
    states), h (B, P) and, for a cell with two states, c (B, H), contiguous; None where unused or without
    ``restart``."""
    if restart is None:
        return None, None
    return states[0].contiguous(), states[1].contiguous() if len(states) == 2 else None


def step_bytes(flags: Tensor | None) -> Tensor | None:
    """A (T, B) bool tensor of the op contract (``mask``, ``restart``) as the kernels read it: uint8, 1 where
    True (a view of a contiguous bool tensor, no copy), or None."""
    return None if flags is None else flags.to(torch.bool).contiguous().view(torch.uint8)


# ----------------------------------------------------------------------------------------------------
# the device side both kernel families share (plain functions, decorated by device_helpers)

def load_weight_vector(w, H, o_h, ACC: tl.constexpr):
    """A weight vector (H,) as a (1, BLOCK_H) row, in the four places of W_hh's gate tiles (the ``w`` a cell
    without recurrent products gets, ``W_VECTOR``)."""
    b_v = tl.load(w + o_h, mask=o_h < H, other=0.0).to(ACC)[None, :]
    return b_v, b_v, b_v, b_v


def _load_bias_row(bias, k, H, o_h, m_h, HAS_BIAS: tl.constexpr, ACC: tl.constexpr, BLOCK_H: tl.constexpr):
    """Gate k of b_hh (G*H,) as a (1, BLOCK_H) row, zeros without a bias."""
    if HAS_BIAS:
        return tl.load(bias + k * H + o_h, mask=m_h, other=0.0).to(ACC)[None, :]
    else:
        return tl.full((1, BLOCK_H), 0.0, ACC)


def load_bias_rows(bias, H, o_h, m_h, NUM_GATES: tl.constexpr, HAS_BIAS: tl.constexpr, ACC: tl.constexpr,
                   BLOCK_H: tl.constexpr):
    """b_hh's gate rows 0..3 (the ``b`` a cell gets); a cell with fewer gates gets row 0 in the unused places
    (none past its G*H entries is loaded)."""
    b_b0 = _load_bias_row(bias, 0, H, o_h, m_h, HAS_BIAS, ACC, BLOCK_H)
    b_b1 = b_b0
    b_b2 = b_b0
    b_b3 = b_b0
    if NUM_GATES > 1:
        b_b1 = _load_bias_row(bias, 1, H, o_h, m_h, HAS_BIAS, ACC, BLOCK_H)
    if NUM_GATES > 2:
        b_b2 = _load_bias_row(bias, 2, H, o_h, m_h, HAS_BIAS, ACC, BLOCK_H)
    if NUM_GATES > 3:
        b_b3 = _load_bias_row(bias, 3, H, o_h, m_h, HAS_BIAS, ACC, BLOCK_H)
    return b_b0, b_b1, b_b2, b_b3


def step_valid(lengths, smask, t, B, o_b, m_b, HAS_LENGTHS: tl.constexpr, HAS_STEP_MASK: tl.constexpr):
    """(BLOCK_B, 1) bool: whether step t of each row o_b is valid, inside its length (``lengths`` (B,) int64)
    and not masked (``smask`` (T, B) uint8, 1: valid); rows past B are not. For a kernel with at least one of
    the two."""
    if HAS_LENGTHS:
        b_ok = tl.load(lengths + o_b, mask=m_b, other=0) > t
        if HAS_STEP_MASK:
            b_ok = b_ok & (tl.load(smask + t * B + o_b, mask=m_b, other=0) != 0)
    else:
        b_ok = tl.load(smask + t * B + o_b, mask=m_b, other=0) != 0
    return b_ok[:, None]


def step_restarts(restart, t, B, o_b, m_b):
    """(BLOCK_B, 1) bool: whether each row o_b starts step t from the reset states (``restart`` (T, B) uint8)."""
    return (tl.load(restart + t * B + o_b, mask=m_b, other=0) != 0)[:, None]


def any_valid(b_valid):
    """Whether any row of ``b_valid`` (BLOCK_B, 1) is valid: a scalar, for one branch per block and step."""
    return tl.reduce(b_valid.to(tl.int32), None, _add) > 0


_SHARED_DEVICE = (load_weight_vector, _load_bias_row, load_bias_rows, step_valid, step_restarts, any_valid)


# ----------------------------------------------------------------------------------------------------
# lazy decoration

def rebind(fn, namespace: dict):
    """The same function (same code, so Triton finds its source) resolving globals in ``namespace``."""
    clone = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    clone.__module__, clone.__qualname__, clone.__doc__ = fn.__module__, fn.__qualname__, fn.__doc__
    return clone


def jit_all(functions, namespace: dict, **options) -> None:
    """Decorate each of ``functions`` by ``triton.jit`` (with ``options``) into ``namespace``, by name, each
    resolving its globals there: a function calls the decorated versions of the others."""
    for fn in functions:
        namespace[fn.__name__] = triton.jit(rebind(fn, namespace), **options)


_DEVICE: dict = {}


def device_helpers() -> dict:
    """The device functions a kernel calls besides its own, decorated for the current mode, by name: the
    cells' interface (:data:`~seqtorch.recurrent_cells.triton_math.HELPERS`) and the loads above. Built
    once per mode, so a kernel calls helpers decorated the same way it is."""
    mode = interpreting()
    if mode not in _DEVICE:
        math = dict(vars(triton_math))
        jit_all(triton_math.HELPERS, math)
        shared = dict(globals())
        shared.update({fn.__name__: math[fn.__name__] for fn in triton_math.HELPERS})  # any_valid's _add
        jit_all(_SHARED_DEVICE, shared)
        _DEVICE[mode] = {fn.__name__: namespace[fn.__name__]
                         for functions, namespace in ((triton_math.HELPERS, math), (_SHARED_DEVICE, shared))
                         for fn in functions}
    return _DEVICE[mode]


class CellSteps(dict):
    """Each cell's (forward, backward) step functions decorated by ``triton.jit``, by cell name, calling the
    ``helpers`` in place of the :mod:`~seqtorch.recurrent_cells.triton_math` functions of the same name (the
    kernels of the alternating loop swap ``dot``). The cells with a folder are decorated with the kernels
    (:func:`decorate_cells`); a cell written as equations on its first launch (it may be made after the
    kernels were built)."""

    def __init__(self, helpers: dict) -> None:
        super().__init__()
        self.helpers = helpers

    def decorate(self, name: str, module: types.ModuleType) -> dict:
        """Decorate ``module``'s step as cell ``name``'s; the namespace its functions resolve globals in."""
        cell_ns = dict(vars(module))
        cell_ns.update({fn.__name__: self.helpers[fn.__name__] for fn in triton_math.HELPERS})
        jit_all((module.forward, module.backward), cell_ns)
        self[name] = (cell_ns["forward"], cell_ns["backward"])
        return cell_ns

    def __missing__(self, name: str) -> tuple:
        from ...recurrent_cells import get_cell

        self.decorate(name, cell_module(get_cell(name)))
        return self[name]


def decorate_cells(helpers: dict) -> CellSteps:
    """The cells' steps (:class:`CellSteps`), those in a folder's ``triton.py`` decorated now."""
    cells, namespaces, decorated = CellSteps(helpers), [], {}
    for name in CELLS:
        if _has_folder_code(name):
            module = importlib.import_module(f"seqtorch.recurrent_cells.{name}.triton")
            namespaces.append(cells.decorate(name, module))
            decorated.update({module.forward: cells[name][0], module.backward: cells[name][1]})
    # a cell may build on another's step (lstm_proj on lstm's): it imported that cell's plain functions,
    # which are swapped here for their decorated versions (Triton reads globals when it compiles)
    for cell_ns in namespaces:
        for key, value in list(cell_ns.items()):
            if isinstance(value, types.FunctionType) and value in decorated:
                cell_ns[key] = decorated[value]
    return cells
