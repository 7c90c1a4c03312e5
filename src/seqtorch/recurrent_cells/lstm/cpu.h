// The LSTM's pointwise code for the C++ loop (../cpu_cell.h says what a cell provides and gets).
// The equations and the buffer layout are those of this folder's __init__.py: saved A = i, f, g, o (4H),
// TC = act(c') (H), PRE = the gate pre-activations (4H) for the hard sigmoids.
#pragma once

#include <algorithm>

#include "cell_slots.h"
#include "cpu_cell.h"

namespace seqtorch_cpu::cells {

struct lstm : lstm_slots {
  static constexpr int kGates = 4, kStates = 2;
  static constexpr std::array<Product, 1> kProducts{{{0, 0, -1, ProductInput::kHIn}}};
  static constexpr std::array<int, 1> kProductGrad{{-1}};  // d(product) = dgx
  static constexpr bool kWritesDHIn = false, kUsesGate = true, kSumsPreactivation = true,
                        kUnitLocal = true;

  static int64_t state_width(int k, Dims d) { return k == 0 ? d.P : d.H; }
  static int64_t u_width(Dims) { return 0; }
  static int64_t saved_width(int j, Dims d, bool needs_pre) {
    return j == Saved::A ? 4 * d.H : (j == Saved::TC ? d.H : (needs_pre ? 4 * d.H : 0));
  }
  static int64_t grad_width(int, Dims) { return 0; }

  template <typename T, class A>
  static void forward(int, const ForwardRow<T>& r) {
    if (r.product == nullptr) {  // r.gx holds gx + the product, nothing saved (kSumsPreactivation)
      forward_row<T, A, true>(r.d.H, r.gx, nullptr, r.weights[1], r.prev[1], r.next[0], r.next[1], nullptr, nullptr,
                              nullptr);
    } else {
      forward_row<T, A, false>(r.d.H, r.gx, r.product, r.weights[1], r.prev[1], r.next[0], r.next[1],
                               r.saved[Saved::A], r.saved[Saved::TC], r.saved[Saved::PRE]);
    }
  }

  template <typename T, class A>
  static void backward(int, const BackwardRow<T>& r) {
    backward_row<T, A>(r.d.H, r.saved[Saved::A], r.saved[Saved::TC], r.saved[Saved::PRE], r.prev[1], r.d_next[0],
                       r.d_next[1], r.dgx, r.d_prev[0], r.d_prev[1]);
  }

  // The rows' math, in functions whose pointers are __restrict parameters: GCC vectorizes only then (it
  // ignores restrict on local pointers, and with this many arrays gives up on checking their overlap).
  // SUMMED: gx holds gx + gh (gh unused) and nothing is saved (a, tc, pre unused).
  template <typename T, class A, bool SUMMED>
  static void forward_row(int64_t H, const T* __restrict gx, const T* __restrict gh, const T* __restrict bias,
                          const T* __restrict c_prev, T* __restrict h, T* __restrict c, T* __restrict a,
                          T* __restrict tc, T* __restrict pre) {
    for (int64_t j = 0; j < H; ++j) {
      T zi = gx[j] + bias[j], zf = gx[H + j] + bias[H + j], zg = gx[2 * H + j] + bias[2 * H + j],
        zo = gx[3 * H + j] + bias[3 * H + j];
      if constexpr (!SUMMED) {
        zi = zi + gh[j];
        zf = zf + gh[H + j];
        zg = zg + gh[2 * H + j];
        zo = zo + gh[3 * H + j];
      }
      if constexpr (A::kNeedsPre && !SUMMED) {
        pre[j] = zi, pre[H + j] = zf, pre[2 * H + j] = zg, pre[3 * H + j] = zo;
      }
      const T i = A::gate(zi), f = A::gate(zf), g = A::act(zg), o = A::gate(zo);
      const T cn = f * c_prev[j] + i * g;
      const T y = A::act(cn);
      if constexpr (!SUMMED) {
        a[j] = i, a[H + j] = f, a[2 * H + j] = g, a[3 * H + j] = o;
        tc[j] = y;
      }
      c[j] = cn;
      h[j] = o * y;
    }
  }

  template <typename T, class A>
  static void backward_row(int64_t H, const T* __restrict a, const T* __restrict tc, const T* __restrict pre,
                           const T* __restrict c_prev, const T* __restrict dh, const T* __restrict dc_next,
                           T* __restrict dg, T* __restrict dh_prev, T* __restrict dc_prev) {
    for (int64_t j = 0; j < H; ++j) {
      const T i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j], y = tc[j], dhj = dh[j];
      T pi = T(0), pf = T(0), po = T(0);
      if constexpr (A::kNeedsPre) {
        pi = pre[j], pf = pre[H + j], po = pre[3 * H + j];
      }
      const T dc = dc_next[j] + dhj * (o * A::act_grad(y));
      dg[j] = dc * (g * A::gate_grad(i, pi));
      dg[H + j] = dc * (c_prev[j] * A::gate_grad(f, pf));
      dg[2 * H + j] = dc * (i * A::act_grad(g));
      dg[3 * H + j] = dhj * (y * A::gate_grad(o, po));
      dc_prev[j] = dc * f;
    }
    if (dh_prev != nullptr) std::fill(dh_prev, dh_prev + H, T(0));  // h enters only through the product
  }
};

}  // namespace seqtorch_cpu::cells
