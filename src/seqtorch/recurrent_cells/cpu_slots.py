"""The generated part of the C++ cell interface: each cell's buffer slots by name, from its spec.

A cell's C++ code (``<cell>/cpu.h``, or the header :mod:`.pointwise.cpp_code` writes) finds the rows of its
saved and gradient buffers in ``ForwardRow::saved`` and ``BackwardRow::grads`` (``cpu_cell.h``), in the order
its spec declares them (:meth:`Cell.saved <.base.Cell.saved>`, :meth:`Cell.grad_buffers
<.base.Cell.grad_buffers>`), which is the order every backend hands them over. Their names are written once,
in the spec; this module turns them into a C++ struct per cell, ``<cell>_slots``, that the cell's struct
derives from::

    struct lstm_slots {
      struct Saved { enum : int { A = 0, TC = 1, PRE = 2 }; };
      struct Grad {};
      static constexpr int kSaved = 3, kGradBuffers = 0;
    };

    struct lstm : lstm_slots { ... r.saved[Saved::A] ... };

So a C++ cell reads ``r.saved[Saved::A]`` as a Triton cell reads ``saved[A]`` (:func:`.triton_math.slots`), its
buffer counts are its spec's, and a slot the spec does not name fails to compile. Each enumerator sits in the
scope of ``Saved`` or ``Grad``, so a slot named like a template parameter (``A``) or like a slot of the other
kind shadows nothing.

The C++ library's build writes the structs of the cells with a ``cpu.h`` into ``cell_slots.h`` (:func:`header`,
written and hashed into the library's name by :mod:`seqtorch.ops.native`: a renamed slot rebuilds it); a cell
generated from its equations carries its struct in its own header (:func:`struct`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .base import Cell

HEADER = "cell_slots.h"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _enum(kind: str, names: Sequence[str]) -> str:
    if not names:
        return f"  struct {kind} {{}};"
    values = ", ".join(f"{name} = {index}" for index, name in enumerate(names))
    return f"  struct {kind} {{\n    enum : int {{ {values} }};\n  }};"


def struct(name: str, saved: Sequence[str], grads: Sequence[str]) -> str:
    """The C++ struct ``<name>_slots``: ``Saved::<slot>`` and ``Grad::<slot>``, each buffer's index in the order
    given (the spec's), and ``kSaved``, ``kGradBuffers`` their counts, checked against the loops' limits."""
    bad = [slot for slot in (*saved, *grads) if not _IDENTIFIER.fullmatch(slot)]
    if bad:
        raise ValueError(f"cell {name}: buffer names {bad} are not C++ identifiers")
    return "\n".join([
        f"// {name}'s buffers, in its spec's order (Cell.saved, Cell.grad_buffers).",
        f"struct {name}_slots {{",
        _enum("Saved", saved),
        _enum("Grad", grads),
        f"  static constexpr int kSaved = {len(saved)}, kGradBuffers = {len(grads)};",
        "  static_assert(kSaved <= kMaxSaved && kGradBuffers <= kMaxGradBuffers,",
        f'                "{name}: more buffers than the C++ loops hold (cpu_cell.h)");',
        "};"])


def cell_struct(cell: Cell) -> str:
    """:func:`struct` of a registered cell, from its spec's buffer names."""
    return struct(cell.name, cell.saved_names(), cell.grad_buffer_names())


def header(cells: Sequence[Cell]) -> str:
    """``cell_slots.h``: the slot structs of ``cells`` (those with a ``cpu.h``), which their ``cpu.h`` includes."""
    lines = ["// Written by seqtorch from the cell registry (seqtorch/recurrent_cells/cpu_slots.py): do not edit.",
             "// Each cell's buffers by the names its spec gives them; its cpu.h derives its struct from <cell>_slots.",
             "#pragma once", "", '#include "cpu_cell.h"', "", "namespace seqtorch_cpu::cells {", ""]
    for cell in cells:
        lines += [cell_struct(cell), ""]
    return "\n".join(lines + ["}  // namespace seqtorch_cpu::cells", ""])
