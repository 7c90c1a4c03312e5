"""One differentiable scan over any implementation's op pair, with all of PyTorch's autograd semantics.

:func:`scan` is what the backends call. How each kind of differentiation is served:

* **first-order backward** (``loss.backward()``, ``torch.autograd.grad``): the implementation's backward
  op, a hand-written BPTT, then the weights' gradients as one GEMM over all steps
  (:meth:`~seqtorch.recurrent_cells.base.Cell.weight_grads`).
* **inference** (no input needs a gradient): the forward op with ``save=False``, which keeps no
  activations for a backward that will not come.
* **double backward** (``create_graph=True``: gradient penalties, ``gradgradcheck``, Hessians) and the
  backward under ``torch.func`` transforms (``grad``, ``jacrev``, ``vjp``, ``hessian``): the gradient is
  computed through the reference scan (:func:`seqtorch.reference.state_history_reference`) with
  ``torch.func.vjp``, so the result is itself differentiable, to any order.
* **forward mode** (``torch.func.jvp``, ``jacfwd``, ``torch.autograd.forward_ad`` dual tensors): the
  tangents are computed through the reference scan too (as the transpose of its vjp, so no nested dual
  level is needed).
* **vmap**: a batch of inputs with shared weights runs as one scan with the vmapped dimension folded into
  the batch (the fused forward and backward serve); stacked weights (``torch.func.stack_module_state``
  ensembles) run one scan per member.
* **torch.compile / torch.export**: the graph holds the forward op, one opaque node for every sequence
  length; its autograd formula is registered on the op itself (:func:`register`), the same backward as
  above. (Dynamo cannot trace an autograd.Function with a custom jvp, so compiled code takes this route;
  double backward through a compiled scan is not supported and raises.)

So the fast path never changes a number under a transform: what it cannot do itself falls back to the
reference, which every fused path equals within the tolerances of ``tests/conftest.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch._C._functorch import is_functorch_wrapped_tensor
from torch._functorch.utils import unwrap_dead_wrappers

from ..reference import state_history_reference
from .contract import ForwardLayout, ScanOptions


@dataclass(frozen=True)
class Kernel:
    """One implementation's op pair (:mod:`.contract`)."""

    name: str
    forward: object   # OpOverload seqtorch::scan_forward_<name>
    backward: object  # OpOverload seqtorch::scan_backward_<name>


def scan(kernel: Kernel, opts: ScanOptions, gx: Tensor, states: tuple[Tensor, ...],
         weights: tuple[Tensor | None, ...], lengths: Tensor | None, rec_mask: Tensor | None,
         zoneout: tuple[Tensor, ...] | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One layer, one direction on ``kernel``: output (T, B, P), zero past each length, and the final
    states (each sequence's last valid one). Shapes as :func:`seqtorch.reference.scan_reference`;
    ``zoneout`` None or one (T, B, width) coefficient tensor per state (not differentiated)."""
    keep = tuple(zoneout) if zoneout is not None else (None,) * len(states)
    tensors = [t for t in (gx, *states, *weights) if t is not None]
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    if torch.compiler.is_compiling():
        save = needs_grad
        outputs = kernel.forward(*opts.op_args(), save, gx, list(states), list(weights), lengths, rec_mask, list(keep))
    elif needs_grad or any(is_functorch_wrapped_tensor(t) for t in (*tensors, lengths, rec_mask) if t is not None):
        save = True
        outputs = _Scan.apply(kernel, opts, lengths, rec_mask, keep, len(states), gx, *states, *weights)
    else:
        save = False
        outputs = _forward_eager(kernel, opts.op_args(), save, gx, list(states), list(weights), lengths, rec_mask,
                                 list(keep))
    layout = ForwardLayout.split(opts.spec, list(outputs), save)
    return finish(layout, opts, lengths, save)


def _forward_eager(kernel: Kernel, op_args: tuple, *args):
    """The forward op, called below the autograd dispatch key. Its registered autograd formula (a Python
    kernel, for what torch.compile traces) would only pass an eager call on, at about 30 us a call; the
    eager paths here do their own autograd (:class:`_Scan`) or need none."""
    with torch._C._AutoDispatchBelowAutograd():
        return kernel.forward(*op_args, *args)


def finish(layout: ForwardLayout, opts: ScanOptions, lengths: Tensor | None,
           save: bool) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Output and final states from the forward op's state buffers."""
    h = layout.states[0]
    steps = h.shape[0] - 1
    out = h[:-1] if opts.reverse else h[1:]
    last = 0 if opts.reverse else steps
    finals = (h[last],) + tuple(s[last] if save else s for s in layout.states[1:])
    if lengths is not None and steps > 0:
        t = torch.arange(steps, device=lengths.device).unsqueeze(1)
        out = torch.where((t < lengths.unsqueeze(0)).unsqueeze(-1), out, 0.0)
    return out, finals


# ---------------------------------------------------------------------------------------------------
# the backward, shared by the eager Function and the op's registered formula

def fused_backward(kernel: Kernel, opts: ScanOptions, grads, outputs, weights, lengths, rec_mask, keep,
                   needs_weights: tuple[bool, ...]) -> tuple[Tensor, list[Tensor], list[Tensor | None]]:
    """dgx, the initial states' gradients, and the weights' gradients, from the state outputs' gradients."""
    cell = opts.spec
    K = len(cell.states)
    results = kernel.backward(*opts.op_args(), list(grads), list(outputs), list(weights), lengths, rec_mask, list(keep))
    dgx, dstates, buffers = results[0], list(results[1:1 + K]), results[1 + K:]
    named = dict(zip(cell.grad_buffer_names(), buffers))
    layout = ForwardLayout.split(cell, list(outputs), save=True)
    h = layout.states[0]
    h_in = layout.hm if layout.hm is not None else (h[1:] if opts.reverse else h[:-1])
    dweights = cell.weight_grads(named, dgx, h_in, layout.u, tuple(weights), needs_weights, layout.saved)
    return dgx, dstates, dweights


def _reference_histories(opts: ScanOptions, lengths, rec_mask, keep, n_states: int, none_weights: tuple[bool, ...]):
    """The differentiable outputs of the forward op (the K state histories), computed by the reference,
    as a function of (gx, *states, *the weights that are not None)."""

    def histories(gx, *rest):
        states, present = rest[:n_states], iter(rest[n_states:])
        weights = tuple(None if none else next(present) for none in none_weights)
        zoneout = None if all(k is None for k in keep) else keep
        return state_history_reference(opts.spec, gx, states, weights, lengths=lengths, rec_mask=rec_mask,
                                       reverse=opts.reverse, acts=opts.acts, zoneout=zoneout,
                                       cell_args=opts.cell_args)

    return histories


def _needs_graph(tensors) -> bool:
    """Whether the gradient being computed must itself be differentiable: create_graph=True (grad mode on
    in a backward) with something tracking it, or a torch.func transform around the scan."""
    tensors = [t for t in tensors if t is not None]
    if any(is_functorch_wrapped_tensor(t) for t in tensors):
        return True
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class _Scan(torch.autograd.Function):
    """The eager scan: inputs (kernel, opts, lengths, rec_mask, keep, n_states, gx, *states, *weights), outputs
    the forward op's (the state histories, then saved buffers, which are not differentiable). ``keep``: the
    zoneout coefficients, a tuple (one tensor or None per state), constants to autograd."""

    @classmethod
    def apply(cls, *args):
        # torch's Function.apply binds the arguments to forward's signature (inspect.signature) on every call,
        # about 60 us, only to fill in defaults, of which forward has none. Outside functorch's transforms
        # (which need that path) the base class's apply is called directly, after what torch does there too.
        if torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        return super(torch.autograd.Function, cls).apply(*unwrap_dead_wrappers(args))

    @staticmethod
    def forward(kernel, opts, lengths, rec_mask, keep, n_states, gx, *rest):
        states, weights = list(rest[:n_states]), list(rest[n_states:])
        return tuple(_forward_eager(kernel, opts.op_args(), True, gx, states, weights, lengths, rec_mask, list(keep)))

    @staticmethod
    def setup_context(ctx, inputs, output):
        kernel, opts, lengths, rec_mask, keep, n_states, gx, *rest = inputs
        K = len(opts.spec.states)
        ctx.kernel, ctx.opts, ctx.n_states, ctx.K, ctx.n_outputs = kernel, opts, n_states, K, len(output)
        ctx.keep = keep
        ctx.none_weights = tuple(w is None for w in rest[n_states:])
        ctx.save_for_backward(gx, lengths, rec_mask, *rest, *output)
        ctx.save_for_forward(gx, lengths, rec_mask, *rest)
        ctx.mark_non_differentiable(*output[K:])
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, *grads):
        gx, lengths, rec_mask, *rest = ctx.saved_tensors
        n_in = ctx.n_states + len(ctx.none_weights)
        inputs, outputs = rest[:n_in], rest[n_in:]
        states, weights = inputs[:ctx.n_states], inputs[ctx.n_states:]
        grads = list(grads[:ctx.K])
        head = (None,) * 6
        if all(g is None for g in grads):
            return head + (None,) * (1 + n_in)
        if _needs_graph([gx, *inputs, *grads]):
            present = [w for w in weights if w is not None]
            fn = _reference_histories(ctx.opts, lengths, rec_mask, ctx.keep, ctx.n_states, ctx.none_weights)
            primals, vjp = torch.func.vjp(fn, gx, *states, *present)
            cotangents = tuple(torch.zeros_like(p) if g is None else g for g, p in zip(grads, primals))
            result = iter(vjp(cotangents))
            dgx = next(result)
            dstates = [next(result) for _ in states]
            dweights = [None if none else next(result) for none in ctx.none_weights]
            return head + (dgx, *dstates, *dweights)
        needs = ctx.needs_input_grad[6:]
        dgx, dstates, dweights = fused_backward(ctx.kernel, ctx.opts, grads, outputs, weights, lengths, rec_mask,
                                                ctx.keep, tuple(needs[1 + ctx.n_states:]))
        return head + (dgx, *dstates, *dweights)

    @staticmethod
    def jvp(ctx, *tangents):
        gx, lengths, rec_mask, *inputs = ctx.saved_tensors
        states, weights = inputs[:ctx.n_states], inputs[ctx.n_states:]
        present = [w for w in weights if w is not None]
        primals_in = (gx, *states, *present)
        tangents = tangents[6:]
        tangents_in = [tangents[0], *tangents[1:1 + ctx.n_states]]
        tangents_in += [t for t, none in zip(tangents[1 + ctx.n_states:], ctx.none_weights) if not none]
        tangents_in = tuple(torch.zeros_like(p) if t is None else t for t, p in zip(tangents_in, primals_in))
        fn = _reference_histories(ctx.opts, lengths, rec_mask, ctx.keep, ctx.n_states, ctx.none_weights)
        # J t as the vjp of the (linear) map u -> J^T u: reverse mode twice, no nested forward-AD level
        primals_out, vjp = torch.func.vjp(fn, *primals_in)
        zeros = tuple(torch.zeros_like(p) for p in primals_out)
        _, vjp_of_vjp = torch.func.vjp(lambda *u: vjp(u), *zeros)
        out_tangents = vjp_of_vjp(tangents_in)
        return tuple(out_tangents) + (None,) * (ctx.n_outputs - ctx.K)

    @staticmethod
    def vmap(info, in_dims, kernel, opts, lengths, rec_mask, keep, n_states, gx, *rest):
        states, weights = rest[:n_states], rest[n_states:]
        d_len, d_mask, _, _, d_gx, *d_rest = in_dims[2:]
        d_states, d_weights = d_rest[:n_states], d_rest[n_states:]
        n = info.batch_size
        if all(d is None for w, d in zip(weights, d_weights) if w is not None):
            # shared weights: the vmapped dimension becomes more sequences of one scan
            def fold(x, dim, batch_dim):
                if x is None:
                    return None
                x = x.movedim(dim, 0) if dim is not None else x.unsqueeze(0).expand(n, *x.shape)
                return x.movedim(0, batch_dim).flatten(batch_dim, batch_dim + 1)

            outputs = _Scan.apply(kernel, opts, fold(lengths, d_len, 0), fold(rec_mask, d_mask, 0),
                                  tuple(fold(k, None, 1) for k in keep), n_states, fold(gx, d_gx, 1),
                                  *[fold(s, d, 0) for s, d in zip(states, d_states)], *weights)
            batch = gx.shape[1 if d_gx is None or d_gx > 1 else 2]
            unfolded, out_dims = [], []
            for out in outputs:
                if out.dim() >= 2 and out.shape[1] == n * batch:
                    unfolded.append(out.unflatten(1, (n, batch)))
                    out_dims.append(1)
                else:
                    unfolded.append(out)
                    out_dims.append(None)
            return tuple(unfolded), tuple(out_dims)
        # stacked weights: one scan per member
        args = (lengths, rec_mask, gx, *rest)
        dims = (d_len, d_mask, d_gx, *d_rest)
        per_member = []
        for i in range(n):
            picked = [None if a is None else (a.select(d, i) if d is not None else a) for a, d in zip(args, dims)]
            per_member.append(_Scan.apply(kernel, opts, picked[0], picked[1], keep, n_states, *picked[2:]))
        return tuple(torch.stack(parts) for parts in zip(*per_member)), (0,) * len(per_member[0])


def register(kernel: Kernel) -> None:
    """The op's own autograd formula (what torch.compile and torch.export see): :func:`fused_backward`."""

    def setup_context(ctx, inputs, output):
        (cell, activation, recurrent_activation, reverse, cell_args, save, gx, states, weights, lengths, rec_mask,
         zoneout) = inputs
        ctx.opts = ScanOptions.from_op_args(cell, activation, recurrent_activation, reverse, cell_args)
        ctx.n_states, ctx.none_weights = len(states), tuple(w is None for w in weights)
        ctx.n_cell_args, ctx.n_zoneout = len(cell_args), len(zoneout)
        ctx.zoneout_is_none = all(z is None for z in zoneout)
        ctx.keep = tuple(zoneout)
        ctx.save_for_backward(lengths, rec_mask, *[w for w in weights if w is not None], *output)
        ctx.set_materialize_grads(False)

    def backward(ctx, grads):
        lengths, rec_mask, *rest = ctx.saved_tensors
        n_present = sum(not none for none in ctx.none_weights)
        present, outputs = iter(rest[:n_present]), rest[n_present:]
        weights = [None if none else next(present) for none in ctx.none_weights]
        K = len(ctx.opts.spec.states)
        grads = list(grads[:K])
        # one entry per input, in the inputs' structure (a list of Nones, as zoneout without tensors, is one)
        zoneout_grads = None if ctx.zoneout_is_none else [None] * ctx.n_zoneout
        head, tail = (None,) * 4 + ([None] * ctx.n_cell_args, None), (None, None, zoneout_grads)
        if all(g is None for g in grads):
            return head + (None, [None] * ctx.n_states, [None] * len(weights)) + tail
        needs = tuple(w is not None for w in weights)
        dgx, dstates, dweights = fused_backward(kernel, ctx.opts, grads, outputs, weights, lengths, rec_mask, ctx.keep,
                                                needs)
        return head + (dgx, dstates, dweights) + tail

    torch.library.register_autograd(kernel.forward, backward, setup_context=setup_context)
