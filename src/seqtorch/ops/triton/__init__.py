"""The ``triton`` backend: the scan on Triton kernels, in two implementations that share one cell code.

* :mod:`.persistent` (kernels in :mod:`.persistent_kernels`): up to H = 128, one launch per layer and
  direction for the forward and one for the backward; a program keeps its batch rows' state and W_hh's
  tiles on chip for the whole sequence.
* :mod:`.alternating` (kernels in :mod:`.step_kernels`): any larger H, for a cell with one product over all of
  W_hh; per step one cuBLAS GEMM for the recurrent product and one Triton launch for the cell's math.
* :mod:`.common`: what both share: the device rule (:func:`.common.supports_device`), the launchers' buffers
  and argument packing, the cell flags, and the lazy ``triton.jit`` decoration of the kernels and of each
  cell's step (its ``triton.py``, beside the cell, or generated from a cell's equations, on the interface of
  :mod:`seqtorch.recurrent_cells.triton_math`).

Each implementation is an op pair of :mod:`seqtorch.ops.contract` (``seqtorch::scan_forward_triton`` /
``..._triton_alternating`` and their backward), so it is interchangeable with the C++ and Python loops and
tested against the same reference; :mod:`seqtorch.ops.dispatch` lists both and registers their autograd.
Nothing here imports from the dispatch or the autograd layer above.

What the backend covers (each ``supports`` says why not; ``backend="auto"`` then takes the next path):

* every registered cell with a ``triton.py``, and every cell written as its equations with at most 2 states, 4
  gate blocks and 3 vectors (:func:`.common.cell_refusal`), every option of the reference
  (lengths, masks with holes, resets from reset states or the initial states, reverse, rec_mask, zoneout,
  activation tanh/relu, every recurrent_activation, no bias);
* hidden sizes 1 to :data:`.persistent.MAX_HIDDEN` on the persistent kernels, any larger one on the
  alternating loop for every cell with at most one product (all but the reset-before GRU and the projected
  LSTM);
* state, weights and math in float32 or float64 (w_hh's dtype); gx in that dtype, or float16/bfloat16
  under autocast (cast to the math dtype first; the output is returned in gx's dtype, the final states
  in the math dtype); matrix products in full precision (no TF32; the alternating loop's cuBLAS products
  follow ``torch.backends.cuda.matmul.allow_tf32``, off by default);
* CUDA tensors, or CPU tensors while ``TRITON_INTERPRET=1`` (the interpreter; slow, for tests).
"""
