// The scan loops' per-step recurrent products on raw pointers: C (M x N) = A (M x K) @ op(W), where the
// weight W is the same at every step of a scan.
//
// Why not at::mm_out per step: at the book's sizes (B=128, H=32) a call's dispatch and tensor bookkeeping
// cost about as much as the product itself, 500 times per scan; at language-model sizes (B=20, H=650)
// MKL re-packs all of W (6.8 MB) on every call, longer than the product. So W is packed once per scan:
//
// * float, kBrgemmMinRows rows or more, in the backward (W as stored) or in a forward the caller asks to
//   pack (over kPackMinSteps steps or more: for a step or two the copy costs more than it saves): ATen's
//   brgemm (at::native::cpublas::brgemm), oneDNN's batch-reduce GEMM micro-kernel, the one oneDNN's own
//   RNN is built on, with W^T copied once per scan for the forward, and a W over kPanelMinBytes that the
//   caller packs (either direction) copied into panels of columns instead. One thread each, 15-55% more GFLOP/s
//   than MKL's packed GEMM at the scans' shapes (1 thread, this machine: B=20, H=650 forward 106 against
//   68, B=16, H=256 108 against 76, the book's 100 against 84; the backward's 83-112 against sgemm_'s
//   64-79). Where oneDNN's micro-kernel is not built or not supported, ATen runs its own gemm instead;
// * float with MKL (inside libtorch_cpu on x86-64) otherwise, when the caller asks to pack a forward's W:
//   cblas_sgemm_pack once, cblas_sgemm_compute per step;
// * otherwise, with a Fortran BLAS in libtorch (MKL or OpenBLAS): sgemm_/dgemm_ per step, no dispatch;
// * otherwise (a torch without those symbols: they are weak references, null when absent): at::mm_out on
//   views of the same memory.
// SEQTORCH_CPU_GEMM=blas in the environment skips brgemm, SEQTORCH_CPU_GEMM=aten everything but at::mm_out:
// how the tests run every path on a machine that has them all.
// Threads: a product under kThreadedFlops runs on one thread (at the book's sizes a 2-thread GEMM per step
// spends more on waking and joining the second thread than the product takes: 1.5x slower scans measured).
// A larger one is split by columns (W's rows in the forward, its columns in the backward) into one block per
// torch thread, each block a one-thread GEMM with its own packed W, run on torch's threads: at the skinny
// shapes of a recurrence (B = 16 to 32 rows) MKL's own two-thread GEMM reached 102-120 GFLOP/s where the two
// column halves reach 121-153 (measured on 2 cores at B=16..20, H=200..650, forward and backward shapes).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "buffer_pool.h"
#include "transpose.h"

extern "C" {
// MKL's CBLAS packed GEMM (LP64: int sizes) and the Fortran BLAS GEMMs, resolved from libtorch_cpu.
size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k) __attribute__((weak));
void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n, int k, float alpha, const float* src,
                      int ld, float* dest) __attribute__((weak));
void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n, int k, const float* a, int lda,
                         const float* b, int ldb, float beta, float* c, int ldc) __attribute__((weak));
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc) __attribute__((weak));
int MKL_Set_Num_Threads_Local(int threads) __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc) __attribute__((weak));
}

namespace seqtorch_cpu {

// CBLAS's enum values (cblas.h), passed as ints.
constexpr int kCblasRowMajor = 101, kCblasNoTrans = 111, kCblasTrans = 112, kCblasPacked = 151, kCblasBMatrix = 162;

// Which of W's layouts a product multiplies by: W^T (forward: W is N x K, the gate rows) or W itself
// (backward: W is K x N).
enum class WeightOp { kTransposed, kPlain };

constexpr int64_t kPackMinSteps = 4;
constexpr double kThreadedFlops = 4e6;
constexpr int64_t kMinBlockColumns = 64;  // the narrowest column block a thread takes
constexpr int64_t kBrgemmMinRows = 8;  // below, one row or a few: MKL's GEMV-like kernels are faster
// A weight of more than kPanelMinBytes is laid out for brgemm in panels of columns, each K x width contiguous,
// one brgemm call per panel, where a scan packs it (below). Why: brgemm walks B's K rows for each block of
// columns, and with W (or W^T) whole a row is N elements apart, so past a core's L2 every row is a fresh page
// (4 KB apart at H=1024) that the hardware prefetcher and the TLB do not follow. In panels the walk is
// sequential. One thread, this machine, GFLOP/s whole against panels: the medium language model's backward
// product (B=20, K=2600, N=650) 82 against 111, its forward (K=650, N=2600) 110 against 114, H=1024 at B=16
// forward 48-83 against 91-97 and backward 25 against 86; at 1 MB and under (the small batch, the small
// language model, the book) even within 2%. The backward's panels are narrower (its K is 4H): 32 columns
// ran 86 GFLOP/s against 69 for 64 at K=4096, the forward's 64 ran as fast as 32 or 96 at the medium's shape.
constexpr int64_t kPanelMinBytes = 1 << 20;
constexpr int64_t kForwardPanelColumns = 64, kBackwardPanelColumns = 32;
// MKL's pack buffer is megabytes whatever W's size (5.8 MB for a 24 x 6 W): for a W under this many elements
// (in cache anyway) allocating it on every scan cost more than packing saves (page faults on every call, a
// tiny LSTM's op 17 us -> 58 us), so such a W is not packed.
constexpr int64_t kPackMinWeight = 16 * 1024;

// MKL's thread count for this thread while in scope (one thread for a small product), restored after.
class MklThreads {
 public:
  explicit MklThreads(bool single) : active_(single && MKL_Set_Num_Threads_Local != nullptr) {
    if (active_) previous_ = MKL_Set_Num_Threads_Local(1);
  }
  ~MklThreads() {
    if (active_) MKL_Set_Num_Threads_Local(previous_);
  }
  MklThreads(const MklThreads&) = delete;
  MklThreads& operator=(const MklThreads&) = delete;

 private:
  bool active_;
  int previous_ = 0;
};

// The Fortran BLAS GEMM of T, or null.
template <typename T>
auto fortran_gemm() {
  if constexpr (std::is_same_v<T, float>) {
    return &sgemm_;
  } else if constexpr (std::is_same_v<T, double>) {
    return &dgemm_;
  } else {
    return static_cast<void (*)()>(nullptr);
  }
}

// Which GEMMs SEQTORCH_CPU_GEMM allows: all (unset), "blas" (not brgemm) or "aten" (at::mm_out only).
enum class GemmRoute { kAll, kBlas, kAten };

inline GemmRoute gemm_route() {
  const char* value = std::getenv("SEQTORCH_CPU_GEMM");
  if (value == nullptr) return GemmRoute::kAll;
  if (std::strcmp(value, "aten") == 0) return GemmRoute::kAten;
  return std::strcmp(value, "blas") == 0 ? GemmRoute::kBlas : GemmRoute::kAll;
}

// `values` (width of them) into each of `rows` rows of out (row stride width): a bias as the rows that a
// product then adds into (its C), the sum x W^T + b in one pass.
template <typename T>
void fill_rows(T* out, int64_t rows, int64_t width, const T* values) {
  for (int64_t row = 0; row < rows; ++row) std::memcpy(out + row * width, values, sizeof(T) * width);
}

// op(W) (K x N) into panels of `columns` columns at out, one after the other, each K x width contiguous (the
// last one narrower where N is not a multiple): W^T of a W stored N x K (kTransposed) or W stored K x N
// (kPlain), row stride ld. See kPanelMinBytes.
template <typename T>
void copy_into_panels(const T* w, int64_t ld, WeightOp op, int64_t K, int64_t N, int64_t columns, T* out) {
  const int64_t panels = (N + columns - 1) / columns;
  at::parallel_for(0, panels, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n0 = p * columns, width = std::min(columns, N - n0);
      T* panel = out + n0 * K;
      if (op == WeightOp::kTransposed) {  // W's rows n0.. (each K long) become the panel's columns
        transpose_into(w + n0 * ld, width, K, ld, panel);
      } else {
        for (int64_t k = 0; k < K; ++k) std::memcpy(panel + k * width, w + k * ld + n0, width * sizeof(T));
      }
    }
  });
}

// Whether a B (K x N) of `columns`-wide panels pays for its copy (kPanelMinBytes): more than one panel, over
// kPanelMinBytes of floats.
inline bool panels_pay(int64_t N, int64_t K, int64_t columns) {
  return N > columns && N * K * int64_t(sizeof(float)) > kPanelMinBytes;
}

// C (M x N, ldc) (+)= A (M x K, lda) @ B on brgemm, on the calling thread, over K in chunks of `chunk`: B is
// K x N with row stride ldb (panel 0), or in panels of `panel` columns (copy_into_panels), a call per panel.
inline void brgemm_panels(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t panel, float* c,
                          int64_t ldc, int64_t M, int64_t N, int64_t K, int64_t chunk, bool accumulate) {
#ifdef CPUBLAS_BRGEMM_F32F32F32
  const int64_t columns = panel > 0 ? panel : N;
  for (int64_t n0 = 0; n0 < N; n0 += columns) {
    const int64_t width = std::min(columns, N - n0);
    const float* bn = panel > 0 ? b + n0 * K : b + n0;
    const int64_t ld = panel > 0 ? width : ldb;
    for (int64_t k0 = 0; k0 < K; k0 += chunk) {
      at::native::cpublas::brgemm(M, width, std::min(chunk, K - k0), lda, ld, ldc, accumulate || k0 > 0, a + k0,
                                  bn + k0 * ld, c + n0);
    }
  }
#endif
}

template <typename T>
class StepGemm {
 public:
  // w: the weight's first element; rows x cols and row stride ld as stored (row-major). M: A's rows,
  // the same at every call; pack: whether to lay W out once for all calls (float only).
  // one_thread: a block of a split product (below), which runs on the thread that calls it.
  StepGemm(const T* w, int64_t rows, int64_t cols, int64_t ld, WeightOp op, int64_t M, bool pack,
           const at::TensorOptions& opt, bool one_thread = false)
      : w_(w), rows_(rows), cols_(cols), ld_w_(ld), op_(op), M_(M), pack_(pack), opt_(opt),
        asked_one_thread_(one_thread) {
    N_ = op == WeightOp::kTransposed ? rows : cols;
    K_ = op == WeightOp::kTransposed ? cols : rows;
    const bool threaded = 2.0 * double(M_) * double(N_) * double(K_) >= kThreadedFlops;
    one_thread_ = one_thread || !threaded;
    const int64_t blocks = std::min<int64_t>(at::get_num_threads(), N_ / kMinBlockColumns);
    if (!one_thread_ && blocks > 1 && !at::in_parallel_region()) {
      const bool by_rows = op == WeightOp::kTransposed;  // a block of C's columns is one of W's rows, or columns
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t n0 = b * N_ / blocks, n1 = (b + 1) * N_ / blocks;
        blocks_.emplace_back(w + (by_rows ? n0 * ld : n0), by_rows ? n1 - n0 : rows, by_rows ? cols : n1 - n0, ld, op,
                             M, pack, opt, true);
        offsets_.push_back(n0);
      }
      return;
    }
    const GemmRoute route = gemm_route();
    blas_ok_ = std::max({M_, N_, K_, ld_w_}) < INT_MAX && route != GemmRoute::kAten;  // else at::mm_out serves
#ifdef CPUBLAS_BRGEMM_F32F32F32
    if constexpr (std::is_same_v<T, float>) {
      const bool plain = op == WeightOp::kPlain;
      if (route == GemmRoute::kAll && (plain || pack) && M_ >= kBrgemmMinRows && N_ > 0 && K_ > 0) {
        const int64_t columns = plain ? kBackwardPanelColumns : kForwardPanelColumns;
        if (pack && panels_pay(N_, K_, columns)) {
          lay_out_panels(columns);
        } else if (plain) {  // brgemm's B is K x N row-major: W itself
          b_ = w, ld_b_ = ld_w_;
        } else {  // W^T, copied once (transpose.h)
          w_t_ = new_buffer({cols_, rows_}, opt);
          transpose_into(w, rows_, cols_, ld_w_, w_t_.data_ptr<T>());
          b_ = w_t_.data_ptr<T>(), ld_b_ = N_;
        }
        return;
      }
    }
#endif
    if constexpr (std::is_same_v<T, float>) {
      const bool mkl = cblas_sgemm_pack != nullptr && cblas_sgemm_compute != nullptr &&
                       cblas_sgemm_pack_get_size != nullptr;
      // (a backward's plain W goes to sgemm_ as stored: MKL's packing was measured for the forward alone)
      if (mkl && pack && op == WeightOp::kTransposed && blas_ok_ && M_ > 0 && N_ > 0 && K_ > 0 &&
          N_ * K_ >= kPackMinWeight) {
        const size_t bytes = cblas_sgemm_pack_get_size(kCblasBMatrix, int(M_), int(N_), int(K_));
        packed_ = at::empty({int64_t((bytes + sizeof(float) - 1) / sizeof(float))}, opt.dtype(at::kFloat));
        cblas_sgemm_pack(kCblasRowMajor, kCblasBMatrix, op == WeightOp::kTransposed ? kCblasTrans : kCblasNoTrans,
                         int(M_), int(N_), int(K_), 1.0f, w, int(ld_w_), packed_.data_ptr<float>());
      }
    }
  }

  int64_t n() const { return N_; }
  // the width of brgemm's column panels, 0 where B is whole; a split product's first block's (for the tests)
  int64_t panel_columns() const { return blocks_.empty() ? panel_ : blocks_[0].panel_; }
  // whether a call splits the product over threads (by columns)
  bool split() const { return !blocks_.empty(); }

  // The same product (a whole one, not a thread's block) over M rows instead: what W's layout needs is
  // shared (a forward's W^T is copied once for both), unless it depends on M (MKL's packed W) or M changes
  // whether the product is split over threads, and then it is laid out again.
  StepGemm with_rows(int64_t M) const {
    const bool threaded = 2.0 * double(M) * double(N_) * double(K_) >= kThreadedFlops;
    if (packed_.defined() || (!blocks_.empty() && !threaded)) {
      return StepGemm(w_, rows_, cols_, ld_w_, op_, M, pack_, opt_, asked_one_thread_);
    }
    StepGemm copy = *this;
    copy.M_ = M;
    for (StepGemm& block : copy.blocks_) block.M_ = M;
    return copy;
  }

  // C (M x N, row stride ldc) = A (M x K, row stride lda) @ op(W), or with accumulate C += A @ op(W). MKL
  // zeroes C in a pass of its own before a product that overwrites it: adding into C filled beforehand
  // (with a bias, say) saves that pass.
  void run(const T* a, int64_t lda, T* c, int64_t ldc, bool accumulate = false) const {
    if (M_ == 0 || N_ == 0) return;
    if (K_ == 0) {
      if (!accumulate) {
        for (int64_t m = 0; m < M_; ++m) std::fill(c + m * ldc, c + m * ldc + N_, T(0));
      }
      return;
    }
    const T beta = accumulate ? T(1) : T(0);
    if (!blocks_.empty()) {  // one column block per thread
      at::parallel_for(0, int64_t(blocks_.size()), 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) blocks_[b].run(a, lda, c + offsets_[b], ldc, accumulate);
      });
      return;
    }
#ifdef CPUBLAS_BRGEMM_F32F32F32
    if constexpr (std::is_same_v<T, float>) {
      if (b_ != nullptr) {
        brgemm_panels(a, lda, b_, ld_b_, panel_, c, ldc, M_, N_, K_, K_, accumulate);
        return;
      }
    }
#endif
    const bool ok = blas_ok_ && std::max(lda, ldc) < INT_MAX;
    const MklThreads threads(one_thread_);
    if constexpr (std::is_same_v<T, float>) {
      if (ok && packed_.defined()) {
        cblas_sgemm_compute(kCblasRowMajor, kCblasNoTrans, kCblasPacked, int(M_), int(N_), int(K_), a, int(lda),
                            packed_.data_ptr<float>(), int(N_), beta, c, int(ldc));
        return;
      }
    }
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      const auto gemm = fortran_gemm<T>();
      if (ok && gemm != nullptr) {
        // Column-major BLAS sees each row-major matrix transposed: C^T = op(W)^T A^T.
        const char op_w = op_ == WeightOp::kTransposed ? 'T' : 'N', op_a = 'N';
        const int m = int(N_), n = int(M_), k = int(K_), lw = int(ld_w_), la = int(lda), lc = int(ldc);
        const T one = 1;
        gemm(&op_w, &op_a, &m, &n, &k, &one, w_, &lw, a, &la, &beta, c, &lc);
        return;
      }
    }
    at::Tensor w = at::from_blob(const_cast<T*>(w_), {rows_, cols_}, {ld_w_, 1}, opt_);
    at::Tensor out = at::from_blob(c, {M_, N_}, {ldc, 1}, opt_);
    const at::Tensor a_ = at::from_blob(const_cast<T*>(a), {M_, K_}, {lda, 1}, opt_);
    const at::Tensor w_op = op_ == WeightOp::kTransposed ? w.t() : w;  // K x N either way
    if (accumulate) {
      at::addmm_out(out, out, a_, w_op);
    } else {
      at::mm_out(out, a_, w_op);
    }
  }

 private:
  // Copies op(W) (K x N) into panels of `columns` columns in w_t_ (see kPanelMinBytes).
  void lay_out_panels(int64_t columns) {
    panel_ = columns;
    w_t_ = new_buffer({K_ * N_}, opt_);
    copy_into_panels(w_, ld_w_, op_, K_, N_, panel_, w_t_.data_ptr<T>());
    b_ = w_t_.data_ptr<T>();
  }

  const T* w_;
  int64_t rows_, cols_, ld_w_;
  WeightOp op_;
  int64_t M_, N_ = 0, K_ = 0;
  bool pack_;
  at::TensorOptions opt_;
  at::Tensor packed_;
  // brgemm's B (K x N, row stride ld_b_): W, or W^T in w_t_, or with panel_ > 0 the panels in w_t_ (K x width
  // each, contiguous, one after the other); null: no brgemm
  const T* b_ = nullptr;
  int64_t ld_b_ = 0, panel_ = 0;
  at::Tensor w_t_;
  bool blas_ok_ = false;
  bool asked_one_thread_;  // the constructor's one_thread
  bool one_thread_ = true;
  std::vector<StepGemm> blocks_;  // the column blocks, when the product is split over threads
  std::vector<int64_t> offsets_;  // each block's first column of C
};

// ---------------------------------------------------------------------------------------------------
// whole-sequence products: a layer's input projection and its gradients over all T*B rows (layer.cpp)

constexpr int64_t kLargeK = 1024;  // past this K, brgemm runs over chunks of kChunkK
constexpr int64_t kChunkK = 256;
// A whole-sequence product's B over kPanelMinBytes is copied into panels (see there) where A has this many
// rows or more to pay for the copy. One thread, this machine, GFLOP/s whole against panels of 64: the
// medium language model's projection (350 x 650 x 2600, a thread's rows) 107 against 111, its dx (350 x 2600
// x 650) 87 against 112, H=1024's projection (480 x 1024 x 4096) 86 against 113; 800 x 256 x 1024 even.
constexpr int64_t kPanelMinRows = 64;
constexpr int64_t kWholePanelColumns = 64;

namespace gemm_detail {

// C (M x N) (+)= A (M x K) @ B, float, on brgemm by one block of rows per thread and, past kLargeK, chunks of
// K (the micro-kernel keeps no part of B in cache across its rows). B is K x N with row stride ldb (panel 0),
// or in panels of `panel` columns (copy_into_panels).
inline void brgemm_rows(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t panel, float* c,
                        int64_t ldc, int64_t M, int64_t N, int64_t K, bool accumulate) {
  const int64_t chunk = K > kLargeK ? kChunkK : K;
  const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  const int64_t grain = std::max<int64_t>(kBrgemmMinRows, (M + threads - 1) / threads);
  at::parallel_for(0, M, grain, [&](int64_t m0, int64_t m1) {
    brgemm_panels(a + m0 * lda, lda, b, ldb, panel, c + m0 * ldc, ldc, m1 - m0, N, K, chunk, accumulate);
  });
}

inline bool brgemm_whole_products() {
#ifdef CPUBLAS_BRGEMM_F32F32F32
  return gemm_route() == GemmRoute::kAll;
#else
  return false;
#endif
}

inline bool in_panels(int64_t M, int64_t N, int64_t K) {
  return M >= kPanelMinRows && panels_pay(N, K, kWholePanelColumns);
}

}  // namespace gemm_detail

// C (M x N, row stride ldc) = A (M x K, lda) @ B (K x N, ldb), all row-major, or with accumulate C += A @ B.
// float: brgemm (gemm_detail::brgemm_rows), B copied into panels where large (kPanelMinRows); else
// at::mm_out. Measured against MKL's sgemm at the layers' shapes (1 thread, this machine; GFLOP/s): the small
// language model's 105 against 96, the small batch's 111-114 against 97-102, the medium model's 102-107
// against 91-97 and its weight gradients (2600 x 650 over 700 rows) 95-105 against 64-74, the book's
// projection (64000 rows, K=32) 88 against 45 and weight gradients (K=64000) 102 against 57. Unchunked,
// K=2600 ran at 80.
template <typename T>
void matmul_into(const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc, int64_t M, int64_t N, int64_t K,
                 const at::TensorOptions& opt, bool accumulate = false) {
  if (M == 0 || N == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (gemm_detail::brgemm_whole_products() && K > 0) {
      if (gemm_detail::in_panels(M, N, K)) {
        const at::Tensor panels = new_buffer({K * N}, opt);
        copy_into_panels(b, ldb, WeightOp::kPlain, K, N, kWholePanelColumns, panels.data_ptr<float>());
        gemm_detail::brgemm_rows(a, lda, panels.data_ptr<float>(), 0, kWholePanelColumns, c, ldc, M, N, K,
                                 accumulate);
      } else {
        gemm_detail::brgemm_rows(a, lda, b, ldb, 0, c, ldc, M, N, K, accumulate);
      }
      return;
    }
  }
  const at::Tensor a_ = at::from_blob(const_cast<T*>(a), {M, K}, {lda, 1}, opt);
  const at::Tensor b_ = at::from_blob(const_cast<T*>(b), {K, N}, {ldb, 1}, opt);
  at::Tensor out = at::from_blob(c, {M, N}, {ldc, 1}, opt);
  if (accumulate) {
    at::addmm_out(out, out, a_, b_);
  } else {
    at::mm_out(out, a_, b_);
  }
}

// C (M x N, ldc) (+)= A (M x K, lda) @ W^T, W stored N x K (row stride ldw): a layer's input projection. In
// float on brgemm with W^T copied once, into panels where large (matmul_into), else whole (transpose.h).
inline void matmul_transposed_into(const float* a, int64_t lda, const float* w, int64_t ldw, float* c, int64_t ldc,
                                   int64_t M, int64_t N, int64_t K, const at::TensorOptions& opt,
                                   bool accumulate = false) {
  if (M == 0 || N == 0) return;
  const bool panels = gemm_detail::brgemm_whole_products() && K > 0 && gemm_detail::in_panels(M, N, K);
  const at::Tensor w_t = new_buffer({K * N}, opt);
  if (panels) {
    copy_into_panels(w, ldw, WeightOp::kTransposed, K, N, kWholePanelColumns, w_t.data_ptr<float>());
    gemm_detail::brgemm_rows(a, lda, w_t.data_ptr<float>(), 0, kWholePanelColumns, c, ldc, M, N, K, accumulate);
    return;
  }
  transpose_into(w, N, K, ldw, w_t.data_ptr<float>());
  matmul_into(a, lda, w_t.data_ptr<float>(), N, c, ldc, M, N, K, opt, accumulate);
}

}  // namespace seqtorch_cpu
