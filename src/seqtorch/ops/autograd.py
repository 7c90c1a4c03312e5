"""One differentiable scan over any implementation's op pair, with all of PyTorch's autograd semantics.

:func:`scan` is what the backends call. How each kind of differentiation is served:

* **first-order backward** (``loss.backward()``, ``torch.autograd.grad``): the implementation's backward
  op, a hand-written BPTT, then the weights' gradients as one GEMM over all steps
  (:meth:`~seqtorch.recurrent_cells.base.Cell.weight_grads`).
* **inference** (no input needs a gradient): the forward op with ``save=False``, which keeps no
  activations for a backward that will not come.
* **double backward** (``create_graph=True``: gradient penalties, ``gradgradcheck``, Hessians) and the
  backward under ``torch.func`` transforms (``grad``, ``jacrev``, ``vjp``, ``hessian``): the gradient is
  computed through the reference scan (:func:`seqtorch.ops.reference.state_history_reference`) with
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

from typing import Sequence

import torch
from torch import Tensor
from torch._C._functorch import is_functorch_wrapped_tensor, unwrap_if_dead

from .contract import ForwardLayout, Kernel, ScanInputs, ScanOptions, buffer_names
from .reference import state_history_reference, valid_steps

# The per-step inputs travel to the ops and through autograd as one tuple, in the ops' order:
# (lengths, mask, restart, rec_mask, keep), keep a tuple with one tensor or None per state. None of them
# is differentiated; the first four are tensors (or None) that torch.func may batch.
N_STEP_TENSORS = 4


def scan(kernel: Kernel, opts: ScanOptions, inputs: ScanInputs,
         histories: bool = False) -> tuple[Tensor, tuple[Tensor, ...]] | tuple[Tensor, tuple, tuple]:
    """One layer, one direction on ``kernel``: output (T, B, P), zero at invalid steps, and the final
    states (each sequence's last valid one); with ``histories``, also each state's value after every step
    (T, B, width), zero at invalid steps. Shapes as :func:`seqtorch.ops.reference.scan_reference`."""
    gx, states, resets, weights = inputs.gx, inputs.states, inputs.reset_states, inputs.weights
    step = _step_inputs(inputs)
    tensors = [t for t in (gx, *states, *resets, *weights) if t is not None]
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    if torch.compiler.is_compiling():
        save = needs_grad or histories
        outputs = kernel.forward(*opts.op_args(), save, gx, list(states), list(weights), *_op_step_inputs(step, resets))
    elif needs_grad or any(is_functorch_wrapped_tensor(t) for t in (*tensors, *step[:N_STEP_TENSORS])
                           if t is not None):
        save = True
        outputs = RecurrentScan.apply(kernel, opts, *step, len(states), len(resets), gx, *states, *resets, *weights)
    else:
        save = histories
        outputs = _forward_eager(kernel, opts.op_args(), save, gx, list(states), list(weights),
                                 *_op_step_inputs(step, resets))
    return finish(outputs[:len(states)], opts, inputs.lengths, inputs.mask, save, histories)


def _forward_eager(kernel: Kernel, op_args: tuple, *args):
    """The forward op, called below the autograd dispatch key. Its registered autograd formula (a Python
    kernel, for what torch.compile traces) would only pass an eager call on, at about 30 us a call; the
    eager paths here do their own autograd (:class:`RecurrentScan`) or need none."""
    with torch._C._AutoDispatchBelowAutograd():
        return kernel.forward._op(*op_args, *args)  # the OpOverload's own call, without its Python frame


def _step_inputs(inputs: ScanInputs) -> tuple:
    keep = tuple(inputs.keep) if inputs.keep is not None else (None,) * len(inputs.states)
    return inputs.lengths, inputs.mask, inputs.restart, inputs.rec_mask, keep


def _op_step_inputs(step: tuple, resets) -> tuple:
    """The ops' trailing arguments: lengths, mask, restart, reset_states (one entry per state, None for none),
    rec_mask, keep."""
    lengths, mask, restart, rec_mask, keep = step
    return lengths, mask, restart, list(resets) if resets else [None] * len(keep), rec_mask, list(keep)


def finish(states: Sequence[Tensor], opts: ScanOptions, lengths: Tensor | None, mask: Tensor | None, save: bool,
           histories: bool = False):
    """Output and final states (and with ``histories``, every step's states) from the forward op's state
    outputs (its first K: :attr:`.contract.ForwardLayout.states`); zero at invalid steps (those ``lengths`` and
    ``mask`` say, as :class:`.contract.ScanInputs`)."""
    h, others = states[0], states[1:]
    steps = h.shape[0] - 1
    last = 0 if opts.reverse else steps
    finals = (h[last],) + (tuple(s[last] for s in others) if save else tuple(others))
    valid = valid_steps(steps, lengths, mask) if steps > 0 and (lengths is not None or mask is not None) else None
    if histories:
        return (_per_step(h, opts.reverse, valid), finals,
                tuple(_per_step(s, opts.reverse, valid) for s in states))
    return _per_step(h, opts.reverse, valid), finals


def _per_step(history: Tensor, reverse: bool, valid: Tensor | None) -> Tensor:
    """A state's value after each step (T, B, width) from its history (T+1, B, width), zero where not ``valid``."""
    out = history[:-1] if reverse else history[1:]
    return out if valid is None else torch.where(valid.unsqueeze(-1), out, 0.0)


# ---------------------------------------------------------------------------------------------------
# the backward, shared by the eager Function and the op's registered formula

def fused_backward(kernel: Kernel, opts: ScanOptions, grads, outputs, weights, step: tuple, resets,
                   needs_weights: tuple[bool, ...]) -> tuple[Tensor, list[Tensor], list[Tensor], list[Tensor | None]]:
    """dgx, the initial and the reset states' gradients, and the weights' gradients, from the state outputs'
    gradients."""
    cell = opts.cell
    K, R = len(cell.states), len(resets)
    results = kernel.backward._op(*opts.op_args(), list(grads), list(outputs), list(weights),
                                  *_op_step_inputs(step, resets))  # the OpOverload's own call (_forward_eager)
    dgx, dstates, dresets, buffers = results[0], list(results[1:1 + K]), list(results[1 + K:1 + K + R]), \
        results[1 + K + R:]
    named = dict(zip(buffer_names(cell)[1], buffers))
    layout = ForwardLayout.split(cell, list(outputs), save=True)
    h = layout.states[0]
    h_in = layout.hm if layout.hm is not None else (h[1:] if opts.reverse else h[:-1])
    dweights = cell.weight_grads(named, dgx, h_in, layout.u, tuple(weights), needs_weights, layout.saved)
    return dgx, dstates, dresets, dweights


def _reference_histories(opts: ScanOptions, step: tuple, n_states: int, n_resets: int,
                         none_weights: tuple[bool, ...]):
    """The differentiable outputs of the forward op (the K state histories), computed by the reference,
    as a function of (gx, *states, *reset states, *the weights that are not None)."""
    lengths, mask, restart, rec_mask, keep = step

    def histories(gx, *rest):
        states, resets = rest[:n_states], rest[n_states:n_states + n_resets]
        present = iter(rest[n_states + n_resets:])
        weights = tuple(None if none else next(present) for none in none_weights)
        return state_history_reference(opts.cell, gx, states, weights, lengths=lengths, rec_mask=rec_mask,
                                       reverse=opts.reverse, acts=opts.acts,
                                       keep=None if all(k is None for k in keep) else keep,
                                       cell_args=opts.cell_args, mask=mask, restart=restart,
                                       reset_states=tuple(resets))

    return histories


def _needs_graph(tensors) -> bool:
    """Whether the gradient being computed must itself be differentiable: create_graph=True (grad mode on
    in a backward) with something tracking it, or a torch.func transform around the scan."""
    tensors = [t for t in tensors if t is not None]
    if any(is_functorch_wrapped_tensor(t) for t in tensors):
        return True
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


_HEAD = 2 + N_STEP_TENSORS + 3  # kernel, opts, the step tensors, keep, n_states, n_resets: no gradient


class RecurrentScan(torch.autograd.Function):
    """The eager scan: inputs (kernel, opts, lengths, mask, restart, rec_mask, keep, n_states, n_resets, gx,
    *states, *reset_states, *weights), outputs the forward op's (the state histories, then saved buffers,
    which are not differentiable). ``keep``: a tuple (one tensor or None per state), constants to autograd."""

    @classmethod
    def apply(cls, *args):
        # torch's Function.apply binds the arguments to forward's signature (inspect.signature) on every call,
        # about 60 us, only to fill in defaults, of which forward has none. Outside functorch's transforms
        # (which need that path) the base class's apply is called directly, after what torch does there too.
        if torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        # torch's unwrap_dead_wrappers(args), as a list comprehension rather than its generator (a microsecond)
        return super(torch.autograd.Function, cls).apply(*[unwrap_if_dead(a) if isinstance(a, Tensor) else a
                                                           for a in args])

    @staticmethod
    def forward(kernel, opts, lengths, mask, restart, rec_mask, keep, n_states, n_resets, gx, *rest):
        states, resets = list(rest[:n_states]), list(rest[n_states:n_states + n_resets])
        weights = list(rest[n_states + n_resets:])
        return tuple(_forward_eager(kernel, opts.op_args(), True, gx, states, weights, lengths, mask, restart, resets,
                                    rec_mask, list(keep)))

    @staticmethod
    def setup_context(ctx, inputs, output):
        kernel, opts, lengths, mask, restart, rec_mask, keep, n_states, n_resets, gx, *rest = inputs
        K = len(opts.cell.states)
        ctx.kernel, ctx.opts, ctx.K, ctx.n_outputs = kernel, opts, K, len(output)
        ctx.n_states, ctx.n_resets, ctx.keep = n_states, n_resets, keep
        ctx.none_weights = tuple(w is None for w in rest[n_states + n_resets:])
        ctx.save_for_backward(gx, lengths, mask, restart, rec_mask, *rest, *output)
        ctx.save_for_forward(gx, lengths, mask, restart, rec_mask, *rest)
        ctx.mark_non_differentiable(*output[K:])
        ctx.set_materialize_grads(False)

    @staticmethod
    def _split(ctx, inputs):
        n, r = ctx.n_states, ctx.n_resets
        return inputs[:n], inputs[n:n + r], inputs[n + r:]

    @staticmethod
    def backward(ctx, *grads):
        gx, *rest = ctx.saved_tensors
        step, rest = (*rest[:N_STEP_TENSORS], ctx.keep), rest[N_STEP_TENSORS:]
        n_in = ctx.n_states + ctx.n_resets + len(ctx.none_weights)
        inputs, outputs = rest[:n_in], rest[n_in:]
        states, resets, weights = RecurrentScan._split(ctx, inputs)
        grads = list(grads[:ctx.K])
        head = (None,) * _HEAD
        if all(g is None for g in grads):
            return head + (None,) * (1 + n_in)
        if _needs_graph([gx, *inputs, *grads]):
            present = [w for w in weights if w is not None]
            fn = _reference_histories(ctx.opts, step, ctx.n_states, ctx.n_resets, ctx.none_weights)
            primals, vjp = torch.func.vjp(fn, gx, *states, *resets, *present)
            cotangents = tuple(torch.zeros_like(p) if g is None else g for g, p in zip(grads, primals))
            result = iter(vjp(cotangents))
            dgx = next(result)
            dstates = [next(result) for _ in states]
            dresets = [next(result) for _ in resets]
            dweights = [None if none else next(result) for none in ctx.none_weights]
            return head + (dgx, *dstates, *dresets, *dweights)
        needs = ctx.needs_input_grad[_HEAD + 1 + ctx.n_states + ctx.n_resets:]
        dgx, dstates, dresets, dweights = fused_backward(ctx.kernel, ctx.opts, grads, outputs, weights, step, resets,
                                                         tuple(needs))
        return head + (dgx, *dstates, *dresets, *dweights)

    @staticmethod
    def jvp(ctx, *tangents):
        gx, *rest = ctx.saved_tensors
        step, inputs = (*rest[:N_STEP_TENSORS], ctx.keep), rest[N_STEP_TENSORS:]
        states, resets, weights = RecurrentScan._split(ctx, inputs)
        present = [w for w in weights if w is not None]
        primals_in = (gx, *states, *resets, *present)
        tangents = tangents[_HEAD:]
        n_front = 1 + ctx.n_states + ctx.n_resets
        tangents_in = list(tangents[:n_front])
        tangents_in += [t for t, none in zip(tangents[n_front:], ctx.none_weights) if not none]
        tangents_in = tuple(torch.zeros_like(p) if t is None else t for t, p in zip(tangents_in, primals_in))
        fn = _reference_histories(ctx.opts, step, ctx.n_states, ctx.n_resets, ctx.none_weights)
        # J t as the vjp of the (linear) map u -> J^T u: reverse mode twice, no nested forward-AD level
        primals_out, vjp = torch.func.vjp(fn, *primals_in)
        zeros = tuple(torch.zeros_like(p) for p in primals_out)
        _, vjp_of_vjp = torch.func.vjp(lambda *u: vjp(u), *zeros)
        out_tangents = vjp_of_vjp(tangents_in)
        return tuple(out_tangents) + (None,) * (ctx.n_outputs - ctx.K)

    @staticmethod
    def vmap(info, in_dims, kernel, opts, lengths, mask, restart, rec_mask, keep, n_states, n_resets, gx, *rest):
        n_front = n_states + n_resets
        fronts, weights = rest[:n_front], rest[n_front:]
        d_len, d_mask, d_restart, d_rec, _, _, _, d_gx, *d_rest = in_dims[2:]
        d_fronts, d_weights = d_rest[:n_front], d_rest[n_front:]
        n = info.batch_size
        if all(d is None for w, d in zip(weights, d_weights) if w is not None):
            # shared weights: the vmapped dimension becomes more sequences of one scan
            def fold(x, dim, batch_dim):
                if x is None:
                    return None
                x = x.movedim(dim, 0) if dim is not None else x.unsqueeze(0).expand(n, *x.shape)
                return x.movedim(0, batch_dim).flatten(batch_dim, batch_dim + 1)

            outputs = RecurrentScan.apply(kernel, opts, fold(lengths, d_len, 0), fold(mask, d_mask, 1),
                                  fold(restart, d_restart, 1), fold(rec_mask, d_rec, 0),
                                  tuple(fold(k, None, 1) for k in keep), n_states, n_resets, fold(gx, d_gx, 1),
                                  *[fold(s, d, 0) for s, d in zip(fronts, d_fronts)], *weights)
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
        args = (lengths, mask, restart, rec_mask, gx, *rest)
        dims = (d_len, d_mask, d_restart, d_rec, d_gx, *d_rest)
        per_member = []
        for i in range(n):
            picked = [None if a is None else (a.select(d, i) if d is not None else a) for a, d in zip(args, dims)]
            per_member.append(RecurrentScan.apply(kernel, opts, *picked[:N_STEP_TENSORS], keep, n_states, n_resets,
                                          *picked[N_STEP_TENSORS:]))
        return tuple(torch.stack(parts) for parts in zip(*per_member)), (0,) * len(per_member[0])


def register(kernel: Kernel) -> None:
    """The op's own autograd formula (what torch.compile and torch.export see): :func:`fused_backward`."""

    def setup_context(ctx, inputs, output):
        (cell, activation, recurrent_activation, reverse, cell_args, save, gx, states, weights, lengths, mask, restart,
         resets, rec_mask, keep) = inputs
        ctx.opts = ScanOptions.from_op_args(cell, activation, recurrent_activation, reverse, cell_args)
        resets = [r for r in resets if r is not None]  # one entry per state, all None where none are given
        ctx.n_states, ctx.n_resets, ctx.none_weights = len(states), len(resets), tuple(w is None for w in weights)
        ctx.n_cell_args = len(cell_args)
        ctx.keep = tuple(keep)
        ctx.save_for_backward(lengths, mask, restart, rec_mask, *resets, *[w for w in weights if w is not None],
                              *output)
        ctx.set_materialize_grads(False)

    def backward(ctx, grads):
        saved = ctx.saved_tensors
        step, rest = (*saved[:N_STEP_TENSORS], ctx.keep), saved[N_STEP_TENSORS:]
        resets, rest = rest[:ctx.n_resets], rest[ctx.n_resets:]
        n_present = sum(not none for none in ctx.none_weights)
        present, outputs = iter(rest[:n_present]), rest[n_present:]
        weights = [None if none else next(present) for none in ctx.none_weights]
        K = len(ctx.opts.cell.states)
        grads = list(grads[:K])
        # one entry per input, in the inputs' structure (a list of Nones, as keep without tensors, is one)
        keep_grads = None if all(k is None for k in ctx.keep) else [None] * len(ctx.keep)
        reset_grads = [None] * ctx.n_states if ctx.n_resets else None  # likewise for reset_states
        head = (None,) * 4 + ([None] * ctx.n_cell_args, None)
        if all(g is None for g in grads):
            return head + (None, [None] * ctx.n_states, [None] * len(weights), None, None, None, reset_grads, None,
                           keep_grads)
        needs = tuple(w is not None for w in weights)
        dgx, dstates, dresets, dweights = fused_backward(kernel, ctx.opts, grads, outputs, weights, step, resets,
                                                         needs)
        return head + (dgx, dstates, dweights, None, None, None, dresets or reset_grads, None, keep_grads)

    torch.library.register_autograd(kernel.forward, backward, setup_context=setup_context)
