// A pool of large CPU buffers for the fused scans, reused instead of returned to the system.
//
// Why: a scan allocates buffers of the whole sequence's size (at the book's sizes, 8 to 32 MB each, about
// 100 MB per training step). glibc serves such sizes with mmap and gives them back with munmap when they
// are freed, so every step pays a page fault for each fresh 4 KiB page, about 5 ms per 32 MB here: more
// than the LSTM's gate math. A buffer taken from this pool returns to it when its last reference dies
// (the tensor's deleter), and the next scan of the same shape reuses it untouched by the kernel.
//
// What it may hold, so that a drop-in does not grow a program's memory (seqtorch issue 22: a cache of one
// block per size held twice a sentiment model's memory when every batch had another length):
// * a request takes the smallest idle block that fits and is at most 1/16 larger (lengths that differ a
//   little share blocks), the most recently returned of that size;
// * a request that no idle block serves means the shapes changed (another sequence length, batch or layer
//   size): every idle block is freed before the new one is allocated. A loop over one shape (a training
//   loop over fixed-length batches) reuses its blocks step after step; one whose shapes keep changing
//   holds no idle memory beyond what the current step gave back, so its peak is what it would be without
//   the pool. The pool never holds more than the most it has had in use at once (its high-water mark);
// * idle bytes are capped by SEQTORCH_POOL_MB (default 1024 MiB) besides; seqtorch.empty_cache() frees
//   every idle block (and starts the high-water mark again from what is in use).

#include "buffer_pool.h"
#include "ops_namespace.h"

#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

namespace seqtorch_cpu {
namespace {

constexpr size_t kAlignment = 64;       // a cache line, as c10's CPU allocator
constexpr size_t kGranule = 64 * 1024;  // sizes are rounded up to this, so near-equal requests share blocks
constexpr size_t kSlackDivisor = 16;    // kSlack: an idle block serves requests down to 16/17 of its size

class BufferPool {
 public:
  struct Block {
    void* ptr;
    size_t bytes;
  };

  Block take(size_t bytes) {
    std::vector<void*> to_free;
    Block block{nullptr, 0};
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const size_t limit = bytes + bytes / kSlackDivisor;
      size_t best = idle_.size();
      for (size_t i = 0; i < idle_.size(); ++i) {  // few blocks: a scan of them is cheap
        const size_t size = idle_[i].block.bytes;
        if (size < bytes || size > limit) continue;
        if (best == idle_.size() || size < idle_[best].block.bytes ||
            (size == idle_[best].block.bytes && idle_[i].returned > idle_[best].returned)) {
          best = i;
        }
      }
      if (best < idle_.size()) {
        block = idle_[best].block;
        idle_.erase(idle_.begin() + std::ptrdiff_t(best));
        idle_bytes_ -= block.bytes;
      } else {  // a miss: the shapes changed, the idle blocks go
        block.bytes = bytes;
        for (const Idle& i : idle_) to_free.push_back(i.block.ptr);
        idle_.clear();
        idle_bytes_ = 0;
      }
      in_use_ += block.bytes;
      high_water_ = std::max(high_water_, in_use_);
    }
    for (void* ptr : to_free) std::free(ptr);
    if (block.ptr == nullptr) {
      block.ptr = std::aligned_alloc(kAlignment, block.bytes);
      if (block.ptr == nullptr) {
        std::lock_guard<std::mutex> lock(mutex_);
        in_use_ -= block.bytes;
      }
      TORCH_CHECK(block.ptr != nullptr, "seqtorch buffer pool: out of memory allocating ", block.bytes, " bytes");
    }
    return block;
  }

  void give_back(Block block) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      in_use_ -= block.bytes;
      if (idle_bytes_ + block.bytes <= cap_) {
        idle_.push_back(Idle{block, ++clock_});
        idle_bytes_ += block.bytes;
        return;
      }
    }
    std::free(block.ptr);
  }

  // Frees every idle block; the high-water mark starts again from the memory in use.
  void release_idle() {
    std::vector<Idle> idle;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      idle.swap(idle_);
      idle_bytes_ = 0;
      high_water_ = in_use_;
    }
    for (const Idle& i : idle) std::free(i.block.ptr);
  }

  // idle bytes, idle blocks, bytes in use, the high-water mark of bytes in use, the idle cap
  std::vector<int64_t> stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {int64_t(idle_bytes_), int64_t(idle_.size()), int64_t(in_use_), int64_t(high_water_), int64_t(cap_)};
  }

 private:
  struct Idle {
    Block block;
    uint64_t returned;  // when it came back (a counter), for "most recently" and "least recently"
  };

  static size_t cap_from_env() {
    const char* value = std::getenv("SEQTORCH_POOL_MB");
    return (value == nullptr ? size_t(1024) : size_t(std::stoull(value))) << 20;
  }

  std::mutex mutex_;
  std::vector<Idle> idle_;
  size_t idle_bytes_ = 0;
  size_t in_use_ = 0;      // bytes of the pool's blocks that tensors hold
  size_t high_water_ = 0;  // the most bytes in use at once
  uint64_t clock_ = 0;
  size_t cap_ = cap_from_env();
};

// Never destroyed: deleters of tensors that outlive static destruction still find it.
BufferPool& pool() {
  static BufferPool* instance = new BufferPool();
  return *instance;
}

std::atomic<bool> poison{false};

}  // namespace

at::Tensor pooled_empty(at::IntArrayRef size, at::ScalarType dtype) {
  int64_t numel = 1;
  for (int64_t dim : size) {
    TORCH_CHECK(dim >= 0, "seqtorch buffer pool: negative size ", size);
    numel *= dim;
  }
  const size_t wanted = size_t(numel) * at::elementSize(dtype);
  const size_t bytes = std::max(kGranule, (wanted + kGranule - 1) / kGranule * kGranule);
  const BufferPool::Block block = pool().take(bytes);
  return at::from_blob(
      block.ptr, size, [block](void*) { pool().give_back(block); }, at::TensorOptions().dtype(dtype));
}

at::Tensor new_buffer(at::IntArrayRef size, const at::TensorOptions& options) {
  int64_t numel = 1;
  for (int64_t dim : size) numel *= dim;
  const size_t bytes = size_t(numel) * options.dtype().itemsize();
  at::Tensor buffer = bytes >= kPoolMinBytes ? pooled_empty(size, options.dtype().toScalarType())
                                             : at::empty(size, options);
  if (poison.load() && buffer.is_floating_point()) buffer.fill_(std::numeric_limits<double>::quiet_NaN());
  return buffer;
}

namespace {

int64_t pool_idle_bytes() { return pool().stats()[0]; }

std::vector<int64_t> pool_stats() { return pool().stats(); }

void pool_release_idle() { pool().release_idle(); }

void set_poison_buffers(bool on) { poison.store(on); }

}  // namespace
}  // namespace seqtorch_cpu

// No tensor arguments, so catch-all kernels: they run wherever the op is called from.
TORCH_LIBRARY_FRAGMENT(SEQTORCH_OPS_NAMESPACE, m) {
  m.def("pooled_empty(int[] size, ScalarType dtype) -> Tensor", &seqtorch_cpu::pooled_empty);
  m.def("pool_idle_bytes() -> int", &seqtorch_cpu::pool_idle_bytes);
  // [idle bytes, idle blocks, bytes in use, high-water mark of bytes in use, idle cap] (seqtorch.ops.buffers)
  m.def("pool_stats() -> int[]", &seqtorch_cpu::pool_stats);
  m.def("pool_release_idle() -> ()", &seqtorch_cpu::pool_release_idle);
  // Tests turn this on: every buffer the C++ scans allocate then starts as NaN.
  m.def("set_poison_buffers(bool on) -> ()", &seqtorch_cpu::set_poison_buffers);
}
