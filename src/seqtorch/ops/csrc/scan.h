// What the C++ scan loops share besides the math: step order and buffer slots, parallel grain, checks.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <initializer_list>
#include <optional>
#include <type_traits>

namespace seqtorch_cpu {

// Step order and buffer slots of one direction (the same as cpu_loops._Steps): the state buffer S has
// T+1 slots, the initial state in slot 0 (slot T when reverse); step t reads `prev(t)`, writes `next(t)`.
struct Steps {
  int64_t T;
  bool reverse;
  int64_t prev(int64_t t) const { return reverse ? t + 1 : t; }
  int64_t next(int64_t t) const { return reverse ? t : t + 1; }
  int64_t at(int64_t k) const { return reverse ? T - 1 - k : k; }  // the k-th step the forward takes
};

// Rows per parallel chunk: about 16k elements of gate math, so the book's sizes run on one thread.
inline int64_t grain(int64_t hidden) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, hidden)); }

inline void check(bool ok, const char* what) { TORCH_CHECK(ok, "seqtorch C++ scan: ", what); }

inline void check_buffers(const at::Tensor& like, std::initializer_list<const at::Tensor*> tensors) {
  for (const at::Tensor* tensor : tensors) {
    check(tensor->is_contiguous(), "every tensor must be contiguous");
    check(tensor->scalar_type() == like.scalar_type(), "every tensor must share one dtype");
    check(tensor->device().is_cpu(), "CPU tensors only");
  }
}

inline const int64_t* lengths_ptr(const std::optional<at::Tensor>& lengths, int64_t batch) {
  if (!lengths.has_value()) return nullptr;
  check(lengths->scalar_type() == at::kLong && lengths->is_contiguous() && lengths->numel() == batch,
        "lengths must be a contiguous int64 (B,) tensor");
  return lengths->data_ptr<int64_t>();
}

// h~ = h * rec_mask for the whole (B, H) state of a step (the recurrent dropout mask, constant in time).
template <typename T>
void mask_rows(int64_t n, const T* __restrict h, const T* __restrict mask, T* __restrict out) {
  for (int64_t e = 0; e < n; ++e) out[e] = h[e] * mask[e];
}

// Calls f(relu, hard) with the two runtime flags as std::true_type / std::false_type, so the loops get
// them as template parameters (branch-free, vectorizable inner loops).
template <typename F>
void dispatch_flags(bool relu, bool hard, F&& f) {
  if (relu && hard) f(std::true_type{}, std::true_type{});
  else if (relu) f(std::true_type{}, std::false_type{});
  else if (hard) f(std::false_type{}, std::true_type{});
  else f(std::false_type{}, std::false_type{});
}

}  // namespace seqtorch_cpu
