// What the ops with their own autograd node (step.cpp, one step; layer.cpp, a whole layer) share: the cell
// named at run time as a type; their inputs flat as the node's edges (x, the states, then each present one of
// W_ih, b_ih and the recurrent weights); the backward's first questions and a double backward's gradients by
// the reference; and the recurrent weights' gradients by the default rule of Cell.weight_grads
// (seqtorch/recurrent_cells/base.py): product i's rows of its weight get d(P_i)^T @ its input, and weights[1]
// (the bias, or None) at the same rows the column sums of d(P_i), over every row the op ran (B for a step,
// T*B for a layer). seqtorch/ops/step.py and seqtorch/ops/layer.py serve only cells whose spec follows that rule.
#pragma once

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <optional>
#include <string>
#include <vector>

#include "buffer_pool.h"
#include "cells_generated.h"
#include "cpu_cell.h"
#include "gemm.h"
#include "transpose.h"

namespace seqtorch_cpu {

// Calls f(Cell()) for the cell named `name`.
template <class F>
void with_cell(const std::string& name, const char* op, F&& f) {
#define SEQTORCH_CELL(cell_name) \
  if (name == #cell_name) {      \
    f(cells::cell_name());       \
    return;                      \
  }
  SEQTORCH_FOR_EACH_CELL(SEQTORCH_CELL)
#undef SEQTORCH_CELL
  TORCH_CHECK(false, "seqtorch C++ ", op, ": no C++ kernel for cell '", name, "'");
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The present tensors of a call, flat: x, the states, then each present one of `slots` (W_ih, b_ih, *weights).
inline variable_list flatten_present(const at::Tensor& x, const std::vector<at::Tensor>& states,
                                     const std::vector<at::Tensor>& slots, const std::vector<bool>& present) {
  variable_list flat{x};
  flat.insert(flat.end(), states.begin(), states.end());
  for (size_t p = 0; p < slots.size(); ++p) {
    if (present[p]) flat.push_back(slots[p]);
  }
  return flat;
}

// The inverse of flatten_present: x and the states into `x` and `states`; returns the slots, undefined where
// absent.
inline std::vector<at::Tensor> unflatten_present(const variable_list& flat, int64_t n_states,
                                                 const std::vector<bool>& present, at::Tensor* x,
                                                 std::vector<at::Tensor>* states) {
  size_t i = 0;
  *x = flat[i++];
  states->clear();
  for (int64_t k = 0; k < n_states; ++k) states->push_back(flat[i++]);
  std::vector<at::Tensor> slots;
  for (bool p : present) slots.push_back(p ? flat[i++] : at::Tensor());
  return slots;
}

inline c10::List<bool> present_list(const std::vector<bool>& present) {
  c10::List<bool> list;
  for (bool p : present) list.push_back(p);
  return list;
}

inline std::vector<bool> present_of(const c10::IValue& list) {
  std::vector<bool> present;
  for (bool p : list.toBoolList()) present.push_back(p);
  return present;
}

// A backward's first questions: which of the `n` flat inputs need a gradient (the node's edges are the tensors
// only), into `needs`; false when there is nothing to compute (no input needs one, or no output got one).
inline bool input_needs(AutogradContext* ctx, size_t n, const variable_list& grads, std::vector<bool>* needs) {
  needs->assign(n, false);
  bool any = false, has_grad = false;
  for (size_t i = 0; i < n; ++i) any |= ((*needs)[i] = ctx->needs_input_grad(i));
  for (const at::Tensor& g : grads) has_grad |= g.defined();
  return any && has_grad;
}

// A backward's start, the same for both ops: `needs` (input_needs) and, where no C++ arithmetic is wanted, the
// whole result: undefined gradients when there is nothing to compute, or under create_graph=True (a double
// backward) the flat inputs' gradients that `reference()` gives; nullopt otherwise. A result's first entry is
// the node's config argument's (no gradient), then one per flat input.
template <class Reference>
std::optional<variable_list> backward_without_cpp(AutogradContext* ctx, size_t n, const variable_list& grads,
                                                  std::vector<bool>* needs, const Reference& reference) {
  variable_list result{at::Tensor()};
  if (!input_needs(ctx, n, grads, needs)) {
    result.resize(1 + n);
    return result;
  }
  if (!at::GradMode::is_enabled()) return std::nullopt;
  const variable_list got = reference();
  result.insert(result.end(), got.begin(), got.end());
  return result;
}

// needs per input slot (W_ih, b_ih, *weights) from the flat inputs' (x, the states, the present slots), an
// absent slot's false.
inline std::vector<bool> slot_needs(const std::vector<bool>& needs, int64_t n_states,
                                     const std::vector<bool>& present) {
  std::vector<bool> slot(present.size(), false);
  size_t i = 1 + n_states;
  for (size_t p = 0; p < present.size(); ++p) {
    if (present[p]) slot[p] = needs[i++];
  }
  return slot;
}

// A backward's result, flat as the inputs: dx, the states' gradients, then those of the present slots
// (d W_ih, d b_ih, then the recurrent weights'), after `result`'s entries for the node's other arguments.
inline void append_flat_grads(variable_list* result, const at::Tensor& dx, const std::vector<at::Tensor>& dstates,
                              const at::Tensor& dw_ih, const at::Tensor& db_ih, const std::vector<at::Tensor>& dweights,
                              const std::vector<bool>& present) {
  result->push_back(dx);
  result->insert(result->end(), dstates.begin(), dstates.end());
  std::vector<at::Tensor> dslots{dw_ih, db_ih};
  dslots.insert(dslots.end(), dweights.begin(), dweights.end());
  for (size_t p = 0; p < present.size(); ++p) {
    if (present[p]) result->push_back(dslots[p]);
  }
}

// The gradients of the flat inputs that `needs` picks (undefined for the others) through `outputs`, which a
// reference computed from them with autograd recording: a double backward's first derivative, itself
// differentiable.
inline variable_list reference_gradients(const std::vector<at::Tensor>& outputs, const variable_list& grads,
                                         const variable_list& flat, const std::vector<bool>& needs) {
  variable_list outs, out_grads, wanted;
  for (size_t k = 0; k < outputs.size(); ++k) {
    if (grads[k].defined()) outs.push_back(outputs[k]), out_grads.push_back(grads[k]);
  }
  for (size_t i = 0; i < flat.size(); ++i) {
    if (needs[i]) wanted.push_back(flat[i]);
  }
  variable_list result(flat.size());
  if (outs.empty() || wanted.empty()) return result;
  const variable_list got = torch::autograd::grad(outs, wanted, out_grads, true, true, true);
  for (size_t i = 0, j = 0; i < flat.size(); ++i) {
    if (needs[i]) result[i] = got[j++];
  }
  return result;
}

// The gradient of product i's output (rows, its width): its own gradient buffer, or dgx (rows, G) at its
// gate rows.
template <class Cell>
at::Tensor product_grad(int i, const at::Tensor& dgx, const at::Tensor* grad_buffers, int64_t H) {
  const Product& spec = Cell::kProducts[i];
  if (Cell::kProductGrad[i] >= 0) return grad_buffers[Cell::kProductGrad[i]];
  return spec.row_stop < 0 ? dgx : dgx.narrow(1, spec.row_start * H, (spec.row_stop - spec.row_start) * H);
}

// Rows from which a weight's gradient is a brgemm (matmul_into) of grad's transposed copy, not at::mm_out of
// grad.t(): MKL reads a transposed A slowly at these shapes (the medium language model's 2600 x 650 over 700
// rows: 64-74 GFLOP/s against 95-105, gemm.h), and a step op's few rows are not worth the copy.
constexpr int64_t kTransposedGradRows = 256;

// dw (N x K, contiguous) = grad^T @ input: grad (rows x N, row stride grad.stride(0)), or where defined its
// transpose grad_t (N x rows, contiguous); input (rows x K, contiguous).
inline void weight_grad_into(at::Tensor& dw, const at::Tensor& grad, const at::Tensor& grad_t,
                             const at::Tensor& input) {
  const int64_t rows = input.size(0), N = dw.size(0), K = dw.size(1);
  if (dw.scalar_type() != at::kFloat || rows < kTransposedGradRows) {
    at::mm_out(dw, grad.t(), input);
    return;
  }
  at::Tensor a = grad_t;
  if (!a.defined()) {
    a = new_buffer({N, rows}, grad.options());
    transpose_into(grad.data_ptr<float>(), rows, N, grad.stride(0), a.data_ptr<float>());
  }
  matmul_into(a.data_ptr<float>(), rows, input.data_ptr<float>(), K, dw.data_ptr<float>(), K, N, K, rows,
              dw.options());
}

// The recurrent weights' gradients (undefined where not `needs`), all tensors (rows, width): dgx, the
// cell's gradient buffers, h_in (what the products of kHIn read) and u (those of kU; undefined if none);
// dgx_t: dgx's transpose (G, rows) where the caller has it (weight_grad_into), else undefined.
template <class Cell>
std::vector<at::Tensor> product_weight_grads(const std::vector<at::Tensor>& weights, int64_t H, const at::Tensor& dgx,
                                             const at::Tensor* grad_buffers, const at::Tensor& h_in,
                                             const at::Tensor& u, const bool* needs,
                                             const at::Tensor& dgx_t = at::Tensor()) {
  std::vector<at::Tensor> dweights(weights.size());
  for (size_t w = 0; w < weights.size(); ++w) {
    if (needs[w]) dweights[w] = at::empty_like(weights[w]);
  }
  constexpr size_t kBias = 1;
  for (int i = 0; i < int(Cell::kProducts.size()); ++i) {
    const Product& spec = Cell::kProducts[i];
    const at::Tensor grad = product_grad<Cell>(i, dgx, grad_buffers, H);
    auto rows = [&](const at::Tensor& t) {
      return spec.row_stop < 0 ? t : t.narrow(0, spec.row_start * H, (spec.row_stop - spec.row_start) * H);
    };
    if (needs[spec.weight]) {
      at::Tensor dw = rows(dweights[spec.weight]);
      const bool from_dgx = Cell::kProductGrad[i] < 0 && dgx_t.defined();
      weight_grad_into(dw, grad, from_dgx ? rows(dgx_t) : at::Tensor(), spec.input == ProductInput::kHIn ? h_in : u);
    }
    if (kBias < weights.size() && needs[kBias]) {
      at::Tensor db = rows(dweights[kBias]);
      at::sum_out(db, grad, {0});
    }
  }
  return dweights;
}

}  // namespace seqtorch_cpu
