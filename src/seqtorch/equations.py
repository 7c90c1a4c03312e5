"""The cells that ship written as their equations, under their public name: ``seqtorch.equations.MGU``,
``from seqtorch.equations import PeepholeLSTM``. Their code (each a PointwiseCell: its equations and its
paper) is in ``seqtorch/recurrent_cells/equations.py``, beside the other cells."""

from .recurrent_cells.equations import CoupledLSTM, JANET, MGU, SHIPPED, SLSTM, PeepholeLSTM

__all__ = ["PeepholeLSTM", "CoupledLSTM", "MGU", "JANET", "SLSTM", "SHIPPED"]
