// What the C++ loops (scan.cpp, the whole sequence; step.cpp, one step) share around a cell, beyond the cell
// interface itself (seqtorch/recurrent_cells/cpu_cell.h, which a cell's cpu.h includes): the step order of a
// direction, the rows per parallel chunk, the loops' check, and the dispatch of the runtime activation choices
// to the cells' compile-time Activations (cpu_math.h).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu_cell.h"

namespace seqtorch_cpu {

// Step order and history slots of one direction (as Steps in seqtorch/ops/python_loop.py).
struct Steps {
  int64_t T;
  bool reverse;
  int64_t prev(int64_t t) const { return reverse ? t + 1 : t; }
  int64_t next(int64_t t) const { return reverse ? t : t + 1; }
  int64_t at(int64_t k) const { return reverse ? T - 1 - k : k; }  // the k-th step the forward takes
  int64_t first() const { return reverse ? T : 0; }
  int64_t last() const { return reverse ? 0 : T; }
};

// Rows per parallel chunk: about 16k elements of gate math, so the book's sizes run on one thread.
inline int64_t grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width)); }

inline void check(bool ok, const char* what) { TORCH_CHECK(ok, "seqtorch C++ scan: ", what); }

// Calls f(std::integral_constant<bool, RELU>, std::integral_constant<int, GATE>) for the runtime choices,
// so the loops get them as template parameters (branch-free, vectorizable inner loops).
template <typename F>
void dispatch_activations(bool relu, int gate, F&& f) {
  auto with_gate = [&](auto relu_t) {
    switch (gate) {
      case kSigmoid: return f(relu_t, std::integral_constant<int, kSigmoid>{});
      case kHardSigmoidKeras2: return f(relu_t, std::integral_constant<int, kHardSigmoidKeras2>{});
      case kHardsigmoid: return f(relu_t, std::integral_constant<int, kHardsigmoid>{});
      default: TORCH_CHECK(false, "seqtorch C++ scan: unknown recurrent activation ", gate);
    }
  };
  if (relu) {
    with_gate(std::true_type{});
  } else {
    with_gate(std::false_type{});
  }
}

}  // namespace seqtorch_cpu
