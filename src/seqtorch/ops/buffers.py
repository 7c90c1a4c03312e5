"""Fresh buffers for the fused scans: from the C++ pool for large CPU ones, NaN-filled when tests ask.

Fresh memory of 128 KiB or more is mmap-ed (or trimmed from the heap when freed) and page-faults in on first touch, which costs more than a
scan's arithmetic at the book's sizes; the pool (``csrc/buffer_pool.cpp``, which says what it may hold)
hands back the last step's memory instead. :func:`pool_stats` shows what it holds, :func:`empty_cache`
(``seqtorch.empty_cache()``) gives its idle memory back to the system. :func:`set_poison` is the tests'
switch: every fresh buffer of the Python and the C++ loops then starts as NaN, so an element a loop forgot
to write cannot pass a comparison by chance.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake

from . import native

POISON = False
POOL_MIN_BYTES = 128 << 10  # the same threshold as csrc/buffer_pool.h (which says why this size)


def set_poison(on: bool) -> None:
    """Fill every fresh buffer with NaN from now on (``on``), or stop; for the C++ loops too."""
    global POISON
    POISON = bool(on)
    ops = native.load()
    if ops is not None:
        ops.set_poison_buffers(POISON)
    from . import native_cells  # the libraries of cells generated from equations, each with its own pool

    native_cells.set_poison(POISON)


def pool_stats() -> dict[str, int]:
    """What the buffer pool holds: ``idle_bytes`` (kept for reuse, in ``idle_blocks`` blocks), ``in_use_bytes``
    (its blocks that tensors hold), ``high_water_bytes`` (the most in use at once since the last
    :func:`empty_cache`: the pool never holds more than that, idle memory included) and ``idle_cap_bytes``
    (``SEQTORCH_POOL_MB``). All zero without the C++ library."""
    ops = native.load()
    values = ops.pool_stats() if ops is not None else [0] * 5
    return dict(zip(("idle_bytes", "idle_blocks", "in_use_bytes", "high_water_bytes", "idle_cap_bytes"), values))


def empty_cache() -> None:
    """Give the buffer pool's idle memory back to the system (like ``torch.cuda.empty_cache``): the buffers
    tensors still hold stay, and later scans allocate afresh."""
    ops = native.load()
    if ops is not None:
        ops.pool_release_idle()


def new_buffer(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """An uninitialized buffer with ``like``'s dtype and device (NaN-filled under :data:`POISON`)."""
    buffer = None
    if like.device.type == "cpu" and math.prod(shape) * like.element_size() >= POOL_MIN_BYTES \
            and not is_fake(like):
        ops = native.load()
        if ops is not None:
            buffer = ops.pooled_empty(list(shape), like.dtype)
    if buffer is None:
        buffer = torch.empty(shape, dtype=like.dtype, device=like.device)
    return buffer.fill_(float("nan")) if POISON else buffer


def placeholder(like: Tensor) -> Tensor:
    """A 0-element tensor standing for an output an option does not need (ops return no None)."""
    return like.new_empty(0)
