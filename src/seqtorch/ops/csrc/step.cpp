// One step of a cell in C++, forward and backward, with its autograd: what seqtorch's cell Modules
// (LSTMCell, GRUCell, ...) run when a program calls them step by step (decoders, generation loops,
// pytorch/examples' time_sequence_prediction).
//
// Why: a cell call in PyTorch ops is an input projection, a recurrent product and about ten elementwise ops,
// each a dispatch of a few microseconds and an autograd node; at B=1 that overhead is most of the call, and
// a backward written in Python (an autograd.Function) costs as much again. Here a call is one op,
// seqtorch::cell_step: the input projection and the recurrent products as BLAS calls (gemm.h), the cell's
// pointwise code of its cpu.h over the rows (the code the scan runs, cpu_cell.h), and, when a gradient is wanted,
// one autograd node whose backward is C++ too: the cell's pointwise backward, the products' input gradients,
// and the weights' gradients as GEMMs.
//
// The op's contract (seqtorch/ops/step.py says when it serves and registers the reference it equals):
//   cell_step(cell, activation, recurrent_activation, cell_args, x (B, I), states (B, width) each,
//             input_weights (W_ih (G*H, I), b_ih (G*H,) or None), weights (the cell's, e.g. W_hh, b_hh or None))
//   -> the new states (B, width) each.
// The recurrent weights' gradients follow the default rule of Cell.weight_grads: product i's weight rows get
// d(P_i)^T @ its input, and weights[1] (the bias, or None) at the same rows gets the column sums of d(P_i);
// seqtorch/ops/step.py serves only cells whose spec follows that rule. A double backward (create_graph=True)
// differentiates the reference step instead (seqtorch::cell_step_reference, registered by step.py), so that
// its result is differentiable again.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <vector>

#include "buffer_pool.h"
#include "cells_generated.h"
#include "cpu_cell.h"
#include "gemm.h"
#include "op_args.h"
#include "scan.h"
#include "own_autograd.h"

namespace seqtorch_cpu {
namespace {

// What a cell_step call is besides its tensors, and which of the optional weights are present.
struct StepConfig {
  Args args;
  int64_t n_states = 0;
  std::vector<bool> present;  // per entry of (W_ih, b_ih, *weights): given (not None)
  std::string activation, recurrent_activation;
};

// The tensors of one call, each contiguous; absent weights undefined.
struct StepTensors {
  at::Tensor x;
  std::vector<at::Tensor> states;
  at::Tensor w_ih, b_ih;
};

// gx (B, G) = x (B, I) @ W_ih^T + b_ih.
template <typename T>
at::Tensor input_projection(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& b_ih) {
  const int64_t B = x.size(0), I = x.size(1), G = w_ih.size(0);
  at::Tensor gx = at::empty({B, G}, x.options());
  StepGemm<T>(w_ih.data_ptr<T>(), G, I, I, WeightOp::kTransposed, B, false, x.options())
      .run(x.data_ptr<T>(), I, gx.data_ptr<T>(), G);
  if (b_ih.defined()) {
    const T* __restrict b = b_ih.data_ptr<T>();
    T* g = gx.data_ptr<T>();
    for (int64_t row = 0; row < B; ++row) {
      T* __restrict out = g + row * G;
      for (int64_t j = 0; j < G; ++j) out[j] += b[j];
    }
  }
  return gx;
}

// The new states, then (save) U (0-element unless two products) and the cell's saved buffers.
template <typename T, class Cell, class A>
std::vector<at::Tensor> step_forward(const Args& a, bool save, const StepTensors& in) {
  constexpr int K = Cell::kStates;
  constexpr int NP = int(Cell::kProducts.size());
  constexpr int STAGES = NP > 1 ? NP : 1;
  const int64_t B = in.x.size(0);
  const int64_t H = a.weights.at(0).size(0) / Cell::kGates, P = in.states.at(0).size(1), G = Cell::kGates * H;
  const Dims d{H, P};
  const at::TensorOptions opt = in.x.options();

  const at::Tensor gx = input_projection<T>(in.x, in.w_ih, in.b_ih);
  int64_t width[kMaxStates];
  at::Tensor next[kMaxStates];
  for (int k = 0; k < K; ++k) {
    width[k] = Cell::state_width(k, d);
    next[k] = new_buffer({B, width[k]}, opt);
  }
  const int64_t U = Cell::u_width(d);
  const at::Tensor u = U ? new_buffer({B, U}, opt) : at::Tensor();
  at::Tensor saved[kMaxSaved];
  int64_t saved_width[kMaxSaved] = {0};
  for (int j = 0; j < Cell::kSaved; ++j) {
    saved_width[j] = Cell::saved_width(j, d, A::kNeedsPre);
    saved[j] = new_buffer({saved_width[j] ? B : 0, saved_width[j]}, opt);
  }
  const at::Tensor zeros = zeros_if_absent(a.weights, G, opt);
  const T* weight_data[kMaxWeights] = {nullptr};
  weights_or_zeros(a.weights, zeros, weight_data);
  const T* h_in = in.states[0].data_ptr<T>();
  const T* gx_ = gx.data_ptr<T>();
  const T* prev_[kMaxStates] = {nullptr};
  T* next_[kMaxStates] = {nullptr};
  for (int k = 0; k < K; ++k) prev_[k] = in.states[k].data_ptr<T>(), next_[k] = next[k].data_ptr<T>();
  T* u_ = U ? u.data_ptr<T>() : nullptr;
  T* saved_[kMaxSaved] = {nullptr};
  for (int j = 0; j < Cell::kSaved; ++j) saved_[j] = saved_width[j] ? saved[j].data_ptr<T>() : nullptr;

  at::Tensor product;
  for (int stage = 0; stage < STAGES; ++stage) {
    const T* product_ = nullptr;
    int64_t pw = 0;
    if (stage < NP) {
      const bool from_h = Cell::kProducts[stage].input == ProductInput::kHIn;
      const StepGemm<T> gemm = product_gemm<T>(Cell::kProducts[stage], a.weights, H, WeightOp::kTransposed, B, false);
      pw = gemm.n();
      if (!product.defined() || product.size(1) != pw) product = at::empty({B, pw}, opt);
      gemm.run(from_h ? h_in : u_, from_h ? P : U, product.data_ptr<T>(), pw);
      product_ = product.data_ptr<T>();
    }
    at::parallel_for(0, B, grain(G), [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        ForwardRow<T> r{};
        r.d = d;
        r.gx = gx_ + b * G;
        r.product = product_ ? product_ + b * pw : nullptr;
        r.h_in = h_in + b * P;
        for (int k = 0; k < K; ++k) r.prev[k] = prev_[k] + b * width[k], r.next[k] = next_[k] + b * width[k];
        r.u = u_ ? u_ + b * U : nullptr;
        for (int j = 0; j < Cell::kSaved; ++j) r.saved[j] = saved_[j] ? saved_[j] + b * saved_width[j] : nullptr;
        for (int i = 0; i < kMaxWeights; ++i) r.weights[i] = weight_data[i];
        r.args = a.cell_args.data();
        Cell::template forward<T, A>(stage, r);
      }
    });
  }
  std::vector<at::Tensor> outputs(next, next + K);
  if (save) {
    outputs.push_back(U ? u : at::empty({0}, opt));
    for (int j = 0; j < Cell::kSaved; ++j) outputs.push_back(saved[j]);
  }
  return outputs;
}

// Which gradients a backward computes (the autograd node's needs_input_grad).
struct StepNeeds {
  bool x = false;
  bool states[kMaxStates] = {false};
  bool w_ih = false, b_ih = false;
  bool weights[kMaxWeights] = {false};
};

struct StepGrads {
  at::Tensor dx;
  std::vector<at::Tensor> dstates;
  at::Tensor dw_ih, db_ih;
  std::vector<at::Tensor> dweights;  // per recurrent weight, undefined where not needed
};

// grads: the new states' gradients (undefined: zero); buffers: the forward's U and saved buffers.
template <typename T, class Cell, class A>
StepGrads step_backward(const Args& a, const std::vector<at::Tensor>& grads, const StepTensors& in,
                        const std::vector<at::Tensor>& buffers, const StepNeeds& needs) {
  constexpr int K = Cell::kStates;
  constexpr int NP = int(Cell::kProducts.size());
  constexpr int STAGES = NP > 1 ? NP : 1;
  check(buffers.size() == size_t(1 + Cell::kSaved), "unexpected number of saved buffers");
  const int64_t B = in.x.size(0), I = in.x.size(1);
  const int64_t H = a.weights.at(0).size(0) / Cell::kGates, P = in.states.at(0).size(1), G = Cell::kGates * H;
  const Dims d{H, P};
  const at::TensorOptions opt = in.x.options();
  const at::Tensor& u = buffers[0];
  const int64_t U = u.numel() ? u.size(1) : 0;

  int64_t width[kMaxStates];
  at::Tensor up[kMaxStates], d_prev[kMaxStates];
  for (int k = 0; k < K; ++k) {
    width[k] = in.states[k].size(1);
    up[k] = grads[k].defined() ? grads[k].contiguous() : at::zeros({B, width[k]}, opt);
    d_prev[k] = new_buffer({B, width[k]}, opt);
  }
  int64_t saved_width[kMaxSaved] = {0};
  const T* saved_[kMaxSaved] = {nullptr};
  for (int j = 0; j < Cell::kSaved; ++j) {
    const at::Tensor& s = buffers[1 + j];
    saved_width[j] = s.numel() ? s.size(1) : 0;
    saved_[j] = s.numel() ? s.data_ptr<T>() : nullptr;
  }
  const at::Tensor dgx = new_buffer({B, G}, opt);
  at::Tensor grad_buffers[kMaxGradBuffers];
  int64_t grad_width[kMaxGradBuffers] = {0};
  for (int j = 0; j < Cell::kGradBuffers; ++j) {
    grad_width[j] = Cell::grad_width(j, d);
    grad_buffers[j] = new_buffer({B, grad_width[j]}, opt);
  }
  const at::Tensor d_h_in = Cell::kWritesDHIn ? new_buffer({B, P}, opt) : at::Tensor();
  const at::Tensor du = U ? new_buffer({B, U}, opt) : at::Tensor();
  const at::Tensor zeros = zeros_if_absent(a.weights, G, opt);
  const T* weight_data[kMaxWeights] = {nullptr};
  weights_or_zeros(a.weights, zeros, weight_data);

  // d(input of product i) = d(product i) @ W_i, into out (B, its width)
  auto product_input_grad = [&](int i, const at::Tensor& out) {
    const at::Tensor grad = product_grad<Cell>(i, dgx, grad_buffers, H);
    product_gemm<T>(Cell::kProducts[i], a.weights, H, WeightOp::kPlain, B, false)
        .run(grad.data_ptr<T>(), grad.stride(0), out.data_ptr<T>(), out.size(1));
  };

  for (int stage = STAGES - 1; stage >= 0; --stage) {
    if (stage == 0 && STAGES == 2) product_input_grad(1, du);
    const T* du_ = (stage == 0 && STAGES == 2) ? du.data_ptr<T>() : nullptr;
    at::parallel_for(0, B, grain(G), [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        BackwardRow<T> r{};
        r.d = d;
        for (int k = 0; k < K; ++k) {
          r.d_next[k] = up[k].data_ptr<T>() + b * width[k];
          r.prev[k] = in.states[k].data_ptr<T>() + b * width[k];
          r.d_prev[k] = d_prev[k].data_ptr<T>() + b * width[k];
        }
        r.h_in = in.states[0].data_ptr<T>() + b * P;
        r.u = U ? u.data_ptr<T>() + b * U : nullptr;
        for (int j = 0; j < Cell::kSaved; ++j) r.saved[j] = saved_[j] ? saved_[j] + b * saved_width[j] : nullptr;
        for (int i = 0; i < kMaxWeights; ++i) r.weights[i] = weight_data[i];
        r.du = du_ ? du_ + b * U : nullptr;
        r.dgx = dgx.data_ptr<T>() + b * G;
        for (int j = 0; j < Cell::kGradBuffers; ++j) r.grads[j] = grad_buffers[j].data_ptr<T>() + b * grad_width[j];
        r.d_h_in = d_h_in.defined() ? d_h_in.data_ptr<T>() + b * P : nullptr;
        r.args = a.cell_args.data();
        Cell::template backward<T, A>(stage, r);
      }
    });
  }

  StepGrads out;
  // h's gradient: through the products (h_in) and the cell's direct ones (d_prev[0], d_h_in)
  if (NP > 0 && needs.states[0]) {
    const at::Tensor dh = at::empty({B, P}, opt);
    product_input_grad(0, dh);
    d_prev[0].add_(dh);
  }
  if (d_h_in.defined()) d_prev[0].add_(d_h_in);
  for (int k = 0; k < K; ++k) out.dstates.push_back(needs.states[k] ? d_prev[k] : at::Tensor());
  if (needs.x) {  // dx = dgx @ W_ih
    out.dx = new_buffer({B, I}, opt);
    StepGemm<T>(in.w_ih.data_ptr<T>(), G, I, I, WeightOp::kPlain, B, false, opt)
        .run(dgx.data_ptr<T>(), G, out.dx.data_ptr<T>(), I);
  }
  if (needs.w_ih) out.dw_ih = at::mm(dgx.t(), in.x);
  if (needs.b_ih) out.db_ih = dgx.sum(0);
  out.dweights = product_weight_grads<Cell>(a.weights, H, dgx, grad_buffers, in.states[0], u, needs.weights);
  return out;
}

// The op's arguments, checked and made contiguous.
std::pair<StepConfig, StepTensors> parse(const std::string& cell, const std::string& activation,
                                         const std::string& recurrent_activation, c10::ArrayRef<double> cell_args,
                                         const at::Tensor& x, const std::vector<at::Tensor>& states,
                                         const OptionalTensors& input_weights, const OptionalTensors& weights) {
  StepConfig cfg{make_args(cell, activation, recurrent_activation, false, cell_args, weights, std::nullopt,
                           std::nullopt, std::nullopt, OptionalTensors(), std::nullopt, OptionalTensors()),
                 int64_t(states.size()), {}, activation, recurrent_activation};
  check(cfg.n_states >= 1 && cfg.n_states <= kMaxStates, "a cell has one or two states");
  const std::vector<at::Tensor> in_w = contiguous_or_undefined(input_weights);
  check(in_w.size() == 2 && in_w[0].defined(), "input_weights must be (weight_ih, bias_ih or None)");
  StepTensors in{x.contiguous(), {}, in_w[0], in_w[1]};
  check(in.x.dim() == 2, "x must be (B, I)");
  for (const at::Tensor& s : states) in.states.push_back(s.contiguous());
  check_inputs(in.x, in.states);
  for (const at::Tensor& w : in_w) {
    cfg.present.push_back(w.defined());
    if (w.defined()) check_inputs(in.x, {w});
  }
  for (const at::Tensor& w : cfg.args.weights) {
    cfg.present.push_back(w.defined());
    if (w.defined()) check_inputs(in.x, {w});
  }
  return {cfg, in};
}

std::vector<at::Tensor> forward_any(const StepConfig& cfg, bool save, const StepTensors& in) {
  std::vector<at::Tensor> out;
  with_cell(cfg.args.cell, "step", [&](auto cell) {
    using Cell = decltype(cell);
    with_types<Cell>(cfg.args, in.x.scalar_type(), [&](auto t, auto acts) {
      out = step_forward<decltype(t), Cell, decltype(acts)>(cfg.args, save, in);
    });
  });
  return out;
}

StepGrads backward_any(const StepConfig& cfg, const std::vector<at::Tensor>& grads, const StepTensors& in,
                       const std::vector<at::Tensor>& buffers, const StepNeeds& needs) {
  StepGrads out;
  with_cell(cfg.args.cell, "step", [&](auto cell) {
    using Cell = decltype(cell);
    with_types<Cell>(cfg.args, in.x.scalar_type(), [&](auto t, auto acts) {
      out = step_backward<decltype(t), Cell, decltype(acts)>(cfg.args, grads, in, buffers, needs);
    });
  });
  return out;
}

// The present tensors of a call, flat (flatten_present).
variable_list flatten(const StepConfig& cfg, const StepTensors& in) {
  std::vector<at::Tensor> slots{in.w_ih, in.b_ih};
  slots.insert(slots.end(), cfg.args.weights.begin(), cfg.args.weights.end());
  return flatten_present(in.x, in.states, slots, cfg.present);
}

// The inverse of flatten, for the tensors a backward unpacks (with the config's weights replaced).
std::pair<StepConfig, StepTensors> unflatten(StepConfig cfg, const variable_list& flat) {
  StepTensors in;
  const std::vector<at::Tensor> slots = unflatten_present(flat, cfg.n_states, cfg.present, &in.x, &in.states);
  in.w_ih = slots[0], in.b_ih = slots[1];
  cfg.args.weights.assign(slots.begin() + 2, slots.end());
  return {cfg, in};
}

// The gradients of the present tensors by the reference step (seqtorch::cell_step_reference, Python), with
// autograd recording: a double backward's first derivative.
variable_list reference_backward(const StepConfig& cfg, const variable_list& flat, const variable_list& grads,
                                 const std::vector<bool>& needs) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("seqtorch::cell_step_reference", "")
                             .typed<std::vector<at::Tensor>(const std::string&, const std::string&,
                                                            const std::string&, c10::ArrayRef<double>,
                                                            const at::Tensor&, at::TensorList, const OptionalTensors&,
                                                            const OptionalTensors&)>();
  const auto [c, in] = unflatten(cfg, flat);
  OptionalTensors input_weights, weights;
  for (const at::Tensor& w : {in.w_ih, in.b_ih}) input_weights.push_back(w.defined() ? std::optional(w) : std::nullopt);
  for (const at::Tensor& w : c.args.weights) weights.push_back(w.defined() ? std::optional(w) : std::nullopt);
  const std::vector<at::Tensor> outputs = op.call(c.args.cell, c.activation, c.recurrent_activation,
                                                  c.args.cell_args, in.x, in.states, input_weights, weights);
  return reference_gradients(outputs, grads, flat, needs);
}

// The config as a backward finds it in the node's saved_data (IValues), and back.
void save_config(AutogradContext* ctx, const StepConfig& cfg) {
  ctx->saved_data["cell"] = cfg.args.cell;
  ctx->saved_data["activation"] = cfg.activation;
  ctx->saved_data["recurrent_activation"] = cfg.recurrent_activation;
  ctx->saved_data["cell_args"] = cfg.args.cell_args;
  ctx->saved_data["n_states"] = cfg.n_states;
  ctx->saved_data["present"] = present_list(cfg.present);
}

StepConfig load_config(AutogradContext* ctx) {
  StepConfig cfg;
  cfg.activation = ctx->saved_data["activation"].toStringRef();
  cfg.recurrent_activation = ctx->saved_data["recurrent_activation"].toStringRef();
  cfg.present = present_of(ctx->saved_data["present"]);
  cfg.n_states = ctx->saved_data["n_states"].toInt();
  cfg.args = Args{ctx->saved_data["cell"].toStringRef(), relu_of(cfg.activation), gate_of(cfg.recurrent_activation),
                  false, std::nullopt, std::nullopt, std::nullopt, {}, std::nullopt,
                  std::vector<at::Tensor>(cfg.present.size() - 2), {},
                  ctx->saved_data["cell_args"].toDoubleVector()};
  return cfg;
}

struct CellStep : public torch::autograd::Function<CellStep> {
  static variable_list forward(AutogradContext* ctx, const StepConfig& cfg, at::TensorList flat) {
    const auto [c, in] = unflatten(cfg, flat.vec());
    std::vector<at::Tensor> out = forward_any(c, true, in);
    ctx->save_for_backward(flat.vec());
    ctx->saved_data["buffers"] = std::vector<at::Tensor>(out.begin() + cfg.n_states, out.end());
    save_config(ctx, cfg);
    ctx->set_materialize_grads(false);
    out.resize(cfg.n_states);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const StepConfig cfg = load_config(ctx);
    const variable_list flat = ctx->get_saved_variables();
    std::vector<bool> needs;
    const auto reference = [&] { return reference_backward(cfg, flat, grads, needs); };
    if (auto done = backward_without_cpp(ctx, flat.size(), grads, &needs, reference)) return *done;
    variable_list result{at::Tensor()};  // the config's
    const auto [c, in] = unflatten(cfg, flat);
    StepNeeds n;
    n.x = needs[0];
    for (int64_t k = 0; k < cfg.n_states; ++k) n.states[k] = needs[1 + k];
    const std::vector<bool> slot = slot_needs(needs, cfg.n_states, cfg.present);
    n.w_ih = slot[0], n.b_ih = slot[1];
    for (size_t w = 0; w + 2 < slot.size(); ++w) n.weights[w] = slot[w + 2];
    const StepGrads g = backward_any(c, grads, in, ctx->saved_data["buffers"].toTensorVector(), n);
    append_flat_grads(&result, g.dx, g.dstates, g.dw_ih, g.db_ih, g.dweights, cfg.present);
    return result;
  }
};

std::vector<at::Tensor> cell_step(std::string cell, std::string activation, std::string recurrent_activation,
                                  c10::ArrayRef<double> cell_args, const at::Tensor& x, std::vector<at::Tensor> states,
                                  const OptionalTensors& input_weights, const OptionalTensors& weights) {
  auto [cfg, in] = parse(cell, activation, recurrent_activation, cell_args, x, states, input_weights, weights);
  const variable_list flat = flatten(cfg, in);
  bool wants_grad = false;
  if (at::GradMode::is_enabled()) {
    for (const at::Tensor& t : flat) wants_grad |= t.requires_grad();
  }
  if (!wants_grad) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return forward_any(cfg, false, in);
  }
  return CellStep::apply(cfg, at::TensorList(flat));
}

}  // namespace
}  // namespace seqtorch_cpu

TORCH_LIBRARY_FRAGMENT(seqtorch, m) {
  m.def("cell_step(str cell, str activation, str recurrent_activation, float[] cell_args, Tensor x, "
        "Tensor[] states, Tensor?[] input_weights, Tensor?[] weights) -> Tensor[]");
}

// The autograd kernel does it all (CPU tensors only; seqtorch/ops/step.py calls the op for those alone). The
// same function is the CPU kernel, for calls that skip autograd's keys: under torch.inference_mode() grad mode
// is off, and it runs the forward alone (without it, LSTMCell under inference_mode raised "Could not run
// 'seqtorch::cell_step' with arguments from the 'CPU' backend").
TORCH_LIBRARY_IMPL(seqtorch, Autograd, m) { m.impl("cell_step", &seqtorch_cpu::cell_step); }
TORCH_LIBRARY_IMPL(seqtorch, CPU, m) { m.impl("cell_step", &seqtorch_cpu::cell_step); }
