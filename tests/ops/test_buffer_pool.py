"""The C++ buffer pool behind the cpu_fused scan's large CPU buffers (csrc/buffer_pool.cpp)."""

import os
import subprocess
import sys

import pytest
import torch

from seqtorch.ops import buffers, native

OPS = native.load()
pytestmark = pytest.mark.skipif(OPS is None, reason="the C++ extension did not build (see the RuntimeWarning)")

SHAPE = [300, 64, 96]  # 7.4 MB of float32: above POOL_MIN_BYTES


def test_a_released_buffer_is_reused_for_the_same_size():
    first = OPS.pooled_empty(SHAPE, torch.float32)
    address = first.data_ptr()
    del first
    second = OPS.pooled_empty(SHAPE, torch.float32)
    assert second.data_ptr() == address


def test_a_live_view_keeps_its_buffer_out_of_the_pool():
    buffer = OPS.pooled_empty(SHAPE, torch.float32)
    view = buffer[1:]
    address = buffer.data_ptr()
    del buffer
    other = OPS.pooled_empty(SHAPE, torch.float32)
    assert other.data_ptr() != address
    view.fill_(1.0)  # still valid memory
    assert view.sum().item() == view.numel()


def test_pooled_tensors_are_ordinary_contiguous_tensors():
    t = OPS.pooled_empty([5, 3], torch.float64)
    assert t.shape == (5, 3) and t.dtype == torch.float64 and t.is_contiguous() and t.device.type == "cpu"
    t.copy_(torch.arange(15, dtype=torch.float64).view(5, 3))
    assert torch.equal(t.clone(), torch.arange(15, dtype=torch.float64).view(5, 3))


def test_large_scan_buffers_come_from_the_pool_and_small_ones_do_not():
    like = torch.zeros(1)
    large = buffers.new_buffer(tuple(SHAPE), like)
    address = large.data_ptr()
    del large
    assert OPS.pool_idle_bytes() >= 300 * 64 * 96 * 4
    assert buffers.new_buffer(tuple(SHAPE), like).data_ptr() == address
    idle = OPS.pool_idle_bytes()
    small = buffers.new_buffer((4, 4), like)
    del small  # a plain torch.empty: nothing returns to the pool (a pooled one would add 64 KiB)
    assert OPS.pool_idle_bytes() == idle


def test_idle_memory_is_capped_by_the_environment():
    code = ("import torch; from seqtorch.ops import native; ops = native.load(); "
            "t = ops.pooled_empty([1024, 1024], torch.float32); del t; print(ops.pool_idle_bytes())")
    env = dict(os.environ, SEQTORCH_POOL_MB="0")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0"
