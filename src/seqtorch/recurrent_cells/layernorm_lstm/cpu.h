// The LayerNorm LSTM's pointwise code for the C++ loop (../cpu_cell.h says what a cell provides and gets).
// Equations and layout as this folder's __init__.py: weights (W_hh, b_hh, g_hh (4H), g_c (H),
// b_c (H)); saved A = i, f, g, o (4H), XH = LN(product) (4H), RS = the two rstd (product's, c''s), CH = LN(c')
// (H), Y = act(CH * g_c + b_c) (H), PRE (4H) for the hard sigmoids; gradient buffers dP0 (4H) of the product
// and DLC (H) of CH * g_c + b_c. The LN reductions run over the row's 4H product and its H-wide c'
// (../cpu_layernorm.h); eps is the cell's one argument.
#pragma once

#include "cell_slots.h"
#include "cpu_cell.h"
#include "cpu_layernorm.h"

namespace seqtorch_cpu::cells {

struct layernorm_lstm : layernorm_lstm_slots {
  static constexpr int kGates = 4, kStates = 2;
  static constexpr std::array<Product, 1> kProducts{{{0, 0, -1, ProductInput::kHIn}}};
  static constexpr std::array<int, 1> kProductGrad{{Grad::dP0}};  // d(product) is gradient buffer dP0
  static constexpr bool kWritesDHIn = false, kUsesGate = true;

  static int64_t state_width(int k, Dims d) { return k == 0 ? d.P : d.H; }
  static int64_t u_width(Dims) { return 0; }
  static int64_t saved_width(int j, Dims d, bool needs_pre) {
    switch (j) {
      case Saved::A: case Saved::XH: return 4 * d.H;
      case Saved::RS: return 2;
      case Saved::CH: case Saved::Y: return d.H;
      default: return needs_pre ? 4 * d.H : 0;  // PRE
    }
  }
  static int64_t grad_width(int j, Dims d) { return j == Grad::dP0 ? 4 * d.H : d.H; }  // dP0, DLC

  template <typename T, class A>
  static void forward(int, const ForwardRow<T>& r) {
    forward_row<T, A>(r.d.H, T(r.args[0]), r.gx, r.product, r.weights[1], r.weights[2], r.weights[3],
                      r.weights[4], r.prev[1], r.next[0], r.next[1], r.saved[Saved::A], r.saved[Saved::XH],
                      r.saved[Saved::RS], r.saved[Saved::CH], r.saved[Saved::Y], r.saved[Saved::PRE]);
  }

  template <typename T, class A>
  static void backward(int, const BackwardRow<T>& r) {
    backward_row<T, A>(r.d.H, r.saved[Saved::A], r.saved[Saved::XH], r.saved[Saved::RS], r.saved[Saved::CH],
                       r.saved[Saved::Y], r.saved[Saved::PRE], r.weights[2], r.weights[3], r.prev[1], r.d_next[0],
                       r.d_next[1], r.dgx, r.grads[Grad::dP0], r.grads[Grad::DLC], r.d_prev[0], r.d_prev[1]);
  }

  // __restrict parameters, so GCC vectorizes (see lstm/cpu.h). Passes: the product's statistics and LN, the
  // gates and c', then (with c''s statistics) LN(c') and h.
  template <typename T, class A>
  static void forward_row(int64_t H, T eps, const T* __restrict gx, const T* __restrict gh, const T* __restrict bias,
                          const T* __restrict g_hh, const T* __restrict g_c, const T* __restrict b_c,
                          const T* __restrict c_prev, T* __restrict h, T* __restrict c, T* __restrict a,
                          T* __restrict xh, T* __restrict rs, T* __restrict ch, T* __restrict y, T* __restrict pre) {
    const RowStats<T> sh = layer_norm_stats(4 * H, gh, eps);
    const T mean_h = sh.mean, rstd_h = sh.rstd;
    // LN(product) in a loop of its own: written in the gate loop, its four blocks' stores plus a's would need
    // more runtime overlap checks than GCC makes (10), and that loop would stay scalar
    for (int64_t j = 0; j < 4 * H; ++j) xh[j] = (gh[j] - mean_h) * rstd_h;
    for (int64_t j = 0; j < H; ++j) {
      const T zi = gx[j] + xh[j] * g_hh[j] + bias[j];
      const T zf = gx[H + j] + xh[H + j] * g_hh[H + j] + bias[H + j];
      const T zg = gx[2 * H + j] + xh[2 * H + j] * g_hh[2 * H + j] + bias[2 * H + j];
      const T zo = gx[3 * H + j] + xh[3 * H + j] * g_hh[3 * H + j] + bias[3 * H + j];
      if constexpr (A::kNeedsPre) {
        pre[j] = zi, pre[H + j] = zf, pre[2 * H + j] = zg, pre[3 * H + j] = zo;
      }
      const T i = A::gate(zi), f = A::gate(zf), g = A::act(zg), o = A::gate(zo);
      a[j] = i, a[H + j] = f, a[2 * H + j] = g, a[3 * H + j] = o;
      c[j] = f * c_prev[j] + i * g;
    }
    const RowStats<T> sc = layer_norm_stats(H, c, eps);
    const T mean_c = sc.mean, rstd_c = sc.rstd;
    for (int64_t j = 0; j < H; ++j) {
      const T x = (c[j] - mean_c) * rstd_c;
      const T v = A::act(b_c[j] + x * g_c[j]);
      ch[j] = x;
      y[j] = v;
      h[j] = a[3 * H + j] * v;
    }
    rs[0] = rstd_h, rs[1] = rstd_c;
  }

  // Writes dgx, dP0 = d product (4H), DLC (H), and the direct gradients of h (none: zeros) and c. dP0 and
  // d_prev's c row serve as scratch for the LN backward's inputs before they get their values.
  template <typename T, class A>
  static void backward_row(int64_t H, const T* __restrict a, const T* __restrict xh, const T* __restrict rs,
                           const T* __restrict ch, const T* __restrict y, const T* __restrict pre,
                           const T* __restrict g_hh, const T* __restrict g_c, const T* __restrict c_prev,
                           const T* __restrict dh, const T* __restrict dc_next, T* __restrict dg, T* __restrict dp,
                           T* __restrict dlc, T* __restrict dh_prev, T* __restrict dc_prev) {
    for (int64_t j = 0; j < H; ++j) {
      const T o = a[3 * H + j], v = y[j];
      T po = T(0);
      if constexpr (A::kNeedsPre) po = pre[3 * H + j];
      const T d = dh[j] * o * A::act_grad(v);
      dlc[j] = d;
      dc_prev[j] = d * g_c[j];  // d LN(c'), normalized below
      dg[3 * H + j] = dh[j] * v * A::gate_grad(o, po);
    }
    layer_norm_backward(H, dc_prev, ch, rs[1]);
    for (int64_t j = 0; j < H; ++j) {
      const T i = a[j], f = a[H + j], g = a[2 * H + j];
      T pi = T(0), pf = T(0);
      if constexpr (A::kNeedsPre) {
        pi = pre[j], pf = pre[H + j];
      }
      const T dc = dc_next[j] + dc_prev[j];
      dg[j] = dc * g * A::gate_grad(i, pi);
      dg[H + j] = dc * c_prev[j] * A::gate_grad(f, pf);
      dg[2 * H + j] = dc * i * A::act_grad(g);
      dc_prev[j] = dc * f;
    }
    for (int64_t j = 0; j < 4 * H; ++j) dp[j] = dg[j] * g_hh[j];
    layer_norm_backward(4 * H, dp, xh, rs[0]);
    std::fill(dh_prev, dh_prev + H, T(0));  // h enters only through the product
  }
};

}  // namespace seqtorch_cpu::cells
