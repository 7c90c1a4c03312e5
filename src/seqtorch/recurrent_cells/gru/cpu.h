// torch's GRU (reset_after=True): pointwise code for the C++ loop (../cpu_cell.h says what a cell provides
// and gets). Equations and layout as this folder's __init__.py: saved RZ (2H), N (H),
// HN = h~ W_hn^T + b_hn (H), PRE (2H) for the hard sigmoids; gradient buffer dP0 (3H) = (dr, dz, r dn).
#pragma once

#include "cell_slots.h"
#include "cpu_cell.h"

namespace seqtorch_cpu::cells {

struct gru : gru_slots {
  static constexpr int kGates = 3, kStates = 1;
  static constexpr std::array<Product, 1> kProducts{{{0, 0, -1, ProductInput::kHIn}}};
  static constexpr std::array<int, 1> kProductGrad{{Grad::dP0}};  // d(product) is gradient buffer dP0
  static constexpr bool kWritesDHIn = false, kUsesGate = true;

  static int64_t state_width(int, Dims d) { return d.P; }
  static int64_t u_width(Dims) { return 0; }
  static int64_t saved_width(int j, Dims d, bool needs_pre) {
    return j == Saved::RZ ? 2 * d.H : (j == Saved::N || j == Saved::HN ? d.H : (needs_pre ? 2 * d.H : 0));
  }
  static int64_t grad_width(int, Dims d) { return 3 * d.H; }

  template <typename T, class A>
  static void forward(int, const ForwardRow<T>& r) {
    forward_row<T, A>(r.d.H, r.gx, r.product, r.weights[1], r.prev[0], r.next[0], r.saved[Saved::RZ],
                      r.saved[Saved::N], r.saved[Saved::HN], r.saved[Saved::PRE]);
  }

  template <typename T, class A>
  static void backward(int, const BackwardRow<T>& r) {
    backward_row<T, A>(r.d.H, r.saved[Saved::RZ], r.saved[Saved::N], r.saved[Saved::HN], r.saved[Saved::PRE],
                       r.prev[0], r.d_next[0], r.dgx, r.grads[Grad::dP0], r.d_prev[0]);
  }

  // __restrict parameters, so GCC vectorizes (see lstm/cpu.h)
  template <typename T, class A>
  static void forward_row(int64_t H, const T* __restrict gx, const T* __restrict gh, const T* __restrict bias,
                          const T* __restrict h_prev, T* __restrict h, T* __restrict rz, T* __restrict n_out,
                          T* __restrict hn, T* __restrict pre) {
    for (int64_t j = 0; j < H; ++j) {
      const T zr = gx[j] + (gh[j] + bias[j]), zz = gx[H + j] + (gh[H + j] + bias[H + j]);
      const T ghn = gh[2 * H + j] + bias[2 * H + j];
      if constexpr (A::kNeedsPre) {
        pre[j] = zr, pre[H + j] = zz;
      }
      const T rr = A::gate(zr), z = A::gate(zz);
      const T n = A::act(gx[2 * H + j] + rr * ghn);
      rz[j] = rr, rz[H + j] = z;
      n_out[j] = n;
      hn[j] = ghn;
      h[j] = n + z * (h_prev[j] - n);
    }
  }

  template <typename T, class A>
  static void backward_row(int64_t H, const T* __restrict rz, const T* __restrict n_act, const T* __restrict hn,
                           const T* __restrict pre, const T* __restrict h_prev, const T* __restrict dh,
                           T* __restrict dgx, T* __restrict dgh, T* __restrict dh_prev) {
    for (int64_t j = 0; j < H; ++j) {
      const T rr = rz[j], z = rz[H + j], n = n_act[j];
      T pr = T(0), pz = T(0);
      if constexpr (A::kNeedsPre) {
        pr = pre[j], pz = pre[H + j];
      }
      const T dz = dh[j] * ((h_prev[j] - n) * A::gate_grad(z, pz));
      const T dn = dh[j] * ((T(1) - z) * A::act_grad(n));
      const T dr = dn * (hn[j] * A::gate_grad(rr, pr));
      dgx[j] = dr, dgx[H + j] = dz, dgx[2 * H + j] = dn;
      dgh[j] = dr, dgh[H + j] = dz, dgh[2 * H + j] = dn * rr;
      dh_prev[j] = dh[j] * z;
    }
  }
};

}  // namespace seqtorch_cpu::cells
