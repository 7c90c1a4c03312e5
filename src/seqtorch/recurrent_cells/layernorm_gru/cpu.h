// The LayerNorm GRU's pointwise code for the C++ loop (../cpu_cell.h says what a cell provides and gets).
// Equations and layout as this folder's __init__.py: weights (W_hh, b_hh, g_hh (3H)); saved RZ (2H),
// N (H), GHN = gh's n block (H), XH = LN(product) (3H), RS = its rstd (1), PRE (2H) for the hard sigmoids;
// gradient buffers dP0 (3H) of the product and DGH (3H) of gh = LN(product) * g_hh + b_hh. The LN reduction
// runs over the row's 3H product (../cpu_layernorm.h); eps is the cell's one argument.
#pragma once

#include "cell_slots.h"
#include "cpu_cell.h"
#include "cpu_layernorm.h"

namespace seqtorch_cpu::cells {

struct layernorm_gru : layernorm_gru_slots {
  static constexpr int kGates = 3, kStates = 1;
  static constexpr std::array<Product, 1> kProducts{{{0, 0, -1, ProductInput::kHIn}}};
  static constexpr std::array<int, 1> kProductGrad{{Grad::dP0}};  // d(product) is gradient buffer dP0
  static constexpr bool kWritesDHIn = false, kUsesGate = true;

  static int64_t state_width(int, Dims d) { return d.P; }
  static int64_t u_width(Dims) { return 0; }
  static int64_t saved_width(int j, Dims d, bool needs_pre) {
    switch (j) {
      case Saved::RZ: return 2 * d.H;
      case Saved::N: case Saved::GHN: return d.H;
      case Saved::XH: return 3 * d.H;
      case Saved::RS: return 1;
      default: return needs_pre ? 2 * d.H : 0;  // PRE
    }
  }
  static int64_t grad_width(int, Dims d) { return 3 * d.H; }

  template <typename T, class A>
  static void forward(int, const ForwardRow<T>& r) {
    forward_row<T, A>(r.d.H, T(r.args[0]), r.gx, r.product, r.weights[1], r.weights[2], r.prev[0], r.next[0],
                      r.saved[Saved::RZ], r.saved[Saved::N], r.saved[Saved::GHN], r.saved[Saved::XH],
                      r.saved[Saved::RS], r.saved[Saved::PRE]);
  }

  template <typename T, class A>
  static void backward(int, const BackwardRow<T>& r) {
    backward_row<T, A>(r.d.H, r.saved[Saved::RZ], r.saved[Saved::N], r.saved[Saved::GHN], r.saved[Saved::XH],
                       r.saved[Saved::RS], r.saved[Saved::PRE], r.weights[2], r.prev[0], r.d_next[0], r.dgx,
                       r.grads[Grad::dP0], r.grads[Grad::DGH], r.d_prev[0]);
  }

  // __restrict parameters, so GCC vectorizes (see lstm/cpu.h). Two passes: the product's statistics, then
  // the gates and h.
  template <typename T, class A>
  static void forward_row(int64_t H, T eps, const T* __restrict gx, const T* __restrict gh, const T* __restrict bias,
                          const T* __restrict g_hh, const T* __restrict h_prev, T* __restrict h, T* __restrict rz,
                          T* __restrict n_out, T* __restrict ghn_out, T* __restrict xh, T* __restrict rs,
                          T* __restrict pre) {
    const RowStats<T> st = layer_norm_stats(3 * H, gh, eps);
    const T mean = st.mean, rstd = st.rstd;
    for (int64_t j = 0; j < H; ++j) {
      const T xr = (gh[j] - mean) * rstd, xz = (gh[H + j] - mean) * rstd, xn = (gh[2 * H + j] - mean) * rstd;
      const T zr = gx[j] + (xr * g_hh[j] + bias[j]);
      const T zz = gx[H + j] + (xz * g_hh[H + j] + bias[H + j]);
      const T ghn = xn * g_hh[2 * H + j] + bias[2 * H + j];
      if constexpr (A::kNeedsPre) {
        pre[j] = zr, pre[H + j] = zz;
      }
      const T r = A::gate(zr), z = A::gate(zz);
      const T n = A::act(gx[2 * H + j] + r * ghn);
      xh[j] = xr, xh[H + j] = xz, xh[2 * H + j] = xn;
      rz[j] = r, rz[H + j] = z;
      n_out[j] = n;
      ghn_out[j] = ghn;
      h[j] = n + z * (h_prev[j] - n);
    }
    rs[0] = rstd;
  }

  template <typename T, class A>
  static void backward_row(int64_t H, const T* __restrict rz, const T* __restrict n_act, const T* __restrict ghn,
                           const T* __restrict xh, const T* __restrict rs, const T* __restrict pre,
                           const T* __restrict g_hh, const T* __restrict h_prev, const T* __restrict dh,
                           T* __restrict dgx, T* __restrict dp, T* __restrict dgh, T* __restrict dh_prev) {
    for (int64_t j = 0; j < H; ++j) {
      const T r = rz[j], z = rz[H + j], n = n_act[j];
      T pr = T(0), pz = T(0);
      if constexpr (A::kNeedsPre) {
        pr = pre[j], pz = pre[H + j];
      }
      const T dn = dh[j] * (T(1) - z) * A::act_grad(n);
      const T dz = dh[j] * (h_prev[j] - n) * A::gate_grad(z, pz);
      const T dr = dn * ghn[j] * A::gate_grad(r, pr);
      dgx[j] = dr, dgx[H + j] = dz, dgx[2 * H + j] = dn;
      dgh[j] = dr, dgh[H + j] = dz, dgh[2 * H + j] = dn * r;
      dh_prev[j] = dh[j] * z;
    }
    for (int64_t j = 0; j < 3 * H; ++j) dp[j] = dgh[j] * g_hh[j];
    layer_norm_backward(3 * H, dp, xh, rs[0]);
  }
};

}  // namespace seqtorch_cpu::cells
