"""What a recurrent cell is to seqtorch: the one description every backend reads.

A cell is its step, nothing else. The scans of :mod:`seqtorch.ops` (the reference loop, the Python loop,
the C++ loop, the Triton kernel) are each written once, for every cell: they own the time loop, the state
buffers, ``lengths``, ``reverse``, the recurrent-dropout mask and the weight-gradient GEMMs. A cell says:

* ``gates`` (``G``: ``gx`` is ``(T, B, G*H)``), ``states`` (``("h",)`` or ``("h", "c")``; ``h`` is the
  output) and ``weights``: the names of its recurrent parameters, in the order the scans take them.
* ``products``: the recurrent matrix products of a step (:class:`Product`). Most cells have one,
  ``h~ @ W_hh^T``, done by the scan before the cell's pointwise code runs; a cell whose second product
  needs the first one's result (the reset-before GRU: ``(r * h~) @ W_hn^T``) has two, and its pointwise
  code runs in two stages around them.
* :meth:`Cell.step`: the readable equations, in differentiable PyTorch: the reference every fast path
  is tested against.
* per backend, its pointwise code: :meth:`Cell.loop_forward` / :meth:`Cell.loop_backward` for the Python
  loop (here), ``cpu.h`` beside the cell for the C++ loop, ``triton.py`` for the Triton kernels. A cell
  without one of them is run by the next backend (the rule is in :mod:`seqtorch.functional`).
* the per-step buffers its backward needs (:meth:`Cell.saved`) and how its recurrent weights' gradients
  follow from the per-step gradients the backward writes (:meth:`Cell.weight_grads`).

Shapes: ``T`` steps, ``B`` sequences, ``H`` hidden size, ``P`` the size of ``h`` (``H`` unless a cell
projects it). Per-step buffers are ``(T, B, width)``; the loops see one step's ``(B, width)`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from . import activations


@dataclass(frozen=True)
class Acts:
    """The two activation choices of a scan, by canonical name (see :mod:`.activations`)."""

    activation: str = "tanh"
    recurrent: str = "sigmoid"

    @staticmethod
    def of(activation: str, recurrent_activation: str) -> "Acts":
        return Acts(activations.canonical(activation), activations.canonical(recurrent_activation))


@dataclass(frozen=True)
class Sizes:
    T: int
    B: int
    H: int
    P: int  # the size of h (the output and the state the products read): H unless projected


@dataclass(frozen=True)
class Product:
    """One recurrent matrix product of a step: ``X @ W^T`` with ``W = weights[weight][rows]``.

    ``rows``: gate blocks ``[start, stop)`` of that weight in units of H (None: all of it). ``input``:
    ``"h_in"``, the state as it enters the product (``h * rec_mask``), or ``"u"``, the vector the cell's
    first pointwise stage wrote (for a second product). ``bias``: the weight (its same rows) that is added
    to the product's output before anything else, or None (for :meth:`Cell.weight_grads`).
    """

    weight: int = 0
    rows: tuple[int, int] | None = None
    input: str = "h_in"
    bias: int | None = 1


@dataclass
class ForwardStep:
    """One step of the Python loop's forward, as a cell's pointwise code sees it (rows of this step)."""

    gx: Tensor                      # (B, G*H) input projection
    product: Tensor | None          # (B, width) this stage's recurrent product, no bias; None if none
    h_in: Tensor                    # (B, P) h * rec_mask
    prev: tuple[Tensor, ...]        # the states the step reads
    next: tuple[Tensor, ...]        # the state rows to write
    u: Tensor | None                # (B, U): stage 0 writes it, the second product reads it
    weights: tuple[Tensor | None, ...]
    saved: dict[str, Tensor]        # this step's rows of the saved buffers, to write
    acts: Acts
    args: tuple[float, ...] = ()    # the cell's numeric options (cell_args)


@dataclass
class BackwardStep:
    """One step of the Python loop's backward, as a cell's pointwise code sees it (rows of this step).

    ``d_next``: the gradients of the states this step wrote (everything from later steps and above).
    The cell writes ``dgx`` and its gradient buffers, and sets ``d_prev[k]`` (the gradient of state k read
    by the step, except through the products, which the loop adds) and ``d_h_in`` (a gradient of h_in
    besides the product's), or leaves them None (zero). Stage 0 of a two-product cell reads ``du``.
    """

    d_next: tuple[Tensor, ...]
    prev: tuple[Tensor, ...]
    h_in: Tensor
    u: Tensor | None
    weights: tuple[Tensor | None, ...]
    saved: dict[str, Tensor]
    acts: Acts
    dgx: Tensor
    grads: dict[str, Tensor]
    args: tuple[float, ...] = ()
    du: Tensor | None = None
    d_prev: list[Tensor | None] = field(default_factory=list)
    d_h_in: Tensor | None = None


def _write(out: list[Tensor | None], weights: tuple[Tensor | None, ...], index: int, rows: slice | None, fn,
           *args, **kwargs) -> None:
    """``out[index] = fn(*args)`` for a whole weight's gradient (``rows`` None); for a weight's gate ``rows``,
    ``fn(*args, out=...)`` into those rows of ``out[index]``, made first (like the weight) if it is not yet."""
    if rows is None:
        out[index] = fn(*args, **kwargs)
        return
    if out[index] is None:
        out[index] = torch.empty_like(weights[index])
    fn(*args, **kwargs, out=out[index][rows])


class Cell:
    """Base of every cell spec; a cell subclasses it and fills in the class attributes and methods.

    The spec *is* the cell: layers and cell Modules hold it (``layer.cell``), the scans take it. One
    instance per cell is registered by name (:data:`seqtorch.recurrent_cells.CELLS`); a pickled Module
    keeps the name, so it holds no class of the spec.
    """

    name: str = ""
    family: str = "rnn"  # "rnn", "lstm" or "gru": the gate layout Keras' initializers follow ("pointwise": none)
    # the options of :mod:`seqtorch.options` this cell takes beyond every cell's (its activations, its numeric
    # options): a Module over it accepts them as keyword arguments
    options: tuple[str, ...] = ()
    # why ``single_bias=True`` cannot serve this cell (its two biases act apart), or None
    single_bias_conflict: str | None = None
    gates: int = 1
    states: tuple[str, ...] = ("h",)
    weights: tuple[str, ...] = ("weight_hh", "bias_hh")  # the scan's recurrent weights, in order
    input_weights: tuple[str, ...] = ("weight_ih", "bias_ih")  # the input projection's
    products: tuple[Product, ...] = (Product(),)
    cell_args: tuple[str, ...] = ()  # names of the numeric options the scan passes on (LayerNorm's eps)
    projected: bool = False  # whether h has a size P of its own (else P = H)
    # whether b_ih and b_hh add to the same pre-activations (x W_ih^T + b_ih + product + b_hh), before any
    # nonlinearity or normalization: then the scan takes b_ih + b_hh as its bias (see scan_inputs)
    folds_input_bias: bool = False
    # whether the step's pointwise code reduces over all H columns of a row (LayerNorm's statistics): a kernel
    # that splits a row's columns across programs cannot run it, and gives each program whole rows instead
    reduces_over_hidden: bool = False
    # why no fused implementation can run this cell, which then runs on the reference scan only; None: the
    # implementations that have its code run it (a cell from equations the generators refuse sets it)
    reference_only: str | None = None

    def __repr__(self) -> str:
        return f"<cell {self.name!r}>"

    # ---- parameters ---------------------------------------------------------------------------------
    def parameters(self, I: int, H: int, P: int) -> list[tuple[str, tuple[int, ...]]]:
        """Every parameter of one layer and direction, (name, shape), in the order torch.nn registers
        them (the same seed then draws the same values). A layer without bias leaves out the ``bias_*``."""
        G = self.gates
        return [("weight_ih", (G * H, I)), ("weight_hh", (G * H, P)), ("bias_ih", (G * H,)), ("bias_hh", (G * H,))]

    def input_projection(self, x: Tensor, weights: tuple[Tensor | None, ...], cell_args: tuple[float, ...]) -> Tensor:
        """gx (T, B, G*H) from the layer input x (T, B, I) and :attr:`input_weights`: ``x W_ih^T + b_ih``."""
        return torch.nn.functional.linear(x, weights[0], weights[1])

    def scan_inputs(self, x: Tensor, input_weights: tuple[Tensor | None, ...],
                    weights: tuple[Tensor | None, ...], cell_args: tuple[float, ...]
                    ) -> tuple[Tensor, tuple[Tensor | None, ...]]:
        """gx (T, B, G*H) and the recurrent weights (:attr:`weights`' order) a layer's scan takes, from its
        input x (T, B, I). By default gx is :meth:`input_projection` and the weights are as given. A cell
        that :attr:`folds_input_bias` has gx = x W_ih^T and b_ih + b_hh as its bias (:meth:`folded_inputs`)."""
        if not self.folds_input_bias or input_weights[1] is None:
            return self.input_projection(x, input_weights, cell_args), weights
        (w_ih, _), weights = self.folded_inputs(input_weights, weights)
        return torch.nn.functional.linear(x, w_ih), weights

    def folded_inputs(self, input_weights: tuple[Tensor | None, ...], weights: tuple[Tensor | None, ...]
                      ) -> tuple[tuple[Tensor | None, ...], tuple[Tensor | None, ...]]:
        """The input weights and the recurrent weights of a scan of this cell, with b_ih folded into b_hh
        where the cell :attr:`folds_input_bias`: ``(W_ih, None)`` and b_ih + b_hh as the bias, the same sum
        as one (G*H,) add in place of a pass over all of gx (and MKL's GEMM without a bias to add runs up to
        2x faster at the book's sizes: 4 ms instead of 9 at T=500, B=128, G*H=128, one thread). Otherwise
        both as given."""
        if not self.folds_input_bias or input_weights[1] is None:
            return tuple(input_weights), tuple(weights)
        w_ih, b_ih = input_weights
        weights, at = tuple(weights), self.weights.index("bias_hh")
        b_hh = weights[at]
        bias = b_ih if b_hh is None else b_ih + b_hh
        return (w_ih, None), weights[:at] + (bias,) + weights[at + 1:]

    def init_(self, params: dict[str, Tensor], scheme: str) -> None:
        """Initial values of this cell's own parameters, after the scheme's draw (``"torch"``: every
        parameter uniform in +-1/sqrt(H); ``"keras"``: glorot, orthogonal, zeros). Nothing by default."""

    # ---- sizes --------------------------------------------------------------------------------------
    def state_sizes(self, H: int, P: int) -> tuple[int, ...]:
        """The width of each state (h first)."""
        return (P,) + (H,) * (len(self.states) - 1)

    def weight_shapes(self, H: int, P: int) -> list[tuple[int, ...]]:
        """The shape of each recurrent weight, in :attr:`weights`' order (from :meth:`parameters`); a
        weight named ``bias_*`` may be None (a layer without bias)."""
        shapes = dict(self.parameters(1, H, P))
        return [shapes[name] for name in self.weights]

    def hidden_size(self, weights: tuple[Tensor | None, ...] | list) -> int:
        """H from the weights: the first one's rows are the G gate blocks."""
        return weights[0].shape[0] // self.gates

    def product_width(self, index: int, H: int, P: int) -> int:
        """The width of product ``index``'s output: its gate rows, or all of its weight's rows."""
        product = self.products[index]
        if product.rows is not None:
            return (product.rows[1] - product.rows[0]) * H
        return self.weight_shapes(H, P)[product.weight][0]

    def u_width(self, H: int, P: int) -> int:
        """Width of the vector the first stage hands to the second product (0: one product)."""
        return 0

    @property
    def stages(self) -> int:
        """How many pointwise stages a step has (one more than the products after the first)."""
        return max(1, len(self.products))

    def saved(self, sizes: Sizes, acts: Acts) -> list[tuple[str, int]]:
        """The per-step buffers the forward fills for the backward: (name, width), width 0 if unused."""
        raise NotImplementedError

    def grad_buffers(self, sizes: Sizes) -> list[tuple[str, int]]:
        """Per-step gradients the backward writes besides dgx, for :meth:`weight_grads`: (name, width).

        By default none: each product's output gradient ``dP{i}`` is then dgx at the product's gate rows
        (true where gx and the product are added before any nonlinearity, as in the LSTM). A cell where
        they differ (torch's GRU scales the n block's product by r) declares ``dP{i}`` here."""
        return []

    def saved_names(self) -> list[str]:
        return [name for name, _ in self.saved(Sizes(1, 1, 1, 1), Acts())]

    def grad_buffer_names(self) -> list[str]:
        return [name for name, _ in self.grad_buffers(Sizes(1, 1, 1, 1))]

    # ---- the reference ------------------------------------------------------------------------------
    def step(self, gx: Tensor, h_in: Tensor, states: tuple[Tensor, ...], weights: tuple[Tensor | None, ...],
             acts: Acts, args: tuple[float, ...] = ()) -> tuple[Tensor, ...]:
        """One step in differentiable PyTorch: gx (B, G*H), h_in = h * rec_mask (B, P), states as
        :attr:`states`, args the cell's numeric options. Returns the new states."""
        raise NotImplementedError

    # ---- the Python loop ----------------------------------------------------------------------------
    def loop_forward(self, stage: int, s: ForwardStep) -> None:
        raise NotImplementedError

    def loop_backward(self, stage: int, s: BackwardStep) -> None:
        raise NotImplementedError

    def generated_cpp(self) -> str | None:
        """The C++ loop's pointwise code generated from this cell's equations (a header in the ``cpu.h``
        convention, compiled into a library of its own: :mod:`seqtorch.ops.native_cells`), or None: a
        built-in cell has its ``cpu.h`` in its folder, or none."""
        return None

    def generated_triton(self) -> str | None:
        """The Triton kernels' pointwise code generated from this cell's equations (a module in the
        ``triton.py`` convention, imported from the cache: :mod:`seqtorch.ops.triton.common`), or None: a
        built-in cell has its ``triton.py`` in its folder, or none."""
        return None

    # ---- gradients of the recurrent weights, after the loop (every backend) -------------------------
    def weight_grads(self, grads: dict[str, Tensor], dgx: Tensor, h_in: Tensor, u: Tensor | None,
                     weights: tuple[Tensor | None, ...], needs: tuple[bool, ...],
                     saved: dict[str, Tensor]) -> list[Tensor | None]:
        """``d weights`` from the per-step gradients, as one GEMM over all ``T*B`` rows per product.

        The default serves cells whose recurrent weights enter only through their products, with a bias
        added to a product's output (``d bias = sum of dP``, :attr:`Product.bias`). grads:
        :meth:`grad_buffers` (T, B, width); h_in (T, B, P); u (T, B, U) or None; needs: which weights want a
        gradient; saved: the forward's saved buffers (T, B, width). A cell with other weights overrides this.
        """
        wanted = [w is not None and need for w, need in zip(weights, needs)]
        out: list[Tensor | None] = [None] * len(weights)
        H = dgx.shape[-1] // self.gates
        for index, product in enumerate(self.products):
            rows = None if product.rows is None else slice(product.rows[0] * H, product.rows[1] * H)
            d = grads.get(f"dP{index}")
            if d is None:
                d = dgx if rows is None else dgx[..., rows]
            d = d.reshape(-1, d.shape[-1])
            if wanted[product.weight]:
                x = h_in if product.input == "h_in" else u
                _write(out, weights, product.weight, rows, torch.mm, d.t(), x.reshape(-1, x.shape[-1]))
            if product.bias is not None and wanted[product.bias]:
                _write(out, weights, product.bias, rows, torch.sum, d, dim=0)
        # every wanted weight gets a tensor, as the spec's products cover them all (a cell whose weights they
        # do not cover overrides this method)
        return [torch.empty_like(w) if want and dw is None else dw for w, want, dw in zip(weights, wanted, out)]

