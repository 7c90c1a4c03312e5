// A barrier between the calls of one at::parallel_for, for a loop whose every step needs all threads' results
// of the step before (the unit blocks of scan.cpp: each thread writes its units of h, and every thread's next
// product reads all of h). A fork-join per step costs the team's wake-up and leaves the threads idle while
// the caller runs the serial parts; one parallel region over all steps, with this barrier between them,
// does not.
//
// Only where the calls run at once: OpenMP's at::parallel_for gives each thread of its team one call (ATen's
// ParallelOpenMP.h), and the team runs concurrently. ATen's native thread pool may queue a call behind
// another, which would wait here forever: the callers check kConcurrentCalls.
#pragma once

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>
#include <thread>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace seqtorch_cpu {

constexpr bool kConcurrentCalls = AT_PARALLEL_OPENMP;

class SpinBarrier {
 public:
  // total: the work items of the parallel_for (its range); each call arrives with the items it runs, so the
  // barrier opens whatever number of threads the team has and however the range was divided among them.
  explicit SpinBarrier(int64_t total) : total_(total) {}

  void arrive_and_wait(int64_t items) {
    const int64_t phase = phase_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(items, std::memory_order_acq_rel) + items == total_) {
      arrived_.store(0, std::memory_order_relaxed);
      phase_.store(phase + 1, std::memory_order_release);  // publishes the reset with the new phase
      return;
    }
    for (int64_t spins = 0; phase_.load(std::memory_order_acquire) == phase; ++spins) {
      // a short wait spins (a step is tens of microseconds); a long one (a thread descheduled on a busy
      // machine) gives the core back
      if (spins < kSpinsBeforeYield) {
#if defined(__x86_64__) || defined(_M_X64)
        _mm_pause();
#endif
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  static constexpr int64_t kSpinsBeforeYield = 1 << 14;
  std::atomic<int64_t> arrived_{0}, phase_{0};
  const int64_t total_;
};

}  // namespace seqtorch_cpu
