"""The recurrent cells, one folder each, and the registry that names them.

Adding a cell: a folder here with its spec (a :class:`~.base.Cell` subclass, see :mod:`.base` for what
it declares) and, where it has them, its C++ (``cpu.h``) and Triton (``triton.py``) pointwise code; then
one line in :data:`CELLS`. The scans of :mod:`seqtorch.ops` and the layers find it there.

A cell written as its equations (:class:`~.pointwise.PointwiseCell`, its code generated) registers itself
when it is made (:func:`register`), under its class name and a hash of its equations.
"""

from __future__ import annotations

from .base import Acts, Cell, Product, Sizes
from .gru import CELL as _GRU
from .gru_reset_before import CELL as _GRU_RESET_BEFORE
from .indrnn import CELL as _INDRNN
from .layernorm_gru import CELL as _LAYERNORM_GRU
from .layernorm_lstm import CELL as _LAYERNORM_LSTM
from .lstm import CELL as _LSTM
from .lstm_proj import CELL as _LSTM_PROJ
from .pointwise import PointwiseCell, UnsupportedEquations, resolve
from .rnn import CELL as _RNN

CELLS: dict[str, Cell] = {cell.name: cell for cell in (_RNN, _LSTM, _GRU, _GRU_RESET_BEFORE, _LSTM_PROJ, _INDRNN,
                                                      _LAYERNORM_LSTM, _LAYERNORM_GRU)}


def get_cell(name: str) -> Cell:
    """The cell registered as ``name`` (a PointwiseCell whose class is defined in this process registers on
    the way: :func:`~.pointwise.resolve`); a ValueError listing the known ones otherwise."""
    cell = CELLS.get(name) or resolve(name)
    if cell is None:
        raise ValueError(f"unknown cell {name!r}; registered cells: {sorted(CELLS)} (a cell written as a "
                         f"PointwiseCell registers when its class is defined and made)")
    return cell


def register(cell: Cell) -> None:
    """Register ``cell`` under its name; a cell of that name already there stays (the same equations)."""
    CELLS.setdefault(cell.name, cell)


__all__ = ["CELLS", "Acts", "Cell", "PointwiseCell", "Product", "Sizes", "UnsupportedEquations", "get_cell",
           "register"]
