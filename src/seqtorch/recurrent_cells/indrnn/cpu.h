// IndRNN's pointwise code for the C++ loop (../cpu_cell.h says what a cell provides and gets): no recurrent
// product, h' = act(gx + b_hh + w_hh * h~) with a weight vector. Saved Y = h'.
#pragma once

#include <algorithm>

#include "cell_slots.h"
#include "cpu_cell.h"

namespace seqtorch_cpu::cells {

struct indrnn : indrnn_slots {
  static constexpr int kGates = 1, kStates = 1;
  static constexpr std::array<Product, 0> kProducts{};
  static constexpr std::array<int, 0> kProductGrad{};
  static constexpr bool kWritesDHIn = true, kUsesGate = false;

  static int64_t state_width(int, Dims d) { return d.P; }
  static int64_t u_width(Dims) { return 0; }
  static int64_t saved_width(int, Dims d, bool) { return d.H; }
  static int64_t grad_width(int, Dims) { return 0; }

  template <typename T, class A>
  static void forward(int, const ForwardRow<T>& r) {
    forward_row<T, A>(r.d.H, r.gx, r.weights[0], r.weights[1], r.h_in, r.next[0], r.saved[Saved::Y]);
  }

  template <typename T, class A>
  static void backward(int, const BackwardRow<T>& r) {
    backward_row<T, A>(r.d.H, r.saved[Saved::Y], r.weights[0], r.d_next[0], r.dgx, r.d_h_in, r.d_prev[0]);
  }

  // __restrict parameters, so GCC vectorizes (see lstm/cpu.h)
  template <typename T, class A>
  static void forward_row(int64_t H, const T* __restrict gx, const T* __restrict w, const T* __restrict bias,
                          const T* __restrict h_in, T* __restrict h, T* __restrict y) {
    for (int64_t j = 0; j < H; ++j) {
      const T v = A::act(gx[j] + bias[j] + w[j] * h_in[j]);
      y[j] = v;
      h[j] = v;
    }
  }

  template <typename T, class A>
  static void backward_row(int64_t H, const T* __restrict y, const T* __restrict w, const T* __restrict dh,
                           T* __restrict dg, T* __restrict dh_in, T* __restrict dh_prev) {
    for (int64_t j = 0; j < H; ++j) {
      const T d = dh[j] * A::act_grad(y[j]);
      dg[j] = d;
      dh_in[j] = d * w[j];
    }
    std::fill(dh_prev, dh_prev + H, T(0));
  }
};

}  // namespace seqtorch_cpu::cells
