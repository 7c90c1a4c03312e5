// The C++ cell interface: what a cell's pointwise code for the C++ loop (seqtorch/recurrent_cells/<cell>/cpu.h,
// or the header seqtorch/recurrent_cells/pointwise/cpp_code.py writes) sees, and what the generic loops
// (seqtorch/ops/csrc/scan.cpp, step.cpp) ask of it; the Triton one is triton_math.py beside it. The loops own
// the time steps, the buffers, lengths, reverse, the recurrent dropout mask and the GEMMs of the recurrent
// products; a cell owns only the math of one batch row of one step, in the layout of its Python spec
// (seqtorch/recurrent_cells/<cell>/__init__.py). A cell includes only this folder's headers: this one,
// cpu_math.h (the activations), cpu_layernorm.h, cpu_pointwise_math.h, and the generated cell_slots.h.
//
// A cell is a struct in namespace seqtorch_cpu::cells named as its registry entry, derived from <cell>_slots,
// which the build generates from its spec (seqtorch/recurrent_cells/cpu_slots.py; cell_slots.h): the names
// of its saved buffers (Cell.saved) and gradient buffers (Cell.grad_buffers) as indices, in the order the
// spec declares them, and their counts:
//   struct lstm_slots { struct Saved { enum : int { A = 0, TC = 1, PRE = 2 }; }; struct Grad {};
//                       static constexpr int kSaved = 3, kGradBuffers = 0; };
// so the cell reads its rows by name, r.saved[Saved::A], r.grads[Grad::dP0], and a slot its spec does not
// have fails to compile. Beside those, the cell declares:
//   static constexpr int kGates, kStates;                           counts as in its Python spec
//   static constexpr std::array<Product, N> kProducts;             its recurrent products (N = 0, 1 or 2)
//   static constexpr std::array<int, N> kProductGrad;              per product, the gradient buffer holding
//                                                                   d(product) (Grad::dP<i>), or -1: dgx's rows
//   static constexpr bool kWritesDHIn;                              whether backward() sets d_h_in
//   static constexpr bool kUsesGate;                                whether it reads A's gate function
//   static constexpr bool kUsesActivation;   (optional, default true) whether it reads A's activation
//   static constexpr bool kSumsPreactivation;  (optional, default false) a one-product cell whose pre-activations
//                                             are gx + weights[1] + the product, element by element: its
//                                             forward() must also serve r.product == nullptr, which means the
//                                             loop has added the product into r.gx already, in a scan that
//                                             keeps nothing (inference): it adds weights[1] itself and writes
//                                             no saved rows
//   static constexpr bool kUnitLocal;        (optional, default false) with kSumsPreactivation and P == H: that
//                                             summed forward reads, for hidden unit j, elements g*H + j of r.gx
//                                             and weights[1] and element j of each state, and writes element j
//                                             of each state, nothing else; so the loop may hand it a block of
//                                             units as if it were the whole layer (r.d.H the block's width,
//                                             the pointers at the block's units: scan.cpp's unit blocks)
//   static int64_t state_width(int k, Dims d), u_width(Dims d);
//   static int64_t saved_width(int j, Dims d, bool needs_pre), grad_width(int j, Dims d);   j: a Saved / Grad slot
//   template <typename T, class A> static void forward(int stage, const ForwardRow<T>& r);
//   template <typename T, class A> static void backward(int stage, const BackwardRow<T>& r);
// where A is an Activations<RELU, GATE> (cpu_math.h). forward() writes every element of the rows it owns
// (next states at the last stage, u at stage 0 of a two-product cell, its saved rows); backward() writes
// dgx, its gradient rows, d_prev (every element, zeros where there is no direct path) and d_h_in.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu_math.h"

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
  T* saved[kMaxSaved];               // this step's saved rows, by Saved slot (nullptr where a buffer is unused)
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
  const T* saved[kMaxSaved];         // by Saved slot
  const T* weights[kMaxWeights];
  const T* du;                       // stage 0 of a two-product cell: gradient of u
  T* dgx;                            // (G*H)
  T* grads[kMaxGradBuffers];         // this step's gradient rows, by Grad slot
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

// A cell's kSumsPreactivation, false where it declares none.
template <class Cell, class = void>
struct sums_preactivation : std::false_type {};
template <class Cell>
struct sums_preactivation<Cell, std::void_t<decltype(Cell::kSumsPreactivation)>>
    : std::bool_constant<Cell::kSumsPreactivation> {};

// A cell's kUnitLocal, false where it declares none.
template <class Cell, class = void>
struct unit_local : std::false_type {};
template <class Cell>
struct unit_local<Cell, std::void_t<decltype(Cell::kUnitLocal)>> : std::bool_constant<Cell::kUnitLocal> {};

}  // namespace seqtorch_cpu
