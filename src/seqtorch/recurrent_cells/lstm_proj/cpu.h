// The projected LSTM (proj_size): pointwise code for the C++ loop (../cpu_cell.h says what a cell provides and
// gets). Stage 0 is the LSTM's row math (lstm/cpu.h) writing u = sig(o) * act(c') instead of h; stage 1 is
// h' = the projection's product itself. Layout as this folder's __init__.py: the LSTM's saved buffers, and
// gradient buffer dP1 (P), the projection's output gradient.
#pragma once

#include "../lstm/cpu.h"
#include "cell_slots.h"
#include "cpu_cell.h"

namespace seqtorch_cpu::cells {

struct lstm_proj : lstm_proj_slots {
  static constexpr int kGates = 4, kStates = 2;
  static constexpr std::array<Product, 2> kProducts{{{0, 0, -1, ProductInput::kHIn}, {2, 0, -1, ProductInput::kU}}};
  static constexpr std::array<int, 2> kProductGrad{{-1, Grad::dP1}};  // the projection's gradient
  static constexpr bool kWritesDHIn = false, kUsesGate = true;
  static_assert(kSaved == lstm::kSaved && int(Saved::A) == lstm::Saved::A && int(Saved::TC) == lstm::Saved::TC &&
                    int(Saved::PRE) == lstm::Saved::PRE,
                "stage 0 is the LSTM's row math: its spec saves the LSTM's buffers");

  static int64_t state_width(int k, Dims d) { return k == 0 ? d.P : d.H; }
  static int64_t u_width(Dims d) { return d.H; }
  static int64_t saved_width(int j, Dims d, bool needs_pre) { return lstm::saved_width(j, d, needs_pre); }
  static int64_t grad_width(int, Dims d) { return d.P; }

  template <typename T, class A>
  static void forward(int stage, const ForwardRow<T>& r) {
    if (stage == 0) {
      lstm::forward_row<T, A, false>(r.d.H, r.gx, r.product, r.weights[1], r.prev[1], r.u, r.next[1],
                                     r.saved[Saved::A], r.saved[Saved::TC], r.saved[Saved::PRE]);
    } else {
      std::memcpy(r.next[0], r.product, sizeof(T) * r.d.P);
    }
  }

  template <typename T, class A>
  static void backward(int stage, const BackwardRow<T>& r) {
    if (stage == 1) {
      std::memcpy(r.grads[Grad::dP1], r.d_next[0], sizeof(T) * r.d.P);
      std::fill(r.d_prev[0], r.d_prev[0] + r.d.P, T(0));
      return;
    }
    // the LSTM's backward with the gradient of u in place of h's; h is read only through the product
    lstm::backward_row<T, A>(r.d.H, r.saved[Saved::A], r.saved[Saved::TC], r.saved[Saved::PRE], r.prev[1], r.du,
                             r.d_next[1], r.dgx, nullptr, r.d_prev[1]);
  }
};

}  // namespace seqtorch_cpu::cells
