// The LSTM's sequential loops for CPU tensors, in C++: forward and hand-written BPTT.
//
// Why C++: at the book's sizes (B=128, H=32) a step is a (128 x 32) @ (32 x 128) GEMM and ~4k elements
// of gate math. In Python each step costs ~10 op dispatches of a few microseconds each plus
// TensorIterator set-up per op, which together make the loop ~2x slower than torch.nn's native LSTM. Here
// a step is one GEMM (ATen's, so BLAS) and one fused, vectorizable pass over the gates.
//
// The math is that of seqtorch/reference.py (read the equations there) and the buffer layout that of
// seqtorch/ops/cpu_loops.py (forward_buffers): Python allocates every buffer, this file only fills
// them, so the Python loop and this one are interchangeable and tested against the same reference.
//
// The elementwise math (a vectorizable exp, activations, derivatives) is in math.h.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "math.h"
#include "scan.h"

namespace {

using namespace seqtorch_cpu;

// One batch row of a forward step: gates from gx + b_hh + h~ W_hh^T (order i, f, g, o), the new cell and
// hidden state, and what the backward needs. A sequence that has ended (!valid) keeps its state; the
// step's activations are still stored, and the backward gives them zero weight.
template <typename T, bool RELU, bool HARD>
void forward_row(int64_t H, const T* __restrict gx, const T* __restrict bias, const T* __restrict gh,
                 const T* __restrict c_prev, const T* __restrict h_prev, bool valid, T* __restrict a,
                 T* __restrict pre, T* __restrict c_next, T* __restrict h_next, T* __restrict tanh_c) {
  for (int64_t j = 0; j < H; ++j) {
    const T zi = gx[j] + bias[j] + gh[j];
    const T zf = gx[H + j] + bias[H + j] + gh[H + j];
    const T zg = gx[2 * H + j] + bias[2 * H + j] + gh[2 * H + j];
    const T zo = gx[3 * H + j] + bias[3 * H + j] + gh[3 * H + j];
    if constexpr (HARD) {
      pre[j] = zi, pre[H + j] = zf, pre[2 * H + j] = zg, pre[3 * H + j] = zo;
    }
    const T i = gate<T, HARD>(zi), f = gate<T, HARD>(zf), g = act<T, RELU>(zg), o = gate<T, HARD>(zo);
    const T c = f * c_prev[j] + i * g;
    const T y = act<T, RELU>(c);
    a[j] = i, a[H + j] = f, a[2 * H + j] = g, a[3 * H + j] = o;
    tanh_c[j] = y;
    c_next[j] = c;
    h_next[j] = o * y;
  }
  if (!valid) {
    std::memcpy(c_next, c_prev, sizeof(T) * H);
    std::memcpy(h_next, h_prev, sizeof(T) * H);
  }
}

// One batch row of a backward step (a step inside the sequence): gate gradients dG from dh (of the
// state the step wrote) and dc (of its cell state, plus dc_up from above), and dc for the step before.
template <typename T, bool RELU, bool HARD>
void backward_row(int64_t H, const T* __restrict a, const T* __restrict pre, const T* __restrict c_prev,
                  const T* __restrict tanh_c, const T* __restrict dc_up, const T* __restrict dh, T* __restrict dc,
                  T* __restrict dg) {
  for (int64_t j = 0; j < H; ++j) {
    const T i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j], y = tanh_c[j], dhj = dh[j];
    T pi = T(0), pf = T(0), po = T(0);
    if constexpr (HARD) {
      pi = pre[j], pf = pre[H + j], po = pre[3 * H + j];
    }
    const T dcj = dc[j] + dc_up[j] + dhj * (o * act_grad<T, RELU>(y));
    dg[j] = dcj * (g * gate_grad<T, HARD>(i, pi));
    dg[H + j] = dcj * (c_prev[j] * gate_grad<T, HARD>(f, pf));
    dg[2 * H + j] = dcj * (i * act_grad<T, RELU>(g));
    dg[3 * H + j] = dhj * (y * gate_grad<T, HARD>(o, po));
    dc[j] = dcj * f;
  }
}

template <typename T, bool RELU, bool HARD>
void lstm_forward_impl(const at::Tensor& gx, const at::Tensor& bias, const at::Tensor& wt,
                       const int64_t* len, const T* mask, bool reverse, at::Tensor& S, at::Tensor& C,
                       at::Tensor& HM, at::Tensor& A, at::Tensor& TC, at::Tensor& PRE) {
  const int64_t T_ = gx.size(0), B = gx.size(1), H = S.size(2), G = 4 * H;
  const Steps steps{T_, reverse};
  at::Tensor gates = at::empty({B, G}, gx.options());  // h~ @ W_hh^T of the current step
  const T* gx_ = gx.data_ptr<T>();
  const T* b_ = bias.data_ptr<T>();
  const T* g_ = gates.data_ptr<T>();
  T* s_ = S.data_ptr<T>();
  T* c_ = C.data_ptr<T>();
  T* a_ = A.data_ptr<T>();
  T* tc_ = TC.data_ptr<T>();
  T* pre_ = HARD ? PRE.data_ptr<T>() : nullptr;
  T* hm_ = mask ? HM.data_ptr<T>() : nullptr;
  const std::vector<at::Tensor> s_slots = S.unbind(0);
  const std::vector<at::Tensor> hm_slots = mask ? HM.unbind(0) : std::vector<at::Tensor>();
  for (int64_t k = 0; k < T_; ++k) {
    const int64_t t = steps.at(k), p = steps.prev(t), n = steps.next(t);
    if (mask) mask_rows(B * H, s_ + p * B * H, mask, hm_ + t * B * H);
    at::mm_out(gates, mask ? hm_slots[t] : s_slots[p], wt);
    at::parallel_for(0, B, grain(H), [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        const int64_t row = (t * B + b) * G, cell = b * H;
        const T* gxr = gx_ + row;
        const T* gr = g_ + b * G;
        T* ar = a_ + row;
        T* prer = HARD ? pre_ + row : nullptr;
        const T* cp = c_ + p * B * H + cell;
        const T* hp = s_ + p * B * H + cell;
        T* cn = c_ + n * B * H + cell;
        T* hn = s_ + n * B * H + cell;
        T* tc = tc_ + t * B * H + cell;
        const bool valid = len == nullptr || t < len[b];
        forward_row<T, RELU, HARD>(H, gxr, b_, gr, cp, hp, valid, ar, prer, cn, hn, tc);
      }
    });
  }
}

template <typename T, bool RELU, bool HARD>
void lstm_backward_impl(const at::Tensor& dS, const T* dC, const at::Tensor& S, const at::Tensor& C,
                        const at::Tensor& A, const at::Tensor& TC, const at::Tensor& PRE, const at::Tensor& w,
                        const int64_t* len, const T* mask, bool reverse, at::Tensor& dgx, at::Tensor& dh,
                        at::Tensor& dc) {
  const int64_t T_ = A.size(0), B = A.size(1), H = S.size(2), G = 4 * H;
  const Steps steps{T_, reverse};
  at::Tensor dh_next = at::empty({B, H}, S.options());  // d(state read by the step), before the pass-through
  at::Tensor no_dc = dC ? at::Tensor() : at::zeros({B, H}, S.options());  // dC absent: zeros from above
  const T* ds_ = dS.data_ptr<T>();
  const T* c_ = C.data_ptr<T>();
  const T* a_ = A.data_ptr<T>();
  const T* tc_ = TC.data_ptr<T>();
  const T* pre_ = HARD ? PRE.data_ptr<T>() : nullptr;
  T* dg_ = dgx.data_ptr<T>();
  T* dh_ = dh.data_ptr<T>();
  T* dc_ = dc.data_ptr<T>();
  T* dn_ = dh_next.data_ptr<T>();
  const std::vector<at::Tensor> dg_steps = dgx.unbind(0);
  // dh: gradient of the state the step wrote; dc: of the cell state it wrote (accumulated from the top).
  std::memcpy(dh_, ds_ + steps.next(steps.at(T_ - 1)) * B * H, sizeof(T) * B * H);
  std::fill(dc_, dc_ + B * H, T(0));
  for (int64_t k = T_ - 1; k >= 0; --k) {
    const int64_t t = steps.at(k), p = steps.prev(t), n = steps.next(t);
    at::parallel_for(0, B, grain(H), [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        const int64_t row = (t * B + b) * G, cell = b * H;
        const T* ar = a_ + row;
        const T* prer = HARD ? pre_ + row : nullptr;
        const T* cp = c_ + p * B * H + cell;
        const T* tc = tc_ + t * B * H + cell;
        const T* dcn = dC ? dC + n * B * H + cell : no_dc.data_ptr<T>() + cell;
        const T* dhr = dh_ + cell;
        T* dcr = dc_ + cell;
        T* dgr = dg_ + row;
        if (len != nullptr && t >= len[b]) {  // frozen step: no gate gradient, dc passes through
          for (int64_t j = 0; j < G; ++j) dgr[j] = T(0);
          for (int64_t j = 0; j < H; ++j) dcr[j] += dcn[j];
          continue;
        }
        backward_row<T, RELU, HARD>(H, ar, prer, cp, tc, dcn, dhr, dcr, dgr);
      }
    });
    // d h~ = dG W_hh; the state read gets it (times the dropout mask), plus its own upstream gradient,
    // plus, on rows frozen at this step, the gradient that passed through unchanged.
    at::mm_out(dh_next, dg_steps[t], w);
    const T* dsp = ds_ + p * B * H;
    for (int64_t b = 0; b < B; ++b) {
      const bool frozen = len != nullptr && t >= len[b];
      const int64_t cell = b * H;
      for (int64_t j = 0; j < H; ++j) {
        const T through = mask ? dn_[cell + j] * mask[cell + j] : dn_[cell + j];
        dh_[cell + j] = through + dsp[cell + j] + (frozen ? dh_[cell + j] : T(0));
      }
    }
  }
}

// Fills S, C (slot `first` holds h0, c0 already), HM (if rec_mask), A, TC and PRE (if hard): the
// layout of cpu_loops.forward_buffers. gx (T, B, 4H); bias (4H,) (zeros when the layer has none);
// wt = W_hh^T (H, 4H).
void lstm_forward(const at::Tensor& gx, const at::Tensor& bias, const at::Tensor& wt,
                  const std::optional<at::Tensor>& lengths, const std::optional<at::Tensor>& rec_mask, bool reverse,
                  bool relu, bool hard, at::Tensor S, at::Tensor C, at::Tensor HM, at::Tensor A, at::Tensor TC,
                  at::Tensor PRE) {
  check_buffers(gx, {&gx, &bias, &wt, &S, &C, &A, &TC});
  if (rec_mask.has_value()) check_buffers(gx, {&*rec_mask, &HM});
  if (hard) check_buffers(gx, {&PRE});
  const int64_t* len = lengths_ptr(lengths, gx.size(1));
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "lstm_forward", [&] {
    const scalar_t* mask = rec_mask.has_value() ? rec_mask->data_ptr<scalar_t>() : nullptr;
    dispatch_flags(relu, hard, [&](auto relu_t, auto hard_t) {
      lstm_forward_impl<scalar_t, decltype(relu_t)::value, decltype(hard_t)::value>(gx, bias, wt, len, mask, reverse,
                                                                                     S, C, HM, A, TC, PRE);
    });
  });
}

// BPTT through lstm_forward. dS (T+1, B, H): gradient of the state buffer; dC the same for the cell
// buffer, or None. Writes dgx (T, B, 4H), dh (B, H) = d h0, dc (B, H) = d c0 without dC's slot `first`.
void lstm_backward(const at::Tensor& dS, const std::optional<at::Tensor>& dC, const at::Tensor& S,
                   const at::Tensor& C, const at::Tensor& A, const at::Tensor& TC, const at::Tensor& PRE,
                   const at::Tensor& w, const std::optional<at::Tensor>& lengths,
                   const std::optional<at::Tensor>& rec_mask, bool reverse, bool relu, bool hard, at::Tensor dgx,
                   at::Tensor dh, at::Tensor dc) {
  check_buffers(S, {&dS, &S, &C, &A, &TC, &w, &dgx, &dh, &dc});
  if (dC.has_value()) check_buffers(S, {&*dC});
  if (rec_mask.has_value()) check_buffers(S, {&*rec_mask});
  if (hard) check_buffers(S, {&PRE});
  check(A.size(0) > 0, "needs at least one step");
  const int64_t* len = lengths_ptr(lengths, A.size(1));
  AT_DISPATCH_FLOATING_TYPES(S.scalar_type(), "lstm_backward", [&] {
    const scalar_t* mask = rec_mask.has_value() ? rec_mask->data_ptr<scalar_t>() : nullptr;
    const scalar_t* dc_in = dC.has_value() ? dC->data_ptr<scalar_t>() : nullptr;
    dispatch_flags(relu, hard, [&](auto relu_t, auto hard_t) {
      lstm_backward_impl<scalar_t, decltype(relu_t)::value, decltype(hard_t)::value>(dS, dc_in, S, C, A, TC, PRE, w,
                                                                                      len, mask, reverse, dgx, dh, dc);
    });
  });
}

}  // namespace

TORCH_LIBRARY(seqtorch_cpu, m) {
  m.def("lstm_forward(Tensor gx, Tensor bias, Tensor wt, Tensor? lengths, Tensor? rec_mask, bool reverse, "
        "bool relu, bool hard, Tensor(a!) S, Tensor(b!) C, Tensor(c!) HM, Tensor(d!) A, Tensor(e!) TC, "
        "Tensor(f!) PRE) -> ()");
  m.def("lstm_backward(Tensor dS, Tensor? dC, Tensor S, Tensor C, Tensor A, Tensor TC, Tensor PRE, Tensor w, "
        "Tensor? lengths, Tensor? rec_mask, bool reverse, bool relu, bool hard, Tensor(a!) dgx, "
        "Tensor(b!) dh, Tensor(c!) dc) -> ()");
}

TORCH_LIBRARY_IMPL(seqtorch_cpu, CPU, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
}
