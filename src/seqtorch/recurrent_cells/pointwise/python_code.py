"""The Python loop's pointwise code of a :class:`~seqtorch.PointwiseCell`, written from its :class:`~.ir.Step`.

The traced graphs, normalized into the IR, as two plain functions of torch ops on one step's rows
(``(B, H)`` column blocks, ``(H,)`` vectors): ``forward`` writes the new states and the saved slots,
``backward`` the input's gradient, each vector's per-row gradient terms, and returns the gradient of each
state as read. The IR rather than the raw backward graph, because the graph sums a vector's gradient over
the batch inside each step, and the scan's contract wants the per-row terms (its weight gradients are
sums over all steps at once, :meth:`~seqtorch.recurrent_cells.base.Cell.weight_grads`).

The ops are those of the reference's autograd (``sigmoid_backward`` is ATen's ``g * (1 - y) * y``), so
the loop equals the reference to rounding.
"""

from __future__ import annotations

import math

from .ir import Step

_OPS = {
    "add": "({0} + {1})", "sub": "({0} - {1})", "mul": "({0} * {1})", "div": "({0} / {1})", "neg": "(-{0})",
    "exp": "torch.exp({0})", "expm1": "torch.expm1({0})", "log": "torch.log({0})", "log1p": "torch.log1p({0})",
    "sigmoid": "torch.sigmoid({0})", "tanh": "torch.tanh({0})", "relu": "torch.relu({0})", "abs": "torch.abs({0})",
    "sign": "torch.sign({0})", "sqrt": "torch.sqrt({0})", "rsqrt": "torch.rsqrt({0})",
    "reciprocal": "torch.reciprocal({0})", "erf": "torch.erf({0})",
    "sigmoid_backward": "({0} * (1 - {1}) * {1})", "tanh_backward": "({0} * (1 - {1} * {1}))",
    "eq": "({0} == {1})", "ne": "({0} != {1})", "lt": "({0} < {1})", "le": "({0} <= {1})", "gt": "({0} > {1})",
    "ge": "({0} >= {1})", "not": "torch.logical_not({0})", "and": "({0} & {1})", "or": "({0} | {1})",
    "where": "torch.where({0}, {1}, {2})",
    "maximum": "torch.maximum({0}, {1})", "minimum": "torch.minimum({0}, {1})",
}
# maximum/minimum with a number: torch's clamp, which keeps NaN as they do
_WITH_NUMBER = {"maximum": ("torch.clamp_min({0}, {1})", "torch.clamp_min({1}, {0})"),
                "minimum": ("torch.clamp_max({0}, {1})", "torch.clamp_max({1}, {0})")}


def _number(value) -> str:
    if isinstance(value, bool):
        return repr(value)
    if math.isnan(value):
        return "math.nan"
    if math.isinf(value):
        return "math.inf" if value > 0 else "-math.inf"
    return repr(float(value))


def _block(name: str, index: int) -> str:
    return f"{name}[:, {index} * H:{index + 1} * H]"


def _load(source: str, index: int, dtype: str) -> str:
    if source in ("z", "zx", "zh"):
        return _block(source, index)
    if source == "state":
        return f"states[{index}]"
    if source == "vector":
        return f"vectors[{index}]"
    if source == "dnext":
        return f"d_next[{index}]"
    assert source == "saved"
    return f"({_block('saved', index)} != 0)" if dtype == "bool" else _block("saved", index)


class _Writer:
    def __init__(self, step: Step) -> None:
        self.step, self.lines, self.names = step, [], {}

    def expr(self, index: int) -> str:
        return self.names[index]

    def compute(self, roots) -> None:
        for index in self.step.order(roots):
            node = self.step.nodes[index]
            if node.op == "const":
                self.names[index] = _number(node.args[0])
                continue
            if node.op == "load":
                text = _load(*node.args, node.dtype)
            else:
                args = [self.names[a] for a in node.args]
                consts = [self.step.nodes[a].op == "const" for a in node.args]
                if node.op in _WITH_NUMBER and any(consts):
                    text = _WITH_NUMBER[node.op][consts[0]].format(*args)
                elif node.op in ("where", "float") and all(consts[-2:]) or node.op == "float":
                    # numbers alone make a tensor of torch's default dtype: in the step's dtype instead
                    picks = args[1:] if node.op == "where" else ["1.0", "0.0"]
                    text = f"torch.where({args[0]}, like.new_tensor({picks[0]}), like.new_tensor({picks[1]}))"
                else:
                    text = _OPS[node.op].format(*args)
            self.names[index] = f"v{index}"
            self.lines.append(f"    v{index} = {text}")

    def store(self, target: str, index: int | None) -> None:
        """``target`` (a view to write) = node ``index``, or zeros when None."""
        if index is None:
            self.lines.append(f"    {target}.zero_()")
        elif self.step.nodes[index].op == "const":
            self.lines.append(f"    {target}.fill_({self.names[index]})")
        else:
            self.lines.append(f"    {target}.copy_({self.names[index]})")


def source(step: Step, name: str, inputs: str, gates: int, states: int, vectors: int) -> str:
    """The module's text: ``forward(H, gx, product, bias, states, vectors, next, saved)`` and
    ``backward(H, states, vectors, saved, d_next, dgx, dzh, dvectors) -> d_prev``."""
    lines = [f'"""The Python loop\'s pointwise code of cell {name}, generated by seqtorch from its equations',
             '(seqtorch/recurrent_cells/pointwise/python_code.py). Blocks of H columns; v<n> is node n of its IR."""',
             "", "import math", "", "import torch", "", "",
             "def forward(H, gx, product, bias, states, vectors, next, saved):"]
    fw = _Writer(step)
    fw.lines.append("    like = gx")
    if inputs == "joint":
        fw.lines.append("    z = gx + product if bias is None else gx + product + bias")
    else:
        fw.lines += ["    zx = gx", "    zh = product if bias is None else product + bias"]
    fw.compute(step.forward.values())
    for k in range(states):
        fw.store(f"next[{k}]", step.forward[("next", k)])
    for s in range(step.saved_slots):
        fw.store(_block("saved", s), step.forward[("saved", s)])
    lines += fw.lines + ["", "", "def backward(H, states, vectors, saved, d_next, dgx, dzh, dvectors):"]

    bw = _Writer(step)
    bw.lines.append("    like = d_next[0]")
    bw.compute(step.backward.values())
    targets = [("dz", "dgx")] if inputs == "joint" else [("dzx", "dgx"), ("dzh", "dzh")]
    for target, buffer in targets:
        for b in range(gates):
            bw.store(_block(buffer, b), step.backward.get((target, b)))
    for v in range(vectors):
        bw.store(_block("dvectors", v), step.backward.get(("dvector", v)))
    returned, fresh = [], set()
    for k in range(states):
        index = step.backward.get(("dprev", k))
        if index is None:
            returned.append("None")
        elif step.nodes[index].op == "const":
            returned.append(f"torch.full_like(states[{k}], {bw.names[index]})")
        elif step.nodes[index].op not in ("load", "const") and step.nodes[index].varies == "row" \
                and index not in fresh:
            fresh.add(index)  # a tensor of its own, which the loop may update in place
            returned.append(bw.names[index])
        else:
            returned.append(f"torch.empty_like(states[{k}]).copy_({bw.names[index]})")
    bw.lines.append(f"    return [{', '.join(returned)}]")
    return "\n".join(lines + bw.lines) + "\n"
