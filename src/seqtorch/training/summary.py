"""A Keras-style ``model.summary()``: layers, output shapes and parameter counts, from one batch.

Output shapes come from forward hooks during one forward pass on an example batch, so they are
the real shapes for that batch (the batch size is shown, where Keras prints ``None``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .tasks import Task


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def format_shapes(value: Any) -> str:
    """Shapes of a (nested) module output: ``(32, 500, 16)``, ``[(32, 500, 16), (1, 32, 16)]``."""
    if isinstance(value, Tensor):
        return str(tuple(value.shape))
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(format_shapes(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_shapes(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "data") and isinstance(getattr(value, "data"), Tensor):
        # PackedSequence and similar wrappers: show the packed data's shape.
        return f"{type(value).__name__}{format_shapes(value.data)}"
    return type(value).__name__


# Modules that hold others but have no forward of their own: listed without a shape, their members below.
_CONTAINERS = (nn.ModuleList, nn.ModuleDict)


def _rows(module: nn.Module, prefix: str, depth: int):
    """``(name, module)`` of the submodules ``depth`` levels down; a container's members count as its level."""
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        yield full, child
        if isinstance(child, _CONTAINERS):
            yield from _rows(child, f"{full}.", depth)
        elif depth > 1:
            yield from _rows(child, f"{full}.", depth - 1)


def model_summary(model: nn.Module, task: Task, batch: Any, max_depth: int = 1) -> str:
    """Table of submodules up to ``max_depth`` levels below ``model``, their output shapes for
    ``batch`` and their parameter counts (each row counts its whole subtree), then the totals.
    The members of an ``nn.ModuleList``/``ModuleDict`` (which is never called itself) are listed
    under it, as Keras lists the layers of a model.

    The forward pass runs in eval mode under ``no_grad`` (no dropout, no autograd graph) and the
    model's training flag is restored afterwards. ``batch`` must already be on the model's
    device; it is handed to ``task.forward_batch`` as is.
    """
    if max_depth < 1:
        raise ValueError(f"max_depth must be >= 1, got {max_depth}")
    rows = list(_rows(model, "", max_depth))
    shapes: dict[str, str] = {}
    handles = []
    for name, mod in rows:
        def hook(_mod, _inp, out, name=name):
            shapes[name] = format_shapes(out)
        handles.append(mod.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output, target = task.forward_batch(model, batch)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()

    header = ("Layer (type)", "Output shape", "Param #")
    table = [header]
    for name, mod in rows:
        indent = "  " * name.count(".")
        n = sum(p.numel() for p in mod.parameters())
        shape = "" if isinstance(mod, _CONTAINERS) else shapes.get(name, "(not called)")
        table.append((f"{indent}{name} ({type(mod).__name__})", shape, f"{n:,}"))
    table.append((f"output ({type(model).__name__})", format_shapes(output), ""))
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    line = "=" * (sum(widths) + 4)

    def fmt(r):
        return f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}"

    total, trainable = count_parameters(model)
    lines = [f'Model: "{type(model).__name__}"', line, fmt(header), line]
    lines += [fmt(r) for r in table[1:]]
    lines += [
        line,
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
        f"(shapes for one batch of {target.shape[0]} examples)",
    ]
    return "\n".join(lines)
