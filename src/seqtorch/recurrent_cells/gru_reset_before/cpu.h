// The reset-before GRU (reset_after=False): pointwise code for the C++ loop (../cpu_cell.h says what a cell
// provides and gets). Two stages around the two products, as this folder's __init__.py:
// stage 0 r, z and u = r * h~ (the second product's input), stage 1 n and h'. Saved A = r, z, n (3H) and
// PRE (2H) for the hard sigmoids; both products' gradients are dgx at their rows.
#pragma once

#include "cell_slots.h"
#include "cpu_cell.h"

namespace seqtorch_cpu::cells {

struct gru_reset_before : gru_reset_before_slots {
  static constexpr int kGates = 3, kStates = 1;
  static constexpr std::array<Product, 2> kProducts{{{0, 0, 2, ProductInput::kHIn}, {0, 2, 3, ProductInput::kU}}};
  static constexpr std::array<int, 2> kProductGrad{{-1, -1}};
  static constexpr bool kWritesDHIn = true, kUsesGate = true;

  static int64_t state_width(int, Dims d) { return d.P; }
  static int64_t u_width(Dims d) { return d.H; }
  static int64_t saved_width(int j, Dims d, bool needs_pre) {
    return j == Saved::A ? 3 * d.H : (needs_pre ? 2 * d.H : 0);
  }
  static int64_t grad_width(int, Dims) { return 0; }

  template <typename T, class A>
  static void forward(int stage, const ForwardRow<T>& r) {
    if (stage == 0) {
      gates_row<T, A>(r.d.H, r.gx, r.product, r.weights[1], r.h_in, r.saved[Saved::A], r.saved[Saved::PRE], r.u);
    } else {
      state_row<T, A>(r.d.H, r.gx, r.product, r.weights[1], r.prev[0], r.saved[Saved::A], r.next[0]);
    }
  }

  template <typename T, class A>
  static void backward(int stage, const BackwardRow<T>& r) {
    if (stage == 1) {
      backward_zn_row<T, A>(r.d.H, r.saved[Saved::A], r.saved[Saved::PRE], r.prev[0], r.d_next[0], r.dgx,
                            r.d_prev[0]);
    } else {
      backward_r_row<T, A>(r.d.H, r.saved[Saved::A], r.saved[Saved::PRE], r.h_in, r.du, r.dgx, r.d_h_in);
    }
  }

  // __restrict parameters, so GCC vectorizes (see lstm/cpu.h)

  // stage 0: r, z from gx_rz + b_rz + h~ W_rz^T (g); a[0:2H], and u = r * h~ for the second product
  template <typename T, class A>
  static void gates_row(int64_t H, const T* __restrict gx, const T* __restrict g, const T* __restrict bias,
                        const T* __restrict h_in, T* __restrict a, T* __restrict pre, T* __restrict u) {
    for (int64_t j = 0; j < H; ++j) {
      const T zr = gx[j] + bias[j] + g[j], zz = gx[H + j] + bias[H + j] + g[H + j];
      if constexpr (A::kNeedsPre) {
        pre[j] = zr, pre[H + j] = zz;
      }
      const T rr = A::gate(zr);
      a[j] = rr, a[H + j] = A::gate(zz);
      u[j] = rr * h_in[j];
    }
  }

  // stage 1: n from gx_n + b_n + u W_n^T (g); a[2H:3H] and h'
  template <typename T, class A>
  static void state_row(int64_t H, const T* __restrict gx, const T* __restrict g, const T* __restrict bias,
                        const T* __restrict h_prev, T* __restrict a, T* __restrict h) {
    for (int64_t j = 0; j < H; ++j) {
      const T n = A::act(gx[2 * H + j] + bias[2 * H + j] + g[j]);
      const T z = a[H + j];
      a[2 * H + j] = n;
      h[j] = n + z * (h_prev[j] - n);
    }
  }

  // backward of stage 1: dz, dn into dgx[H:3H], the direct z * dh
  template <typename T, class A>
  static void backward_zn_row(int64_t H, const T* __restrict a, const T* __restrict pre, const T* __restrict h_prev,
                              const T* __restrict dh, T* __restrict dgx, T* __restrict dh_prev) {
    for (int64_t j = 0; j < H; ++j) {
      const T z = a[H + j], n = a[2 * H + j];
      const T pz = A::kNeedsPre ? pre[H + j] : T(0);
      dgx[H + j] = dh[j] * ((h_prev[j] - n) * A::gate_grad(z, pz));
      dgx[2 * H + j] = dh[j] * ((T(1) - z) * A::act_grad(n));
      dh_prev[j] = dh[j] * z;
    }
  }

  // backward of stage 0: with du = d(r h~) = dn W_n, dr into dgx[0:H] and d h~ (direct) = du * r
  template <typename T, class A>
  static void backward_r_row(int64_t H, const T* __restrict a, const T* __restrict pre, const T* __restrict h_in,
                             const T* __restrict du, T* __restrict dgx, T* __restrict dh_in) {
    for (int64_t j = 0; j < H; ++j) {
      const T rr = a[j];
      const T pr = A::kNeedsPre ? pre[j] : T(0);
      dgx[j] = du[j] * (h_in[j] * A::gate_grad(rr, pr));
      dh_in[j] = du[j] * rr;
    }
  }
};

}  // namespace seqtorch_cpu::cells
