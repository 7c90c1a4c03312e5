// Layer normalization of one row for the LayerNorm cells' C++ code (seqtorch/recurrent_cells/layernorm_*/cpu.h;
// part of the C++ cell interface, cpu_cell.h): the row reductions, the statistics and the backward's two means,
// in the forms of seqtorch/recurrent_cells/layernorm.py (biased variance, no affine part):
//   LN(v) = (v - mean(v)) * rstd,  rstd = 1 / sqrt(var(v) + eps)
//   dv    = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
//
// The sums run in kLanes independent partial sums combined at the end. Without -ffast-math GCC keeps the
// order of a floating-point sum as written and so cannot vectorize a plain `s += x[j]`; written as kLanes
// sums, the additions are independent and it can (the order is still fixed by the code: deterministic).
#pragma once

#include <cmath>
#include <cstdint>

namespace seqtorch_cpu {

constexpr int kLanes = 8;

// sum over j < n of term(j), in kLanes partial sums; term reads only (no stores, so no aliasing questions)
template <typename T, class F>
inline T lane_sum(int64_t n, F&& term) {
  T acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += term(j + l);
  }
  for (int l = 0; j < n; ++j, ++l) acc[l] += term(j);
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
  }
  return acc[0];
}

template <typename T>
inline T row_sum(int64_t n, const T* __restrict x) {
  return lane_sum<T>(n, [x](int64_t j) { return x[j]; });
}

template <typename T>
inline T row_dot(int64_t n, const T* __restrict x, const T* __restrict y) {
  return lane_sum<T>(n, [x, y](int64_t j) { return x[j] * y[j]; });
}

template <typename T>
struct RowStats {
  T mean;
  T rstd;  // 1 / sqrt(var + eps)
};

// The statistics of LN over x[0..n), the variance from the centered values (two passes, as torch.var_mean:
// no cancellation of sum(x^2) - n mean^2).
template <typename T>
inline RowStats<T> layer_norm_stats(int64_t n, const T* __restrict x, T eps) {
  const T mean = row_sum(n, x) / T(n);
  const T var = lane_sum<T>(n, [x, mean](int64_t j) { return (x[j] - mean) * (x[j] - mean); }) / T(n);
  return {mean, T(1) / std::sqrt(var + eps)};
}

// The backward of LN over a row of n, in place: d holds dxhat on entry and dv on return.
template <typename T>
inline void layer_norm_backward(int64_t n, T* __restrict d, const T* __restrict xhat, T rstd) {
  const T mean_d = row_sum(n, d) / T(n);
  const T mean_dx = row_dot(n, d, xhat) / T(n);
  for (int64_t j = 0; j < n; ++j) d[j] = rstd * (d[j] - mean_d - xhat[j] * mean_dx);
}

}  // namespace seqtorch_cpu
