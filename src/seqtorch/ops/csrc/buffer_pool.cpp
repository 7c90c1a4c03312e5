// A pool of large CPU buffers for the fused scan, reused instead of returned to the system.
//
// Why: a scan allocates buffers of the whole sequence's size (at the book's sizes, 8 to 32 MB each, about
// 100 MB per training step). glibc serves such sizes with mmap and gives them back with munmap when they
// are freed, so every step pays a page fault for each fresh 4 KiB page, about 5 ms per 32 MB here: more
// than the LSTM's gate math. A buffer taken from this pool returns to it when its last reference dies
// (the tensor's deleter), and the next scan of the same shape reuses it untouched by the kernel.
//
// Idle buffers are kept up to a cap (SEQTORCH_POOL_MB, default 1024 MiB); beyond it they are freed.

#include "buffer_pool.h"
#include "ops_namespace.h"

#include <torch/library.h>

#include <atomic>
#include <cstdlib>
#include <iterator>
#include <limits>
#include <map>
#include <mutex>
#include <string>

namespace seqtorch_cpu {
namespace {

constexpr size_t kAlignment = 64;       // a cache line, as c10's CPU allocator
constexpr size_t kGranule = 64 * 1024;  // sizes are rounded up to this, so near-equal requests share blocks

class BufferPool {
 public:
  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      // the most recently returned block of this size: the likeliest to be still in cache
      auto it = idle_.upper_bound(bytes);
      if (it != idle_.begin() && std::prev(it)->first == bytes) {
        --it;
        void* ptr = it->second;
        idle_.erase(it);
        idle_bytes_ -= bytes;
        return ptr;
      }
    }
    void* ptr = std::aligned_alloc(kAlignment, bytes);
    TORCH_CHECK(ptr != nullptr, "seqtorch buffer pool: out of memory allocating ", bytes, " bytes");
    return ptr;
  }

  void give_back(void* ptr, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (idle_bytes_ + bytes <= cap_) {
        idle_.emplace(bytes, ptr);
        idle_bytes_ += bytes;
        return;
      }
    }
    std::free(ptr);
  }

  size_t idle_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return idle_bytes_;
  }

 private:
  static size_t cap_from_env() {
    const char* value = std::getenv("SEQTORCH_POOL_MB");
    return (value == nullptr ? size_t(1024) : size_t(std::stoull(value))) << 20;
  }

  std::mutex mutex_;
  std::multimap<size_t, void*> idle_;  // size -> block
  size_t idle_bytes_ = 0;
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
  void* ptr = pool().take(bytes);
  return at::from_blob(
      ptr, size, [bytes](void* data) { pool().give_back(data, bytes); }, at::TensorOptions().dtype(dtype));
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

int64_t pool_idle_bytes() { return int64_t(pool().idle_bytes()); }

void set_poison_buffers(bool on) { poison.store(on); }

}  // namespace
}  // namespace seqtorch_cpu

// No tensor arguments, so catch-all kernels: they run wherever the op is called from.
TORCH_LIBRARY_FRAGMENT(SEQTORCH_OPS_NAMESPACE, m) {
  m.def("pooled_empty(int[] size, ScalarType dtype) -> Tensor", &seqtorch_cpu::pooled_empty);
  m.def("pool_idle_bytes() -> int", &seqtorch_cpu::pool_idle_bytes);
  // Tests turn this on: every buffer the C++ scans allocate then starts as NaN.
  m.def("set_poison_buffers(bool on) -> ()", &seqtorch_cpu::set_poison_buffers);
}
