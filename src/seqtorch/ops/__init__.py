"""The scan: one layer, one direction of a recurrent cell over a sequence, and its implementations.

Left to right, each importing only from its left:

* :mod:`.reference`: the plain autograd loop over a cell's step, the spec every implementation equals;
* :mod:`.contract`: the op pair every fused implementation registers (schema, outputs, shapes);
* the fused implementations, each an op pair: :mod:`.python_loop` (any device), :mod:`.native` (the C++
  loop, ``csrc/``), and the Triton backend's folder :mod:`.triton` (:mod:`.triton.persistent` and
  :mod:`.triton.alternating`, what they share in :mod:`.triton.common`);
* :mod:`.autograd`: one differentiable scan over any op pair, with all of PyTorch's autograd semantics;
* :mod:`.dispatch`: the ordered list of implementations and the one entry that picks and runs
  (:func:`.dispatch.scan`), which :mod:`seqtorch.functional` calls.
"""
