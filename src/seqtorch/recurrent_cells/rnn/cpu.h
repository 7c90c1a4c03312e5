// SimpleRNN's pointwise code for the C++ loop (../cpu_cell.h says what a cell provides and gets). The
// equation is that of this folder's __init__.py; saved Y = h' (its derivative's input).
#pragma once

#include "cell_slots.h"
#include "cpu_cell.h"

namespace seqtorch_cpu::cells {

struct rnn : rnn_slots {
  static constexpr int kGates = 1, kStates = 1;
  static constexpr std::array<Product, 1> kProducts{{{0, 0, -1, ProductInput::kHIn}}};
  static constexpr std::array<int, 1> kProductGrad{{-1}};
  static constexpr bool kWritesDHIn = false, kUsesGate = false, kSumsPreactivation = true,
                        kUnitLocal = true;

  static int64_t state_width(int, Dims d) { return d.P; }
  static int64_t u_width(Dims) { return 0; }
  static int64_t saved_width(int, Dims d, bool) { return d.H; }
  static int64_t grad_width(int, Dims) { return 0; }

  template <typename T, class A>
  static void forward(int, const ForwardRow<T>& r) {
    if (r.product == nullptr) {  // r.gx holds gx + the product, nothing saved (kSumsPreactivation)
      forward_row<T, A, true>(r.d.H, r.gx, nullptr, r.weights[1], r.next[0], nullptr);
    } else {
      forward_row<T, A, false>(r.d.H, r.gx, r.product, r.weights[1], r.next[0], r.saved[Saved::Y]);
    }
  }

  template <typename T, class A>
  static void backward(int, const BackwardRow<T>& r) {
    backward_row<T, A>(r.d.H, r.saved[Saved::Y], r.d_next[0], r.dgx, r.d_prev[0]);
  }

  // __restrict parameters, so GCC vectorizes (see lstm/cpu.h); SUMMED: gx holds gx + gh (gh unused), y unused
  template <typename T, class A, bool SUMMED>
  static void forward_row(int64_t H, const T* __restrict gx, const T* __restrict gh, const T* __restrict bias,
                          T* __restrict h, T* __restrict y) {
    for (int64_t j = 0; j < H; ++j) {
      const T v = A::act(SUMMED ? gx[j] + bias[j] : gx[j] + bias[j] + gh[j]);
      if constexpr (!SUMMED) y[j] = v;
      h[j] = v;
    }
  }

  template <typename T, class A>
  static void backward_row(int64_t H, const T* __restrict y, const T* __restrict dh, T* __restrict dg,
                           T* __restrict dh_prev) {
    for (int64_t j = 0; j < H; ++j) {
      dg[j] = dh[j] * A::act_grad(y[j]);
      dh_prev[j] = T(0);
    }
  }
};

}  // namespace seqtorch_cpu::cells
