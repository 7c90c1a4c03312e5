// The GRU's sequential loops for CPU tensors, in C++: forward and hand-written BPTT, both GRU flavours.
//
// As lstm_cpu.cpp (read its header for why): per step, ATen GEMMs for the recurrent products and fused,
// vectorizable passes over the gates. The math is that of seqtorch/reference.py, the buffer layout that
// of seqtorch/ops/cpu_loops.py (forward_buffers); Python allocates every buffer, this file fills them.
//
// reset_after=True (torch, Keras >= 2.3): one GEMM a step, gh = h~ W_hh^T + b_hh (all three gates), then
//   r, z = sig(gx_rz + gh_rz), n = act(gx_n + r * gh_n), h' = n + z (h - n).
// reset_after=False (Keras 2.0, the book): two GEMMs a step, the second on r * h~:
//   r, z = sig(gx_rz + b_rz + h~ W_rz^T), n = act(gx_n + b_n + (r * h~) W_n^T), h' = n + z (h - n).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <vector>

#include "math.h"
#include "scan.h"

namespace {

using namespace seqtorch_cpu;

// ------------------------------------------------------------------------------------------------------
// Rows: one batch row of one step, over the H units. `valid`: the step is inside the sequence; a row
// past its length keeps its state (its activations are still stored; the backward gives them no weight).

// reset_after=True. gh_mm: h~ W_hh^T (3H) without bias; writes gh = gh_mm + b_hh (3H), rz (2H), n (H).
template <typename T, bool RELU, bool HARD>
void after_forward_row(int64_t H, const T* __restrict gx, const T* __restrict gh_mm, const T* __restrict bias,
                       const T* __restrict h_prev, bool valid, T* __restrict gh, T* __restrict rz,
                       T* __restrict pre, T* __restrict n_out, T* __restrict h_next) {
  for (int64_t j = 0; j < 3 * H; ++j) gh[j] = gh_mm[j] + bias[j];
  for (int64_t j = 0; j < H; ++j) {
    const T zr = gx[j] + gh[j], zz = gx[H + j] + gh[H + j];
    if constexpr (HARD) {
      pre[j] = zr, pre[H + j] = zz;
    }
    const T r = gate<T, HARD>(zr), z = gate<T, HARD>(zz);
    const T n = act<T, RELU>(gx[2 * H + j] + r * gh[2 * H + j]);
    rz[j] = r, rz[H + j] = z;
    n_out[j] = n;
    h_next[j] = n + z * (h_prev[j] - n);
  }
  if (!valid) std::memcpy(h_next, h_prev, sizeof(T) * H);
}

// reset_after=False, first half: r, z from gx_rz + b_rz + h~ W_rz^T (g_rz); writes a[0:2H], rh = r * h~.
template <typename T, bool HARD>
void before_gates_row(int64_t H, const T* __restrict gx, const T* __restrict g_rz, const T* __restrict bias,
                      const T* __restrict h_in, T* __restrict a, T* __restrict pre, T* __restrict rh) {
  for (int64_t j = 0; j < H; ++j) {
    const T zr = gx[j] + bias[j] + g_rz[j], zz = gx[H + j] + bias[H + j] + g_rz[H + j];
    if constexpr (HARD) {
      pre[j] = zr, pre[H + j] = zz;
    }
    const T r = gate<T, HARD>(zr);
    a[j] = r, a[H + j] = gate<T, HARD>(zz);
    rh[j] = r * h_in[j];
  }
}

// reset_after=False, second half: n from gx_n + b_n + (r h~) W_n^T (g_n); writes a[2H:3H] and h'.
template <typename T, bool RELU>
void before_state_row(int64_t H, const T* __restrict gx, const T* __restrict g_n, const T* __restrict bias,
                      const T* __restrict h_prev, bool valid, T* __restrict a, T* __restrict h_next) {
  for (int64_t j = 0; j < H; ++j) {
    const T n = act<T, RELU>(gx[2 * H + j] + bias[2 * H + j] + g_n[j]);
    const T z = a[H + j];
    a[2 * H + j] = n;
    h_next[j] = n + z * (h_prev[j] - n);
  }
  if (!valid) std::memcpy(h_next, h_prev, sizeof(T) * H);
}

// reset_after=True backward: from dh (of the state the step wrote) the input-projection gradient
// dgx = (dr, dz, dn) and the recurrent-product gradient dgh = (dr, dz, r dn).
template <typename T, bool RELU, bool HARD>
void after_backward_row(int64_t H, const T* __restrict rz, const T* __restrict pre, const T* __restrict n_act,
                        const T* __restrict gh, const T* __restrict h_prev, const T* __restrict dh,
                        T* __restrict dgx, T* __restrict dgh) {
  for (int64_t j = 0; j < H; ++j) {
    const T r = rz[j], z = rz[H + j], n = n_act[j];
    T pr = T(0), pz = T(0);
    if constexpr (HARD) {
      pr = pre[j], pz = pre[H + j];
    }
    const T dz = dh[j] * ((h_prev[j] - n) * gate_grad<T, HARD>(z, pz));
    const T dn = dh[j] * ((T(1) - z) * act_grad<T, RELU>(n));
    const T dr = dn * (gh[2 * H + j] * gate_grad<T, HARD>(r, pr));
    dgx[j] = dr, dgx[H + j] = dz, dgx[2 * H + j] = dn;
    dgh[j] = dr, dgh[H + j] = dz, dgh[2 * H + j] = dn * r;
  }
}

// reset_after=False backward, first half: dz, dn into dgx[H:3H].
template <typename T, bool RELU, bool HARD>
void before_backward_zn_row(int64_t H, const T* __restrict a, const T* __restrict pre, const T* __restrict h_prev,
                            const T* __restrict dh, T* __restrict dgx) {
  for (int64_t j = 0; j < H; ++j) {
    const T z = a[H + j], n = a[2 * H + j];
    const T pz = HARD ? pre[H + j] : T(0);
    dgx[H + j] = dh[j] * ((h_prev[j] - n) * gate_grad<T, HARD>(z, pz));
    dgx[2 * H + j] = dh[j] * ((T(1) - z) * act_grad<T, RELU>(n));
  }
}

// reset_after=False backward, second half: with drh = d(r h~) = dn W_n, dr into dgx[0:H] and
// d h~ (so far) = drh * r.
template <typename T, bool HARD>
void before_backward_r_row(int64_t H, const T* __restrict a, const T* __restrict pre, const T* __restrict h_in,
                           const T* __restrict drh, T* __restrict dgx, T* __restrict dh_in) {
  for (int64_t j = 0; j < H; ++j) {
    const T r = a[j];
    const T pr = HARD ? pre[j] : T(0);
    dgx[j] = drh[j] * (h_in[j] * gate_grad<T, HARD>(r, pr));
    dh_in[j] = drh[j] * r;
  }
}

// The state gradient carried to the step before: the recurrent part (times the dropout mask), the
// step's own upstream gradient, and z dh (1 dh on rows frozen at this step: they pass it through).
template <typename T>
void carry(int64_t B, int64_t H, const T* dh_in, const T* mask, const T* ds_prev, const T* z_src, int64_t z_stride,
           const int64_t* len, int64_t t, T* dh) {
  for (int64_t b = 0; b < B; ++b) {
    const bool frozen = len != nullptr && t >= len[b];
    const T* __restrict din = dh_in + b * H;
    const T* __restrict m = mask ? mask + b * H : nullptr;
    const T* __restrict dsp = ds_prev + b * H;
    const T* __restrict z = z_src + b * z_stride;
    T* __restrict d = dh + b * H;
    if (frozen) {
      for (int64_t j = 0; j < H; ++j) d[j] = (m ? din[j] * m[j] : din[j]) + dsp[j] + d[j];
    } else if (m) {
      for (int64_t j = 0; j < H; ++j) d[j] = din[j] * m[j] + dsp[j] + z[j] * d[j];
    } else {
      for (int64_t j = 0; j < H; ++j) d[j] = din[j] + dsp[j] + z[j] * d[j];
    }
  }
}

// ------------------------------------------------------------------------------------------------------
// Loops

struct ForwardArgs {
  const at::Tensor& gx;    // (T, B, 3H)
  const at::Tensor& bias;  // (3H,): b_hh, zeros when the layer has none
  const at::Tensor& wt;    // W_hh^T (H, 3H)
  const int64_t* len;
  bool reverse;
  at::Tensor& S;    // (T+1, B, H), slot `first` holds h0
  at::Tensor& HM;   // (T, B, H) masked state, when rec_mask
  at::Tensor& PRE;  // (T, B, 2H) gate pre-activations, when hard_sigmoid
};

template <typename T, bool RELU, bool HARD>
void forward_after(const ForwardArgs& a, const T* mask, at::Tensor& RZ, at::Tensor& N, at::Tensor& GH) {
  const int64_t T_ = a.gx.size(0), B = a.gx.size(1), H = a.S.size(2), BH = B * H;
  const Steps steps{T_, a.reverse};
  at::Tensor gh_mm = at::empty({B, 3 * H}, a.gx.options());
  const std::vector<at::Tensor> s_slots = a.S.unbind(0);
  const std::vector<at::Tensor> hm_slots = mask ? a.HM.unbind(0) : std::vector<at::Tensor>();
  T* s_ = a.S.data_ptr<T>();
  T* hm_ = mask ? a.HM.data_ptr<T>() : nullptr;
  const T* gx_ = a.gx.data_ptr<T>();
  const T* b_ = a.bias.data_ptr<T>();
  const T* g_ = gh_mm.data_ptr<T>();
  T *rz_ = RZ.data_ptr<T>(), *n_ = N.data_ptr<T>(), *gh_ = GH.data_ptr<T>();
  T* pre_ = HARD ? a.PRE.data_ptr<T>() : nullptr;
  for (int64_t k = 0; k < T_; ++k) {
    const int64_t t = steps.at(k), p = steps.prev(t), n = steps.next(t);
    if (mask) mask_rows(BH, s_ + p * BH, mask, hm_ + t * BH);
    at::mm_out(gh_mm, mask ? hm_slots[t] : s_slots[p], a.wt);
    at::parallel_for(0, B, grain(H), [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        const int64_t row = t * B + b;
        after_forward_row<T, RELU, HARD>(H, gx_ + row * 3 * H, g_ + b * 3 * H, b_, s_ + p * BH + b * H,
                                         a.len == nullptr || t < a.len[b], gh_ + row * 3 * H, rz_ + row * 2 * H,
                                         HARD ? pre_ + row * 2 * H : nullptr, n_ + row * H, s_ + n * BH + b * H);
      }
    });
  }
}

template <typename T, bool RELU, bool HARD>
void forward_before(const ForwardArgs& a, const T* mask, const at::Tensor& wt_rz, const at::Tensor& wt_n,
                    at::Tensor& A, at::Tensor& RH) {
  const int64_t T_ = a.gx.size(0), B = a.gx.size(1), H = a.S.size(2), BH = B * H;
  const Steps steps{T_, a.reverse};
  at::Tensor g_rz = at::empty({B, 2 * H}, a.gx.options()), g_n = at::empty({B, H}, a.gx.options());
  const std::vector<at::Tensor> s_slots = a.S.unbind(0), rh_slots = RH.unbind(0);
  const std::vector<at::Tensor> hm_slots = mask ? a.HM.unbind(0) : std::vector<at::Tensor>();
  T* s_ = a.S.data_ptr<T>();
  T* hm_ = mask ? a.HM.data_ptr<T>() : nullptr;
  const T* gx_ = a.gx.data_ptr<T>();
  const T* b_ = a.bias.data_ptr<T>();
  const T *grz_ = g_rz.data_ptr<T>(), *gn_ = g_n.data_ptr<T>();
  T *a_ = A.data_ptr<T>(), *rh_ = RH.data_ptr<T>();
  T* pre_ = HARD ? a.PRE.data_ptr<T>() : nullptr;
  for (int64_t k = 0; k < T_; ++k) {
    const int64_t t = steps.at(k), p = steps.prev(t), n = steps.next(t);
    if (mask) mask_rows(BH, s_ + p * BH, mask, hm_ + t * BH);
    const T* h_in = mask ? hm_ + t * BH : s_ + p * BH;
    at::mm_out(g_rz, mask ? hm_slots[t] : s_slots[p], wt_rz);
    at::parallel_for(0, B, grain(H), [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        const int64_t row = t * B + b;
        before_gates_row<T, HARD>(H, gx_ + row * 3 * H, grz_ + b * 2 * H, b_, h_in + b * H, a_ + row * 3 * H,
                                  HARD ? pre_ + row * 2 * H : nullptr, rh_ + row * H);
      }
    });
    at::mm_out(g_n, rh_slots[t], wt_n);
    at::parallel_for(0, B, grain(H), [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        const int64_t row = t * B + b;
        before_state_row<T, RELU>(H, gx_ + row * 3 * H, gn_ + b * H, b_, s_ + p * BH + b * H,
                                  a.len == nullptr || t < a.len[b], a_ + row * 3 * H, s_ + n * BH + b * H);
      }
    });
  }
}

template <typename T, bool RELU, bool HARD>
void backward_after(const at::Tensor& dS, const at::Tensor& S, const at::Tensor& RZ, const at::Tensor& N,
                    const at::Tensor& GH, const at::Tensor& PRE, const at::Tensor& w, const int64_t* len,
                    const T* mask, bool reverse, at::Tensor& dgx, at::Tensor& dgh, at::Tensor& dh) {
  const int64_t T_ = RZ.size(0), B = RZ.size(1), H = S.size(2), BH = B * H;
  const Steps steps{T_, reverse};
  at::Tensor dh_in = at::empty({B, H}, S.options());
  const std::vector<at::Tensor> dgh_steps = dgh.unbind(0);
  const T *ds_ = dS.data_ptr<T>(), *s_ = S.data_ptr<T>(), *rz_ = RZ.data_ptr<T>(), *n_ = N.data_ptr<T>(),
          *gh_ = GH.data_ptr<T>();
  const T* pre_ = HARD ? PRE.data_ptr<T>() : nullptr;
  T *dgx_ = dgx.data_ptr<T>(), *dgh_ = dgh.data_ptr<T>(), *dh_ = dh.data_ptr<T>(), *din_ = dh_in.data_ptr<T>();
  std::memcpy(dh_, ds_ + steps.next(steps.at(T_ - 1)) * BH, sizeof(T) * BH);
  for (int64_t k = T_ - 1; k >= 0; --k) {
    const int64_t t = steps.at(k), p = steps.prev(t);
    at::parallel_for(0, B, grain(H), [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        const int64_t row = t * B + b;
        if (len != nullptr && t >= len[b]) {
          std::fill(dgx_ + row * 3 * H, dgx_ + (row + 1) * 3 * H, T(0));
          std::fill(dgh_ + row * 3 * H, dgh_ + (row + 1) * 3 * H, T(0));
          continue;
        }
        after_backward_row<T, RELU, HARD>(H, rz_ + row * 2 * H, HARD ? pre_ + row * 2 * H : nullptr, n_ + row * H,
                                          gh_ + row * 3 * H, s_ + p * BH + b * H, dh_ + b * H, dgx_ + row * 3 * H,
                                          dgh_ + row * 3 * H);
      }
    });
    at::mm_out(dh_in, dgh_steps[t], w);
    carry(B, H, din_, mask, ds_ + p * BH, rz_ + t * B * 2 * H + H, 2 * H, len, t, dh_);
  }
}

template <typename T, bool RELU, bool HARD>
void backward_before(const at::Tensor& dS, const at::Tensor& S, const at::Tensor& HM, const at::Tensor& A,
                     const at::Tensor& PRE, const at::Tensor& w_rz, const at::Tensor& w_n, const int64_t* len,
                     const T* mask, bool reverse, at::Tensor& dgx, at::Tensor& dh) {
  const int64_t T_ = A.size(0), B = A.size(1), H = S.size(2), BH = B * H;
  const Steps steps{T_, reverse};
  at::Tensor drh = at::empty({B, H}, S.options()), dh_in = at::empty({B, H}, S.options());
  at::Tensor dh_rz = at::empty({B, H}, S.options());
  const std::vector<at::Tensor> dgx_steps = dgx.unbind(0);
  const T *ds_ = dS.data_ptr<T>(), *s_ = S.data_ptr<T>(), *a_ = A.data_ptr<T>();
  const T* hm_ = mask ? HM.data_ptr<T>() : nullptr;
  const T* pre_ = HARD ? PRE.data_ptr<T>() : nullptr;
  T *dgx_ = dgx.data_ptr<T>(), *dh_ = dh.data_ptr<T>(), *drh_ = drh.data_ptr<T>(), *din_ = dh_in.data_ptr<T>();
  const T* drz_ = dh_rz.data_ptr<T>();
  std::memcpy(dh_, ds_ + steps.next(steps.at(T_ - 1)) * BH, sizeof(T) * BH);
  for (int64_t k = T_ - 1; k >= 0; --k) {
    const int64_t t = steps.at(k), p = steps.prev(t);
    const T* h_in = mask ? hm_ + t * BH : s_ + p * BH;
    at::parallel_for(0, B, grain(H), [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        const int64_t row = t * B + b;
        if (len != nullptr && t >= len[b]) {
          std::fill(dgx_ + row * 3 * H, dgx_ + (row + 1) * 3 * H, T(0));
          continue;
        }
        before_backward_zn_row<T, RELU, HARD>(H, a_ + row * 3 * H, HARD ? pre_ + row * 2 * H : nullptr,
                                              s_ + p * BH + b * H, dh_ + b * H, dgx_ + row * 3 * H);
      }
    });
    at::mm_out(drh, dgx_steps[t].narrow(1, 2 * H, H), w_n);  // d(r h~) = dn W_n
    at::parallel_for(0, B, grain(H), [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        const int64_t row = t * B + b;
        before_backward_r_row<T, HARD>(H, a_ + row * 3 * H, HARD ? pre_ + row * 2 * H : nullptr, h_in + b * H,
                                       drh_ + b * H, dgx_ + row * 3 * H, din_ + b * H);
      }
    });
    at::mm_out(dh_rz, dgx_steps[t].narrow(1, 0, 2 * H), w_rz);  // (dr, dz) W_rz
    for (int64_t e = 0; e < BH; ++e) din_[e] += drz_[e];
    carry(B, H, din_, mask, ds_ + p * BH, a_ + t * B * 3 * H + H, 3 * H, len, t, dh_);
  }
}

// Fills S (slot `first` holds h0), HM (if rec_mask), PRE (if hard) and, for reset_after, RZ, N, GH;
// otherwise A and RH (the layout of cpu_loops.forward_buffers). gx (T, B, 3H); bias (3H,) (zeros when the
// layer has none); wt = W_hh^T (H, 3H); for reset_after=False also its column blocks wt_rz (H, 2H) and
// wt_n (H, H), contiguous.
void gru_forward(const at::Tensor& gx, const at::Tensor& bias, const at::Tensor& wt, const at::Tensor& wt_rz,
                 const at::Tensor& wt_n, const std::optional<at::Tensor>& lengths,
                 const std::optional<at::Tensor>& rec_mask, bool reverse, bool relu, bool hard, bool reset_after,
                 at::Tensor S, at::Tensor HM, at::Tensor PRE, at::Tensor X1, at::Tensor X2, at::Tensor X3) {
  check_buffers(gx, {&gx, &bias, &S});
  if (rec_mask.has_value()) check_buffers(gx, {&*rec_mask, &HM});
  if (hard) check_buffers(gx, {&PRE});
  if (reset_after) check_buffers(gx, {&wt, &X1, &X2, &X3});
  else check_buffers(gx, {&wt_rz, &wt_n, &X1, &X2});
  const ForwardArgs args{gx, bias, reset_after ? wt : wt_rz, lengths_ptr(lengths, gx.size(1)), reverse, S, HM, PRE};
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "gru_forward", [&] {
    const scalar_t* mask = rec_mask.has_value() ? rec_mask->data_ptr<scalar_t>() : nullptr;
    dispatch_flags(relu, hard, [&](auto relu_t, auto hard_t) {
      constexpr bool R = decltype(relu_t)::value, Hd = decltype(hard_t)::value;
      if (reset_after) forward_after<scalar_t, R, Hd>(args, mask, X1, X2, X3);
      else forward_before<scalar_t, R, Hd>(args, mask, wt_rz, wt_n, X1, X2);
    });
  });
}

// BPTT through gru_forward. dS (T+1, B, H): gradient of the state buffer. Writes dgx (T, B, 3H) and
// dh (B, H) = d h0; for reset_after also dgh (T, B, 3H) = d(h~ W_hh^T + b_hh), the operand of the weight
// gradient GEMM. w (3H, H) = W_hh, or for reset_after=False its row blocks w_rz (2H, H) and w_n (H, H).
void gru_backward(const at::Tensor& dS, const at::Tensor& S, const at::Tensor& HM, const at::Tensor& PRE,
                  const at::Tensor& X1, const at::Tensor& X2, const at::Tensor& X3, const at::Tensor& w,
                  const at::Tensor& w_rz, const at::Tensor& w_n, const std::optional<at::Tensor>& lengths,
                  const std::optional<at::Tensor>& rec_mask, bool reverse, bool relu, bool hard, bool reset_after,
                  at::Tensor dgx, at::Tensor dgh, at::Tensor dh) {
  check_buffers(S, {&dS, &S, &X1, &dgx, &dh});
  if (rec_mask.has_value()) check_buffers(S, {&*rec_mask, &HM});
  if (hard) check_buffers(S, {&PRE});
  if (reset_after) check_buffers(S, {&X2, &X3, &w, &dgh});
  else check_buffers(S, {&w_rz, &w_n});
  check(X1.size(0) > 0, "needs at least one step");
  const int64_t* len = lengths_ptr(lengths, X1.size(1));
  AT_DISPATCH_FLOATING_TYPES(S.scalar_type(), "gru_backward", [&] {
    const scalar_t* mask = rec_mask.has_value() ? rec_mask->data_ptr<scalar_t>() : nullptr;
    dispatch_flags(relu, hard, [&](auto relu_t, auto hard_t) {
      constexpr bool R = decltype(relu_t)::value, Hd = decltype(hard_t)::value;
      if (reset_after) backward_after<scalar_t, R, Hd>(dS, S, X1, X2, X3, PRE, w, len, mask, reverse, dgx, dgh, dh);
      else backward_before<scalar_t, R, Hd>(dS, S, HM, X1, PRE, w_rz, w_n, len, mask, reverse, dgx, dh);
    });
  });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(seqtorch_cpu, m) {
  m.def("gru_forward(Tensor gx, Tensor bias, Tensor wt, Tensor wt_rz, Tensor wt_n, Tensor? lengths, "
        "Tensor? rec_mask, bool reverse, bool relu, bool hard, bool reset_after, Tensor(a!) S, Tensor(b!) HM, "
        "Tensor(c!) PRE, Tensor(d!) X1, Tensor(e!) X2, Tensor(f!) X3) -> ()");
  m.def("gru_backward(Tensor dS, Tensor S, Tensor HM, Tensor PRE, Tensor X1, Tensor X2, Tensor X3, Tensor w, "
        "Tensor w_rz, Tensor w_n, Tensor? lengths, Tensor? rec_mask, bool reverse, bool relu, bool hard, "
        "bool reset_after, Tensor(a!) dgx, Tensor(b!) dgh, Tensor(c!) dh) -> ()");
}

TORCH_LIBRARY_IMPL(seqtorch_cpu, CPU, m) {
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
}
