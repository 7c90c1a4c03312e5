"""What the C++ buffer pool may hold (csrc/buffer_pool.cpp), seen through seqtorch.ops.buffers.pool_stats
and released by seqtorch.empty_cache(): reuse of near-equal sizes, and never more memory than the most it
had in use at once, however the sizes of the requests vary (issue 22: a cache of one block per size held
twice a sentiment model's memory when every batch had another length)."""

import random

import pytest
import torch

import seqtorch
from seqtorch.ops import buffers, native

OPS = native.load()
pytestmark = pytest.mark.skipif(OPS is None, reason="the C++ library is not available")
MB = 1 << 20


def _take(megabytes: float) -> torch.Tensor:
    return OPS.pooled_empty([int(megabytes * MB) // 4], torch.float32)


def _held() -> int:
    stats = buffers.pool_stats()
    return stats["idle_bytes"] + stats["in_use_bytes"]


def test_empty_cache_frees_the_idle_blocks_and_shows_it():
    seqtorch.empty_cache()
    blocks = [_take(3), _take(5)]
    in_use = buffers.pool_stats()["in_use_bytes"]
    del blocks
    stats = buffers.pool_stats()
    assert stats["idle_bytes"] >= 8 * MB and stats["idle_blocks"] >= 2
    assert stats["in_use_bytes"] == in_use - 8 * MB
    seqtorch.empty_cache()
    stats = buffers.pool_stats()
    assert stats["idle_bytes"] == 0 and stats["idle_blocks"] == 0
    assert stats["high_water_bytes"] == stats["in_use_bytes"]
    assert stats["idle_cap_bytes"] == 1024 * MB  # the default SEQTORCH_POOL_MB


def test_a_near_equal_size_reuses_a_block_and_a_much_smaller_one_does_not():
    seqtorch.empty_cache()
    block = _take(16)
    address = block.data_ptr()
    del block
    near = _take(15.5)  # within 1/16 below: the same block
    assert near.data_ptr() == address
    del near
    before = buffers.pool_stats()
    half = _take(8)
    stats = buffers.pool_stats()
    # not the 16 MB block (in use it would count 16 MB): that block was freed and 8 MB were allocated (the
    # allocator may hand the freed address back, so the address says nothing here)
    assert stats["in_use_bytes"] == before["in_use_bytes"] + 8 * MB
    assert stats["idle_bytes"] == 0
    del half


def test_a_miss_frees_every_idle_block():
    """A request no idle block serves means the shapes changed: the idle blocks go before the new one comes."""
    seqtorch.empty_cache()
    blocks = [_take(2), _take(3)]
    del blocks
    assert buffers.pool_stats()["idle_blocks"] >= 2
    other = _take(7)
    stats = buffers.pool_stats()
    assert stats["idle_bytes"] == 0 and stats["idle_blocks"] == 0
    del other


def test_held_memory_never_exceeds_the_high_water_mark():
    """Random requests of changing sizes (a loader's varying sequence lengths), tensors dying in any order:
    idle plus in-use memory stays within the most ever in use, so idle memory never adds to a peak."""
    seqtorch.empty_cache()
    rng = random.Random(0)
    live = []
    for step in range(300):
        if live and rng.random() < 0.45:
            live.pop(rng.randrange(len(live)))
        else:
            live.append(_take(rng.choice([1, 1.5, 2, 3, 4.5, 8, 12])))
        stats = buffers.pool_stats()
        assert stats["idle_bytes"] + stats["in_use_bytes"] <= stats["high_water_bytes"], (step, stats)


def test_training_steps_reuse_blocks_for_one_shape_and_keep_none_across_shapes():
    """LSTM training steps: at a fixed T the second step reuses every block (nothing new in use at its peak);
    when T changes every step, the pool holds after a step no more than that step's own buffers."""
    seqtorch.empty_cache()
    lstm = seqtorch.LSTM(32, 64)

    def step(T):
        lstm(torch.randn(T, 16, 32))[0].sum().backward()

    step(400)
    first = buffers.pool_stats()
    step(400)
    again = buffers.pool_stats()
    assert again["high_water_bytes"] == first["high_water_bytes"] and again["idle_bytes"] == first["idle_bytes"]
    for T in (480, 330, 450):
        seqtorch.empty_cache()
        step(T)
        one_step = buffers.pool_stats()["idle_bytes"]  # what a step of this T gives back
        step(T + 100)  # 20% longer or more: no block of T's serves it, nor the other way round
        step(T)
        assert buffers.pool_stats()["idle_bytes"] == one_step  # not T's and T + 100's blocks
