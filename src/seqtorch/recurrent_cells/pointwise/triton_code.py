"""The Triton kernels' pointwise code of a :class:`~seqtorch.PointwiseCell`, written from its :class:`~.ir.Step`.

The module it writes is what a built-in cell's ``triton.py`` is (``recurrent_cells/triton_math.py`` says
how the kernels of :mod:`seqtorch.ops.triton` call it): ``forward`` and ``backward``, one step of one block
of batch rows on register tiles, in which every IR node is one tile expression (a (BLOCK_B, BLOCK_H) tile,
or a (1, BLOCK_H) row for what follows from the vectors alone), written from the Triton column of
:data:`.ir.OPS` and ``triton_math``'s helpers. Its buffers are found by the names the cell's spec gives
them, as the hand-written cells find theirs (``slots``): saved buffer ``S`` (the saved values, H columns
per slot), gradient buffers ``dP0`` (zh's gradient, ``inputs="separate"``) and ``DV`` (each vector's per-row
gradient terms, H columns each), the vectors among the kernels' ``extra`` weights by their names.

What the kernels hand over: block k of ``z`` is gx's block (``p_gx + k * H``) plus ``dot(b_hin, w[k]) +
b[k]`` (``zx`` the first alone, ``zh`` the rest); states 0 and 1 are the kernels' ``b_h``, ``b_c`` (in the
backward ``b_hp``, ``b_cp``, the states the step read), their gradients ``b_dh``, ``b_dc``. The backward
returns the gradient of h~ (the products', ``dot(dz_k, w[k])``), of h directly, and of c.

A cell's math need not map the kernels' zero padding (rows past B, columns past H) to zeros as the
hand-written cells' does (``sigmoid(0) = 0.5``; ``log(0) = -inf``), so what goes on to a product or to the
next step is zeroed outside the block (``in_block``); what is saved or is a gradient is zeroed on rows whose
step is invalid (``keep_valid``), as every cell does.

The kernels take at most :data:`MAX_STATES` states and :data:`MAX_GATES` gate blocks (:func:`limits`);
this module imports nothing of Triton (it is optional): :mod:`seqtorch.ops.triton.common` writes the source
to the cache and imports it from there, since Triton's ``jit`` reads a function's source from its file.
"""

from __future__ import annotations

import re
import textwrap

from .ir import OPS, Emitter, Spelling, Step

MAX_STATES = 2   # the interface's b_h and b_c (triton_math.py)
MAX_GATES = 4    # its w and b: four gate tiles of W_hh and rows of b_hh

_FORWARD = ("def forward(b_hin, b_h, b_c, p_gx, saved, p_u, w, b, extra, p_args, H, P, o_h, m_bh, b_valid,\n"
            "            ACC: tl.constexpr, SAVE: tl.constexpr, HAS_VALID: tl.constexpr, RELU: tl.constexpr,\n"
            "            GATE: tl.constexpr):")
_BACKWARD = ("def backward(b_dh, b_dc, b_hp, b_cp, b_hin, b_hnext, p_dgx, grads, saved, p_u, w, extra, p_args, H, P, "
             "o_h, m_bh,\n"
             "             b_valid, ACC: tl.constexpr, HAS_VALID: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr):")
_HELPERS = ("dot", "expm1", "in_block", "keep_valid", "load_row", "load_tile", "log1p", "sigmoid", "sign",
            "store_tile", "tanh")  # the triton_math functions the generated code may call


def limits(gates: int, states: int) -> str | None:
    """Why the Triton kernels cannot take a cell of this many gate blocks and states, or None."""
    if states > MAX_STATES or gates > MAX_GATES:
        return (f"the Triton kernels take at most {MAX_STATES} states (h, c) and {MAX_GATES} gate blocks "
                f"(this cell has {states} and {gates})")
    return None


def _at(pointer: str, block: int) -> str:
    """Block ``block`` of a row pointer: ``p``, ``p + H``, ``p + 2 * H``."""
    return pointer if block == 0 else f"{pointer} + H" if block == 1 else f"{pointer} + {block} * H"


class _Function(Emitter):
    """One function's body: a line per node, each a register tile (or row) of the step's math."""

    spelling = Spelling("True", "False", 'float("nan")', 'float("inf")')

    def __init__(self, step: Step, state_args: tuple[str, str], vectors: tuple[str, ...]) -> None:
        super().__init__(step)
        self.state_args, self.vectors = state_args, vectors
        self.lines: list[str] = []
        self.indent = "    "

    def load(self, source: str, index: int, dtype: str) -> str:
        if source in ("z", "zx"):
            gx = f"load_tile({_at('p_gx', index)}, m_bh, ACC)"
            return gx if source == "zx" else f"{gx} + dot(b_hin, w[{index}]) + b[{index}]"
        if source == "zh":
            return f"dot(b_hin, w[{index}]) + b[{index}]"
        if source == "state":
            return self.state_args[index]
        if source == "dnext":
            return ("b_dh", "b_dc")[index]
        if source == "vector":
            return f"load_row(extra[V_{self.vectors[index]}], 0, H, o_h, ACC)"
        assert source == "saved", source
        value = f"load_tile({_at('saved[S]', index)}, m_bh, ACC)"
        return f"{value} != 0.0" if dtype == "bool" else value

    def op(self, node, args: list[str]) -> str:
        nodes = [self.step.nodes[a] for a in node.args]
        if node.dtype == "float" and node.op != "float":
            # a bool in arithmetic (or as a float where's branch): a 0/1 select, as the C++ loop writes it
            operands = (1, 2) if node.op == "where" else range(len(args))
            args = [OPS["float"].triton.format(a) if i in operands and nodes[i].dtype == "bool" else a
                    for i, a in enumerate(args)]
        if node.op == "where" and all(n.op == "const" and n.dtype == "float" for n in nodes[1:]):
            # numbers alone make a float32 tile: the math dtype's instead (0.1 is not a float32)
            args[1] = f"tl.full((1, 1), {args[1]}, ACC)"
        return OPS[node.op].triton.format(*args)

    def declare(self, index: int, node, text: str) -> str:
        if node.op == "load" and node.args[0] in ("state", "dnext"):
            return text  # the kernels' argument itself
        if node.op == "load":
            source, k = node.args
            name = {"z": f"b_z{k}", "zx": f"b_zx{k}", "zh": f"b_zh{k}", "saved": f"b_s{k}"}.get(source) or \
                f"b_vec_{self.vectors[k]}"
        else:
            name = f"b_v{index}"
        self.line(f"{name} = {text}")
        return name

    def line(self, text: str) -> None:
        self.lines.append(self.indent + text)

    def tile(self, index: int | None) -> str:
        """Node ``index`` (None: zero) as a whole tile in the math dtype, zero outside the block."""
        if index is None:
            return "in_block(0.0, m_bh, ACC)"
        return f"in_block({self.value(index)}, m_bh, ACC)"

    def value(self, index: int) -> str:
        """Node ``index`` as a value to store: a bool as 0/1, a value not of every row as a whole tile."""
        node, name = self.step.nodes[index], self.names[index]
        if node.dtype == "bool":
            name = OPS["float"].triton.format(name)
        return name if node.varies == "row" else f"in_block({name}, m_bh, ACC)"

    def store(self, pointer: str, index: int | None) -> None:
        """A gradient or saved row block, zero on invalid rows (None: zeros)."""
        value = "in_block(0.0, m_bh, ACC)" if index is None else self.value(index)
        self.line(f"store_tile({pointer}, keep_valid({value}, b_valid, HAS_VALID), m_bh)")


def source(step: Step, name: str, inputs: str, gates: int, states: tuple[str, ...], vectors: tuple[str, ...]) -> str:
    """The module of cell ``name`` (its registered name): ``forward`` and ``backward`` as
    ``recurrent_cells/triton_math.py`` says, and the slots of its buffers and vectors by name."""
    K = len(states)
    assert limits(gates, K) is None, limits(gates, K)
    fw = _Function(step, ("b_h", "b_c"), vectors)
    # the new states first; the values only the backward needs, only when the forward saves
    fw.compute([step.forward[("next", k)] for k in range(K)])
    if step.saved_slots:
        fw.line("if SAVE:")
        fw.indent = "        "
        fw.compute([step.forward[("saved", s)] for s in range(step.saved_slots)])
        for s in range(step.saved_slots):
            fw.store(_at("saved[S]", s), step.forward[("saved", s)])
        fw.indent = "    "
    returned = [fw.tile(step.forward[("next", k)]) for k in range(K)] + ["b_c"] * (MAX_STATES - K)
    fw.line(f"return {', '.join(returned)}")

    bw = _Function(step, ("b_hp", "b_cp"), vectors)
    bw.compute(step.backward.values())
    products = []  # the gradient of each block of the product h~ W_hh^T + b_hh
    targets = [("dz", "p_dgx", True)] if inputs == "joint" else [("dzx", "p_dgx", False), ("dzh", "grads[DP0]", True)]
    for target, pointer, product in targets:
        for k in range(gates):
            index = step.backward.get((target, k))
            if not product:
                bw.store(_at(pointer, k), index)
                continue
            grad = f"b_d{target[1:]}{k}"
            bw.line(f"{grad} = keep_valid({bw.tile(index)}, b_valid, HAS_VALID)")
            bw.line(f"store_tile({_at(pointer, k)}, {grad}, m_bh)")
            if index is not None:
                products.append(f"dot({grad}, w[{k}])")
    for v in range(len(vectors)):
        bw.store(_at("grads[DV]", v), step.backward.get(("dvector", v)))
    d_states = [bw.tile(step.backward.get(("dprev", k))) for k in range(K)] + ["b_dc"] * (MAX_STATES - K)
    bw.line(f"b_dhin = {' + '.join(products) or 'in_block(0.0, m_bh, ACC)'}")
    bw.line(f"return b_dhin, {', '.join(d_states)}")

    grads = (["dP0"] if inputs == "separate" else []) + (["DV"] if vectors else [])
    slot_lines = ([_slots(["S"], "CELL.saved_names()", ["S"])] if step.saved_slots else []) + \
        ([_slots([g.upper() for g in grads], "CELL.grad_buffer_names()", grads)] if grads else []) + \
        ([_slots([f"V_{v}" for v in vectors], "extra_weights(CELL)", list(vectors))] if vectors else [])
    body = [_FORWARD, *fw.lines, "", "", _BACKWARD, *bw.lines]
    used = sorted(h for h in _HELPERS if re.search(rf"\b{h}\(", "\n".join(body)))
    used += ["slots"] + (["extra_weights"] if vectors else [])
    summary = (f"Inputs {inputs}, {gates} gate blocks, states {', '.join(states)}; vectors (extra weights V_<name>): "
               f"{', '.join(vectors) or 'none'}; saved S: {step.saved_slots} slots of H; gradient buffers: "
               f"{', '.join(grads) or 'none'}. b_v<n> is node n of its IR.")
    lines = [f'"""Cell {name}: the Triton kernels\' pointwise code (seqtorch/ops/triton/; the interface is',
             "seqtorch/recurrent_cells/triton_math.py's), generated by seqtorch from its equations",
             "(seqtorch/recurrent_cells/pointwise/triton_code.py).", "",
             *textwrap.wrap(summary, 116), '"""', "", "import triton.language as tl", "",
             "from seqtorch.recurrent_cells import get_cell",
             *_wrap_import("from seqtorch.recurrent_cells.triton_math import ", sorted(used)), "",
             f'CELL = get_cell("{name}")', *slot_lines, "", "", *body]
    return "\n".join(lines) + "\n"


def _slots(targets: list[str], names: str, wanted: list[str]) -> str:
    """``A, B = slots(names, "a", "b")``: the constexpr places of the names a spec gives its slots."""
    quoted = ", ".join('"' + w + '"' for w in wanted)
    left = f"({targets[0]},)" if len(targets) == 1 else ", ".join(targets)
    return f"{left} = slots({names}, {quoted})"


def _wrap_import(head: str, names: list[str], width: int = 116) -> list[str]:
    text = head + ", ".join(names)
    if len(text) <= width:
        return [text]
    wrapped = textwrap.wrap(", ".join(names), width - 4)
    return [head + "(", *("    " + line for line in wrapped), ")"]
