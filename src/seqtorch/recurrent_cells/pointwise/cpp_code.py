"""The C++ loop's pointwise code of a :class:`~seqtorch.PointwiseCell`, written from its :class:`~.ir.Step`.

The header it writes is a cell struct in the ``cpu.h`` convention (``seqtorch/recurrent_cells/cpu_cell.h``
says what a cell provides), as the hand-written ones are: ``forward``/``backward`` hand one batch row's
pointers to a ``forward_row``/``backward_row`` whose pointers are ``__restrict`` parameters (GCC
vectorizes only then), and each row function is one loop over the H columns in which every IR node is one
``const`` scalar. The math is that of ``cpu_math.h`` (``sigmoid``, ``tanh_``) and ``cpu_pointwise_math.h``
(``exp_``, ``log_``, ...), branch-free, so the loop vectorizes. :mod:`seqtorch.ops.native_cells` compiles it.

Buffers (the spec's, :class:`~seqtorch.PointwiseCell`): weights ``W_hh, b_hh`` then the vectors; saved
buffer ``S`` holds the saved values, H columns each; gradient buffers ``dP0`` (the gradient of zh,
``inputs="separate"`` only) and ``DV`` (the vectors' per-row gradient terms, H columns each). The header
carries the cell's slot struct (:func:`seqtorch.recurrent_cells.cpu_slots.struct`, from the spec's buffer
names), so the code reads them by name, ``r.saved[Saved::S]``, as a hand-written cell does.
"""

from __future__ import annotations

import textwrap

from .. import cpu_slots
from .ir import OPS, Emitter, Spelling, Step

MAX_STATES = 4   # cpu_cell.h's kMaxStates
MAX_VECTORS = 4  # cpu_cell.h's kMaxWeights (6) less W_hh and b_hh

# a bool as a number: a select (GCC does not vectorize a loop that converts a bool with T(b))
_AS_NUMBER = "({} ? T(1) : T(0))"


def limits(states: int, vectors: int) -> str | None:
    """Why the C++ loop cannot take a cell of this many states and vectors, or None."""
    if states > MAX_STATES or vectors > MAX_VECTORS:
        return (f"the C++ loop takes at most {MAX_STATES} states and {MAX_VECTORS} vectors "
                f"(this cell has {states} and {vectors})")
    return None


def _at(block: int) -> str:
    return "j" if block == 0 else f"{block} * H + j" if block > 1 else "H + j"


def _offset(block: int) -> str:
    """Where block ``block`` of a row starts, at the call site (H is ``r.d.H`` there)."""
    return "r.d.H" if block == 1 else f"{block} * r.d.H"


class _Row(Emitter):
    """One row function: its pointer parameters (in order of first use) and its loop body."""

    spelling = Spelling("true", "false", "std::numeric_limits<T>::quiet_NaN()", "std::numeric_limits<T>::infinity()",
                        "T({!r})")

    def __init__(self, step: Step, inputs: str, state_names, vector_names) -> None:
        super().__init__(step)
        self.inputs, self.states, self.vectors = inputs, state_names, vector_names
        self.params: dict[str, tuple[str, bool]] = {}  # parameter -> (the row's field it takes, const)
        self.body: list[str] = []

    def pointer(self, name: str, field: str, const: bool = True) -> str:
        self.params.setdefault(name, (field, const))
        return name

    def load(self, source: str, index: int, dtype: str) -> str:
        at = _at(index)
        if source == "z":
            gx, gh, b = self.pointer("gx", "r.gx"), self.pointer("gh", "r.product"), self.pointer("b_hh", "r.weights[1]")
            return f"{gx}[{at}] + {b}[{at}] + {gh}[{at}]"
        if source == "zx":
            return f"{self.pointer('gx', 'r.gx')}[{at}]"
        if source == "zh":
            return f"{self.pointer('gh', 'r.product')}[{at}] + {self.pointer('b_hh', 'r.weights[1]')}[{at}]"
        if source == "state":
            return f"{self.pointer(f'prev_{self.states[index]}', f'r.prev[{index}]')}[j]"
        if source == "vector":
            return f"{self.pointer(f'vec_{self.vectors[index]}', f'r.weights[{2 + index}]')}[j]"
        if source == "dnext":
            return f"{self.pointer(f'dnext_{self.states[index]}', f'r.d_next[{index}]')}[j]"
        assert source == "saved"
        value = f"{self.pointer('saved', 'r.saved[Saved::S]')}[{at}]"
        return f"{value} != T(0)" if dtype == "bool" else value

    def scalar(self, source: str, index: int) -> str:
        """A load's variable: s_<state>, p_<vector>, d_<state> (the new state's gradient), z0, zh1, saved2."""
        if source in ("state", "dnext"):
            return f"{'s' if source == 'state' else 'd'}_{self.states[index]}"
        return f"p_{self.vectors[index]}" if source == "vector" else f"{source}{index}"

    def op(self, node, args: list[str]) -> str:
        if node.dtype == "float" and node.op not in ("where", "float"):
            args = [_AS_NUMBER.format(a) if self.step.nodes[i].dtype == "bool" else a for a, i in zip(args, node.args)]
        return OPS[node.op].cpp.format(*args)

    def declare(self, index: int, node, text: str) -> str:
        name = self.scalar(*node.args) if node.op == "load" else f"v{index}"
        self.body.append(f"      const {'bool' if node.dtype == 'bool' else 'T'} {name} = {text};")
        return name

    def store(self, pointer: str, field: str, block: int | None, index: int | None) -> None:
        """``pointer[j]`` (block None: a state's row) or block ``block`` of a buffer's row = node ``index``
        (zero when None). Each block is a pointer of its own: GCC would check every pair of blocks of one
        pointer for overlap at run time, and leaves a loop with more than 10 such pairs unvectorized."""
        if block is not None:
            pointer, field = f"{pointer}{block}", field if block == 0 else f"{field} + {_offset(block)}"
        out = self.pointer(pointer, field, const=False)
        if index is None:
            value = "T(0)"
        else:
            value = self.names[index]
            value = _AS_NUMBER.format(value) if self.step.nodes[index].dtype == "bool" else value
        self.body.append(f"      {out}[j] = {value};")

    def function(self, name: str) -> tuple[list[str], str]:
        """The row function's text, and the call that hands it a row's pointers."""
        params = ["int64_t H"] + [f"{'const ' if const else ''}T* __restrict {p}" for p, (_, const) in self.params.items()]
        head = _wrap(f"  static void {name}(", params, ") {")
        lines = ["  template <typename T>", *head, "    for (int64_t j = 0; j < H; ++j) {", *self.body, "    }", "  }"]
        call = _wrap(f"    {name}<T>(", ["r.d.H"] + [field for field, _ in self.params.values()], ");")
        return lines, call


def _wrap(head: str, items: list[str], tail: str, width: int = 120) -> list[str]:
    """``head item, item, ... tail`` in lines of at most ``width``, continued under the first item."""
    lines, line = [], head
    for i, item in enumerate(items):
        piece = item + (", " if i + 1 < len(items) else tail)
        if len(line) + len(piece.rstrip()) > width and line.strip() != head.strip():
            lines.append(line.rstrip())
            line = " " * len(head) + piece
        else:
            line += piece
    return lines + [line]


def source(step: Step, name: str, inputs: str, gates: int, states: tuple[str, ...], vectors: tuple[str, ...],
           saved: list[str], grads: list[str]) -> str:
    """The header of cell ``name`` (a struct of that name in ``seqtorch_cpu::cells``); saved and grads: its
    spec's buffer names (``["S"]``; ``dP0`` and ``DV``, each where the cell has one)."""
    K, V = len(states), len(vectors)
    fw = _Row(step, inputs, states, vectors)
    fw.compute(step.forward.values())
    for k, state in enumerate(states):
        fw.store(f"next_{state}", f"r.next[{k}]", None, step.forward[("next", k)])
    for s in range(step.saved_slots):
        fw.store("saved_out", "r.saved[Saved::S]", s, step.forward[("saved", s)])
    bw = _Row(step, inputs, states, vectors)
    bw.compute(step.backward.values())
    targets = [("dz", "dgx", "r.dgx")] if inputs == "joint" else [("dzx", "dgx", "r.dgx"),
                                                                   ("dzh", "dzh", "r.grads[Grad::dP0]")]
    for target, pointer, field in targets:
        for b in range(gates):
            bw.store(pointer, field, b, step.backward.get((target, b)))
    for v in range(V):
        bw.store("dvector", "r.grads[Grad::DV]", v, step.backward.get(("dvector", v)))
    for k, state in enumerate(states):
        bw.store(f"dprev_{state}", f"r.d_prev[{k}]", None, step.backward.get(("dprev", k)))
    fw_lines, fw_call = fw.function("forward_row")
    bw_lines, bw_call = bw.function("backward_row")
    summary = (f"Inputs {inputs}, {gates} gate blocks, states {', '.join(states)}; weights W_hh, b_hh"
               f"{''.join(', ' + v for v in vectors)}; saved S: {step.saved_slots} slots of H; gradient buffers: "
               f"{', '.join(grads) or 'none'}. v<n> is node n of its IR.")

    saved_width = f"{step.saved_slots} * d.H" if step.saved_slots else "0"
    widths = {"dP0": f"{gates} * d.H", "DV": f"{V} * d.H"}
    grad_width = " : ".join(f"j == Grad::{g} ? {widths[g]}" for g in grads[:-1]) + \
        (" : " if len(grads) > 1 else "") + (widths[grads[-1]] if grads else "0")
    lines = [
        f"// Cell {name}: the C++ loop's pointwise code (seqtorch/recurrent_cells/cpu_cell.h says what a",
        "// cell provides), generated by seqtorch from its equations (seqtorch/recurrent_cells/pointwise/cpp_code.py).",
        *textwrap.wrap(summary, 117, initial_indent="// ", subsequent_indent="// "),
        "#pragma once", "", "#include <array>", "#include <limits>", "", '#include "cpu_cell.h"',
        '#include "cpu_pointwise_math.h"', "", "namespace seqtorch_cpu::cells {", "",
        cpu_slots.struct(name, saved, grads), "", f"struct {name} : {name}_slots {{",
        f"  static constexpr int kGates = {gates}, kStates = {K};",
        "  static constexpr std::array<Product, 1> kProducts{{{0, 0, -1, ProductInput::kHIn}}};",
        f"  static constexpr std::array<int, 1> kProductGrad{{{{{'Grad::dP0' if inputs == 'separate' else -1}}}}};",
        "  static constexpr bool kWritesDHIn = false, kUsesGate = false, kUsesActivation = false;", "",
        "  static int64_t state_width(int, Dims d) { return d.H; }",
        "  static int64_t u_width(Dims) { return 0; }",
        f"  static int64_t saved_width(int, Dims d, bool) {{ return {saved_width}; }}",
        f"  static int64_t grad_width(int{' j' if len(grads) > 1 else ''}, Dims{' d' if grads else ''}) "
        f"{{ return {grad_width}; }}", "",
        "  template <typename T, class A>", "  static void forward(int, const ForwardRow<T>& r) {", *fw_call, "  }",
        "", "  template <typename T, class A>", "  static void backward(int, const BackwardRow<T>& r) {",
        *bw_call, "  }", "", *fw_lines, "", *bw_lines, "};", "", "}  // namespace seqtorch_cpu::cells", ""]
    return "\n".join(lines)
