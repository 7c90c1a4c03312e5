r"""Cells that ship written as their equations (:class:`~.pointwise.PointwiseCell`): each is its step and
its paper, nothing else; the code of every backend is generated from ``forward``.

Use one with any layer or step Module::

    layer = seqtorch.Recurrent(seqtorch.equations.PeepholeLSTM(), input_size=32, hidden_size=64)
    step = seqtorch.RecurrentCell(seqtorch.equations.MGU(), 32, 64)

``z`` is ``x W_ih^T + b_ih + h W_hh^T + b_hh`` (``inputs = "joint"``), or ``zx`` and ``zh`` apart
(``inputs = "separate"``), in H-wide gate blocks in the order each docstring gives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .pointwise import PointwiseCell


class PeepholeLSTM(PointwiseCell):
    r"""The LSTM with peephole connections (Gers & Schmidhuber 2000, "Recurrent nets that time and count";
    ONNX's ``LSTM`` with its ``P`` input, to which it exports). Gates i, f, g, o as torch's LSTM::

        i = sigmoid(z_i + w_ci * c)         f = sigmoid(z_f + w_cf * c)
        c' = f * c + i * tanh(z_g)
        h' = sigmoid(z_o + w_co * c') * tanh(c')

    Vectors ``w_ci``, ``w_cf``, ``w_co`` (H,) each: the input and forget gates look at the previous cell
    state, the output gate at the new one.
    """

    family = "lstm"
    gates = 4
    states = ("h", "c")
    vectors = ("w_ci", "w_cf", "w_co")

    def forward(self, z, h, c, w_ci, w_cf, w_co):
        i, f, g, o = z.chunk(4, dim=-1)
        i = torch.sigmoid(i + w_ci * c)
        f = torch.sigmoid(f + w_cf * c)
        c = f * c + i * torch.tanh(g)
        return torch.sigmoid(o + w_co * c) * torch.tanh(c), c


class CoupledLSTM(PointwiseCell):
    r"""The LSTM with coupled input and forget gates, CIFG (Greff et al. 2017, "LSTM: A Search Space
    Odyssey"; ONNX's ``input_forget``): the forget gate is ``1 - i``, so three gate blocks i, g, o::

        i = sigmoid(z_i)
        c' = (1 - i) * c + i * tanh(z_g)
        h' = sigmoid(z_o) * tanh(c')
    """

    gates = 3
    states = ("h", "c")

    def forward(self, z, h, c):
        i, g, o = z.chunk(3, dim=-1)
        i = torch.sigmoid(i)
        c = (1 - i) * c + i * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class MGU(PointwiseCell):
    r"""The Minimal Gated Unit (Zhou et al. 2016, "Minimal Gated Unit for Recurrent Neural Networks"): one
    forget gate, which also gates the candidate's recurrent part. Gates f, n, with the candidate's
    recurrent product scaled after it is taken (``reset_after``, as torch's GRU scales its n block)::

        f = sigmoid(zx_f + zh_f)
        n = tanh(zx_n + f * zh_n)
        h' = (1 - f) * h + f * n

    (Zhou et al. multiply before the product, ``(f * h) W_hn^T``: a second product a step cannot take
    in one pointwise stage.)
    """

    gates = 2
    inputs = "separate"

    def forward(self, zx, zh, h):
        fx, nx = zx.chunk(2, dim=-1)
        fh, nh = zh.chunk(2, dim=-1)
        f = torch.sigmoid(fx + fh)
        n = torch.tanh(nx + f * nh)
        return (1 - f) * h + f * n


class JANET(PointwiseCell):
    r"""JANET, "just another network" (van der Westhuizen & Lasenby 2018, "The unreasonable effectiveness
    of the forget gate"): an LSTM with only its forget gate, the input gate tied to it with a shift
    ``beta = 1``, and the state as the output. Gates f, c::

        s = z_f
        h' = sigmoid(s) * h + (1 - sigmoid(s - beta)) * tanh(z_c)

    The paper starts the forget gate's bias with the chrono initializer, ``b_f = log(U(1, T_max - 1))``;
    set it on ``bias_ih`` after making the layer if you want it.
    """

    gates = 2
    beta = 1.0

    def forward(self, z, h):
        s, c = z.chunk(2, dim=-1)
        return torch.sigmoid(s) * h + (1 - torch.sigmoid(s - self.beta)) * torch.tanh(c)


class SLSTM(PointwiseCell):
    r"""The sLSTM of xLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory"), one head: an
    exponential input gate, a normalizer state ``n`` and a stabilizer state ``m`` that keeps the
    exponentials in range. Gates i, f, z, o; states h, c, n, m (start all at zero)::

        log_f = logsigmoid(z_f)
        m' = max(log_f + m, z_i)
        i = exp(z_i - m')            f = exp(log_f + m - m')
        c' = f * c + i * tanh(z_z)   n' = f * n + i
        h' = sigmoid(z_o) * c' / n'

    The heads of the paper are a block-diagonal W_hh; one head is a full one.
    """

    gates = 4
    states = ("h", "c", "n", "m")

    def forward(self, z, h, c, n, m):
        i, f, g, o = z.chunk(4, dim=-1)
        log_f = F.logsigmoid(f)
        m_new = torch.maximum(log_f + m, i)
        i = torch.exp(i - m_new)
        f = torch.exp(log_f + m - m_new)
        c = f * c + i * torch.tanh(g)
        n = f * n + i
        return torch.sigmoid(o) * c / n, c, n, m_new


#: The shipped cells, in the order of the README's table.
SHIPPED = (PeepholeLSTM, CoupledLSTM, MGU, JANET, SLSTM)

__all__ = ["PeepholeLSTM", "CoupledLSTM", "MGU", "JANET", "SLSTM", "SHIPPED"]
