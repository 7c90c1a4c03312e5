// What a cell's C++ pointwise code (seqtorch/recurrent_cells/<cell>/cpu.h) sees, and what the generic loop
// (scan.cpp) asks of it. The loop owns the time steps, the buffers, lengths, reverse, the recurrent
// dropout mask and the GEMMs of the recurrent products; a cell owns only the math of one batch row of one
// step, in the layout of its Python spec (seqtorch/recurrent_cells/<cell>/__init__.py).
//
// A cell is a struct in namespace seqtorch_cpu::cells named as its registry entry, with:
//   static constexpr int kGates, kStates, kSaved, kGradBuffers;   counts as in its Python spec
//   static constexpr std::array<Product, N> kProducts;             its recurrent products (N = 0, 1 or 2)
//   static constexpr bool kWritesDHIn;                              whether backward() sets d_h_in
//   static constexpr bool kUsesGate;                                whether it reads A's gate function
//   static constexpr bool kUsesActivation;   (optional, default true) whether it reads A's activation
//   static int64_t state_width(int k, Dims d), u_width(Dims d);
//   static int64_t saved_width(int j, Dims d, bool needs_pre), grad_width(int j, Dims d);
//   template <typename T, class A> static void forward(int stage, const ForwardRow<T>& r);
//   template <typename T, class A> static void backward(int stage, const BackwardRow<T>& r);
// where A is an Activations<RELU, GATE> (math.h). forward() writes every element of the rows it owns
// (next states at the last stage, u at stage 0 of a two-product cell, its saved rows); backward() writes
// dgx, its gradient rows, d_prev (every element, zeros where there is no direct path) and d_h_in.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>

#include "math.h"

namespace seqtorch_cpu {

constexpr int kMaxStates = 4;  // sLSTM's h, c, n, m (seqtorch.equations.SLSTM)
constexpr int kMaxSaved = 6;
constexpr int kMaxWeights = 6;
constexpr int kMaxGradBuffers = 2;
constexpr int kMaxProducts = 2;

// One recurrent product of a step: X @ W^T with W = weights[weight] rows [row_start, row_stop) * H
// (row_stop < 0: all rows); X the state as it enters the products (h * rec_mask) or u.
enum class ProductInput { kHIn, kU };
struct Product {
  int weight;
  int row_start;
  int row_stop;
  ProductInput input;
};

struct Dims {
  int64_t H;  // hidden size
  int64_t P;  // size of h (H unless projected)
};

template <typename T>
struct ForwardRow {
  Dims d;
  const T* gx;                       // (G*H) input projection
  const T* product;                  // this stage's product row (no bias), nullptr without one
  const T* h_in;                     // (P) h * rec_mask
  const T* prev[kMaxStates];         // the states the step reads
  T* next[kMaxStates];               // the states it writes
  T* u;                              // (U) stage 0 of a two-product cell writes it
  T* saved[kMaxSaved];               // this step's saved rows (nullptr where a buffer is unused)
  const T* weights[kMaxWeights];     // each recurrent weight's data (G*H zeros when absent, e.g. no bias)
  const double* args;                // the cell's numeric options (cell_args), e.g. LayerNorm's eps
};

template <typename T>
struct BackwardRow {
  Dims d;
  const T* d_next[kMaxStates];       // gradient of each state the step wrote (its new value's, under zoneout)
  const T* prev[kMaxStates];
  const T* next[kMaxStates];
  const T* h_in;
  const T* u;
  const T* saved[kMaxSaved];
  const T* weights[kMaxWeights];
  const T* du;                       // stage 0 of a two-product cell: gradient of u
  T* dgx;                            // (G*H)
  T* grads[kMaxGradBuffers];         // this step's gradient rows
  T* d_prev[kMaxStates];             // direct gradient of each state read (not through the products)
  T* d_h_in;                         // direct gradient of h_in (cells with kWritesDHIn)
  const double* args;
};

// A cell's kUsesActivation, true where it declares none (every hand-written cell reads the activation).
template <class Cell, class = void>
struct uses_activation : std::true_type {};
template <class Cell>
struct uses_activation<Cell, std::void_t<decltype(Cell::kUsesActivation)>>
    : std::bool_constant<Cell::kUsesActivation> {};

// Step order and history slots of one direction (as Steps in seqtorch/ops/python_loop.py).
struct Steps {
  int64_t T;
  bool reverse;
  int64_t prev(int64_t t) const { return reverse ? t + 1 : t; }
  int64_t next(int64_t t) const { return reverse ? t : t + 1; }
  int64_t at(int64_t k) const { return reverse ? T - 1 - k : k; }  // the k-th step the forward takes
  int64_t first() const { return reverse ? T : 0; }
  int64_t last() const { return reverse ? 0 : T; }
};

// Rows per parallel chunk: about 16k elements of gate math, so the book's sizes run on one thread.
inline int64_t grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, width)); }

inline void check(bool ok, const char* what) { TORCH_CHECK(ok, "seqtorch C++ scan: ", what); }

// Calls f(std::integral_constant<bool, RELU>, std::integral_constant<int, GATE>) for the runtime choices,
// so the loops get them as template parameters (branch-free, vectorizable inner loops).
template <typename F>
void dispatch_activations(bool relu, int gate, F&& f) {
  auto with_gate = [&](auto relu_t) {
    switch (gate) {
      case kSigmoid: return f(relu_t, std::integral_constant<int, kSigmoid>{});
      case kHardSigmoidKeras2: return f(relu_t, std::integral_constant<int, kHardSigmoidKeras2>{});
      case kHardsigmoid: return f(relu_t, std::integral_constant<int, kHardsigmoid>{});
      default: TORCH_CHECK(false, "seqtorch C++ scan: unknown recurrent activation ", gate);
    }
  };
  if (relu) {
    with_gate(std::true_type{});
  } else {
    with_gate(std::false_type{});
  }
}

}  // namespace seqtorch_cpu
