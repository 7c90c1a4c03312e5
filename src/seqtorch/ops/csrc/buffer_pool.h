// The C++ scans' buffers: large CPU ones from a pool (buffer_pool.cpp says why), NaN-filled when tests ask.
#pragma once

#include <ATen/ATen.h>

namespace seqtorch_cpu {

// From this size up a buffer comes from the pool (the same threshold as seqtorch/ops/buffers.py): glibc's
// first mmap threshold. Between it and 1 MiB, glibc's heap gave buffers back at every call too (its trim),
// and the page faults took 11% of the small language model's inference (T=35, B=20, H=200: W^T copies,
// histories and projected rows of 0.5-0.7 MB each).
constexpr size_t kPoolMinBytes = size_t(128) << 10;

// An uninitialized contiguous CPU tensor whose memory comes from, and returns to, the pool.
at::Tensor pooled_empty(at::IntArrayRef size, at::ScalarType dtype);

// An uninitialized contiguous CPU tensor: pooled when large; NaN-filled while poisoning is on.
at::Tensor new_buffer(at::IntArrayRef size, const at::TensorOptions& options);

}  // namespace seqtorch_cpu
