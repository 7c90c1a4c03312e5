r"""Cells from equations: :class:`PointwiseCell`, a cell written as its step's elementwise math.

A subclass says how many gate blocks its input ``z`` has, its states and its per-unit vector parameters,
and writes ``forward``; it is then a :class:`~seqtorch.recurrent_cells.Cell` like the built-in ones, and
runs wherever they run::

    class PeepholeLSTM(seqtorch.PointwiseCell):
        gates = 4                                  # z has 4*H columns
        states = ("h", "c")                        # the first is the output, and the one W_hh multiplies
        vectors = ("w_ci", "w_cf", "w_co")         # per-unit parameters, each (H,)
        def forward(self, z, h, c, w_ci, w_cf, w_co):
            ...
            return h_new, c_new                    # the new states, in `states` order

What happens to it (each step in a module of its own):

1. :mod:`.trace`: ``forward`` is traced by AOTAutograd into a forward and a backward ATen graph (the
   backward is PyTorch's autograd formulas; a min-cut partition chooses what the forward saves).
2. :mod:`.ir`: the graphs are read into a small IR of per-column scalar expressions over H-wide blocks;
   an op outside its set is :class:`~.ir.UnsupportedEquations`, named. Such a cell still runs, on the
   reference scan only, and says so in a warning (once per class).
3. The code, from the IR: :mod:`.python_code` for the Python loop (here, at once), :mod:`.cpp_code` for
   the C++ loop (compiled on first use into a library of its own, cached across processes:
   :mod:`seqtorch.ops.native_cells`), :mod:`.triton_code` for the Triton kernels (written to the same cache
   on first launch and imported from there: :mod:`seqtorch.ops.triton.common`).

The cell is registered under ``<ClassName>_<hash>`` (of its class's module and name, its declaration and
its IR), so the scan's ops find it by name and a pickled Module finds it again in a process where the
class is defined (:func:`resolve`).
"""

from __future__ import annotations

import hashlib
import inspect
import linecache
import re
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..base import Acts, BackwardStep, Cell, ForwardStep, Sizes
from . import cpp_code, ir, python_code, trace, triton_code
from .ir import UnsupportedEquations

INPUTS = ("joint", "separate")
_RESERVED = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


@dataclass
class Generated:
    """What a cell's equations became: its registered name, IR, and Python loop code (None, with
    ``refusal``, when they cannot be generated)."""

    name: str
    step: ir.Step | None
    python_source: str | None
    forward: Callable | None
    backward: Callable | None
    refusal: str | None = None
    cpp_source: str | None = None  # written on first use
    triton_source: str | None = None  # written on first use


class PointwiseCell(Cell):
    r"""Base of a cell written as its step's elementwise equations; it runs on every fused path.

    A subclass sets the class attributes and writes :meth:`forward`. With ``inputs = "joint"`` (the
    default) ``forward(z, *states, *vectors)`` gets

    .. math::
        z = x W_{ih}^T + b_{ih} + h W_{hh}^T + b_{hh} \quad (B, G H),

    with ``inputs = "separate"`` ``forward(zx, zh, *states, *vectors)`` gets the two apart,
    :math:`z_x = x W_{ih}^T + b_{ih}` and :math:`z_h = h W_{hh}^T + b_{hh}` (a GRU-style candidate
    ``tanh(zx_n + r * zh_n)`` needs them apart). ``h`` is the first state, after recurrent dropout where
    it enters the product; ``forward`` gets every state as it was, ``(B, H)`` each, and each vector
    ``(H,)``, and returns the new states in the order of :attr:`states`.

    ``forward`` is elementwise math on column blocks of H units: the arithmetic operators, ``exp``,
    ``log``, ``log1p``, ``expm1``, ``sigmoid``, ``tanh``, ``relu``, ``abs``, ``sqrt``, ``rsqrt``, ``erf``,
    ``maximum``/``minimum``, ``clamp``, comparisons and ``where``, integer powers, and what decomposes
    into them (``F.logsigmoid``, ``F.softplus``, ``F.silu``, ``F.gelu``, ``F.elu``, ``torch.lerp`` ...);
    ``chunk``/``split``/slices/``cat`` along the last dimension at multiples of H. Its backward is
    derived by PyTorch (AOTAutograd); the code of each backend is generated from the two graphs. A forward
    that uses anything else (a reduction over the units, a matrix product, a branch on tensor values)
    runs on the reference scan only, with a warning that names what was refused.

    Class attributes:
        gates (int): G, the number of H-wide blocks of ``z``. Default 1. At most four run on the Triton
            kernels.
        states (tuple of str): the states' names; the first is the output ``h`` and the one ``W_hh``
            multiplies. Default ``("h",)``. At most four run on the C++ loop, two on the Triton kernels.
        vectors (tuple of str): per-unit parameters, each ``(H,)``. Default none. At most four run on the
            C++ loop, three on the Triton kernels.
        inputs (str): ``"joint"`` (default) or ``"separate"``, as above.
        vector_init (dict): each vector's initial value, by name: a number, or a function that fills
            the ``(H,)`` tensor in place (``torch.nn.init.ones_``). A vector not listed starts as every
            parameter of the layer's ``init`` scheme does: uniform in :math:`\pm 1/\sqrt{H}` under
            ``"torch"``, zeros under ``"keras"``. Override :meth:`init_` for more (a bias's blocks).
        family (str): ``"lstm"`` or ``"gru"`` for a cell with that gate layout: it takes Keras'
            initialization of it under ``init="keras"`` (the LSTM's forget-gate bias of 1 in block 1), and a
            layer's ``mode`` says ``"LSTM"``/``"GRU"``; default ``"pointwise"`` (a layer's ``mode`` is then
            the cell's name).

    Parameters of a layer over it (:class:`seqtorch.Recurrent`): ``weight_ih_l{k}{sfx}`` (G*H, I),
    ``weight_hh_l{k}{sfx}`` (G*H, H), ``bias_ih_l{k}{sfx}`` and ``bias_hh_l{k}{sfx}`` (G*H,), then
    ``{vector}_l{k}{sfx}`` (H,) for each vector; :class:`seqtorch.RecurrentCell` the same names without
    ``_l{k}{sfx}``.

    What ``forward`` reads besides its arguments (a constant set in ``__init__``) is part of the traced
    equations: set it before calling ``super().__init__()``, which traces.

    Example::

        >>> class MinimalGated(seqtorch.PointwiseCell):
        ...     gates = 2
        ...     def forward(self, z, h):
        ...         f, g = z.chunk(2, dim=-1)
        ...         f = torch.sigmoid(f)
        ...         return f * h + (1 - f) * torch.tanh(g)
        >>> layer = seqtorch.Recurrent(MinimalGated(), input_size=3, hidden_size=5)
        >>> output, h_n = layer(torch.randn(7, 2, 3))       # (T, B, I) -> (7, 2, 5), (1, 2, 5)
    """

    family = "pointwise"
    gates: int = 1
    states: tuple[str, ...] = ("h",)
    vectors: tuple[str, ...] = ()
    inputs: str = "joint"
    vector_init: dict[str, Any] = {}

    _subclasses: list = []          # every subclass ever defined (weak), for :func:`resolve`
    _generated: dict = {}           # (class, instance attributes) -> Generated
    _warned: set = set()            # classes whose refusal was reported

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        PointwiseCell._subclasses.append(weakref.ref(cls))

    def __init__(self) -> None:
        cls = type(self)
        if cls is PointwiseCell:
            raise TypeError("PointwiseCell is a base: subclass it with your cell's gates, states, vectors and forward")
        _check_declaration(cls)
        self.weights = ("weight_hh", "bias_hh", *cls.vectors)
        self.folds_input_bias = cls.inputs == "joint"
        if cls.inputs == "separate":
            self.single_bias_conflict = ("its forward takes zh = h W_hh^T + b_hh apart from zx = x W_ih^T + b_ih, "
                                         "so the two biases act apart")
        key = (cls, _attributes(self))
        generated = PointwiseCell._generated.get(key)
        if generated is None:
            generated = PointwiseCell._generated[key] = _generate(self)
        self._code = generated
        self.name = generated.name
        self.reference_only = generated.refusal
        if generated.refusal is not None and cls not in PointwiseCell._warned:
            PointwiseCell._warned.add(cls)
            warnings.warn(f"{generated.refusal}. Cell {generated.name} runs on the reference scan only (plain "
                          f"autograd; slower).", RuntimeWarning, stacklevel=2)
        from .. import register

        register(self)

    def forward(self, *args: Tensor):
        """The step's equations (see the class docstring): the new states from z (or zx, zh), the states
        and the vectors."""
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    def __repr__(self) -> str:
        return f"<cell {self.name!r}: {type(self).__module__}.{type(self).__qualname__}>"

    # ---- what a Cell declares ------------------------------------------------------------------------
    def parameters(self, I: int, H: int, P: int) -> list[tuple[str, tuple[int, ...]]]:
        if P != H:
            raise ValueError(f"{type(self).__name__}: a cell written as equations has h of the hidden size "
                             f"({H}); proj_size={P} projects only the LSTM's")
        return super().parameters(I, H, P) + [(name, (H,)) for name in self.vectors]

    def init_(self, params: dict[str, Tensor], scheme: str) -> None:
        """Each vector's initial value from :attr:`vector_init`; unlisted vectors keep the ``"torch"``
        scheme's draw, and are zeros under ``"keras"``."""
        with torch.no_grad():
            for name in self.vectors:
                value = self.vector_init.get(name)
                if callable(value):
                    value(params[name])
                elif value is not None:
                    params[name].fill_(float(value))
                elif scheme == "keras":
                    params[name].zero_()

    def saved(self, sizes: Sizes, acts: Acts) -> list[tuple[str, int]]:
        """One buffer, ``S``: the values the traced forward saves for the backward, one H-wide slot each."""
        slots = self._code.step.saved_slots if self._code.step is not None else 0
        return [("S", slots * sizes.H)]

    def grad_buffers(self, sizes: Sizes) -> list[tuple[str, int]]:
        """``dP0`` the gradient of zh (``inputs="separate"``: it differs from zx's), ``DV`` the per-row
        terms of the vectors' gradients (one H-wide block each)."""
        buffers = [("dP0", self.gates * sizes.H)] if self.inputs == "separate" else []
        return buffers + ([("DV", len(self.vectors) * sizes.H)] if self.vectors else [])

    # ---- the reference: the user's forward itself ---------------------------------------------------
    def step(self, gx, h_in, states, weights, acts: Acts, args=()):
        w_hh, b_hh, *vectors = weights
        gh = F.linear(h_in, w_hh, b_hh)
        z = (gx + gh,) if self.inputs == "joint" else (gx, gh)
        return trace.call(self.forward, self._signature(), [*z, *states, *vectors])

    # ---- the Python loop: the generated code --------------------------------------------------------
    def loop_forward(self, stage: int, s: ForwardStep) -> None:
        self._code.forward(s.prev[0].shape[-1], s.gx, s.product, s.weights[1], s.prev, s.weights[2:], s.next,
                           s.saved["S"])

    def loop_backward(self, stage: int, s: BackwardStep) -> None:
        s.d_prev = self._code.backward(s.prev[0].shape[-1], s.prev, s.weights[2:], s.saved["S"], s.d_next, s.dgx,
                                       s.grads.get("dP0"), s.grads.get("DV"))

    def weight_grads(self, grads, dgx, h_in, u, weights, needs, saved):
        """W_hh's and b_hh's as every cell's (one GEMM, a sum); each vector's, the sum of its per-row terms
        over every step and row."""
        out = super().weight_grads(grads, dgx, h_in, u, weights[:2], needs[:2], saved)
        if self.vectors:
            H = dgx.shape[-1] // self.gates
            sums = grads["DV"].reshape(-1, len(self.vectors), H).sum(0) if any(needs[2:]) else None
            out += [sums[v] if need else None for v, need in enumerate(needs[2:])]
        return out

    def generated_cpp(self) -> str | None:
        code = self._code
        if code.step is None or cpp_code.limits(len(self.states), len(self.vectors)):
            return None
        if code.cpp_source is None:
            code.cpp_source = cpp_code.source(code.step, self.name, self.inputs, self.gates, self.states,
                                              self.vectors, self.saved_names(), self.grad_buffer_names())
        return code.cpp_source

    def generated_triton(self) -> str | None:
        code = self._code
        if code.step is None or triton_code.limits(self.gates, len(self.states)):
            return None
        if code.triton_source is None:
            code.triton_source = triton_code.source(code.step, self.name, self.inputs, self.gates, self.states,
                                                    self.vectors)
        return code.triton_source

    def generated_python(self) -> str | None:
        """The Python loop's code generated from the equations (None for a cell that runs on the reference only)."""
        return self._code.python_source

    def equations(self) -> str:
        """The IR the code is generated from, one node per line (see :mod:`.ir`)."""
        return self._code.step.text() if self._code.step is not None else ""

    def _signature(self) -> ir.Signature:
        return ir.Signature(type(self).__name__, self.inputs, self.gates, len(self.states), len(self.vectors))


def _attributes(cell: PointwiseCell) -> tuple:
    """What an instance holds that its forward may read, as a cache key: one trace per distinct cell."""
    return tuple(sorted((k, repr(v)) for k, v in vars(cell).items()
                        if k not in ("weights", "folds_input_bias", "single_bias_conflict")))


def _check_declaration(cls) -> None:
    """Clear errors for a subclass whose attributes or forward do not fit together."""
    name = cls.__name__
    if not isinstance(cls.gates, int) or isinstance(cls.gates, bool) or cls.gates < 1:
        raise ValueError(f"{name}.gates must be a positive int, got {cls.gates!r}")
    for attr in ("states", "vectors"):
        value = getattr(cls, attr)
        if not isinstance(value, tuple) or not all(isinstance(v, str) and v.isidentifier() for v in value):
            raise ValueError(f"{name}.{attr} must be a tuple of names, got {value!r}")
    if not cls.states:
        raise ValueError(f"{name}.states must name at least one state (the output h)")
    names = cls.states + cls.vectors
    if len(set(names)) != len(names) or set(cls.vectors) & set(_RESERVED):
        raise ValueError(f"{name}: the names of states and vectors must be distinct and not one of {_RESERVED}, "
                         f"got states={cls.states}, vectors={cls.vectors}")
    if cls.inputs not in INPUTS:
        raise ValueError(f"{name}.inputs must be one of {INPUTS}, got {cls.inputs!r}")
    unknown = set(cls.vector_init) - set(cls.vectors)
    if unknown:
        raise ValueError(f"{name}.vector_init names {sorted(unknown)}, which are not among its vectors {cls.vectors}")
    expected = (["z"] if cls.inputs == "joint" else ["zx", "zh"]) + list(names)
    try:
        params = list(inspect.signature(cls.forward).parameters.values())[1:]  # without self
    except (TypeError, ValueError):
        return
    if not any(p.kind is p.VAR_POSITIONAL for p in params) and len(params) != len(expected):
        raise TypeError(f"{name}.forward must take ({', '.join(expected)}) (inputs={cls.inputs!r}, then the states, "
                        f"then the vectors), got ({', '.join(p.name for p in params)})")


def _generate(cell: PointwiseCell) -> Generated:
    """Trace, read and generate: the cell's :class:`Generated`, or its refusal."""
    cls = type(cell)
    sig = cell._signature()
    label = re.sub(r"\W", "_", cls.__name__)
    try:
        fw, bw = trace.graphs(cell.forward, sig)
        step = ir.read(fw, bw, sig)
    except UnsupportedEquations as error:
        try:
            text = inspect.getsource(cls)
        except (OSError, TypeError):
            text = ""
        return Generated(f"{label}_{_digest(cls, sig, text)}", None, None, None, None, refusal=str(error))
    name = f"{label}_{_digest(cls, sig, step.text())}"
    source = python_code.source(step, name, cell.inputs, cell.gates, len(cell.states), len(cell.vectors))
    filename = f"<seqtorch generated: {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # for tracebacks
    namespace: dict = {}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own generated code
    return Generated(name, step, source, namespace["forward"], namespace["backward"])


def _digest(cls, sig: ir.Signature, text: str) -> str:
    """The hash in a cell's name: of its class's place (two classes are two cells, even with the same
    equations), its declaration and its IR."""
    declared = f"{cls.__module__}.{cls.__qualname__} {sig.inputs} {sig.gates} {sig.states} {sig.vectors}\n"
    return hashlib.sha256((declared + text).encode()).hexdigest()[:10]


def resolve(name: str) -> Cell | None:
    """The cell registered as ``name``, registering it first if a PointwiseCell subclass defined in this
    process has that class name (what unpickling a Module needs); None if there is none.

    A class of that name whose equations now hash differently is used with a warning: the Module was
    saved with other equations (or a torch whose autograd formulas differ)."""
    from .. import CELLS

    label = name.rsplit("_", 1)[0]
    found = []
    for ref in list(PointwiseCell._subclasses):
        cls = ref()
        if cls is None or re.sub(r"\W", "_", cls.__name__) != label:
            continue
        try:
            cell = cls()
        except TypeError:  # a constructor that needs arguments: only its instances register it
            continue
        if name in CELLS:
            return CELLS[name]
        found.append(cell)
    if len(found) == 1:
        warnings.warn(f"cell {name!r} is not registered; class {type(found[0]).__qualname__} now traces to "
                      f"{found[0].name!r}: its equations (or torch's formulas for them) changed since the Module "
                      f"was saved. Using it.", RuntimeWarning, stacklevel=3)
        return found[0]
    return None


__all__ = ["PointwiseCell", "UnsupportedEquations", "resolve"]
