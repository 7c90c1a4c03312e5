// What the C++ ops of the recurrent loops share around a cell's math: their options parsed once (Args), the
// dispatch on dtype and activations, the weights' data and the recurrent products' GEMMs. Used by the scan
// (scan.cpp, a whole sequence) and by the single step of the cells (step.cpp).
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <vector>

#include "cpu_cell.h"
#include "gemm.h"
#include "scan.h"

namespace seqtorch_cpu {

using OptionalTensors = c10::List<std::optional<at::Tensor>>;

struct Args {
  std::string cell;
  bool relu;
  int gate;
  bool reverse;
  std::optional<at::Tensor> lengths;
  std::optional<at::Tensor> mask;        // (T, B) bool: step t of row b is valid where true
  std::optional<at::Tensor> restart;     // (T, B) bool: step t of row b starts from the reset states
  std::vector<at::Tensor> reset_states;  // what a reset restarts from, (B, width) each; empty: the initial states
  std::optional<at::Tensor> rec_mask;
  std::vector<at::Tensor> weights;  // undefined where absent
  std::vector<at::Tensor> zoneout;  // per state: (T, B, width) coefficients, undefined where absent
  std::vector<double> cell_args;
};

inline int gate_of(const std::string& name) {
  if (name == "sigmoid") return kSigmoid;
  if (name == "hard_sigmoid_keras2") return kHardSigmoidKeras2;
  if (name == "hardsigmoid") return kHardsigmoid;
  TORCH_CHECK(false, "seqtorch C++ scan: unknown recurrent_activation '", name, "'");
}

inline bool relu_of(const std::string& name) {
  TORCH_CHECK(name == "tanh" || name == "relu", "seqtorch C++ scan: unknown activation '", name, "'");
  return name == "relu";
}

// Each optional tensor made contiguous (any layout in: the vmap rule folds batches with views; the loops
// read contiguous memory), undefined where absent.
inline std::vector<at::Tensor> contiguous_or_undefined(const OptionalTensors& tensors) {
  std::vector<at::Tensor> out;
  out.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::optional<at::Tensor> t = tensors.get(i);
    out.push_back(t.has_value() ? t->contiguous() : at::Tensor());
  }
  return out;
}

inline Args make_args(const std::string& cell, const std::string& activation, const std::string& recurrent_activation,
                      bool reverse, c10::ArrayRef<double> cell_args, const OptionalTensors& weights,
                      const std::optional<at::Tensor>& lengths, const std::optional<at::Tensor>& mask,
                      const std::optional<at::Tensor>& restart, const OptionalTensors& reset_states,
                      const std::optional<at::Tensor>& rec_mask, const OptionalTensors& zoneout) {
  Args a{cell, relu_of(activation), gate_of(recurrent_activation), reverse, std::nullopt, std::nullopt, std::nullopt,
         {}, std::nullopt, contiguous_or_undefined(weights), contiguous_or_undefined(zoneout),
         std::vector<double>(cell_args.begin(), cell_args.end())};
  for (size_t i = 0; i < reset_states.size(); ++i) {  // one entry per state, all None where none are given
    const std::optional<at::Tensor> r = reset_states.get(i);
    if (r.has_value()) a.reset_states.push_back(r->contiguous());
  }
  if (mask.has_value()) a.mask = mask->to(at::kBool).contiguous();
  if (restart.has_value()) a.restart = restart->to(at::kBool).contiguous();
  if (lengths.has_value()) a.lengths = lengths->contiguous();
  if (rec_mask.has_value()) a.rec_mask = rec_mask->contiguous();
  check(a.weights.size() <= size_t(kMaxWeights), "too many weights");
  if (lengths.has_value()) check(lengths->scalar_type() == at::kLong, "lengths must be int64");
  return a;
}

// The G*H zeros an absent weight reads as (weights_or_zeros), allocated only when one is absent.
inline at::Tensor zeros_if_absent(const std::vector<at::Tensor>& weights, int64_t G, const at::TensorOptions& opt) {
  for (const at::Tensor& w : weights) {
    if (!w.defined()) return at::zeros({G}, opt);
  }
  return at::Tensor();
}

// Each weight's data; an absent one (a layer without bias) reads as G*H zeros, so cells need no branch.
template <typename T>
void weights_or_zeros(const std::vector<at::Tensor>& weights, const at::Tensor& zeros, const T** data) {
  for (size_t i = 0; i < weights.size(); ++i) {
    const at::Tensor& w = weights[i];
    data[i] = w.defined() ? w.data_ptr<T>() : zeros.data_ptr<T>();  // zeros: zeros_if_absent's
  }
}

// The weight block a product multiplies by, rows [row_start, row_stop) * H of its weight, as a StepGemm:
// by its transpose in the forward (product = x @ W^T), by itself in the backward (dx = d(product) @ W).
template <typename T>
StepGemm<T> product_gemm(const Product& product, const std::vector<at::Tensor>& weights, int64_t H, WeightOp op,
                         int64_t M, bool pack) {
  at::Tensor w = weights.at(product.weight);  // contiguous (make_args)
  if (product.row_stop >= 0) w = w.narrow(0, product.row_start * H, (product.row_stop - product.row_start) * H);
  return StepGemm<T>(w.data_ptr<T>(), w.size(0), w.size(1), w.stride(0), op, M, pack, w.options());
}

// Calls f(T(), Activations<RELU, GATE>()) for the dtype and the activations of a cell's op; a cell that reads
// neither choice (a generated one may not) compiles once per dtype.
template <class Cell, class F>
void with_types(const Args& a, at::ScalarType dtype, F&& f) {
  AT_DISPATCH_FLOATING_TYPES(dtype, "seqtorch_scan", [&] {
    using T = scalar_t;
    if constexpr (Cell::kUsesGate || uses_activation<Cell>::value) {
      const int gate = Cell::kUsesGate ? a.gate : kSigmoid;
      dispatch_activations(a.relu, gate, [&](auto relu_t, auto gate_t) {
        f(T(), Activations<decltype(relu_t)::value, decltype(gate_t)::value>());
      });
    } else {
      f(T(), Activations<false, kSigmoid>());
    }
  });
}

inline void check_inputs(const at::Tensor& like, const std::vector<at::Tensor>& tensors) {
  for (const at::Tensor& t : tensors) {
    check(t.scalar_type() == like.scalar_type(), "every tensor must share one dtype");
    check(t.device().is_cpu(), "CPU tensors only");
  }
}

}  // namespace seqtorch_cpu
