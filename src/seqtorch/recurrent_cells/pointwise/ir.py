"""A cell's step as a small IR: scalar expressions per column, over H-wide blocks of a batch row.

A :class:`~seqtorch.PointwiseCell`'s ``forward`` is elementwise math on ``(B, k*H)`` tensors. Traced by
AOTAutograd (:mod:`.trace`) it becomes two ATen graphs, the forward and the backward. This module reads
them into one :class:`Step`: every value is a :class:`Node`, the value at one column ``j`` of one H-wide
block, so that every code generator (:mod:`.python_code`, :mod:`.cpp_code`, :mod:`.triton_code`) writes a
loop over ``j`` in which each node is one scalar expression (in Triton, one register tile of such columns), from
the one table of ops, :data:`OPS`, which says how each generator writes each op.

How the graphs' shapes are read (they were traced at ``B = TRACE_B``, ``H = TRACE_H``, two sizes that
cannot be confused): ``(B, k*H)`` is k column blocks of a batch row, ``(k*H,)`` or ``(1, k*H)`` k blocks of
per-unit values (a vector parameter: the same for every row), ``()`` a scalar. A split, chunk, slice or
cat along the last dimension at multiples of H picks or joins blocks. A sum over dim 0 (the batch) is
the gradient of a vector: it is kept as its per-row terms (a "summed" value), which the backward writes
to a per-step buffer and the scan sums over every step and row afterwards; only ops linear in such a
term may follow it. Anything else (a reduction over the hidden units, a matrix product, a data-dependent
shape, an op not in :data:`OPS`) is refused with :class:`UnsupportedEquations`, naming the op and the cell.

Nodes are interned (the same op on the same arguments is one node), so the forward's values that the
backward recomputes, and the repeats AOTAutograd leaves, are computed once.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch

TRACE_B, TRACE_H = 5, 7  # the sizes the equations are traced at (:mod:`.trace`)


class UnsupportedEquations(ValueError):
    """A cell's equations use something no code generator can write (the message names it)."""


@dataclass(frozen=True)
class OpInfo:
    """An IR op: its number of operands, its result dtype (``"float"``, ``"bool"``, or ``"same"`` as its
    operand ``same_as``), which operands it is linear in (what may carry a vector's per-row gradient terms
    through it), and how each generator writes it (``{0}``, ``{1}``... its operands): the Python loop with
    torch ops on row blocks, the C++ loop with scalars (``T``, the math of ``recurrent_cells/cpu_math.h``
    and ``cpu_pointwise_math.h``), the Triton kernels with register tiles (``tl`` and the helpers of
    ``recurrent_cells/triton_math.py``)."""

    arity: int
    python: str
    cpp: str
    triton: str
    dtype: str = "float"
    same_as: int = 0
    linear_in: tuple[int, ...] = ()


def _binary(symbol: str, python_symbol: str | None = None, **kwargs) -> OpInfo:
    """An operator; Python and Triton write ``python_symbol`` where it differs from C++'s (``&`` for ``&&``)."""
    python = f"({{0}} {python_symbol or symbol} {{1}})"
    return OpInfo(2, python, f"({{0}} {symbol} {{1}})", python, **kwargs)


def _unary(name: str, cpp: str, triton: str) -> OpInfo:
    return OpInfo(1, f"torch.{name}({{0}})", cpp, triton)


# torch.maximum, minimum and relu propagate NaN; Triton's do only when asked
_NAN = "propagate_nan=tl.PropagateNan.ALL"

#: The ops every generator writes, by IR name (the ATen ops that map to them are in :class:`_Reader`).
OPS: dict[str, OpInfo] = {
    "add": _binary("+", linear_in=(0, 1)), "sub": _binary("-", linear_in=(0, 1)),
    "mul": _binary("*", linear_in=(0, 1)), "div": _binary("/", linear_in=(0,)),
    "neg": OpInfo(1, "(-{0})", "(-{0})", "(-{0})", linear_in=(0,)),
    "maximum": OpInfo(2, "torch.maximum({0}, {1})", "maximum_({0}, {1})", f"tl.maximum({{0}}, {{1}}, {_NAN})"),
    "minimum": OpInfo(2, "torch.minimum({0}, {1})", "minimum_({0}, {1})", f"tl.minimum({{0}}, {{1}}, {_NAN})"),
    "exp": _unary("exp", "exp_({0})", "tl.exp({0})"), "expm1": _unary("expm1", "expm1_({0})", "expm1({0})"),
    "log": _unary("log", "log_({0})", "tl.log({0})"), "log1p": _unary("log1p", "log1p_({0})", "log1p({0})"),
    "sigmoid": _unary("sigmoid", "sigmoid({0})", "sigmoid({0})"), "tanh": _unary("tanh", "tanh_({0})", "tanh({0})"),
    "relu": _unary("relu", "relu_({0})", f"tl.maximum({{0}}, 0.0, {_NAN})"),
    "abs": _unary("abs", "std::abs({0})", "tl.abs({0})"), "sign": _unary("sign", "sign_({0})", "sign({0})"),
    "sqrt": _unary("sqrt", "std::sqrt({0})", "tl.sqrt({0})"),
    "rsqrt": _unary("rsqrt", "(T(1) / std::sqrt({0}))", "tl.rsqrt({0})"),
    "reciprocal": _unary("reciprocal", "(T(1) / {0})", "(1.0 / {0})"),
    "erf": _unary("erf", "std::erf({0})", "tl.erf({0})"),  # C++: libm's, a loop with erf stays scalar
    # ATen's formulas, in its order of operations
    "sigmoid_backward": OpInfo(2, "({0} * (1 - {1}) * {1})", "({0} * (T(1) - {1}) * {1})", "({0} * (1.0 - {1}) * {1})",
                               linear_in=(0,)),
    "tanh_backward": OpInfo(2, "({0} * (1 - {1} * {1}))", "({0} * (T(1) - {1} * {1}))", "({0} * (1.0 - {1} * {1}))",
                            linear_in=(0,)),
    "eq": _binary("==", dtype="bool"), "ne": _binary("!=", dtype="bool"), "lt": _binary("<", dtype="bool"),
    "le": _binary("<=", dtype="bool"), "gt": _binary(">", dtype="bool"), "ge": _binary(">=", dtype="bool"),
    "not": OpInfo(1, "torch.logical_not({0})", "(!{0})", "({0} == 0)", "bool"),
    "and": _binary("&&", "&", dtype="bool"), "or": _binary("||", "|", dtype="bool"),
    "where": OpInfo(3, "torch.where({0}, {1}, {2})", "({0} ? {1} : {2})", "tl.where({0}, {1}, {2})", "same",
                    same_as=1, linear_in=(1, 2)),
    "float": OpInfo(1, "torch.where({0}, like.new_tensor(1.0), like.new_tensor(0.0))", "({0} ? T(1) : T(0))",
                    "tl.where({0}, 1.0, 0.0)"),
}


def _fold(op: str, values: tuple):
    """``op`` of constants, computed once here (in float64, as torch computes it) so that the generated code
    never computes a constant at run time."""
    if OPS[op].dtype == "bool" or op == "where" and all(isinstance(v, bool) for v in values[1:]):
        a = values[0]
        b = values[1] if len(values) > 1 else None
        return {"eq": lambda: a == b, "ne": lambda: a != b, "lt": lambda: a < b, "le": lambda: a <= b,
                "gt": lambda: a > b, "ge": lambda: a >= b, "not": lambda: not a, "and": lambda: bool(a and b),
                "or": lambda: bool(a or b), "where": lambda: values[1] if a else values[2]}[op]()
    if op == "where":
        return float(values[1] if values[0] else values[2])
    t = [torch.tensor(float(v), dtype=torch.float64) for v in values]
    fns = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "neg": torch.neg,
           "maximum": torch.maximum, "minimum": torch.minimum, "exp": torch.exp, "expm1": torch.expm1,
           "log": torch.log, "log1p": torch.log1p, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
           "abs": torch.abs, "sign": torch.sign, "sqrt": torch.sqrt, "rsqrt": torch.rsqrt,
           "reciprocal": torch.reciprocal, "erf": torch.erf, "float": lambda x: x,
           "sigmoid_backward": lambda g, y: g * (1 - y) * y, "tanh_backward": lambda g, y: g * (1 - y * y)}
    return float(fns[op](*t))


@dataclass(frozen=True)
class Node:
    """One value per column: ``op`` of the nodes ``args`` (indices into :attr:`Step.nodes`); a ``"load"``
    has ``args = (source, index)`` (see :data:`SOURCES`), a ``"const"`` ``args = (value,)``.

    ``varies``: ``"row"`` (differs between batch rows), ``"column"`` (per unit only: a vector's values and
    what follows from them alone) or ``"constant"``."""

    op: str
    args: tuple
    dtype: str
    varies: str


#: Where a load reads, per column j: (source, index) -> what it is.
SOURCES = {
    "z": "block k of z = x W_ih^T + b_ih + h W_hh^T + b_hh",
    "zx": "block k of zx = x W_ih^T + b_ih (inputs = 'separate')",
    "zh": "block k of zh = h W_hh^T + b_hh (inputs = 'separate')",
    "state": "state k as the step reads it",
    "vector": "vector parameter k",
    "saved": "slot k of the values the forward saved for the backward",
    "dnext": "the gradient of the new state k",
}
_VARIES = ("constant", "column", "row")


@dataclass
class Step:
    """A cell's step: its nodes (in an order where each node follows its arguments) and what each pass
    writes. ``forward``: ``("next", k)`` the new state k, ``("saved", s)`` saved slot s. ``backward``:
    ``("dz", b)`` (or ``("dzx", b)`` and ``("dzh", b)``) the gradient of block b of the cell's input,
    ``("dprev", k)`` of state k as read, ``("dvector", v)`` the per-row terms of vector v's gradient. A
    gradient left out is zero."""

    nodes: list[Node] = field(default_factory=list)
    forward: dict[tuple[str, int], int] = field(default_factory=dict)
    backward: dict[tuple[str, int], int] = field(default_factory=dict)
    saved_slots: int = 0
    _index: dict[tuple, int] = field(default_factory=dict, repr=False)

    # ---- building -----------------------------------------------------------------------------------
    def add(self, op: str, args: tuple, dtype: str, varies: str) -> int:
        key = (op, args, dtype)
        if key not in self._index:
            self._index[key] = len(self.nodes)
            self.nodes.append(Node(op, args, dtype, varies))
        return self._index[key]

    def load(self, source: str, index: int, dtype: str = "float") -> int:
        varies = {"vector": "column"}.get(source, "row")
        return self.add("load", (source, index), dtype, varies)

    def const(self, value) -> int:
        value = bool(value) if isinstance(value, bool) else float(value)
        return self.add("const", (value,), "bool" if isinstance(value, bool) else "float", "constant")

    def apply(self, op: str, *args: int) -> int:
        info = OPS[op]
        assert len(args) == info.arity, (op, args)
        nodes = [self.nodes[a] for a in args]
        if all(n.op == "const" for n in nodes):
            return self.const(_fold(op, tuple(n.args[0] for n in nodes)))
        simpler = self._simplify(op, args, nodes)
        if simpler is not None:
            return simpler
        dtype = nodes[info.same_as].dtype if info.dtype == "same" else info.dtype
        if op == "where" and nodes[1].dtype != nodes[2].dtype:
            dtype = "float"
        varies = _VARIES[max(_VARIES.index(n.varies) for n in nodes)]
        return self.add(op, tuple(args), dtype, varies)

    def _simplify(self, op: str, args: tuple[int, ...], nodes: list[Node]) -> int | None:
        """x + 0, x - 0, x * 1, x / 1 and a where of two equal branches are x (the decompositions leave them)."""
        value = lambda n: n.args[0] if n.op == "const" else None  # noqa: E731
        if op in ("add", "sub") and value(nodes[1]) == 0.0 and nodes[0].dtype == "float":
            return args[0]
        if op == "add" and value(nodes[0]) == 0.0 and nodes[1].dtype == "float":
            return args[1]
        if op in ("mul", "div") and value(nodes[1]) == 1.0 and nodes[0].dtype == "float":
            return args[0]
        if op == "mul" and value(nodes[0]) == 1.0 and nodes[1].dtype == "float":
            return args[1]
        if op == "where" and args[1] == args[2]:
            return args[1]
        return None

    # ---- reading ------------------------------------------------------------------------------------
    def order(self, roots) -> list[int]:
        """The nodes the ``roots`` need, each after its arguments (node indices grow that way)."""
        needed, stack = set(), list(roots)
        while stack:
            index = stack.pop()
            if index in needed:
                continue
            needed.add(index)
            node = self.nodes[index]
            if node.op not in ("load", "const"):
                stack.extend(node.args)
        return sorted(needed)

    def loads(self, roots) -> set[tuple[str, int]]:
        """The (source, index) pairs the ``roots`` read."""
        return {self.nodes[i].args for i in self.order(roots) if self.nodes[i].op == "load"}

    def is_zero(self, index: int) -> bool:
        node = self.nodes[index]
        return node.op == "const" and node.args[0] == 0.0

    def ops_used(self) -> set[str]:
        return {node.op for node in self.nodes} - {"load", "const"}

    def text(self) -> str:
        """A readable listing (also what the cell's name hashes): one node per line, then the stores."""
        lines = []
        for index, node in enumerate(self.nodes):
            args = node.args if node.op in ("load", "const") else tuple(f"v{a}" for a in node.args)
            lines.append(f"v{index} = {node.op}{args} : {node.dtype} {node.varies}")
        for name, stores in (("forward", self.forward), ("backward", self.backward)):
            lines += [f"{name} {target} = v{index}" for target, index in sorted(stores.items())]
        return "\n".join(lines)


@dataclass(frozen=True)
class Spelling:
    """How a generator writes a constant: true, false, NaN, +inf (-inf is it with a minus), and any other
    number (a format of the float's ``repr``)."""

    true: str
    false: str
    nan: str
    inf: str
    number: str = "{!r}"


class Emitter:
    """What every code generator does with a :class:`Step`: walk the nodes a pass needs, in order, naming
    each (a constant by its literal, a load or an op by the variable it declares). A generator says how to
    write a number (its :attr:`spelling`), a load, an op and a declaration."""

    spelling: Spelling

    def __init__(self, step: Step) -> None:
        self.step, self.names = step, {}

    def compute(self, roots) -> None:
        """Name every node the ``roots`` need, in order; those named by an earlier call are not redone."""
        for index in self.step.order(roots):
            node = self.step.nodes[index]
            if index in self.names:
                continue
            if node.op == "const":
                self.names[index] = self.number(node.args[0])
            elif node.op == "load":
                self.names[index] = self.declare(index, node, self.load(*node.args, node.dtype))
            else:
                self.names[index] = self.declare(index, node, self.op(node, [self.names[a] for a in node.args]))

    def number(self, value) -> str:
        s = self.spelling
        if isinstance(value, bool):
            return s.true if value else s.false
        if math.isnan(value):
            return s.nan
        if math.isinf(value):
            return s.inf if value > 0 else f"-{s.inf}"
        return s.number.format(float(value))

    def load(self, source: str, index: int, dtype: str) -> str:
        raise NotImplementedError

    def op(self, node: Node, args: list[str]) -> str:
        raise NotImplementedError

    def declare(self, index: int, node: Node, text: str) -> str:
        """Declare node ``index`` as ``text``; return its variable's name."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------
# reading the traced graphs

@dataclass(frozen=True)
class Blocks:
    """A graph value: one node per H-wide block (``broadcast``: a 0-d value, good for any number of
    blocks); ``summed``: the nodes are the per-row terms of a sum over the batch."""

    ids: tuple[int, ...]
    broadcast: bool = False
    summed: bool = False


def blocks_of(shape) -> tuple[int, bool] | None:
    """(number of H-wide blocks, whether it broadcasts) for a traced shape; None if it is no such value."""
    shape = tuple(int(s) for s in shape)
    H, B = TRACE_H, TRACE_B
    if all(s == 1 for s in shape):
        return 1, True
    width = shape[-1]
    if width % H or (len(shape) == 2 and shape[0] not in (1, B)) or len(shape) > 2:
        return None
    return width // H, False


@dataclass(frozen=True)
class Signature:
    """What the graphs' inputs and outputs are: the cell's inputs mode, gate count, states, vectors."""

    name: str
    inputs: str       # "joint" or "separate"
    gates: int
    states: int
    vectors: int


def read(fw, bw, sig: Signature) -> Step:
    """The :class:`Step` of the forward and backward GraphModules AOTAutograd traced (:mod:`.trace`)."""
    step = Step()
    reader = _Reader(step, sig)
    fw_inputs = [Blocks(tuple(step.load("z", b) for b in range(sig.gates)))] if sig.inputs == "joint" else \
        [Blocks(tuple(step.load(src, b) for b in range(sig.gates))) for src in ("zx", "zh")]
    fw_inputs += [Blocks((step.load("state", k),)) for k in range(sig.states)]
    fw_inputs += [Blocks((step.load("vector", v),)) for v in range(sig.vectors)]
    outputs = reader.run(fw, fw_inputs)
    new_states, saved = outputs[:sig.states], outputs[sig.states:]
    for k, value in enumerate(new_states):
        reader.expect_one_block(value, f"state {k} it returns")
        step.forward[("next", k)] = value.ids[0]

    # what the backward reads: the states and vectors as they are, every other row value from a saved slot
    slots: dict[int, int] = {}
    bw_saved = []
    for value in saved:
        ids = []
        for node_id in value.ids:
            node = step.nodes[node_id]
            if node.varies != "row" or (node.op == "load" and node.args[0] == "state"):
                ids.append(node_id)
                continue
            if node_id not in slots:
                slots[node_id] = len(slots)
                step.forward[("saved", slots[node_id])] = node_id
            ids.append(step.load("saved", slots[node_id], node.dtype))
        bw_saved.append(Blocks(tuple(ids), value.broadcast))
    step.saved_slots = len(slots)
    tangents = [n for n in bw.graph.nodes if n.op == "placeholder"][len(saved):]
    if len(tangents) != sig.states:
        raise UnsupportedEquations(f"{sig.name}: every state forward returns must depend on its inputs "
                                   f"({len(tangents)} of {sig.states} do)")
    grads = reader.run(bw, bw_saved + [Blocks((step.load("dnext", k),)) for k in range(sig.states)])

    n_in = 1 if sig.inputs == "joint" else 2
    targets = ["dz"] if sig.inputs == "joint" else ["dzx", "dzh"]
    for target, grad in zip(targets, grads[:n_in]):
        if grad is not None:
            reader.expect_blocks(grad, sig.gates, "the gradient of its input")
            step.backward.update({(target, b): i for b, i in enumerate(_spread(grad, sig.gates))})
    for k, grad in enumerate(grads[n_in:n_in + sig.states]):
        if grad is not None:
            reader.expect_one_block(grad, f"the gradient of state {k}")
            step.backward[("dprev", k)] = grad.ids[0]
    for v, grad in enumerate(grads[n_in + sig.states:]):
        if grad is None or (not grad.summed and all(step.is_zero(i) for i in grad.ids)):
            continue
        if not grad.summed:
            raise UnsupportedEquations(f"{sig.name}: the gradient of vector {v} is not a sum over the batch rows")
        step.backward[("dvector", v)] = grad.ids[0]
    return step


@dataclass(frozen=True)
class _Unreadable:
    """A graph value that is no H-wide block value: its error, raised where the value is used."""

    error: UnsupportedEquations


def _spread(value: Blocks, n: int) -> tuple[int, ...]:
    return value.ids * n if value.broadcast else value.ids


class _Reader:
    """Runs a traced GraphModule over :class:`Blocks`, adding its ops to a :class:`Step`."""

    def __init__(self, step: Step, sig: Signature) -> None:
        self.step, self.sig = step, sig

    def fail(self, node, why: str):
        raise UnsupportedEquations(f"{self.sig.name}: {why} (at {node.format_node() if node is not None else '?'}); "
                                   f"seqtorch generates code for elementwise math on H-wide column blocks "
                                   f"(see seqtorch.PointwiseCell)")

    def expect_one_block(self, value: Blocks, what: str) -> None:
        if value.summed or (len(value.ids) != 1 and not value.broadcast):
            raise UnsupportedEquations(f"{self.sig.name}: {what} must be (B, H), one block of H units")

    def expect_blocks(self, value: Blocks, n: int, what: str) -> None:
        if value.summed or (len(value.ids) != n and not value.broadcast):
            raise UnsupportedEquations(f"{self.sig.name}: {what} must be (B, {n}*H)")

    def run(self, gm, inputs: list[Blocks]) -> list[Blocks | None]:
        env = {}
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        assert len(placeholders) == len(inputs), (len(placeholders), len(inputs))
        env.update(zip(placeholders, inputs))
        for node in gm.graph.nodes:
            if node.op == "call_function":
                try:
                    env[node] = self.call(node, env)
                    self.check_shape(node, env[node])
                except UnsupportedEquations as error:  # raised where it is used: that op says more (a product)
                    env[node] = _Unreadable(error)
            elif node.op == "output":
                outputs = [None if out is None else env[out] for out in node.args[0]]
                for out in outputs:
                    if isinstance(out, _Unreadable):
                        raise out.error
                return outputs
            elif node.op == "get_attr":
                self.fail(node, "a tensor the forward reads besides its arguments (a constant of the equations "
                                "must be a number)")
            elif node.op != "placeholder":
                self.fail(node, f"a graph node of kind {node.op!r}")
        raise AssertionError("a graph without output")

    def check_shape(self, node, value) -> None:
        val = node.meta.get("val")
        if isinstance(value, list) or val is None:
            return
        form = blocks_of(val.shape)
        if form is None:
            self.fail(node, f"a value of shape {tuple(val.shape)} (traced at B={TRACE_B}, H={TRACE_H}), "
                            f"which is not (B, k*H), (k*H,) or a scalar")
        n, broadcast = form
        if not value.broadcast and len(value.ids) != n and not broadcast:
            raise AssertionError(f"{node.format_node()}: read as {len(value.ids)} blocks, shape says {n}")

    # ---- arguments ----------------------------------------------------------------------------------
    def value(self, arg, env) -> Blocks:
        if isinstance(arg, torch.fx.Node):
            return env[arg]
        if isinstance(arg, (bool, int, float)):
            return Blocks((self.step.const(arg),), broadcast=True)
        self.fail(None, f"an argument {arg!r}")

    def elementwise(self, node, op: str, *values: Blocks) -> Blocks:
        """``op`` blockwise; a broadcast value meets every block. Per-row gradient terms (summed values)
        pass only through operands an op is linear in, with the others the same for every row."""
        sized = [v for v in values if not v.broadcast]
        n = len(sized[0].ids) if sized else 1
        if any(len(v.ids) != n for v in sized):
            self.fail(node, "operands with different numbers of blocks")
        summed = any(v.summed for v in values)
        if summed and not self.linear(op, values):
            self.fail(node, f"{op} of a vector's gradient terms that is not linear in them")
        ids = tuple(self.step.apply(op, *(v.ids[0] if v.broadcast else v.ids[b] for v in values)) for b in range(n))
        return Blocks(ids, broadcast=not sized, summed=summed)

    def linear(self, op: str, values: tuple[Blocks, ...]) -> bool:
        """Whether ``op`` maps the per-row terms of its summed operands to per-row terms of its result:
        a sum or difference of terms (or zeros), a where between them on a condition the same for every
        row, or one term times (or over) a value the same for every row."""
        summed = [i for i, v in enumerate(values) if v.summed]
        if any(i not in OPS[op].linear_in for i in summed):
            return False
        if op in ("add", "sub", "where"):
            terms = values[1:] if op == "where" else values
            if any(not v.summed and not self.is_zero(v) for v in terms):
                return False
            return op != "where" or not self.per_row(values[0])
        return len(summed) == 1 and not any(self.per_row(v) for i, v in enumerate(values) if i not in summed)

    def is_zero(self, value: Blocks) -> bool:
        return all(self.step.is_zero(i) for i in value.ids)

    def per_row(self, value: Blocks) -> bool:
        return value.summed or any(self.step.nodes[i].varies == "row" for i in value.ids)

    # ---- the ATen ops -------------------------------------------------------------------------------
    UNARY = {"neg": "neg", "exp": "exp", "expm1": "expm1", "log": "log", "log1p": "log1p", "sigmoid": "sigmoid",
             "tanh": "tanh", "relu": "relu", "abs": "abs", "sqrt": "sqrt", "rsqrt": "rsqrt",
             "reciprocal": "reciprocal", "sign": "sign", "sgn": "sign", "erf": "erf", "logical_not": "not"}
    BINARY = {"add": "add", "sub": "sub", "mul": "mul", "div": "div", "maximum": "maximum", "minimum": "minimum",
              "eq": "eq", "ne": "ne", "lt": "lt", "le": "le", "gt": "gt", "ge": "ge", "logical_and": "and",
              "logical_or": "or", "sigmoid_backward": "sigmoid_backward", "tanh_backward": "tanh_backward"}
    SAME = {"clone", "detach", "alias", "contiguous", "lift_fresh_copy", "view", "_unsafe_view", "reshape",
            "expand", "unsqueeze", "squeeze", "view_as", "expand_as"}
    FILLS = {"new_zeros": 0.0, "zeros_like": 0.0, "zeros": 0.0, "new_ones": 1.0, "ones_like": 1.0, "ones": 1.0}

    def call(self, node, env):
        target = node.target
        unreadable = [env[a] for a in node.all_input_nodes if isinstance(env.get(a), _Unreadable)]
        if unreadable and not self.is_product(target):
            raise unreadable[0].error
        if target is operator.getitem:
            return env[node.args[0]][node.args[1]]
        if not isinstance(target, torch._ops.OpOverload) or target.namespace != "aten":
            self.fail(node, f"{target} is not an ATen op")
        name, overload = target.overloadpacket.__name__, target._overloadname
        args, kwargs = node.args, node.kwargs
        v = lambda i: self.value(args[i], env)  # noqa: E731
        if name in self.UNARY:
            return self.elementwise(node, self.UNARY[name], v(0))
        if name in ("bitwise_not",) and self._is_bool(args[0]):
            return self.elementwise(node, "not", v(0))
        if name in ("bitwise_and", "bitwise_or") and self._is_bool(args[0]):
            return self.elementwise(node, "and" if name == "bitwise_and" else "or", v(0), v(1))
        if name in ("add", "sub") and len(args) + len(kwargs) > 2:
            alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
            scaled = self.elementwise(node, "mul", v(1), self.value(alpha, env))
            return self.elementwise(node, name, v(0), scaled)
        if name == "div" and (kwargs.get("rounding_mode") is not None or "mode" in overload):
            self.fail(node, "a division with rounding")
        if name in self.BINARY:
            return self.elementwise(node, self.BINARY[name], v(0), v(1))
        if name == "rsub":
            return self.elementwise(node, "sub", v(1), v(0))
        if name == "where" and overload == "self":
            return self.elementwise(node, "where", v(0), v(1), v(2))
        if name == "masked_fill":
            return self.elementwise(node, "where", v(1), v(2), v(0))
        if name == "threshold_backward":  # grad where x > threshold, else 0
            return self.elementwise(node, "where", self.elementwise(node, "le", v(1), v(2)),
                                    self.value(0.0, env), v(0))
        if name in ("clamp", "clamp_min", "clamp_max", "hardtanh"):
            return self.clamp(node, env, name)
        if name == "pow" and overload == "Tensor_Scalar":
            return self.power(node, v(0), args[1])
        if name in self.SAME or (name == "squeeze" and overload in ("dim", "dims")):
            return self.same(node, env)
        if name in ("_to_copy", "to", "type_as", "_to_dtype"):
            return self.convert(node, env)
        if name in self.FILLS:
            return self.fill(node, self.FILLS[name])
        if name in ("full", "new_full", "full_like", "scalar_tensor", "fill"):
            value = args[-1] if name in ("full", "new_full", "fill") else args[1] if name == "full_like" else args[0]
            if isinstance(value, torch.fx.Node):
                self.fail(node, f"{name} with a tensor value")
            return self.fill(node, value)
        if name in ("split", "split_with_sizes", "chunk", "unsafe_split", "unsafe_split_with_sizes"):
            return self.split(node, env, name)
        if name == "slice":
            return self.slice(node, env)
        if name == "slice_backward":
            return self.slice_backward(node, env)
        if name == "cat":
            return self.cat(node, env)
        if name == "sum" and overload == "dim_IntList":
            return self.batch_sum(node, env)
        if self.is_product(target):
            self.fail(node, f"a matrix product ({target}): a cell's products are the scan's, z = ... + h W_hh^T")
        if name in ("sum", "mean", "amax", "amin", "var", "std", "prod", "cumsum", "max", "min", "softmax",
                    "_softmax", "native_layer_norm", "logsumexp", "norm", "linalg_vector_norm"):
            self.fail(node, f"a reduction ({target}) other than the gradient's sum over the batch")
        self.fail(node, f"{target} is outside the ops seqtorch generates code for "
                        f"(supported: {', '.join(sorted(OPS))} and the ATen ops that map to them)")

    @staticmethod
    def is_product(target) -> bool:
        return isinstance(target, torch._ops.OpOverload) and target.overloadpacket.__name__ in (
            "mm", "addmm", "bmm", "matmul", "linear", "mv", "dot", "baddbmm", "addmv")

    def _is_bool(self, arg) -> bool:
        val = arg.meta.get("val") if isinstance(arg, torch.fx.Node) else None
        return val is not None and val.dtype == torch.bool

    def last_dim(self, node, dim: int, rank: int) -> None:
        if dim not in (-1, rank - 1):
            self.fail(node, f"a split, slice or cat along dim {dim}, not the hidden units' (the last)")

    def rank(self, arg) -> int:
        return len(arg.meta["val"].shape)

    def same(self, node, env) -> Blocks:
        value = env[node.args[0]]
        form = blocks_of(node.meta["val"].shape)
        if form is None:
            self.fail(node, f"a value of shape {tuple(node.meta['val'].shape)}")
        n, broadcast = form
        if value.broadcast and not broadcast:
            return Blocks(value.ids * n, summed=value.summed)
        if len(value.ids) != n and not broadcast:
            self.fail(node, "a view that moves values between column blocks")
        return value

    def convert(self, node, env) -> Blocks:
        value, dtype = env[node.args[0]], node.meta["val"].dtype
        src = node.args[0].meta["val"].dtype
        if dtype.is_floating_point and src.is_floating_point:
            return value
        if dtype.is_floating_point and src == torch.bool:
            return self.elementwise(node, "float", value)
        if dtype == torch.bool and src.is_floating_point:
            return self.elementwise(node, "ne", value, self.value(0.0, env))
        if dtype == src:
            return value
        self.fail(node, f"a conversion from {src} to {dtype}")

    def fill(self, node, value) -> Blocks:
        if isinstance(value, bool) or node.meta["val"].dtype == torch.bool:
            const = self.step.const(bool(value))
        else:
            const = self.step.const(float(value))
        form = blocks_of(node.meta["val"].shape)
        if form is None:
            self.fail(node, f"a value of shape {tuple(node.meta['val'].shape)}")
        n, broadcast = form
        return Blocks((const,) if broadcast else (const,) * n, broadcast=broadcast)

    def clamp(self, node, env, name: str) -> Blocks:
        args = node.args
        x = self.value(args[0], env)
        if name == "clamp_min":
            low, high = args[1], None
        elif name == "clamp_max":
            low, high = None, args[1]
        elif name == "hardtanh":
            low, high = (args[1] if len(args) > 1 else -1.0), (args[2] if len(args) > 2 else 1.0)
        else:
            low = args[1] if len(args) > 1 else node.kwargs.get("min")
            high = args[2] if len(args) > 2 else node.kwargs.get("max")
        # torch.clamp: x below low is low, above high is high, NaN stays NaN
        if low is not None:
            low_v = self.value(low, env)
            x = self.elementwise(node, "where", self.elementwise(node, "lt", x, low_v), low_v, x)
        if high is not None:
            high_v = self.value(high, env)
            x = self.elementwise(node, "where", self.elementwise(node, "gt", x, high_v), high_v, x)
        return x

    def power(self, node, x: Blocks, exponent) -> Blocks:
        if exponent == 0.5:
            return self.elementwise(node, "sqrt", x)
        if exponent == -0.5:
            return self.elementwise(node, "rsqrt", x)
        if float(exponent) != int(exponent) or abs(int(exponent)) > 8:
            self.fail(node, f"a power {exponent} (integers up to 8 and +-0.5 are supported)")
        n = int(exponent)
        if n == 0:  # torch: x ** 0 is 1, NaN included
            return Blocks((self.step.const(1.0),) * len(x.ids), broadcast=x.broadcast)
        result = x
        for _ in range(abs(n) - 1):
            result = self.elementwise(node, "mul", result, x)
        return self.elementwise(node, "reciprocal", result) if n < 0 else result

    def split(self, node, env, name: str) -> list[Blocks]:
        value = env[node.args[0]]
        rank = self.rank(node.args[0])
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        self.last_dim(node, dim, rank)
        pieces = node.meta["val"]
        out, start = [], 0
        for piece in pieces:
            n = int(piece.shape[-1])
            if n % TRACE_H:
                self.fail(node, f"a split into pieces of {n} of the traced H={TRACE_H} units (not whole blocks)")
            count = n // TRACE_H
            out.append(Blocks(value.ids[start:start + count], summed=value.summed))
            start += count
        return out

    def slice(self, node, env) -> Blocks:
        value = env[node.args[0]]
        rank = self.rank(node.args[0])
        dim = node.args[1] if len(node.args) > 1 else 0
        width = len(value.ids) * TRACE_H
        start = node.args[2] if len(node.args) > 2 else 0
        end = node.args[3] if len(node.args) > 3 else width
        step = node.args[4] if len(node.args) > 4 else 1
        if dim in (0, -rank) and rank == 2:  # rows: all of them (a view), else refused
            if (start or 0) == 0 and (end is None or end >= TRACE_B) and step == 1:
                return value
            self.fail(node, "a slice of the batch rows")
        self.last_dim(node, dim, rank)
        start, end = max(0, min(start or 0, width)), max(0, min(width if end is None else end, width))
        if step != 1 or start % TRACE_H or end % TRACE_H:
            self.fail(node, f"a slice [{start}:{end}:{step}] of the traced H={TRACE_H} units (not whole blocks)")
        return Blocks(value.ids[start // TRACE_H:end // TRACE_H], summed=value.summed)

    def slice_backward(self, node, env) -> Blocks:
        """The gradient of a slice: its blocks in place, zeros elsewhere."""
        grad, sizes, dim, start, end, step = (env[node.args[0]], *node.args[1:6])
        self.last_dim(node, dim, len(sizes))
        width = int(sizes[-1])
        start, end = max(0, min(start, width)), max(0, min(end, width))
        if step != 1 or start % TRACE_H or end % TRACE_H or width % TRACE_H:
            self.fail(node, f"a slice [{start}:{end}:{step}] of the traced H={TRACE_H} units (not whole blocks)")
        ids = [self.step.const(0.0)] * (width // TRACE_H)
        ids[start // TRACE_H:end // TRACE_H] = _spread(grad, (end - start) // TRACE_H)
        return Blocks(tuple(ids), summed=grad.summed)

    def cat(self, node, env) -> Blocks:
        parts = [env[p] for p in node.args[0]]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        self.last_dim(node, dim, self.rank(node.args[0][0]))
        if len({p.summed for p in parts}) > 1:
            self.fail(node, "a cat of a vector's gradient terms with other values")
        return Blocks(tuple(i for p in parts for i in p.ids), summed=parts[0].summed)

    def batch_sum(self, node, env) -> Blocks:
        value = env[node.args[0]]
        rank = self.rank(node.args[0])
        dims = [d % rank for d in node.args[1]]
        if rank != 2 or dims != [0] or value.summed:
            self.fail(node, f"a sum over dims {list(node.args[1])} (only a vector's gradient, the sum over "
                            f"the batch, is supported)")
        return Blocks(value.ids, broadcast=value.broadcast, summed=True)
