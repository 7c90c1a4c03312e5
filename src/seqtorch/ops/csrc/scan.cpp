// The scan loop for CPU tensors in C++, written once for every cell that has a cpu.h: forward and BPTT.
//
// Why C++: at the book's sizes (B=128, H=32) a step is a (128 x 32) @ (32 x 128) GEMM and ~4k elements of
// gate math. In Python each step costs ~10 op dispatches of a few microseconds each plus TensorIterator
// set-up per op, which together make the loop ~2x slower than torch.nn's native LSTM. Here a step is one
// ATen GEMM (BLAS) per recurrent product and one fused, vectorizable pass over the gates per stage.
//
// The loop is that of seqtorch/ops/python_loop.py (read its docstring) and keeps the op contract of
// seqtorch/ops/contract.py: the same outputs, in the same layout, so the two are interchangeable and are
// tested against the same reference. A cell's math is in seqtorch/recurrent_cells/<cell>/cpu.h (the C++ cell
// interface, seqtorch/recurrent_cells/cpu_cell.h, says what it provides); cells_generated.h, written by the
// build (seqtorch/ops/native.py), includes every cell's cpu.h and lists them in SEQTORCH_FOR_EACH_CELL. The library of one cell generated from its
// equations is this file with that cell's cells_generated.h and an op namespace of its own (ops_namespace.h).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "buffer_pool.h"
#include "cells_generated.h"
#include "cpu_cell.h"
#include "gemm.h"
#include "op_args.h"
#include "ops_namespace.h"
#include "scan.h"
#include "spin_barrier.h"

namespace seqtorch_cpu {
namespace {

// Which steps of which rows are valid (inside the length and not masked) and which start from the initial
// states, as the loops ask it: invalid(t, b), restarts(t, b).
struct StepFlags {
  int64_t B;
  const int64_t* len;
  const bool* mask;
  const bool* restart;
  explicit StepFlags(const Args& a, int64_t batch)
      : B(batch),
        len(a.lengths.has_value() ? a.lengths->data_ptr<int64_t>() : nullptr),
        mask(a.mask.has_value() ? a.mask->data_ptr<bool>() : nullptr),
        restart(a.restart.has_value() ? a.restart->data_ptr<bool>() : nullptr) {}
  bool invalid(int64_t t, int64_t b) const { return (len && t >= len[b]) || (mask && !mask[t * B + b]); }
  bool restarts(int64_t t, int64_t b) const { return restart && restart[t * B + b]; }
  // whether every row of [r0, r1) is invalid at step t: the step then needs no product and no gate math
  bool all_invalid(int64_t t, int64_t r0, int64_t r1) const {
    if (!len && !mask) return false;
    for (int64_t b = r0; b < r1; ++b) {
      if (!invalid(t, b)) return false;
    }
    return true;
  }
};

// Per state, the zoneout coefficients' data, or null.
template <typename T>
void zoneout_data(const Args& a, int states, const T** zone) {
  for (int k = 0; k < states && k < int(a.zoneout.size()); ++k) {
    zone[k] = a.zoneout[k].defined() ? a.zoneout[k].data_ptr<T>() : nullptr;
  }
}

// next = keep * prev + (1 - keep) * next, for one row of a state (zoneout); written as the reference
// writes it, so that a 0/1 mask keeps or replaces a value exactly.
template <typename T>
void zone_mix(int64_t n, const T* __restrict keep, const T* __restrict prev, T* __restrict next) {
  for (int64_t j = 0; j < n; ++j) next[j] = keep[j] * prev[j] + (T(1) - keep[j]) * next[j];
}

// zoneout's backward: the new state's share (1 - keep) * d, and the previous state's keep * d.
template <typename T>
void zone_grad(int64_t n, const T* __restrict keep, const T* __restrict d, T* __restrict d_new) {
  for (int64_t j = 0; j < n; ++j) d_new[j] = d[j] - keep[j] * d[j];
}

template <typename T>
void zone_pass(int64_t n, const T* __restrict keep, const T* __restrict d, T* __restrict d_prev) {
  for (int64_t j = 0; j < n; ++j) d_prev[j] += keep[j] * d[j];
}

// What one step's recurrent products of a scan of Cell in dtype T over B rows cost: their flops, and the
// bytes of recurrent weights they read (the threading rules below ask both).
struct ProductCost {
  double flops, weight_bytes;
};

template <typename T, class Cell>
ProductCost product_cost(const std::vector<at::Tensor>& weights, int64_t H, int64_t B) {
  double elements = 0;
  for (const Product& product : Cell::kProducts) {
    const at::Tensor& w = weights.at(product.weight);
    const int64_t rows = product.row_stop < 0 ? w.size(0) : (product.row_stop - product.row_start) * H;
    elements += double(rows) * double(w.size(1));
  }
  return {2.0 * double(B) * elements, elements * double(sizeof(T))};
}

// Into how many chunks of rows, one per thread, a scan of B rows whose per-step products take `flops` over
// `weight_bytes` of recurrent weights splits. The rows of a recurrence never meet, so each chunk runs the
// whole time loop on its own rows, with no synchronization per step: torch's threads otherwise sat idle, as
// the products under kThreadedFlops run on one thread and one step's gate math is too little to split. Above
// it, the rows stay whole and each product is split by columns over the threads (gemm.h), two fork-joins
// per step, unless the weights fit in a core's cache, where a chunk per thread re-reads them from there:
// up to kChunkMaxWeightBytes the chunks were faster (the small language model, W_hh 640 KB, 2 threads: 0.89x
// torch.nn's inference against 0.99x split by columns, fwd+bwd 0.77x against 0.81x); at the small batch
// (1 MB) they were even, and past that slower.
// The backward's chunks go further: its product (d(gates) @ W, K = 4H long, N = H narrow) split by columns
// leaves each thread a sliver of N, after a fork-join. 2 threads, torch.nn's backward against seqtorch's,
// interleaved, both with W in brgemm panels: the small batch (1 MB) 0.83-0.95x by columns against 0.78-0.80x
// in chunks, B=16 H=384 (2.4 MB) 0.75-0.80x against 0.71-0.72x; H=512 (4 MB) and the medium model (6.8 MB)
// even; H=1024 slower in chunks.
constexpr int64_t kMinChunkRows = 8;  // the fewest rows a thread takes on its own
constexpr double kChunkMaxWeightBytes = 768.0 * 1024;
constexpr double kBackwardChunkMaxWeightBytes = 3.0 * 1024 * 1024;

int64_t row_chunks(int64_t B, double flops, double weight_bytes, bool backward) {
  const double max_bytes = backward ? kBackwardChunkMaxWeightBytes : kChunkMaxWeightBytes;
  if (at::in_parallel_region() || (flops >= kThreadedFlops && weight_bytes > max_bytes)) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), B / kMinChunkRows));
}

// f(r0, r1) over the rows [0, B), in row_chunks(B, flops, weight_bytes, backward) chunks on torch's threads.
template <class F>
void run_row_chunks(int64_t B, double flops, double weight_bytes, bool backward, const F& f) {
  const int64_t chunks = row_chunks(B, flops, weight_bytes, backward);
  if (chunks <= 1) {
    f(int64_t(0), B);
    return;
  }
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) f(c * B / chunks, (c + 1) * B / chunks);
  });
}

// f(r0, r1) over the rows [0, B) of a scan of Cell in dtype T, forward or backward, in chunks (row_chunks).
template <typename T, class Cell, class F>
void run_scan_rows(const std::vector<at::Tensor>& weights, int64_t H, int64_t B, bool backward, const F& f) {
  const ProductCost cost = product_cost<T, Cell>(weights, H, B);
  run_row_chunks(B, cost.flops, cost.weight_bytes, backward, f);
}

// The gate math's rows per parallel chunk for `rows` rows: where the step's product is split over the
// threads (a few rows, a large product), the gate math is too, instead of running on one thread while the
// others wait for the next step's product. Against torch.nn on 2 threads, interleaved A/B rounds: the small
// batch (B=16, H=256) inference 1.04-1.07x -> 0.97-1.03x, fwd+bwd 0.88-0.93x -> 0.87-0.90x; the medium
// language model's fwd+bwd 0.90-0.96x -> 0.84-0.89x. Else grain's.
inline int64_t gate_rows_per_thread(bool product_split, int64_t rows, int64_t G) {
  if (!product_split) return grain(G);
  const int64_t threads = at::get_num_threads();
  return std::max<int64_t>(1, (rows + threads - 1) / threads);
}

// ---------------------------------------------------------------------------------------------------
// forward

// The input of an inference scan that projects it itself (scan_projected_cpp): x (T, B, I), W_ih (G, I) and
// b_ih (G,) or undefined.
struct Projection {
  at::Tensor x, w_ih, b_ih;
};

// A scan's gx rows, step by step, for the rows [r0, r1) of one row chunk: from the gx the caller computed, or,
// with a Projection, projected here kChunkSteps steps at a time (x_t @ W_ih^T + b_ih) into a buffer that
// stays in cache. At the book's sizes gx is 32 MB: as one GEMM it is written out and read back from memory,
// and MKL's GEMM over its 64000 rows of K=32 ran at half its speed on a chunk of them.
template <typename T>
class GxRows {
 public:
  static constexpr int64_t kChunkSteps = 8;

  // fill: with a Projection, what each projected row starts from (G): b_ih; undefined: zeros.
  // one_thread: the projections run on the calling thread (a thread's own block of a parallel scan).
  GxRows(const at::Tensor& gx, const Projection* proj, const Steps& steps, int64_t B, int64_t G, int64_t r0,
         int64_t r1, const at::Tensor& fill, bool one_thread = false)
      : proj_(proj), steps_(steps), B_(B), G_(G), r0_(r0), rows_(r1 - r0), fill_(fill) {
    if (proj_ == nullptr) {
      gx_ = gx.data_ptr<T>();
      return;
    }
    I_ = proj_->x.size(2);
    const at::TensorOptions opt = proj_->x.options();
    chunk_ = new_buffer({kChunkSteps, rows_, G_}, opt);
    chunk_data_ = chunk_.data_ptr<T>();
    const T* w = proj_->w_ih.data_ptr<T>();
    if (rows_ == B_ && steps.T >= kChunkSteps) {  // a chunk's steps are contiguous in x: one GEMM for all
      per_chunk_.emplace(w, G_, I_, I_, WeightOp::kTransposed, kChunkSteps * B_, true, opt, one_thread);
      if (steps.T % kChunkSteps) per_time_.emplace(per_chunk_->with_rows(rows_));  // the last chunk's steps
    } else {
      per_time_.emplace(w, G_, I_, I_, WeightOp::kTransposed, rows_, steps.T >= kPackMinSteps, opt, one_thread);
    }
  }

  // Step `step`'s (the step-th the scan takes) rows: row b at the returned pointer + (b - r0) * G. Called
  // once per step, in order. Projected rows are this object's own, and the caller may add into them.
  const T* at(int64_t step) {
    const int64_t t = steps_.at(step);
    if (proj_ == nullptr) return gx_ + (t * B_ + r0_) * G_;
    if (step % kChunkSteps == 0) project(step);
    return chunk_data_ + (t - lo_) * rows_ * G_;
  }

  // Asks for the next step's rows of a caller's gx while this step computes (long sequences' gx comes from
  // memory); projected rows are in cache already.
  void prefetch(int64_t step, int64_t b) const {
    if (proj_ != nullptr || step + 1 >= steps_.T) return;
    const T* row = gx_ + (steps_.at(step + 1) * B_ + b) * G_;
    for (int64_t e = 0; e < G_; e += 64 / int64_t(sizeof(T))) __builtin_prefetch(row + e, 0, 3);
  }

 private:
  // the steps [step, step + kChunkSteps): the times [lo_, hi) in time order, whichever the direction
  void project(int64_t step) {
    const int64_t T_ = steps_.T, n = std::min(kChunkSteps, T_ - step);
    lo_ = steps_.reverse ? T_ - step - n : step;
    const T* x = proj_->x.data_ptr<T>();
    T* out = chunk_data_;
    // with a bias, the rows start from it and the products add into them (x_t W_ih^T + b_ih, the same sum)
    const bool bias = fill_.defined();
    if (bias) fill_rows(out, n * rows_, G_, fill_.data_ptr<T>());
    if (per_chunk_ && n == kChunkSteps) {
      per_chunk_->run(x + lo_ * B_ * I_, I_, out, G_, bias);
    } else {
      for (int64_t k = 0; k < n; ++k) {
        per_time_->run(x + ((lo_ + k) * B_ + r0_) * I_, I_, out + k * rows_ * G_, G_, bias);
      }
    }
  }

  const Projection* proj_;
  Steps steps_;
  int64_t B_, G_, r0_, rows_, I_ = 0, lo_ = 0;
  const T* gx_ = nullptr;
  at::Tensor fill_, chunk_;
  T* chunk_data_ = nullptr;
  std::optional<StepGemm<T>> per_time_, per_chunk_;
};

// ---------------------------------------------------------------------------------------------------
// inference by unit blocks

// The fewest hidden units a thread's block holds, the multiple its bounds fall on (a vector of floats), and
// the most rows a chunk of the rows' loop may have for unit blocks to serve instead.
constexpr int64_t kMinBlockUnits = 64;
constexpr int64_t kBlockUnitAlign = 16;
constexpr int64_t kMaxChunkRowsForBlocks = 32;

// Into how many blocks of hidden units, one per thread, an inference scan that projects x itself (nothing
// saved) of a unit-local cell (cpu_cell.h: kUnitLocal) splits, or 1 for the rows' loop (forward_impl).
// The rows' loop either gives each thread a chunk of the rows (row_chunks), or splits every product by
// columns over the threads: a fork-join for the product and one for the gate math at every step, another
// for every chunk of projected steps, the threads idle through the serial parts between; or, with a step's
// product too small to split and too few rows to chunk, it runs on one thread. A block instead takes its
// units' columns of every gate (their rows of W_ih and W_hh, gathered once), so a thread projects, multiplies
// and runs the gate math of its units alone, with one barrier per step: h, which every block's next product
// reads whole. 2 threads, the LSTM's inference against the rows' loop, interleaved (min of 30-60 calls):
// * split by columns: B=16 H=256 8.8 against 9.1 ms, B=64 H=256 19.8 against 21.2 ms;
// * on one thread: B=8 H=128 1.47 against 2.07 ms;
// * in chunks of few rows: B=20 H=200 (10 rows) 5.4-5.6 against 5.7-6.0 ms, B=32 H=128 6.5 against 6.7 ms;
// * slower against chunks of many rows (B=256 H=128, 128 rows: 19.0 against 18.3 ms) and in blocks of 32
//   units (B=64 H=64: 3.6 against 3.2 ms); even where gx comes from the caller (the two-pass scan of weights
//   over projected.py's 4 MB: the medium language model, B=16 H=512), which this does not serve.
// Served: two threads or more (OpenMP's, kConcurrentCalls), kMinBlockUnits units a block, no lengths,
// recurrent dropout or zoneout, h as wide as the cell (no projection), and no row chunks of more than
// kMaxChunkRowsForBlocks rows.
template <class Cell>
int64_t unit_blocks(const Args& a, int64_t B, int64_t H, int64_t P, const ProductCost& cost) {
  if constexpr (!kConcurrentCalls || !sums_preactivation<Cell>::value || !unit_local<Cell>::value) {
    return 1;
  } else {
    if (at::in_parallel_region() || P != H || a.lengths.has_value() || a.mask.has_value() ||
        a.restart.has_value() || !a.reset_states.empty() || a.rec_mask.has_value()) {
      return 1;
    }
    for (const at::Tensor& z : a.zoneout) {
      if (z.defined()) return 1;
    }
    const int64_t blocks = std::min<int64_t>(at::get_num_threads(), H / kMinBlockUnits);
    if (blocks < 2) return 1;
    const int64_t chunks = row_chunks(B, cost.flops, cost.weight_bytes, false);
    return chunks > 1 && B / chunks > kMaxChunkRowsForBlocks ? 1 : blocks;
  }
}

// The first hidden unit of block b of `blocks` over H units: on a multiple of kBlockUnitAlign where H allows.
inline int64_t block_start(int64_t b, int64_t blocks, int64_t H) {
  if (b == 0) return 0;
  if (b == blocks) return H;
  const int64_t u = b * H / blocks;
  const int64_t aligned = (u + kBlockUnitAlign / 2) / kBlockUnitAlign * kBlockUnitAlign;
  return aligned > 0 && aligned < H ? aligned : u;
}

// The rows of a gate-major weight (G*H, K) or bias (G*H,) that feed the hidden units [u0, u0 + n): for each
// gate g the rows g*H + u0 .. g*H + u0 + n, gate after gate ((gates * n, K) or (gates * n,)), contiguous.
inline at::Tensor unit_rows(const at::Tensor& w, int64_t gates, int64_t H, int64_t u0, int64_t n) {
  const int64_t K = w.dim() == 2 ? w.size(1) : 1;
  at::Tensor rows = w.reshape({gates, H, K}).narrow(1, u0, n).contiguous();
  return w.dim() == 2 ? rows.view({gates * n, K}) : rows.view({gates * n});
}

// The inference scan by unit blocks (unit_blocks says when) of x (T, B, I), projected inside: its outputs as
// forward_impl's with save false, the same sums per element (a block's products are its columns of the whole
// ones).
template <typename T, class Cell, class A>
std::vector<at::Tensor> forward_unit_blocks(const Args& a, const std::vector<at::Tensor>& states,
                                            const Projection& proj, int64_t blocks) {
  constexpr int K = Cell::kStates;
  constexpr int64_t gates = Cell::kGates;
  const Steps steps{proj.x.size(0), a.reverse};
  const int64_t T_ = steps.T, B = proj.x.size(1), H = a.weights.at(0).size(0) / gates;
  const at::TensorOptions opt = proj.x.options();
  // h at every step (T + 1, B, H) and the other states in two turns (B, H): shared, a block writes its columns
  at::Tensor history = new_buffer({T_ + 1, B, H}, opt);
  history.select(0, steps.first()).copy_(states[0]);
  at::Tensor turns[kMaxStates][2];
  T* turns_data[kMaxStates][2] = {{nullptr}};
  for (int k = 1; k < K; ++k) {
    for (int i = 0; i < 2; ++i) {
      turns[k][i] = new_buffer({B, H}, opt);
      turns_data[k][i] = turns[k][i].data_ptr<T>();
    }
    turns[k][0].copy_(states[k]);
  }
  T* h_data = history.data_ptr<T>();
  const at::Tensor bias = a.weights.size() > 1 && a.weights[1].defined() ? a.weights[1] : at::zeros({gates * H}, opt);

  struct Block {
    int64_t u0 = 0, n = 0;
    Projection proj;  // x, and the block's rows of W_ih and b_ih (GxRows keeps a pointer to it)
    at::Tensor w_hh, bias;
    const T* w_hh_data = nullptr;  // their data, read once (data_ptr checks the tensor at every call)
    const T* bias_data = nullptr;
    std::optional<GxRows<T>> gx;
    std::optional<StepGemm<T>> product;
  };
  std::vector<Block> block(blocks);
  // Each thread lays out its own block's weights (the gathered rows, then W^T), in parallel; a failure here
  // reaches the caller as any parallel_for's does, before any thread waits at the barrier.
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      Block& blk = block[b];
      blk.u0 = block_start(b, blocks, H), blk.n = block_start(b + 1, blocks, H) - blk.u0;
      blk.w_hh = unit_rows(a.weights.at(0), gates, H, blk.u0, blk.n);
      blk.bias = unit_rows(bias, gates, H, blk.u0, blk.n);
      blk.w_hh_data = blk.w_hh.template data_ptr<T>(), blk.bias_data = blk.bias.template data_ptr<T>();
      const int64_t Gb = gates * blk.n;
      blk.proj.x = proj.x;
      blk.proj.w_ih = unit_rows(proj.w_ih, gates, H, blk.u0, blk.n);
      if (proj.b_ih.defined()) blk.proj.b_ih = unit_rows(proj.b_ih, gates, H, blk.u0, blk.n);
      blk.gx.emplace(at::Tensor(), &blk.proj, steps, B, Gb, 0, B, blk.proj.b_ih, true);
      blk.product.emplace(blk.w_hh_data, Gb, H, H, WeightOp::kTransposed, B, T_ >= kPackMinSteps, opt, true);
    }
  });

  SpinBarrier barrier(blocks);
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t step = 0; step < T_; ++step) {
      const int64_t t = steps.at(step);
      const T* h_prev = h_data + steps.prev(t) * B * H;
      T* h_next = h_data + steps.next(t) * B * H;
      for (int64_t b = b0; b < b1; ++b) {
        Block& blk = block[b];
        const int64_t Gb = gates * blk.n, u0 = blk.u0;
        T* gx = const_cast<T*>(blk.gx->at(step));  // the block's own projected rows (GxRows::at)
        blk.product->run(h_prev, H, gx, Gb, true);
        for (int64_t row = 0; row < B; ++row) {
          ForwardRow<T> r{};
          r.d = Dims{blk.n, blk.n};
          r.gx = gx + row * Gb;
          r.h_in = h_prev + row * H + u0;
          r.prev[0] = h_prev + row * H + u0;
          r.next[0] = h_next + row * H + u0;
          for (int k = 1; k < K; ++k) {
            r.prev[k] = turns_data[k][step % 2] + row * H + u0;
            r.next[k] = turns_data[k][(step + 1) % 2] + row * H + u0;
          }
          r.weights[0] = blk.w_hh_data;
          r.weights[1] = blk.bias_data;
          r.args = a.cell_args.data();
          Cell::template forward<T, A>(0, r);
        }
      }
      barrier.arrive_and_wait(b1 - b0);  // every block's units of h_next are written
    }
  });

  std::vector<at::Tensor> outputs{history};
  for (int k = 1; k < K; ++k) outputs.push_back(turns[k][T_ % 2]);
  return outputs;
}

// gx (T, B, G) the caller's, or with a Projection none (x (T, B, I) then gives the sizes).
template <typename T, class Cell, class A>
std::vector<at::Tensor> forward_impl(const Args& a, bool save, const at::Tensor& gx,
                                     const std::vector<at::Tensor>& states, const Projection* proj = nullptr) {
  constexpr int K = Cell::kStates;
  constexpr int NP = int(Cell::kProducts.size());
  constexpr int STAGES = NP > 1 ? NP : 1;
  const at::Tensor& input = proj ? proj->x : gx;
  const int64_t T_ = input.size(0), B = input.size(1);
  const int64_t H = a.weights.at(0).size(0) / Cell::kGates, P = states.at(0).size(1);
  const Dims d{H, P};
  if (proj != nullptr && !save) {
    const int64_t blocks = unit_blocks<Cell>(a, B, H, P, product_cost<T, Cell>(a.weights, H, B));
    if (blocks > 1) return forward_unit_blocks<T, Cell, A>(a, states, *proj, blocks);
  }
  const at::TensorOptions opt = input.options();
  const Steps steps{T_, a.reverse};
  const StepFlags flags(a, B);
  const T* mask = a.rec_mask.has_value() ? a.rec_mask->data_ptr<T>() : nullptr;

  int64_t width[kMaxStates];
  const T* initial[kMaxStates];  // the states a reset row restarts from (B, width): reset_states, else the initial
  at::Tensor history[kMaxStates], turns[kMaxStates][2];
  for (int k = 0; k < K; ++k) {
    width[k] = Cell::state_width(k, d);
    initial[k] = a.reset_states.empty() ? states[k].data_ptr<T>() : a.reset_states.at(k).data_ptr<T>();
    if (k == 0 || save) {
      history[k] = new_buffer({T_ + 1, B, width[k]}, opt);
      history[k].select(0, steps.first()).copy_(states[k]);
    } else {
      turns[k][0] = new_buffer({B, width[k]}, opt);
      turns[k][1] = new_buffer({B, width[k]}, opt);
      turns[k][0].copy_(states[k]);
    }
  }
  auto per_step = [&](int64_t w) { return save ? new_buffer({T_, B, w}, opt) : new_buffer({B, w}, opt); };
  // the h the products read, when it is not the state itself: (reset ? h_0 : h) * rec_mask
  at::Tensor hm = (mask || flags.restart) ? per_step(P) : at::Tensor();
  const int64_t U = Cell::u_width(d);
  at::Tensor u = U ? per_step(U) : at::Tensor();
  // summed: the recurrent product adds into the projected rows (the GEMM's C), so the gate math reads one row
  // and the bias instead of three rows (gx, the bias, the product): the cells whose pre-activations are that
  // sum (kSumsPreactivation, cpu_cell.h). 12-18% less time in the LSTM's gate math at the book's sizes (H=32),
  // where the gate math is a third of the inference. Such a step writes no saved rows, so it gets none. The
  // bias stays the gate math's to add (not the rows' starting value): filling every projected row with it
  // was a memcpy of all of gx, 2.5% of the book's inference.
  constexpr bool kSummable = sums_preactivation<Cell>::value && NP == 1;
  const bool summed = kSummable && proj != nullptr && !save;  // the projected scan is inference: save is false
  at::Tensor saved[kMaxSaved];
  int64_t saved_width[kMaxSaved] = {0};
  for (int j = 0; j < Cell::kSaved; ++j) {
    saved_width[j] = Cell::saved_width(j, d, A::kNeedsPre);
    saved[j] = saved_width[j] && !summed ? per_step(saved_width[j]) : at::empty({0}, opt);
  }
  const int64_t G = Cell::kGates * H;
  // the buffers' data, read once: data_ptr checks the tensor on every call, per row and step it cost 3% of
  // the book's inference
  T* history_data[kMaxStates] = {nullptr};
  T* turns_data[kMaxStates][2] = {{nullptr}};
  for (int k = 0; k < K; ++k) {
    if (history[k].defined()) {
      history_data[k] = history[k].data_ptr<T>();
    } else {
      turns_data[k][0] = turns[k][0].data_ptr<T>(), turns_data[k][1] = turns[k][1].data_ptr<T>();
    }
  }
  T* saved_data[kMaxSaved] = {nullptr};
  for (int j = 0; j < Cell::kSaved; ++j) saved_data[j] = saved[j].numel() ? saved[j].data_ptr<T>() : nullptr;
  T* hm_data = hm.defined() ? hm.data_ptr<T>() : nullptr;
  T* u_data = U ? u.data_ptr<T>() : nullptr;
  const at::Tensor zeros = zeros_if_absent(a.weights, G, opt);
  const T* weight_data[kMaxWeights] = {nullptr};
  weights_or_zeros(a.weights, zeros, weight_data);
  const T* zone[kMaxStates] = {nullptr};
  zoneout_data(a, K, zone);

  const at::Tensor fill = proj != nullptr ? proj->b_ih : at::Tensor();  // b_ih, where not folded into weights[1]
  // All T steps for rows [r0, r1): the rows' own products (W packed once per call) and gate math.
  auto scan_rows = [&](int64_t r0, int64_t r1) {
    const int64_t rows = r1 - r0;
    GxRows<T> gx_rows(gx, proj, steps, B, G, r0, r1, fill);
    std::vector<StepGemm<T>> gemm;
    at::Tensor product[kMaxProducts];
    int64_t product_width[kMaxProducts] = {0};
    for (int i = 0; i < NP; ++i) {
      const bool pack = T_ >= kPackMinSteps;
      gemm.push_back(product_gemm<T>(Cell::kProducts[i], a.weights, H, WeightOp::kTransposed, rows, pack));
      product_width[i] = gemm[i].n();
      if (!summed) product[i] = at::empty({rows, product_width[i]}, opt);
    }
    const int64_t gate_grain = gate_rows_per_thread(NP > 0 && gemm[0].split(), rows, G);
    for (int64_t step = 0; step < T_; ++step) {
      const int64_t t = steps.at(step), p = steps.prev(t), n = steps.next(t);
      T* prev[kMaxStates];
      T* next[kMaxStates];
      for (int k = 0; k < K; ++k) {
        if (history_data[k]) {
          prev[k] = history_data[k] + p * B * width[k];
          next[k] = history_data[k] + n * B * width[k];
        } else {
          prev[k] = turns_data[k][step % 2];
          next[k] = turns_data[k][(step + 1) % 2];
        }
      }
      const int64_t row_step = save ? t : 0;  // per-step buffers: this step's (B, w) block
      // the states row b starts step t from: the carried ones, or the reset states after a reset
      auto start = [&](int k, int64_t b) -> const T* {
        return flags.restarts(t, b) ? initial[k] + b * width[k] : prev[k] + b * width[k];
      };
      const T* gx_step = gx_rows.at(step);
      const T* h_in_ = prev[0];
      if (hm_data) {
        T* out = hm_data + row_step * B * P;
        for (int64_t b = r0; b < r1; ++b) {
          const T* h = start(0, b);
          if (mask) {
            for (int64_t j = 0; j < P; ++j) out[b * P + j] = h[j] * mask[b * P + j];
          } else {
            std::memcpy(out + b * P, h, sizeof(T) * P);
          }
        }
        h_in_ = out;
      }
      T* u_ = U ? u_data + row_step * B * U : nullptr;
      if (flags.all_invalid(t, r0, r1)) {  // no row of the chunk takes this step: no product, no gate math
        for (int64_t b = r0; b < r1; ++b) {
          for (int k = 0; k < K; ++k) std::memcpy(next[k] + b * width[k], start(k, b), sizeof(T) * width[k]);
          if (u_) std::fill(u_ + b * U, u_ + (b + 1) * U, T(0));
          for (int j = 0; j < Cell::kSaved; ++j) {
            if (saved_data[j]) {
              T* row = saved_data[j] + (row_step * B + b) * saved_width[j];
              std::fill(row, row + saved_width[j], T(0));
            }
          }
        }
        continue;
      }
      for (int stage = 0; stage < STAGES; ++stage) {
        if (summed) {  // one product, from h: into the projected rows
          gemm[0].run(h_in_ + r0 * P, P, const_cast<T*>(gx_step), G, true);  // projected: the rows are ours
        } else if (stage < NP) {
          const bool from_h = Cell::kProducts[stage].input == ProductInput::kHIn;
          const T* x = from_h ? h_in_ + r0 * P : u_ + r0 * U;
          gemm[stage].run(x, from_h ? P : U, product[stage].data_ptr<T>(), product_width[stage]);
        }
        const T* product_ = stage < NP && !summed ? product[stage].data_ptr<T>() : nullptr;
        const int64_t pw = stage < NP ? product_width[stage] : 0;
        at::parallel_for(r0, r1, gate_grain, [&](int64_t lo, int64_t hi) {
          for (int64_t b = lo; b < hi; ++b) {
            ForwardRow<T> r{};
            r.d = d;
            r.gx = gx_step + (b - r0) * G;
            r.product = product_ ? product_ + (b - r0) * pw : nullptr;
            r.h_in = h_in_ + b * P;
            for (int k = 0; k < K; ++k) {
              r.prev[k] = start(k, b);
              r.next[k] = next[k] + b * width[k];
            }
            r.u = u_ ? u_ + b * U : nullptr;
            for (int j = 0; j < Cell::kSaved; ++j) {
              r.saved[j] = saved_data[j] ? saved_data[j] + (row_step * B + b) * saved_width[j] : nullptr;
            }
            for (int i = 0; i < kMaxWeights; ++i) r.weights[i] = weight_data[i];
            r.args = a.cell_args.data();
            gx_rows.prefetch(step, b);
            Cell::template forward<T, A>(stage, r);
            if (stage == STAGES - 1) {
              for (int k = 0; k < K; ++k) {  // zoneout: k * previous + (1 - k) * new
                if (zone[k]) zone_mix(width[k], zone[k] + (t * B + b) * width[k], r.prev[k], r.next[k]);
              }
            }
            if (stage == STAGES - 1 && flags.invalid(t, b)) {
              // an invalid step keeps the row's state; its saved rows are zeroed so that nothing computed
              // from its padding (NaN included) can reach a gradient
              for (int k = 0; k < K; ++k) std::memcpy(r.next[k], r.prev[k], sizeof(T) * width[k]);
              if (r.u) std::fill(r.u, r.u + U, T(0));
              for (int j = 0; j < Cell::kSaved; ++j) {
                if (r.saved[j]) std::fill(r.saved[j], r.saved[j] + saved_width[j], T(0));
              }
            }
          }
        });
      }
    }
  };
  run_scan_rows<T, Cell>(a.weights, H, B, false, scan_rows);

  std::vector<at::Tensor> outputs{history[0]};
  for (int k = 1; k < K; ++k) outputs.push_back(save ? history[k] : turns[k][T_ % 2]);
  if (save) {
    outputs.push_back(hm.defined() ? hm : at::empty({0}, opt));
    outputs.push_back(U ? u : at::empty({0}, opt));
    for (int j = 0; j < Cell::kSaved; ++j) outputs.push_back(saved[j]);
  }
  return outputs;
}

// ---------------------------------------------------------------------------------------------------
// backward

// out = (through + through2) * mask + direct + up, each optional term absent when null. The branches are
// outside the loops: inside, the compiler turns them into masked loads from the null pointers, which the
// CPU serves with a slow microcode assist on every iteration (it made the LSTM backward 1.7x slower).
template <typename T>
void combine(int64_t n, const T* __restrict through, const T* __restrict through2, const T* __restrict mask,
             const T* __restrict direct, const T* __restrict up, T* __restrict out) {
  if (through == nullptr) {
    if (up) {
      for (int64_t e = 0; e < n; ++e) out[e] = direct[e] + up[e];
    } else {
      for (int64_t e = 0; e < n; ++e) out[e] = direct[e];
    }
    return;
  }
  if (through2) {
    for (int64_t e = 0; e < n; ++e) out[e] = through[e] + through2[e];
  } else {
    for (int64_t e = 0; e < n; ++e) out[e] = through[e];
  }
  if (mask) {
    for (int64_t e = 0; e < n; ++e) out[e] *= mask[e];
  }
  for (int64_t e = 0; e < n; ++e) out[e] += direct[e];
  if (up) {
    for (int64_t e = 0; e < n; ++e) out[e] += up[e];
  }
}

template <typename T, class Cell, class A>
std::vector<at::Tensor> backward_impl(const Args& a, const OptionalTensors& grads, const std::vector<at::Tensor>& saved) {
  constexpr int K = Cell::kStates;
  constexpr int NP = int(Cell::kProducts.size());
  constexpr int STAGES = NP > 1 ? NP : 1;
  check(saved.size() == size_t(K + 2 + Cell::kSaved), "unexpected number of saved buffers");
  const at::Tensor& h_hist = saved[0];
  const int64_t T_ = h_hist.size(0) - 1, B = h_hist.size(1), P = h_hist.size(2);
  const int64_t H = a.weights.at(0).size(0) / Cell::kGates;
  const int64_t G = Cell::kGates * H;
  const Dims d{H, P};
  const at::TensorOptions opt = h_hist.options();
  const Steps steps{T_, a.reverse};
  const StepFlags flags(a, B);
  const T* mask = a.rec_mask.has_value() ? a.rec_mask->data_ptr<T>() : nullptr;
  const at::Tensor& hm = saved[K];
  const at::Tensor& u = saved[K + 1];
  const int64_t U = u.numel() ? u.size(2) : 0;

  int64_t width[kMaxStates];
  const T* hist[kMaxStates];
  const T* upstream[kMaxStates];
  at::Tensor up_tensors[kMaxStates], D[kMaxStates], Dn[kMaxStates], d_prev[kMaxStates];
  at::Tensor d_reset[kMaxStates];  // what reset steps pass to the states they restarted from
  const T* reset_from[kMaxStates];  // those states (B, width)
  for (int k = 0; k < K; ++k) {
    width[k] = saved[k].size(2);
    hist[k] = saved[k].data_ptr<T>();
    if (flags.restart) d_reset[k] = at::zeros({B, width[k]}, opt);
    reset_from[k] = a.reset_states.empty() ? hist[k] + steps.first() * B * width[k] : a.reset_states.at(k).data_ptr<T>();
    const std::optional<at::Tensor> g = grads.get(k);
    up_tensors[k] = g.has_value() ? g->contiguous() : at::Tensor();
    upstream[k] = up_tensors[k].defined() ? up_tensors[k].data_ptr<T>() : nullptr;
    D[k] = upstream[k] ? up_tensors[k].select(0, steps.last()).clone() : at::zeros({B, width[k]}, opt);
    Dn[k] = at::empty({B, width[k]}, opt);
    d_prev[k] = at::empty({B, width[k]}, opt);
  }
  int64_t saved_width[kMaxSaved] = {0};
  const T* saved_data[kMaxSaved] = {nullptr};
  for (int j = 0; j < Cell::kSaved; ++j) {
    const at::Tensor& s = saved[K + 2 + j];
    saved_width[j] = s.numel() ? s.size(2) : 0;
    saved_data[j] = s.numel() ? s.data_ptr<T>() : nullptr;
  }
  at::Tensor dgx = new_buffer({T_, B, G}, opt);
  at::Tensor grad_buffers[kMaxGradBuffers];
  int64_t grad_width[kMaxGradBuffers] = {0};
  for (int j = 0; j < Cell::kGradBuffers; ++j) {
    grad_width[j] = Cell::grad_width(j, d);
    grad_buffers[j] = new_buffer({T_, B, grad_width[j]}, opt);
  }
  at::Tensor dh = at::empty({B, P}, opt);
  at::Tensor d_h_in = Cell::kWritesDHIn ? at::empty({B, P}, opt) : at::Tensor();
  at::Tensor du = U ? at::empty({B, U}, opt) : at::Tensor();
  const at::Tensor zeros = zeros_if_absent(a.weights, G, opt);
  const T* weight_data[kMaxWeights] = {nullptr};
  weights_or_zeros(a.weights, zeros, weight_data);
  const T* zone[kMaxStates] = {nullptr};
  zoneout_data(a, K, zone);
  at::Tensor d_cand[kMaxStates];  // zoneout: the gradient the new state got, (1 - k) * D
  for (int k = 0; k < K; ++k) {
    if (zone[k]) d_cand[k] = at::empty({B, width[k]}, opt);
  }

  // the gradient of product i's output at step t, (B, width) from the returned pointer with the returned
  // row stride: its own buffer, or dgx at its gate rows
  auto product_grad = [&](int i, int64_t t) -> std::pair<const T*, int64_t> {
    const Product& spec = Cell::kProducts[i];
    if (Cell::kProductGrad[i] >= 0) {
      const int j = Cell::kProductGrad[i];
      return {grad_buffers[j].data_ptr<T>() + t * B * grad_width[j], grad_width[j]};
    }
    const int64_t first = spec.row_stop < 0 ? 0 : spec.row_start * H;
    return {dgx.data_ptr<T>() + t * B * G + first, G};
  };

  // All T steps, last first, for rows [r0, r1) (see run_row_chunks): D holds the gradient of each state as
  // the step being processed wrote it, Dn receives the next; the two swap roles every step.
  auto scan_rows = [&](int64_t r0, int64_t r1) {
    const int64_t rows = r1 - r0;
    std::vector<StepGemm<T>> gemm;
    for (int i = 0; i < NP; ++i) {
      const bool pack = T_ >= kPackMinSteps;  // (a large W in panels)
      gemm.push_back(product_gemm<T>(Cell::kProducts[i], a.weights, H, WeightOp::kPlain, rows, pack));
    }
    // d(input of product i) = d(product i) @ W_i, into the rows' part of out (B, its width)
    auto product_input_grad = [&](int i, int64_t t, at::Tensor& out) {
      const auto [grad, ld] = product_grad(i, t);
      gemm[i].run(grad + r0 * ld, ld, out.data_ptr<T>() + r0 * out.size(1), out.size(1));
    };
    T* Dp[kMaxStates];
    T* Dnp[kMaxStates];
    for (int k = 0; k < K; ++k) Dp[k] = D[k].data_ptr<T>(), Dnp[k] = Dn[k].data_ptr<T>();
    const int64_t gate_grain = gate_rows_per_thread(NP > 0 && gemm[0].split(), rows, G);  // as the forward's
    for (int64_t step = T_ - 1; step >= 0; --step) {
      const int64_t t = steps.at(step), p = steps.prev(t), n = steps.next(t);
      const T* h_in_ = hm.numel() ? hm.data_ptr<T>() + t * B * P : hist[0] + p * B * P;
      const T* u_ = U ? u.data_ptr<T>() + t * B * U : nullptr;
      T* dgx_ = dgx.data_ptr<T>() + t * B * G;
      const bool skip = flags.all_invalid(t, r0, r1);  // no row took this step: its gradients pass through
      for (int stage = STAGES - 1; stage >= 0 && !skip; --stage) {
        if (stage == 0 && STAGES == 2) product_input_grad(1, t, du);
        const T* du_ = (stage == 0 && STAGES == 2) ? du.data_ptr<T>() : nullptr;
        at::parallel_for(r0, r1, gate_grain, [&](int64_t lo, int64_t hi) {
          for (int64_t b = lo; b < hi; ++b) {
            if (flags.invalid(t, b)) {  // an invalid step: no gate gradient, the state's passes through
              if (stage == STAGES - 1) {
                std::fill(dgx_ + b * G, dgx_ + (b + 1) * G, T(0));
                for (int j = 0; j < Cell::kGradBuffers; ++j) {
                  T* g = grad_buffers[j].data_ptr<T>() + (t * B + b) * grad_width[j];
                  std::fill(g, g + grad_width[j], T(0));
                }
                for (int k = 0; k < K; ++k) {
                  std::memcpy(d_prev[k].data_ptr<T>() + b * width[k], Dp[k] + b * width[k], sizeof(T) * width[k]);
                }
                if (d_h_in.defined()) {
                  std::fill(d_h_in.data_ptr<T>() + b * P, d_h_in.data_ptr<T>() + (b + 1) * P, T(0));
                }
              }
              continue;
            }
            BackwardRow<T> r{};
            r.d = d;
            for (int k = 0; k < K; ++k) {
              const T* dk = Dp[k] + b * width[k];
              if (zone[k]) {
                T* dc = d_cand[k].data_ptr<T>() + b * width[k];
                if (stage == STAGES - 1) zone_grad(width[k], zone[k] + (t * B + b) * width[k], dk, dc);
                dk = dc;
              }
              r.d_next[k] = dk;
              r.prev[k] = flags.restarts(t, b) ? reset_from[k] + b * width[k] : hist[k] + (p * B + b) * width[k];
              r.next[k] = hist[k] + (n * B + b) * width[k];
              r.d_prev[k] = d_prev[k].data_ptr<T>() + b * width[k];
            }
            r.h_in = h_in_ + b * P;
            r.u = u_ ? u_ + b * U : nullptr;
            for (int j = 0; j < Cell::kSaved; ++j) {
              r.saved[j] = saved_data[j] ? saved_data[j] + (t * B + b) * saved_width[j] : nullptr;
            }
            for (int i = 0; i < kMaxWeights; ++i) r.weights[i] = weight_data[i];
            r.du = du_ ? du_ + b * U : nullptr;
            r.dgx = dgx_ + b * G;
            for (int j = 0; j < Cell::kGradBuffers; ++j) {
              r.grads[j] = grad_buffers[j].data_ptr<T>() + (t * B + b) * grad_width[j];
            }
            r.d_h_in = d_h_in.defined() ? d_h_in.data_ptr<T>() + b * P : nullptr;
            r.args = a.cell_args.data();
            Cell::template backward<T, A>(stage, r);
            if (stage == 0) {
              for (int k = 0; k < K; ++k) {  // zoneout: the previous state got k * D directly
                if (zone[k]) zone_pass(width[k], zone[k] + (t * B + b) * width[k], Dp[k] + b * width[k], r.d_prev[k]);
              }
            }
          }
        });
      }
      if (skip) {
        for (int64_t b = r0; b < r1; ++b) {
          std::fill(dgx_ + b * G, dgx_ + (b + 1) * G, T(0));
          for (int j = 0; j < Cell::kGradBuffers; ++j) {
            T* g = grad_buffers[j].data_ptr<T>() + (t * B + b) * grad_width[j];
            std::fill(g, g + grad_width[j], T(0));
          }
        }
      }
      // the state read gets the products' gradient (times the dropout mask), its direct gradient, and its
      // own upstream gradient (the output at the step before); an invalid row passed D through above
      if (NP > 0 && !skip) {
        product_input_grad(0, t, dh);
      } else {
        std::fill(dh.data_ptr<T>() + r0 * P, dh.data_ptr<T>() + r1 * P, T(0));
      }
      const T* dhi_ = d_h_in.defined() && !skip ? d_h_in.data_ptr<T>() + r0 * P : nullptr;
      for (int k = 0; k < K; ++k) {
        const int64_t w = width[k], off = r0 * w;
        const T* up = upstream[k] ? upstream[k] + p * B * w + off : nullptr;
        const T* direct = skip ? Dp[k] + off : d_prev[k].data_ptr<T>() + off;
        // with resets, the upstream gradient (the carried state's) is added after a reset row's gradient has
        // gone to the initial state it read
        combine(rows * w, k == 0 && !skip ? dh.data_ptr<T>() + off : nullptr, k == 0 ? dhi_ : nullptr,
                k == 0 && mask && !skip ? mask + off : nullptr, direct, flags.restart ? nullptr : up, Dnp[k] + off);
        if (flags.restart) {
          T* d_init = d_reset[k].data_ptr<T>();
          for (int64_t b = r0; b < r1; ++b) {
            if (!flags.restarts(t, b)) continue;
            T* row = Dnp[k] + b * w;
            for (int64_t j = 0; j < w; ++j) d_init[b * w + j] += row[j];
            std::fill(row, row + w, T(0));
          }
          if (up) {
            for (int64_t e = 0; e < rows * w; ++e) Dnp[k][off + e] += up[e];
          }
        }
        std::swap(Dp[k], Dnp[k]);
      }
    }
  };
  run_scan_rows<T, Cell>(a.weights, H, B, true, scan_rows);
  if (T_ % 2 == 1) {
    for (int k = 0; k < K; ++k) std::swap(D[k], Dn[k]);  // where every chunk's last step wrote
  }

  std::vector<at::Tensor> outputs{dgx};
  const bool own_resets = !a.reset_states.empty();
  for (int k = 0; k < K; ++k) outputs.push_back(flags.restart && !own_resets ? D[k] + d_reset[k] : D[k]);
  if (own_resets) {
    for (int k = 0; k < K; ++k) outputs.push_back(flags.restart ? d_reset[k] : at::zeros_like(D[k]));
  }
  for (int j = 0; j < Cell::kGradBuffers; ++j) outputs.push_back(grad_buffers[j]);
  return outputs;
}

// ---------------------------------------------------------------------------------------------------
// dispatch on dtype, activations and cell

template <class Cell>
std::vector<at::Tensor> forward_for(const Args& a, bool save, const at::Tensor& gx, const std::vector<at::Tensor>& states,
                                    const Projection* proj = nullptr) {
  std::vector<at::Tensor> out;
  with_types<Cell>(a, (proj ? proj->x : gx).scalar_type(), [&](auto t, auto acts) {
    out = forward_impl<decltype(t), Cell, decltype(acts)>(a, save, gx, states, proj);
  });
  return out;
}

template <class Cell>
std::vector<at::Tensor> backward_for(const Args& a, const OptionalTensors& grads, const std::vector<at::Tensor>& saved) {
  std::vector<at::Tensor> out;
  with_types<Cell>(a, saved.at(0).scalar_type(), [&](auto t, auto acts) {
    out = backward_impl<decltype(t), Cell, decltype(acts)>(a, grads, saved);
  });
  return out;
}

std::vector<at::Tensor> scan_forward_cpp(std::string cell, std::string activation, std::string recurrent_activation,
                                         bool reverse, c10::ArrayRef<double> cell_args, bool save, const at::Tensor& gx,
                                         std::vector<at::Tensor> states, const OptionalTensors& weights,
                                         const std::optional<at::Tensor>& lengths,
                                         const std::optional<at::Tensor>& mask,
                                         const std::optional<at::Tensor>& restart, const OptionalTensors& reset_states,
                                         const std::optional<at::Tensor>& rec_mask, const OptionalTensors& zoneout) {
  // The loops compute no autograd graph: in a process without seqtorch's Python (a loaded export), the op
  // may be called with parameters that require grad, and ATen's out= GEMMs refuse those under grad mode.
  at::NoGradGuard no_grad;
  const Args a = make_args(cell, activation, recurrent_activation, reverse, cell_args, weights, lengths, mask,
                           restart, reset_states, rec_mask, zoneout);
  for (at::Tensor& s : states) s = s.contiguous();
  check_inputs(gx, states);
  for (const at::Tensor& w : a.weights) {
    if (w.defined()) check_inputs(gx, {w});
  }
  if (a.rec_mask.has_value()) check_inputs(gx, {*a.rec_mask});
  for (const at::Tensor& z : a.zoneout) {
    if (z.defined()) check_inputs(gx, {z});
  }
#define SEQTORCH_CELL(name) \
  if (cell == #name) return forward_for<cells::name>(a, save, gx.contiguous(), states);
  SEQTORCH_FOR_EACH_CELL(SEQTORCH_CELL)
#undef SEQTORCH_CELL
  TORCH_CHECK(false, "seqtorch C++ scan: no C++ kernel for cell '", cell, "'");
}

// The inference forward (save false) with the input projection done inside, by chunks of steps (GxRows):
// x (T, B, I), W_ih (G*H, I), b_ih (G*H,) or None; the rest and the outputs as scan_forward_cpp's (without
// its mask, restart and reset_states).
std::vector<at::Tensor> scan_projected_cpp(std::string cell, std::string activation, std::string recurrent_activation,
                                           bool reverse, c10::ArrayRef<double> cell_args, const at::Tensor& x,
                                           const at::Tensor& w_ih, const std::optional<at::Tensor>& b_ih,
                                           std::vector<at::Tensor> states, const OptionalTensors& weights,
                                           const std::optional<at::Tensor>& lengths,
                                           const std::optional<at::Tensor>& rec_mask, const OptionalTensors& zoneout) {
  at::NoGradGuard no_grad;
  // no mask, resets or reset states: the caller (seqtorch/ops/projected.py) sends those scans to scan_forward_cpp
  const Args a = make_args(cell, activation, recurrent_activation, reverse, cell_args, weights, lengths, std::nullopt,
                           std::nullopt, OptionalTensors(), rec_mask, zoneout);
  const Projection proj{x.contiguous(), w_ih.contiguous(), b_ih.has_value() ? b_ih->contiguous() : at::Tensor()};
  check(proj.x.dim() == 3 && proj.w_ih.dim() == 2 && proj.w_ih.size(1) == proj.x.size(2),
        "x must be (T, B, I) and weight_ih (G*H, I)");
  check(!proj.b_ih.defined() || proj.b_ih.numel() == proj.w_ih.size(0), "bias_ih must be (G*H,)");
  for (at::Tensor& s : states) s = s.contiguous();
  check_inputs(proj.x, states);
  check_inputs(proj.x, {proj.w_ih});
  if (proj.b_ih.defined()) check_inputs(proj.x, {proj.b_ih});
  for (const at::Tensor& w : a.weights) {
    if (w.defined()) check_inputs(proj.x, {w});
  }
  if (a.rec_mask.has_value()) check_inputs(proj.x, {*a.rec_mask});
  for (const at::Tensor& z : a.zoneout) {
    if (z.defined()) check_inputs(proj.x, {z});
  }
#define SEQTORCH_CELL(name)                                                                       \
  if (cell == #name) {                                                                            \
    check(proj.w_ih.size(0) == cells::name::kGates * (a.weights.at(0).size(0) / cells::name::kGates), \
          "weight_ih must have the cell's G*H rows");                                             \
    return forward_for<cells::name>(a, false, at::Tensor(), states, &proj);                      \
  }
  SEQTORCH_FOR_EACH_CELL(SEQTORCH_CELL)
#undef SEQTORCH_CELL
  TORCH_CHECK(false, "seqtorch C++ scan: no C++ kernel for cell '", cell, "'");
}

std::vector<at::Tensor> scan_backward_cpp(std::string cell, std::string activation, std::string recurrent_activation,
                                          bool reverse, c10::ArrayRef<double> cell_args, const OptionalTensors& grads,
                                          std::vector<at::Tensor> saved, const OptionalTensors& weights,
                                          const std::optional<at::Tensor>& lengths,
                                          const std::optional<at::Tensor>& mask,
                                          const std::optional<at::Tensor>& restart,
                                          const OptionalTensors& reset_states,
                                          const std::optional<at::Tensor>& rec_mask, const OptionalTensors& zoneout) {
  at::NoGradGuard no_grad;
  const Args a = make_args(cell, activation, recurrent_activation, reverse, cell_args, weights, lengths, mask,
                           restart, reset_states, rec_mask, zoneout);
  for (at::Tensor& s : saved) s = s.contiguous();
#define SEQTORCH_CELL(name) \
  if (cell == #name) return backward_for<cells::name>(a, grads, saved);
  SEQTORCH_FOR_EACH_CELL(SEQTORCH_CELL)
#undef SEQTORCH_CELL
  TORCH_CHECK(false, "seqtorch C++ scan: no C++ kernel for cell '", cell, "'");
}

std::vector<std::string> cpp_cells() {
  std::vector<std::string> names;
#define SEQTORCH_CELL(name) names.push_back(#name);
  SEQTORCH_FOR_EACH_CELL(SEQTORCH_CELL)
#undef SEQTORCH_CELL
  return names;
}

}  // namespace
// One recurrent product, a (M x K) @ op(w), through StepGemm as a scan runs it (op(w) = w^T for a forward's
// w, N x K, or w itself, K x N, for a backward's), and the width of its brgemm panels (for the tests).
std::tuple<at::Tensor, int64_t> step_gemm(const at::Tensor& a_, const at::Tensor& w_, bool transposed_w, bool pack) {
  const at::Tensor a = a_.contiguous(), w = w_.contiguous();
  TORCH_CHECK(a.dim() == 2 && w.dim() == 2 && a.size(1) == w.size(transposed_w ? 1 : 0) &&
                  a.scalar_type() == w.scalar_type(),
              "step_gemm: a (M, K) and w (N, K) transposed or (K, N), of one dtype");
  at::Tensor out;
  int64_t panel = 0;
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "seqtorch_step_gemm", [&] {
    const StepGemm<scalar_t> gemm(w.data_ptr<scalar_t>(), w.size(0), w.size(1), w.size(1),
                                  transposed_w ? WeightOp::kTransposed : WeightOp::kPlain, a.size(0), pack,
                                  a.options());
    out = at::empty({a.size(0), gemm.n()}, a.options());
    gemm.run(a.data_ptr<scalar_t>(), a.size(1), out.data_ptr<scalar_t>(), gemm.n());
    panel = gemm.panel_columns();
  });
  return {out, panel};
}

// unit_blocks for an inference scan of `cell` over `batch` rows and `hidden` units in float32 with no options
// (for the tests)
int64_t scan_unit_blocks(const std::string& cell, int64_t batch, int64_t hidden) {
#define SEQTORCH_CELL(name)                                                                                     \
  if (cell == #name) {                                                                                          \
    if constexpr (unit_local<cells::name>::value) {                                                             \
      Args a{cell, false, kSigmoid, false, std::nullopt, std::nullopt, std::nullopt, {}, std::nullopt, {}, {}, {}}; \
      a.weights.push_back(at::empty({cells::name::kGates * hidden, hidden}));                                   \
      const ProductCost cost = product_cost<float, cells::name>(a.weights, hidden, batch);                     \
      return unit_blocks<cells::name>(a, batch, hidden, hidden, cost);                                          \
    }                                                                                                           \
    return 1;                                                                                                   \
  }
  SEQTORCH_FOR_EACH_CELL(SEQTORCH_CELL)
#undef SEQTORCH_CELL
  TORCH_CHECK(false, "seqtorch C++ scan: no C++ kernel for cell '", cell, "'");
}

}  // namespace seqtorch_cpu

// The schemas are seqtorch/ops/contract.py's (a test checks that they agree).
TORCH_LIBRARY_FRAGMENT(SEQTORCH_OPS_NAMESPACE, m) {
  m.def("scan_forward_cpp(str cell, str activation, str recurrent_activation, bool reverse, float[] cell_args, "
        "bool save, Tensor gx, Tensor[] states, Tensor?[] weights, Tensor? lengths, Tensor? mask, Tensor? restart, "
        "Tensor?[] reset_states, Tensor? rec_mask, Tensor?[] keep) -> Tensor[]");
  m.def("scan_backward_cpp(str cell, str activation, str recurrent_activation, bool reverse, float[] cell_args, "
        "Tensor?[] grads, Tensor[] saved, Tensor?[] weights, Tensor? lengths, Tensor? mask, Tensor? restart, "
        "Tensor?[] reset_states, Tensor? rec_mask, Tensor?[] keep) -> Tensor[]");
  m.def("scan_projected_cpp(str cell, str activation, str recurrent_activation, bool reverse, float[] cell_args, "
        "Tensor x, Tensor weight_ih, Tensor? bias_ih, Tensor[] states, Tensor?[] weights, Tensor? lengths, "
        "Tensor? rec_mask, Tensor?[] zoneout) -> Tensor[]");
  m.def("cpp_cells() -> str[]", &seqtorch_cpu::cpp_cells);
  // how many row chunks a scan of `batch` rows with per-step products of `flops` runs (for the tests)
  m.def("scan_row_chunks(int batch, float flops, float weight_bytes, bool backward=False) -> int",
        &seqtorch_cpu::row_chunks);
  m.def("step_gemm(Tensor a, Tensor w, bool transposed_w, bool pack) -> (Tensor, int)");
  // into how many blocks of hidden units an inference scan splits (for the tests)
  m.def("scan_unit_blocks(str cell, int batch, int hidden) -> int", &seqtorch_cpu::scan_unit_blocks);
}

TORCH_LIBRARY_IMPL(SEQTORCH_OPS_NAMESPACE, CPU, m) {
  m.impl("scan_forward_cpp", &seqtorch_cpu::scan_forward_cpp);
  m.impl("scan_backward_cpp", &seqtorch_cpu::scan_backward_cpp);
  m.impl("scan_projected_cpp", &seqtorch_cpu::scan_projected_cpp);
  m.impl("step_gemm", &seqtorch_cpu::step_gemm);
}
