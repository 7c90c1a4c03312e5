// The C++ scans' buffers: large CPU ones from a pool (buffer_pool.cpp says why), NaN-filled when tests ask.
#pragma once

#include <ATen/ATen.h>

namespace seqtorch_cpu {

// From this size up a buffer comes from the pool (the same threshold as seqtorch/ops/buffers.py).
constexpr size_t kPoolMinBytes = size_t(1) << 20;

// An uninitialized contiguous CPU tensor whose memory comes from, and returns to, the pool.
at::Tensor pooled_empty(at::IntArrayRef size, at::ScalarType dtype);

// An uninitialized contiguous CPU tensor: pooled when large; NaN-filled while poisoning is on.
at::Tensor new_buffer(at::IntArrayRef size, const at::TensorOptions& options);

}  // namespace seqtorch_cpu
