"""The fused CPU scan's two loops: forward and hand-written BPTT on preallocated buffers.

Plain functions on tensors, no autograd: :mod:`.library` wraps them as ``torch.library`` ops with an
autograd formula, :mod:`.cpu_fused` is the public entry. The math is that of
:mod:`seqtorch.reference` (read it there); this file only arranges it for speed. Every tensor op here
works on any device, so the same loops are the fallback on CUDA.

How the work is laid out (haste's strategy, in PyTorch ops):

* The whole state history lives in one buffer ``S`` of shape (T+1, B, H): the initial state in slot 0
  (slot T when ``reverse``), the state after step t in slot t+1 (slot t when ``reverse``). Outputs,
  the final state and the GEMM operand of the weight gradient are all views of it.
* Each step does one in-place ``addmm`` into its slice of a gate buffer prefilled with ``gx + b_hh``,
  then in-place activations on contiguous gate slices.
* The backward turns the saved activations into per-step coefficients (derivatives and products
  that do not depend on the upstream gradient) with vectorized ops, so the sequential loop is 4-7
  small ops a step. ``dW_hh`` is one GEMM over all T*B rows after the loop, ``db_hh`` one sum.
* Vectorized work (the prefill, the coefficients) runs a chunk of ~256 KiB of steps at a time, just
  before the loop reaches it: whole-sequence passes over (T, B, 4H) are memory bound and cost more
  than the loop itself at the book's sizes, while a chunk is still in cache when the loop reads it.
* ``lengths``: a sequence's state is frozen at steps t >= its length (``torch.where`` at the steps
  where some sequence has ended), as in the reference. The backward zeroes the coefficients of the
  frozen rows, so their gate gradients are exactly 0, and passes their state gradient through.

On CPU tensors the LSTM and GRU loops are handed to C++ (``csrc/``, via :mod:`.native`), which fills the
same buffers (:func:`forward_buffers`) with the same math: per step one GEMM and one fused pass over the
gates instead of ~10 dispatched ops. The Python loops below remain the path for SimpleRNN, other
devices and installs without a compiler, and the tests run both against the reference. Buffers of a
MiB or more come from the C++ pool (:func:`new_buffer`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

from ..reference import GATES
from . import native

# Tests set this to False to run the Python loops where the C++ ones (:mod:`.native`) would serve.
USE_NATIVE = True

# Tests set this to True: fresh buffers are then filled with NaN, so an element a loop forgot to
# write cannot pass a comparison by chance.
POISON_BUFFERS = False


# Buffers from this size up come from the C++ pool (csrc/buffer_pool.cpp) on CPU: fresh memory of that
# size is mmap-ed and page-faults in on first touch, which costs more than the scan's arithmetic.
POOL_MIN_BYTES = 1 << 20


def new_buffer(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """An uninitialized buffer with ``like``'s dtype and device (NaN-filled under POISON_BUFFERS)."""
    buffer = None
    if like.device.type == "cpu" and math.prod(shape) * like.element_size() >= POOL_MIN_BYTES \
            and not is_fake(like):
        ops = native.load() if USE_NATIVE else None
        if ops is not None:
            buffer = ops.pooled_empty(list(shape), like.dtype)
    if buffer is None:
        buffer = torch.empty(shape, dtype=like.dtype, device=like.device)
    return buffer.fill_(float("nan")) if POISON_BUFFERS else buffer


def _none(like: Tensor) -> Tensor:
    """A 0-element placeholder for a buffer an option does not need (custom ops take no None outputs)."""
    return like.new_empty(0)


# ---------------------------------------------------------------------------------------------------
# Activations: in place on a view (forward), derivative from the saved output (backward).

def _hard_sigmoid_(x: Tensor) -> Tensor:
    # 0.2 * x + 0.5 then clamp, in this order: bitwise the reference's torch.clamp(0.2 * x + 0.5, 0, 1).
    return x.mul_(0.2).add_(0.5).clamp_(0.0, 1.0)


_INPLACE = {"tanh": Tensor.tanh_, "relu": Tensor.relu_, "sigmoid": Tensor.sigmoid_,
            "hard_sigmoid": _hard_sigmoid_}


def _act_out(name: str, x: Tensor, out: Tensor) -> Tensor:
    """``out = act(x)`` for the main activation ("tanh" or "relu")."""
    if name == "tanh":
        return torch.tanh(x, out=out)
    return torch.clamp_min(x, 0.0, out=out)  # relu has no out= variant; clamp_min(x, 0) is the same value


def _derivative(name: str, y: Tensor, pre: Tensor | None = None, out: Tensor | None = None) -> Tensor:
    """d act / d x as a function of the output ``y = act(x)``; hard_sigmoid needs ``pre`` = x.

    Each matches the autograd formula of the reference's op: tanh 1 - y^2, sigmoid y (1 - y),
    relu 1[y > 0], hard_sigmoid 0.2 * 1[0 <= 0.2 x + 0.5 <= 1] (torch.clamp passes the gradient at
    its bounds, so the boundaries count as inside). Written into ``out`` when given.
    """
    if out is None:
        out = torch.empty_like(y)
    if name == "tanh":
        return torch.addcmul(y.new_ones(()), y, y, value=-1, out=out)
    if name == "sigmoid":
        return torch.addcmul(y, y, y, value=-1, out=out)
    if name == "relu":
        return out.copy_(y > 0)
    z = 0.2 * pre + 0.5
    return out.copy_((z >= 0) & (z <= 1)).mul_(0.2)


def _chunk_starts(steps: int, per_chunk: int, descending: bool) -> dict[int, slice]:
    """Time chunks keyed by the step a loop running in that direction meets first.

    Vectorized work (prefills, backward coefficients) is done a chunk at a time just before the loop
    reaches it: few enough ops that Python overhead stays small, data small enough to stay in cache
    (a whole-sequence pass over (T, B, 4H) is memory bound and costs more than the loop itself).
    """
    starts = {}
    for lo in range(0, steps, per_chunk):
        hi = min(lo + per_chunk, steps)
        starts[hi - 1 if descending else lo] = slice(lo, hi)
    return starts


def _steps_per_chunk(batch: int, width: int, like: Tensor) -> int:
    """About 256 KiB of a (B, width) per-step tensor per chunk."""
    return max(1, (1 << 18) // max(1, batch * width * like.element_size()))


# ---------------------------------------------------------------------------------------------------
# Buffers

def _native(mode: str, like: Tensor):
    """The C++ loops (LSTM and GRU) when they serve these tensors (CPU, float32/float64, built), else None."""
    if mode == "rnn" or not USE_NATIVE or like.device.type != "cpu":
        return None
    if like.dtype not in (torch.float32, torch.float64):
        return None
    return native.load()


def forward_buffers(mode: str, steps: int, batch: int, hidden: int, *, has_mask: bool, hard: bool,
                    reset_after: bool, like: Tensor) -> list[Tensor]:
    """Fresh buffers the forward fills, in the order :func:`forward_scan` returns them.

    ``[S (T+1, B, H), C (T+1, B, H) for lstm, HM (T, B, H) = masked h when rec_mask, *cell buffers]``;
    cell buffers: lstm ``A`` (T, B, 4H) gate activations i, f, g, o, ``TC`` (T, B, H) = act(c),
    ``PRE`` (T, B, 4H) gate pre-activations for hard_sigmoid; gru with reset_after ``RZ`` (T, B, 2H),
    ``N`` (T, B, H), ``GH`` (T, B, 3H) = h W_hh^T + b_hh, ``PRE`` (T, B, 2H); gru without ``A``
    (T, B, 3H) r, z, n, ``RH`` (T, B, H) = r * h, ``PRE`` (T, B, 2H). Unused entries are 0-element.
    Also the fake (meta) implementation of the op, so the shapes are written once.
    """
    T, B, H = steps, batch, hidden
    S = new_buffer((T + 1, B, H), like)
    C = new_buffer((T + 1, B, H), like) if mode == "lstm" else _none(like)
    HM = new_buffer((T, B, H), like) if has_mask else _none(like)
    if mode == "rnn":
        cell: list[Tensor] = []
    elif mode == "lstm":
        cell = [new_buffer((T, B, 4 * H), like), new_buffer((T, B, H), like),
                new_buffer((T, B, 4 * H), like) if hard else _none(like)]
    elif reset_after:
        cell = [new_buffer((T, B, 2 * H), like), new_buffer((T, B, H), like), new_buffer((T, B, 3 * H), like),
                new_buffer((T, B, 2 * H), like) if hard else _none(like)]
    else:
        cell = [new_buffer((T, B, 3 * H), like), new_buffer((T, B, H), like),
                new_buffer((T, B, 2 * H), like) if hard else _none(like)]
    return [S, C, HM, *cell]


def backward_buffers(mode: str, steps: int, batch: int, hidden: int, *, has_c: bool, has_bias: bool,
                     like: Tensor) -> list[Tensor]:
    """Shapes of the backward's results ``[dgx, dh0, dc0, dw_hh, db_hh]`` (unused: 0-element)."""
    G = GATES[mode]
    T, B, H = steps, batch, hidden
    return [new_buffer((T, B, G * H), like), new_buffer((B, H), like),
            new_buffer((B, H), like) if mode == "lstm" and has_c else _none(like),
            new_buffer((G * H, H), like), new_buffer((G * H,), like) if has_bias else _none(like)]


# ---------------------------------------------------------------------------------------------------
# Forward

class _Steps:
    """Step order and buffer slots of one scan direction, plus the ``lengths`` freeze masks."""

    def __init__(self, steps: int, reverse: bool, lengths: Tensor | None) -> None:
        self.T = steps
        self.reverse = reverse
        self.order = range(steps - 1, -1, -1) if reverse else range(steps)
        self.first = steps if reverse else 0  # slot of the initial state
        self.last = 0 if reverse else steps   # slot of the final state
        # the slot a step reads and the slot it writes
        self.prev = (lambda t: t + 1) if reverse else (lambda t: t)
        self.next = (lambda t: t) if reverse else (lambda t: t + 1)
        self.valid = None  # (T, B, 1) bool: step t is inside sequence b
        self.tail = steps  # steps t >= tail have at least one ended sequence
        if lengths is not None:
            t = torch.arange(steps, device=lengths.device).unsqueeze(1)
            self.valid = (t < lengths.unsqueeze(0)).unsqueeze(-1)
            self.tail = int(lengths.min())

    def slots_prev(self, S: Tensor) -> Tensor:
        """(T, ...) view of ``S`` (T+1, ...): the state each step reads."""
        return S[1:] if self.reverse else S[:-1]

    def slots_next(self, S: Tensor) -> Tensor:
        """(T, ...) view of ``S`` (T+1, ...): the state each step writes."""
        return S[:-1] if self.reverse else S[1:]


def forward_scan(mode: str, gx: Tensor, h0: Tensor, c0: Tensor | None, w_hh: Tensor, b_hh: Tensor | None,
                 lengths: Tensor | None, rec_mask: Tensor | None, reverse: bool, activation: str,
                 recurrent_activation: str, reset_after: bool) -> list[Tensor]:
    """Run the scan; returns the buffers of :func:`forward_buffers`, filled.

    All tensors share one floating dtype and device; gx (T, B, G*H) contiguous, h0/c0 (B, H),
    w_hh (G*H, H), b_hh (G*H,) or None, lengths (B,) int64 or None, rec_mask (B, H) or None.
    """
    T, B, _ = gx.shape
    H = h0.shape[-1]
    hard = recurrent_activation == "hard_sigmoid" and mode != "rnn"
    bufs = forward_buffers(mode, T, B, H, has_mask=rec_mask is not None, hard=hard, reset_after=reset_after,
                           like=gx)
    S, C, HM = bufs[:3]
    steps = _Steps(T, reverse, lengths)
    S[steps.first].copy_(h0)
    if mode == "lstm":
        if c0 is None:
            C[steps.first].zero_()
        else:
            C[steps.first].copy_(c0)
    if T == 0:
        return bufs
    ops = _native(mode, gx)
    if ops is not None:
        bias = b_hh.contiguous() if b_hh is not None else gx.new_zeros(gx.shape[-1])
        wt, mask, relu = w_hh.t().contiguous(), None if rec_mask is None else rec_mask.contiguous(), activation == "relu"
        if mode == "lstm":
            ops.lstm_forward(gx, bias, wt, _int64(lengths), mask, reverse, relu, hard, S, C, HM, *bufs[3:])
        elif reset_after:
            ops.gru_forward(gx, bias, wt, _none(gx), _none(gx), _int64(lengths), mask, reverse, relu, hard, True,
                            S, HM, bufs[-1], *bufs[3:6])
        else:
            ops.gru_forward(gx, bias, wt, wt[:, : 2 * H].contiguous(), wt[:, 2 * H:].contiguous(), _int64(lengths),
                            mask, reverse, relu, hard, False, S, HM, bufs[-1], *bufs[3:5], _none(gx))
        return bufs
    S_ = S.unbind(0)
    # h as it enters the recurrent matmul at step t: masked copy, or the state itself
    if rec_mask is not None:
        HM_ = HM.unbind(0)
        hin = HM_
    else:
        hin = [S_[steps.prev(t)] for t in range(T)]
    valid = steps.valid.unbind(0) if steps.valid is not None else None
    act_ = _INPLACE[activation]
    sig_ = _INPLACE[recurrent_activation]
    wt = w_hh.t()
    mul, addmm, where = torch.mul, torch.addmm, torch.where
    prev, nxt, tail = steps.prev, steps.next, steps.tail
    wt = wt.contiguous()  # (H, G*H): a contiguous right operand is the faster GEMM for these sizes
    chunks = _chunk_starts(T, _steps_per_chunk(B, GATES[mode] * H, gx), descending=reverse)

    if mode == "rnn":
        X = steps.slots_next(S)  # the new state is written where its pre-activation was prefilled
        for t in steps.order:
            p, n = prev(t), nxt(t)
            if t in chunks:
                _prefill(X[chunks[t]], gx[chunks[t]], b_hh)
            if rec_mask is not None:
                mul(S_[p], rec_mask, out=HM_[t])
            S_[n].addmm_(hin[t], wt)
            act_(S_[n])
            if t >= tail:
                where(valid[t], S_[n], S_[p], out=S_[n])
        return bufs

    if mode == "lstm":
        A, TC, PRE = bufs[3:]
        A_ = A.unbind(0)
        A_if, A_i, A_f = A[..., : 2 * H].unbind(0), A[..., :H].unbind(0), A[..., H: 2 * H].unbind(0)
        A_g, A_o = A[..., 2 * H: 3 * H].unbind(0), A[..., 3 * H:].unbind(0)
        C_, TC_ = C.unbind(0), TC.unbind(0)
        PRE_ = PRE.unbind(0) if hard else None
        for t in steps.order:
            p, n = prev(t), nxt(t)
            if t in chunks:
                _prefill(A[chunks[t]], gx[chunks[t]], b_hh)
            if rec_mask is not None:
                mul(S_[p], rec_mask, out=HM_[t])
            A_[t].addmm_(hin[t], wt)
            if hard:
                PRE_[t].copy_(A_[t])
            sig_(A_if[t])
            act_(A_g[t])
            sig_(A_o[t])
            mul(A_f[t], C_[p], out=C_[n])
            C_[n].addcmul_(A_i[t], A_g[t])
            _act_out(activation, C_[n], TC_[t])
            mul(A_o[t], TC_[t], out=S_[n])
            if t >= tail:
                where(valid[t], S_[n], S_[p], out=S_[n])
                where(valid[t], C_[n], C_[p], out=C_[n])
        return bufs

    if reset_after:
        RZ, N, GH, PRE = bufs[3:]
        RZ_, N_, GH_ = RZ.unbind(0), N.unbind(0), GH.unbind(0)
        R_, Z_ = RZ[..., :H].unbind(0), RZ[..., H:].unbind(0)
        GH_rz, GH_n = GH[..., : 2 * H].unbind(0), GH[..., 2 * H:].unbind(0)
        gx_rz, gx_n = gx[..., : 2 * H].unbind(0), gx[..., 2 * H:].unbind(0)
        PRE_ = PRE.unbind(0) if hard else None
        for t in steps.order:
            p, n = prev(t), nxt(t)
            if rec_mask is not None:
                mul(S_[p], rec_mask, out=HM_[t])
            if b_hh is None:
                torch.mm(hin[t], wt, out=GH_[t])
            else:
                addmm(b_hh, hin[t], wt, out=GH_[t])
            torch.add(gx_rz[t], GH_rz[t], out=RZ_[t])
            if hard:
                PRE_[t].copy_(RZ_[t])
            sig_(RZ_[t])
            torch.addcmul(gx_n[t], R_[t], GH_n[t], out=N_[t])
            act_(N_[t])
            torch.lerp(N_[t], S_[p], Z_[t], out=S_[n])  # (1 - z) n + z h
            if t >= tail:
                where(valid[t], S_[n], S_[p], out=S_[n])
        return bufs

    A, RH, PRE = bufs[3:]
    A_rz, A_n = A[..., : 2 * H].unbind(0), A[..., 2 * H:].unbind(0)
    R_, Z_ = A[..., :H].unbind(0), A[..., H: 2 * H].unbind(0)
    RH_ = RH.unbind(0)
    wt_rz, wt_n = wt[:, : 2 * H], wt[:, 2 * H:]
    PRE_ = PRE.unbind(0) if hard else None
    for t in steps.order:
        p, n = prev(t), nxt(t)
        if t in chunks:
            _prefill(A[chunks[t]], gx[chunks[t]], b_hh)
        if rec_mask is not None:
            mul(S_[p], rec_mask, out=HM_[t])
        A_rz[t].addmm_(hin[t], wt_rz)
        if hard:
            PRE_[t].copy_(A_rz[t])
        sig_(A_rz[t])
        mul(R_[t], hin[t], out=RH_[t])
        A_n[t].addmm_(RH_[t], wt_n)
        act_(A_n[t])
        torch.lerp(A_n[t], S_[p], Z_[t], out=S_[n])
        if t >= tail:
            where(valid[t], S_[n], S_[p], out=S_[n])
    return bufs


def _prefill(buffer: Tensor, gx: Tensor, b_hh: Tensor | None) -> None:
    """buffer = gx + b_hh for all steps at once (one vectorized op; the loop adds h W_hh^T in place)."""
    if b_hh is None:
        buffer.copy_(gx)
    else:
        torch.add(gx, b_hh, out=buffer)


# ---------------------------------------------------------------------------------------------------
# Backward

def backward_scan(mode: str, grad_S: Tensor | None, grad_C: Tensor | None, saved: list[Tensor], w_hh: Tensor,
                  has_bias: bool, has_c: bool, lengths: Tensor | None, rec_mask: Tensor | None, reverse: bool,
                  activation: str, recurrent_activation: str, reset_after: bool) -> list[Tensor]:
    """BPTT through :func:`forward_scan`.

    Args:
        grad_S: (T+1, B, H) gradient of the state buffer S (outputs and final state), or None (zero).
        grad_C: (T+1, B, H) gradient of the lstm cell buffer C, or None (zero).
        saved: the buffers forward_scan returned.
    Returns:
        ``[dgx (T, B, G*H), dh0 (B, H), dc0 (B, H) (lstm with c0) , dw_hh (G*H, H), db_hh (G*H,)]``,
        0-element tensors for the absent ones.
    """
    S, C, HM = saved[:3]
    T1, B, H = S.shape
    T = T1 - 1
    hard = recurrent_activation == "hard_sigmoid" and mode != "rnn"
    results = backward_buffers(mode, T, B, H, has_c=has_c, has_bias=has_bias, like=S)
    dgx, dh0, dc0, dw, db = results
    steps = _Steps(T, reverse, lengths)
    if grad_S is None:
        grad_S = new_buffer(tuple(S.shape), S).zero_()
    grad_S = grad_S.contiguous()
    dS_ = grad_S.unbind(0)
    dC_ = grad_C.contiguous().unbind(0) if grad_C is not None and mode == "lstm" else None
    if T == 0:
        dh0.copy_(dS_[steps.first])
        if dc0.numel():
            dc0.copy_(dC_[steps.first]) if dC_ is not None else dc0.zero_()
        dw.zero_()
        if has_bias:
            db.zero_()
        return results
    h_prev = steps.slots_prev(S)                     # (T, B, H): state each step read
    h_in = HM if rec_mask is not None else h_prev   # what entered the matmul
    # The C++ loops (LSTM, GRU on CPU) need none of the Python loops' set-up below.
    ops = _native(mode, S)
    if ops is not None:
        mask, relu = None if rec_mask is None else rec_mask.contiguous(), activation == "relu"
        G = GATES[mode]
        # dG: the gradient of h~ W_hh^T + b_hh over all steps, the operand of the weight-gradient GEMM
        dG = dgx
        if mode == "lstm":
            A, TC, PRE = saved[3:]
            DC = new_buffer((B, H), S)
            ops.lstm_backward(grad_S, None if dC_ is None else grad_C.contiguous(), S, C, A, TC, PRE,
                              w_hh.contiguous(), _int64(lengths), mask, reverse, relu, hard, dgx, dh0, DC)
            if dc0.numel():
                if dC_ is not None:
                    DC.add_(dC_[steps.first])
                dc0.copy_(DC)
        elif reset_after:
            RZ, N, GH, PRE = saved[3:]
            dG = new_buffer((T, B, 3 * H), S)
            ops.gru_backward(grad_S, S, HM, PRE, RZ, N, GH, w_hh.contiguous(), _none(S), _none(S), _int64(lengths),
                             mask, reverse, relu, hard, True, dgx, dG, dh0)
        else:
            A, RH, PRE = saved[3:]
            ops.gru_backward(grad_S, S, HM, PRE, A, RH, _none(S), _none(S), w_hh[: 2 * H].contiguous(),
                             w_hh[2 * H:].contiguous(), _int64(lengths), mask, reverse, relu, hard, False, dgx,
                             _none(S), dh0)
        rh = saved[4] if mode == "gru" and not reset_after else None
        _weight_grads(dG.view(T * B, G * H), h_in, dw, db if has_bias else None, rh=rh)
        return results

    valid = steps.valid                              # (T, B, 1) bool or None
    vf = None if valid is None else valid.to(S.dtype)
    # State gradient that passes straight through a frozen step (1 - valid), at the tail steps only.
    passthrough = None if vf is None else (1 - vf).unbind(0)
    mul, mm, addcmul = torch.mul, torch.mm, torch.addcmul
    prev, nxt, tail = steps.prev, steps.next, steps.tail
    order = steps.order[::-1]
    chunks = _chunk_starts(T, _steps_per_chunk(B, GATES[mode] * H, S), descending=not reverse)
    DH, DH2 = new_buffer((B, H), S), new_buffer((B, H), S)

    def carry(dG_t: Tensor, w: Tensor, t: int, out: Tensor, dh: Tensor | None) -> None:
        """out = dS[slot step t read] + (dG_t @ w) * mask, plus ``dh`` on the rows frozen at step t
        (``dh`` None: the cell passes it through itself)."""
        mm(dG_t, w, out=out)  # mm then add: faster than addmm(..., out=) at these sizes
        if rec_mask is None:
            out.add_(dS_[prev(t)])
        else:
            out.mul_(rec_mask).add_(dS_[prev(t)])
        if dh is not None and t >= tail:
            out.addcmul_(dh, passthrough[t])

    DH.copy_(dS_[nxt(order[0])])

    if mode == "rnn":
        D = new_buffer((T, B, H), S)
        X = steps.slots_next(S)

        def prep(sl: slice) -> None:
            _derivative(activation, X[sl], out=D[sl])
            if vf is not None:
                D[sl].mul_(vf[sl])

        D_, dG_ = D.unbind(0), dgx.unbind(0)
        for t in order:
            if t in chunks:
                prep(chunks[t])
            mul(DH, D_[t], out=dG_[t])
            carry(dG_[t], w_hh, t, DH2, DH)
            DH, DH2 = DH2, DH
        dh0.copy_(DH)
        _weight_grads(dgx.view(T * B, H), h_in, dw, db if has_bias else None)
        return results


    if mode == "lstm":
        A, TC, PRE = saved[3:]
        i, f, g, o = A.chunk(4, dim=-1)
        sig_pre = PRE.chunk(4, dim=-1) if hard else (None,) * 4
        c_prev = steps.slots_prev(C)
        # Coefficients that do not depend on the upstream gradient, a chunk of steps at a time:
        # d pre_{i,f,g} = K3 * dc, d pre_o = K_o * dh, dc += K_c * dh, dc_prev = F * dc.
        K3, K_o, K_c = new_buffer((T, B, 3 * H), S), new_buffer((T, B, H), S), new_buffer((T, B, H), S)
        F_ = f if vf is None else new_buffer((T, B, H), S)
        scratch = new_buffer((T, B, H), S)

        def prep(sl: slice) -> None:
            tmp = scratch[sl]
            mul(g[sl], _derivative(recurrent_activation, i[sl], _at(sig_pre[0], sl), out=tmp), out=K3[sl, :, :H])
            mul(c_prev[sl], _derivative(recurrent_activation, f[sl], _at(sig_pre[1], sl), out=tmp),
                out=K3[sl, :, H: 2 * H])
            mul(i[sl], _derivative(activation, g[sl], out=tmp), out=K3[sl, :, 2 * H:])
            mul(TC[sl], _derivative(recurrent_activation, o[sl], _at(sig_pre[3], sl), out=tmp), out=K_o[sl])
            mul(o[sl], _derivative(activation, TC[sl], out=tmp), out=K_c[sl])
            if vf is not None:
                K3[sl].mul_(vf[sl])
                K_o[sl].mul_(vf[sl])
                K_c[sl].mul_(vf[sl])
                torch.where(valid[sl], f[sl], S.new_ones(()), out=F_[sl])  # a frozen step passes dc through

        K3_ = K3.view(T, B, 3, H).unbind(0)
        K_o_, K_c_, F__ = K_o.unbind(0), K_c.unbind(0), F_.unbind(0)
        dG_ = dgx.unbind(0)
        dG_ifg = dgx[..., : 3 * H].view(T, B, 3, H).unbind(0)
        dG_o = dgx[..., 3 * H:].unbind(0)
        DC = torch.zeros((B, H), dtype=S.dtype, device=S.device)
        for t in order:
            if t in chunks:
                prep(chunks[t])
            if dC_ is not None:
                DC.add_(dC_[nxt(t)])
            DC.addcmul_(DH, K_c_[t])
            mul(DH, K_o_[t], out=dG_o[t])
            mul(K3_[t], DC.unsqueeze(1), out=dG_ifg[t])
            DC.mul_(F__[t])
            carry(dG_[t], w_hh, t, DH2, DH)
            DH, DH2 = DH2, DH
        dh0.copy_(DH)
        if dc0.numel():
            if dC_ is not None:
                DC.add_(dC_[steps.first])
            dc0.copy_(DC)
        _weight_grads(dgx.view(T * B, 4 * H), h_in, dw, db if has_bias else None)
        return results

    if reset_after:
        RZ, N, GH, PRE = saved[3:]
        r, z, hn = RZ[..., :H], RZ[..., H:], GH[..., 2 * H:]
        pre_r, pre_z = (PRE[..., :H], PRE[..., H:]) if hard else (None, None)
        # d pre_z = K_z dh, d pre_n = K_n dh; then d pre_r = K_r d pre_n and d(h W_hn^T + b_hn) = r d pre_n
        KZN, KR = new_buffer((T, B, 2, H), S), new_buffer((T, B, 2, H), S)
        Zp = z if vf is None else new_buffer((T, B, H), S)
        scratch = new_buffer((T, B, H), S)

        def prep(sl: slice) -> None:
            tmp = scratch[sl]
            torch.sub(h_prev[sl], N[sl], out=KZN[sl, :, 0])
            KZN[sl, :, 0].mul_(_derivative(recurrent_activation, z[sl], _at(pre_z, sl), out=tmp))
            torch.sub(1, z[sl], out=KZN[sl, :, 1])
            KZN[sl, :, 1].mul_(_derivative(activation, N[sl], out=tmp))
            mul(hn[sl], _derivative(recurrent_activation, r[sl], _at(pre_r, sl), out=tmp), out=KR[sl, :, 0])
            KR[sl, :, 1].copy_(r[sl])
            if vf is not None:
                KZN[sl].mul_(vf[sl].unsqueeze(-1))
                torch.where(valid[sl], z[sl], S.new_ones(()), out=Zp[sl])  # a frozen step passes dh through (z = 1)

        # dG4 (T, B, 4H) in the order r, z, hn, n: its first 3H are d(h W_hh^T + b_hh) (the GEMM
        # operand), and r, z, n are d gx.
        dG4 = new_buffer((T, B, 4 * H), S)
        dG4v = dG4.view(T, B, 4, H)
        dG_zn, dG_rhn, dG_n = dG4v[:, :, 1::2].unbind(0), dG4v[:, :, 0::2].unbind(0), dG4v[:, :, 3:].unbind(0)
        dG3 = dG4.view(T * B, 4 * H)[:, : 3 * H]
        dG3_ = dG4[..., : 3 * H].unbind(0)
        KZN_, KR_, Z_ = KZN.unbind(0), KR.unbind(0), Zp.unbind(0)
        for t in order:
            if t in chunks:
                prep(chunks[t])
            mul(KZN_[t], DH.unsqueeze(1), out=dG_zn[t])
            mul(KR_[t], dG_n[t], out=dG_rhn[t])
            carry(dG3_[t], w_hh, t, DH2, None)  # frozen rows pass dh through z = 1
            DH2.addcmul_(Z_[t], DH)
            DH, DH2 = DH2, DH
        dh0.copy_(DH)
        torch.index_select(dG4v, 2, torch.tensor([0, 1, 3], device=S.device), out=dgx.view(T, B, 3, H))
        _weight_grads(dG3, h_in, dw, db if has_bias else None)
        return results

    A, RH, PRE = saved[3:]
    r, z, n_ = A.chunk(3, dim=-1)
    pre_r, pre_z = (PRE[..., :H], PRE[..., H:]) if hard else (None, None)
    KZN, KR = new_buffer((T, B, 2, H), S), new_buffer((T, B, H), S)
    Zp = z if vf is None else new_buffer((T, B, H), S)
    scratch = new_buffer((T, B, H), S)

    def prep(sl: slice) -> None:
        tmp = scratch[sl]
        torch.sub(h_prev[sl], n_[sl], out=KZN[sl, :, 0])
        KZN[sl, :, 0].mul_(_derivative(recurrent_activation, z[sl], _at(pre_z, sl), out=tmp))
        torch.sub(1, z[sl], out=KZN[sl, :, 1])
        KZN[sl, :, 1].mul_(_derivative(activation, n_[sl], out=tmp))
        mul(h_in[sl], _derivative(recurrent_activation, r[sl], _at(pre_r, sl), out=tmp), out=KR[sl])  # d pre_r = KR d(r h)
        if vf is not None:
            KZN[sl].mul_(vf[sl].unsqueeze(-1))
            torch.where(valid[sl], z[sl], S.new_ones(()), out=Zp[sl])

    w_rz, w_n = w_hh[: 2 * H], w_hh[2 * H:]
    dG_zn = dgx.view(T, B, 3, H)[:, :, 1:].unbind(0)
    dG_rz, dG_r, dG_n = dgx[..., : 2 * H].unbind(0), dgx[..., :H].unbind(0), dgx[..., 2 * H:].unbind(0)
    KZN_, KR_, R_, Z_ = KZN.unbind(0), KR.unbind(0), r.unbind(0), Zp.unbind(0)
    DRH, DHIN = new_buffer((B, H), S), new_buffer((B, H), S)
    for t in order:
        if t in chunks:
            prep(chunks[t])
        mul(KZN_[t], DH.unsqueeze(1), out=dG_zn[t])
        torch.mm(dG_n[t], w_n, out=DRH)                 # d(r h_in)
        mul(DRH, KR_[t], out=dG_r[t])
        mul(DRH, R_[t], out=DHIN)
        DHIN.addmm_(dG_rz[t], w_rz)                      # d h_in
        addcmul(dS_[prev(t)], Z_[t], DH, out=DH2)
        if rec_mask is None:
            DH2.add_(DHIN)
        else:
            DH2.addcmul_(DHIN, rec_mask)
        DH, DH2 = DH2, DH
    dh0.copy_(DH)
    _weight_grads(dgx.view(T * B, 3 * H), h_in, dw, db if has_bias else None, rh=RH)
    return results


def _weight_grads(rows: Tensor, h_in: Tensor, dw: Tensor, db: Tensor | None, rh: Tensor | None = None) -> None:
    """The weight gradients after the backward loop, one GEMM over all T*B rows.

    rows (T*B, G*H): the gradient of ``h~ W_hh^T + b_hh`` at every step; h_in (T, B, H): h~. Writes
    ``dw = rows^T h~`` (G*H, H) and ``db`` = the column sums of rows (when not None). For the
    reset-before GRU (``rh`` = r * h~, (T, B, H)) the n block's matrix product is (r h~) W_n^T, so its
    rows multiply rh instead.
    """
    H = h_in.shape[-1]
    h = h_in.reshape(-1, H)
    if rh is None:
        torch.mm(rows.t(), h, out=dw)
    else:
        torch.mm(rows[:, : 2 * H].t(), h, out=dw[: 2 * H])
        torch.mm(rows[:, 2 * H:].t(), rh.reshape(-1, H), out=dw[2 * H:])
    if db is not None:
        torch.sum(rows, dim=0, out=db)


def _at(x: Tensor | None, sl: slice) -> Tensor | None:
    return None if x is None else x[sl]


def _int64(lengths: Tensor | None) -> Tensor | None:
    return None if lengths is None else lengths.to(torch.int64).contiguous()
