// One layer, one direction of a cell in C++, input projection and autograd included: what seqtorch's layers
// (seqtorch.LSTM, GRU, RNN, Recurrent) run on CPU when a gradient is wanted.
//
// Why: the same scan through Python is the input projection (F.linear), the folded bias, an
// autograd.Function (its apply, its context, its Python backward and the weights' gradients) and the views
// of the histories: about 90 us a layer call before any arithmetic, more than torch.nn's whole LSTM takes at
// small sizes (the POS tagger of PyTorch's tutorial: T=5, B=1, H=6, 94 us with grad). Here a call is one op,
// seqtorch::scan_layer, and its backward one autograd node in C++. The arithmetic is the Python route's:
// gx as one GEMM over all steps, the scan ops (scan.cpp's scan_forward_cpp / scan_backward_cpp, called below
// autograd), then dx = dgx W_ih, dW_ih = dgx^T x, db_ih and the recurrent weights' gradients (own_autograd.h)
// as GEMMs over all T*B rows; in float those GEMMs run on brgemm (gemm.h's matmul_into), 5-80% more
// GFLOP/s than MKL at the layers' shapes. fwd+bwd against torch.nn, 1 thread, before -> after: the medium
// language model 1.01x -> 0.89x, the small one 0.97x -> 0.91x, the small batch 0.92x -> 0.88x, the book
// 0.62x -> 0.53x (benchmarks/bench_recurrent.py).
//
// The op's contract (seqtorch/ops/layer.py says when it serves and registers the reference it equals):
//   scan_layer(cell, activation, recurrent_activation, reverse, cell_args, fold_input_bias, x (T, B, I),
//              states (B, width) each, input_weights (W_ih (G*H, I), b_ih (G*H,) or None),
//              weights (the cell's, e.g. W_hh, b_hh or None))
//   -> [output (T, B, P): h after each step, then each state's final value (B, width)].
// fold_input_bias (Cell.folds_input_bias): gx = x W_ih^T and weights[1] = b_ih + b_hh, as Cell.folded_inputs;
// otherwise gx = x W_ih^T + b_ih. No lengths, masks, resets, recurrent dropout or zoneout: layer.py sends
// those scans the general way. A double backward (create_graph=True) differentiates the reference
// (seqtorch::scan_layer_reference, registered by layer.py), so that its result is differentiable again.

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "buffer_pool.h"
#include "gemm.h"
#include "op_args.h"
#include "transpose.h"
#include "own_autograd.h"

namespace seqtorch_cpu {
namespace {

// What a call is besides its tensors, and which of the optional weights are present.
struct LayerConfig {
  std::string cell, activation, recurrent_activation;
  bool reverse = false, fold = false;
  std::vector<double> cell_args;
  int64_t n_states = 0;
  std::vector<bool> present;  // per entry of (W_ih, b_ih, *weights): given (not None)
};

// The tensors of a call, each contiguous; absent weights undefined.
struct LayerTensors {
  at::Tensor x;
  std::vector<at::Tensor> states;
  at::Tensor w_ih, b_ih;
  std::vector<at::Tensor> weights;
};

OptionalTensors optional_list(const std::vector<at::Tensor>& tensors) {
  OptionalTensors out;
  for (const at::Tensor& t : tensors) out.push_back(t.defined() ? std::optional(t) : std::nullopt);
  return out;
}

OptionalTensors nones(int64_t n) {
  OptionalTensors out;
  for (int64_t i = 0; i < n; ++i) out.push_back(std::nullopt);
  return out;
}

// The scan ops, called below autograd (their Python autograd formula is for the general route). The typed
// signatures are the kernels' own (scan.cpp), as the dispatcher requires.
std::vector<at::Tensor> scan_forward(const LayerConfig& c, bool save, const at::Tensor& gx,
                                     const std::vector<at::Tensor>& states, const std::vector<at::Tensor>& weights) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("seqtorch::scan_forward_cpp", "")
          .typed<std::vector<at::Tensor>(std::string, std::string, std::string, bool, c10::ArrayRef<double>, bool,
                                         const at::Tensor&, std::vector<at::Tensor>,
                                         const OptionalTensors&, const std::optional<at::Tensor>&,
                                         const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                                         const OptionalTensors&, const std::optional<at::Tensor>&,
                                         const OptionalTensors&)>();
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return op.call(c.cell, c.activation, c.recurrent_activation, c.reverse, c.cell_args, save, gx, states,
                 optional_list(weights), std::nullopt, std::nullopt, std::nullopt, nones(c.n_states), std::nullopt,
                 nones(c.n_states));
}

std::vector<at::Tensor> scan_backward(const LayerConfig& c, const variable_list& grads,
                                      const std::vector<at::Tensor>& saved, const std::vector<at::Tensor>& weights) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("seqtorch::scan_backward_cpp", "")
          .typed<std::vector<at::Tensor>(std::string, std::string, std::string, bool, c10::ArrayRef<double>,
                                         const OptionalTensors&, std::vector<at::Tensor>,
                                         const OptionalTensors&, const std::optional<at::Tensor>&,
                                         const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                                         const OptionalTensors&, const std::optional<at::Tensor>&,
                                         const OptionalTensors&)>();
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return op.call(c.cell, c.activation, c.recurrent_activation, c.reverse, c.cell_args, optional_list(grads), saved,
                 optional_list(weights), std::nullopt, std::nullopt, std::nullopt, nones(c.n_states), std::nullopt,
                 nones(c.n_states));
}

// The recurrent weights as the scan takes them: with fold_input_bias, weights[1] = b_ih + b_hh.
std::vector<at::Tensor> scan_weights(const LayerConfig& c, const LayerTensors& in) {
  std::vector<at::Tensor> weights = in.weights;
  if (c.fold && in.b_ih.defined()) weights.at(1) = weights[1].defined() ? in.b_ih + weights[1] : in.b_ih;
  return weights;
}

// gx (T, B, G) as Cell.scan_inputs computes it: x W_ih^T, + b_ih unless it is folded into the weights. In
// float on brgemm (gemm.h's matmul_transposed_into), else ATen's GEMM.
at::Tensor input_projection(const LayerConfig& c, const LayerTensors& in) {
  const int64_t T = in.x.size(0), B = in.x.size(1), I = in.x.size(2), G = in.w_ih.size(0);
  const at::Tensor x2 = in.x.view({T * B, I});
  const bool add_bias = in.b_ih.defined() && !c.fold;
  if (in.x.scalar_type() != at::kFloat) {
    return (add_bias ? at::addmm(in.b_ih, x2, in.w_ih.t()) : at::mm(x2, in.w_ih.t())).view({T, B, G});
  }
  at::Tensor gx = new_buffer({T, B, G}, in.x.options());
  float* out = gx.data_ptr<float>();
  if (add_bias) fill_rows(out, T * B, G, in.b_ih.data_ptr<float>());  // the product adds into the rows
  matmul_transposed_into(x2.data_ptr<float>(), I, in.w_ih.data_ptr<float>(), I, out, G, T * B, G, I, in.x.options(),
                         add_bias);
  return gx;
}

// The forward op's outputs: with save, each state's history (T+1, B, width) and the buffers a backward
// reads; without, h's history and the other states' final values.
std::vector<at::Tensor> forward_layer(const LayerConfig& c, bool save, const LayerTensors& in) {
  return scan_forward(c, save, input_projection(c, in), in.states, scan_weights(c, in));
}

// The gradients a backward computes (undefined where no input needs them).
struct LayerGrads {
  at::Tensor dx;
  std::vector<at::Tensor> dstates;
  at::Tensor dw_ih, db_ih;
  std::vector<at::Tensor> dweights;
};

template <class Cell>
LayerGrads backward_layer(const LayerConfig& c, const variable_list& grads, const LayerTensors& in,
                          const std::vector<at::Tensor>& saved, const std::vector<bool>& needs) {
  constexpr int K = Cell::kStates;
  const int64_t T = in.x.size(0), B = in.x.size(1), I = in.x.size(2);
  const int64_t H = in.weights.at(0).size(0) / Cell::kGates, G = Cell::kGates * H, P = in.states.at(0).size(1);
  const std::vector<at::Tensor> weights = scan_weights(c, in);  // the folded bias's gradient: the products' rule
  const std::vector<at::Tensor> back = scan_backward(c, grads, saved, weights);
  check(back.size() == size_t(1 + K + Cell::kGradBuffers), "unexpected number of backward outputs");
  const at::Tensor dgx = back[0].view({T * B, G});
  LayerGrads out;
  for (int k = 0; k < K; ++k) out.dstates.push_back(needs[1 + k] ? back[1 + k] : at::Tensor());
  const std::vector<bool> slot = slot_needs(needs, K, c.present);
  const bool folded = c.fold && in.b_ih.defined();
  if (needs[0]) {  // dx = dgx @ W_ih
    out.dx = at::empty({T, B, I}, in.x.options());
    AT_DISPATCH_FLOATING_TYPES(dgx.scalar_type(), "seqtorch_layer_dx", [&] {
      matmul_into(dgx.data_ptr<scalar_t>(), G, in.w_ih.data_ptr<scalar_t>(), I, out.dx.data_ptr<scalar_t>(), I,
                  T * B, I, G, dgx.options());
    });
  }
  // dgx's transpose, for the weights' gradients (weight_grad_into): one copy for W_ih's and the products'
  at::Tensor dgx_t;
  if (dgx.scalar_type() == at::kFloat && T * B >= kTransposedGradRows) {
    dgx_t = new_buffer({G, T * B}, dgx.options());
    transpose_into(dgx.data_ptr<float>(), T * B, G, G, dgx_t.data_ptr<float>());
  }
  if (slot[0]) {
    out.dw_ih = at::empty_like(in.w_ih);
    weight_grad_into(out.dw_ih, dgx, dgx_t, in.x.view({T * B, I}));
  }
  if (slot[1] && !folded) out.db_ih = dgx.sum(0);
  bool need_w[kMaxWeights] = {false};
  for (size_t w = 0; w < weights.size(); ++w) need_w[w] = slot[2 + w];
  constexpr size_t kBias = 1;
  if (folded) need_w[kBias] = slot[2 + kBias] || slot[1];  // b_ih + b_hh: both get its gradient
  at::Tensor grad_buffers[kMaxGradBuffers];
  for (int j = 0; j < Cell::kGradBuffers; ++j) {
    const at::Tensor& g = back[1 + K + j];
    grad_buffers[j] = g.reshape({T * B, g.size(-1)});
  }
  const at::Tensor& h = saved[0];  // (T+1, B, P): a step reads the slot before it in its direction
  const at::Tensor h_in = h.narrow(0, c.reverse ? 1 : 0, T).reshape({T * B, P});
  const at::Tensor& u = saved[K + 1];
  const at::Tensor u_in = u.numel() ? u.reshape({T * B, u.size(-1)}) : at::Tensor();
  out.dweights = product_weight_grads<Cell>(weights, H, dgx, grad_buffers, h_in, u_in, need_w, dgx_t);
  if (folded) {
    if (slot[1]) out.db_ih = out.dweights[kBias];
    if (!slot[2 + kBias]) out.dweights[kBias] = at::Tensor();
  }
  return out;
}

// The present tensors of a call, flat (flatten_present), and back.
variable_list flatten(const LayerConfig& c, const LayerTensors& in) {
  std::vector<at::Tensor> slots{in.w_ih, in.b_ih};
  slots.insert(slots.end(), in.weights.begin(), in.weights.end());
  return flatten_present(in.x, in.states, slots, c.present);
}

LayerTensors unflatten(const LayerConfig& c, const variable_list& flat) {
  LayerTensors in;
  const std::vector<at::Tensor> slots = unflatten_present(flat, c.n_states, c.present, &in.x, &in.states);
  in.w_ih = slots[0], in.b_ih = slots[1];
  in.weights.assign(slots.begin() + 2, slots.end());
  return in;
}

// The gradients of the present tensors by the reference (seqtorch::scan_layer_reference, Python), with
// autograd recording: a double backward's first derivative.
variable_list reference_backward(const LayerConfig& c, const variable_list& flat, const variable_list& grads,
                                 const std::vector<bool>& needs) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("seqtorch::scan_layer_reference", "")
                             .typed<std::vector<at::Tensor>(const std::string&, const std::string&,
                                                            const std::string&, bool, c10::ArrayRef<double>, bool,
                                                            const at::Tensor&, at::TensorList, const OptionalTensors&,
                                                            const OptionalTensors&)>();
  const LayerTensors in = unflatten(c, flat);
  const std::vector<at::Tensor> outputs =
      op.call(c.cell, c.activation, c.recurrent_activation, c.reverse, c.cell_args, c.fold, in.x, in.states,
              optional_list({in.w_ih, in.b_ih}), optional_list(in.weights));
  return reference_gradients(outputs, grads, flat, needs);
}

void save_config(AutogradContext* ctx, const LayerConfig& c) {
  ctx->saved_data["cell"] = c.cell;
  ctx->saved_data["activation"] = c.activation;
  ctx->saved_data["recurrent_activation"] = c.recurrent_activation;
  ctx->saved_data["reverse"] = c.reverse;
  ctx->saved_data["fold"] = c.fold;
  ctx->saved_data["cell_args"] = c.cell_args;
  ctx->saved_data["n_states"] = c.n_states;
  ctx->saved_data["present"] = present_list(c.present);
}

LayerConfig load_config(AutogradContext* ctx) {
  LayerConfig c;
  c.cell = ctx->saved_data["cell"].toStringRef();
  c.activation = ctx->saved_data["activation"].toStringRef();
  c.recurrent_activation = ctx->saved_data["recurrent_activation"].toStringRef();
  c.reverse = ctx->saved_data["reverse"].toBool();
  c.fold = ctx->saved_data["fold"].toBool();
  c.cell_args = ctx->saved_data["cell_args"].toDoubleVector();
  c.n_states = ctx->saved_data["n_states"].toInt();
  c.present = present_of(ctx->saved_data["present"]);
  return c;
}

// Outputs: each state's history (T+1, B, width); the buffers the backward reads stay in the node.
struct ScanLayer : public torch::autograd::Function<ScanLayer> {
  static variable_list forward(AutogradContext* ctx, const LayerConfig& c, at::TensorList flat) {
    const variable_list inputs = flat.vec();
    std::vector<at::Tensor> out = forward_layer(c, true, unflatten(c, inputs));
    variable_list histories(out.begin(), out.begin() + c.n_states);
    variable_list to_save = inputs;
    to_save.insert(to_save.end(), histories.begin(), histories.end());
    ctx->save_for_backward(to_save);  // the histories as outputs: the node does not keep itself alive
    ctx->saved_data["buffers"] = std::vector<at::Tensor>(out.begin() + c.n_states, out.end());
    save_config(ctx, c);
    ctx->set_materialize_grads(false);
    return histories;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const LayerConfig c = load_config(ctx);
    const variable_list all = ctx->get_saved_variables();
    const variable_list flat(all.begin(), all.end() - c.n_states);
    std::vector<bool> needs;
    const auto reference = [&] { return reference_backward(c, flat, grads, needs); };
    if (auto done = backward_without_cpp(ctx, flat.size(), grads, &needs, reference)) return *done;
    variable_list result{at::Tensor()};  // the config's
    const LayerTensors in = unflatten(c, flat);
    std::vector<at::Tensor> saved(all.end() - c.n_states, all.end());
    for (const at::Tensor& b : ctx->saved_data["buffers"].toTensorVector()) saved.push_back(b);
    LayerGrads g;
    with_cell(c.cell, "layer", [&](auto cell) {
      g = backward_layer<decltype(cell)>(c, grads, in, saved, needs);
    });
    append_flat_grads(&result, g.dx, g.dstates, g.dw_ih, g.db_ih, g.dweights, c.present);
    return result;
  }
};

// The op's arguments, checked and made contiguous.
std::pair<LayerConfig, LayerTensors> parse(std::string cell, std::string activation, std::string recurrent_activation,
                                           bool reverse, c10::ArrayRef<double> cell_args, bool fold,
                                           const at::Tensor& x, const std::vector<at::Tensor>& states,
                                           const OptionalTensors& input_weights, const OptionalTensors& weights) {
  LayerConfig c{std::move(cell), std::move(activation), std::move(recurrent_activation), reverse, fold,
                std::vector<double>(cell_args.begin(), cell_args.end()), int64_t(states.size()), {}};
  check(c.n_states >= 1 && c.n_states <= kMaxStates, "a cell has one or two states");
  const std::vector<at::Tensor> in_w = contiguous_or_undefined(input_weights);
  check(in_w.size() == 2 && in_w[0].defined(), "input_weights must be (weight_ih, bias_ih or None)");
  LayerTensors in{x.contiguous(), {}, in_w[0], in_w[1], contiguous_or_undefined(weights)};
  check(in.x.dim() == 3 && in.w_ih.dim() == 2 && in.w_ih.size(1) == in.x.size(2),
        "x must be (T, B, I) and weight_ih (G*H, I)");
  check(!in.weights.empty() && in.weights[0].defined(), "weights[0] (weight_hh) must be given");
  check(!c.fold || in.weights.size() > 1, "fold_input_bias needs weights[1] (bias_hh) in the weights");
  for (const at::Tensor& s : states) in.states.push_back(s.contiguous());
  check_inputs(in.x, in.states);
  for (const at::Tensor& w : in_w) {
    c.present.push_back(w.defined());
    if (w.defined()) check_inputs(in.x, {w});
  }
  for (const at::Tensor& w : in.weights) {
    c.present.push_back(w.defined());
    if (w.defined()) check_inputs(in.x, {w});
  }
  return {c, in};
}

std::vector<at::Tensor> scan_layer(std::string cell, std::string activation, std::string recurrent_activation,
                                   bool reverse, c10::ArrayRef<double> cell_args, bool fold_input_bias,
                                   const at::Tensor& x, std::vector<at::Tensor> states,
                                   const OptionalTensors& input_weights, const OptionalTensors& weights) {
  auto [c, in] = parse(std::move(cell), std::move(activation), std::move(recurrent_activation), reverse, cell_args,
                       fold_input_bias, x, states, input_weights, weights);
  const variable_list flat = flatten(c, in);
  bool wants_grad = false;
  if (at::GradMode::is_enabled()) {
    for (const at::Tensor& t : flat) wants_grad |= t.requires_grad();
  }
  const int64_t T = in.x.size(0);
  std::vector<at::Tensor> histories;
  if (wants_grad) {
    histories = ScanLayer::apply(c, at::TensorList(flat));
  } else {
    at::AutoDispatchBelowADInplaceOrView guard;
    histories = forward_layer(c, false, in);
    histories.resize(c.n_states);  // h's history, the other states' final values
  }
  // views of the histories (recorded by autograd): h after each step, and each state after the last step
  const int64_t last = c.reverse ? 0 : T;
  std::vector<at::Tensor> result{histories[0].narrow(0, c.reverse ? 0 : 1, T)};
  for (int64_t k = 0; k < c.n_states; ++k) {
    result.push_back(k == 0 || wants_grad ? histories[k].select(0, last) : histories[k]);
  }
  return result;
}

// The whole-sequence products alone, for the tests: a (M x K) @ b (K x N) by matmul_into; with transposed_a,
// a (K x M)^T @ b by weight_grad_into (a weight's gradient: a copied transposed where K is
// kTransposedGradRows or more); with transposed_b, a @ b (N x K)^T by matmul_transposed_into (the input
// projection).
at::Tensor layer_gemm(const at::Tensor& a_, const at::Tensor& b_, bool transposed_a, bool transposed_b) {
  at::NoGradGuard no_grad;
  const at::Tensor a = a_.contiguous(), b = b_.contiguous();
  check(a.dim() == 2 && b.dim() == 2 && !(transposed_a && transposed_b) &&
            a.size(transposed_a ? 0 : 1) == b.size(transposed_b ? 1 : 0) && a.scalar_type() == b.scalar_type(),
        "layer_gemm: a (M, K) or (K, M) and b (K, N) or (N, K), of one dtype");
  at::Tensor out = at::empty({a.size(transposed_a ? 1 : 0), b.size(transposed_b ? 0 : 1)}, b.options());
  if (transposed_a) {
    weight_grad_into(out, a, at::Tensor(), b);
    return out;
  }
  if (transposed_b && a.scalar_type() == at::kFloat) {
    matmul_transposed_into(a.data_ptr<float>(), a.size(1), b.data_ptr<float>(), b.size(1), out.data_ptr<float>(),
                           out.size(1), a.size(0), b.size(0), a.size(1), a.options());
    return out;
  }
  if (transposed_b) {
    at::mm_out(out, a, b.t());
    return out;
  }
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "seqtorch_layer_gemm", [&] {
    matmul_into(a.data_ptr<scalar_t>(), a.size(1), b.data_ptr<scalar_t>(), b.size(1), out.data_ptr<scalar_t>(),
                out.size(1), a.size(0), b.size(1), a.size(1), a.options());
  });
  return out;
}

}  // namespace
}  // namespace seqtorch_cpu

TORCH_LIBRARY_FRAGMENT(seqtorch, m) {
  m.def("layer_gemm(Tensor a, Tensor b, bool transposed_a, bool transposed_b=False) -> Tensor");
  m.def("scan_layer(str cell, str activation, str recurrent_activation, bool reverse, float[] cell_args, "
        "bool fold_input_bias, Tensor x, Tensor[] states, Tensor?[] input_weights, Tensor?[] weights) -> Tensor[]");
}

// The autograd kernel does it all (CPU tensors only; seqtorch/ops/layer.py calls the op for those alone). The
// same function is the CPU kernel, for calls that skip autograd's keys: under torch.inference_mode() grad mode
// is off, and it runs the forward alone.
TORCH_LIBRARY_IMPL(seqtorch, Autograd, m) { m.impl("scan_layer", &seqtorch_cpu::scan_layer); }
TORCH_LIBRARY_IMPL(seqtorch, CPU, m) {
  m.impl("scan_layer", &seqtorch_cpu::scan_layer);
  m.impl("layer_gemm", &seqtorch_cpu::layer_gemm);
}
