// The C++ loops' exp, sigmoid and tanh (seqtorch/recurrent_cells/cpu_math.h) against libm in double, over
// every float32 in [-kRange, kRange] (run by math_accuracy.py, compiled with the library's own flags, so the
// compiler vectorizes and contracts exactly as in the library). Prints one line per function: the largest
// error in float32 ulps of the exact result where that result is at least the function's `floor` in
// magnitude (exp and sigmoid: FLT_MIN, below which they flush towards 0; tanh: 1/2, below which it keeps an
// absolute precision, not a relative one: cpu_math.h says why), the input where it peaks, and the largest
// absolute error over all inputs (sigmoid and tanh: their values are at most 1).
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "cpu_math.h"

namespace {

constexpr float kRange = 90.0f;  // past it every function has saturated (exp is clamped at 88)
constexpr int64_t kBlock = 1 << 16;

// The distance from x to the exact value y (a normal float) in units of the float32 spacing at y.
double ulps(float x, double y) {
  const double spacing = std::ldexp(1.0, std::ilogb(y) - 23);
  return std::abs(double(x) - y) / spacing;
}

struct Worst {
  const char* name;
  double floor;  // the smallest |exact value| the ulp error counts
  double ulp = 0, abs = 0;
  float at = 0;
  void see(float x, float got, double want) {
    const double a = std::abs(double(got) - want);
    if (a > abs) abs = a;
    if (std::abs(want) < floor) return;
    const double u = ulps(got, want);
    if (u > ulp) ulp = u, at = x;
  }
};

// The functions over a block, as loops the compiler vectorizes (the library's loops are written the same way).
void eval(const float* __restrict x, float* __restrict e, float* __restrict s, float* __restrict t, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    e[k] = seqtorch_cpu::fast_exp(std::fmin(x[k], 88.0f));
    s[k] = seqtorch_cpu::sigmoid(x[k]);
    t[k] = seqtorch_cpu::tanh_(x[k]);
  }
}

}  // namespace

// argv[1], optional: a stride, to take every stride-th float32 only (a quick check), 1 by default.
int main(int argc, char** argv) {
  const uint32_t stride = argc > 1 ? uint32_t(std::strtoul(argv[1], nullptr, 10)) : 1u;
  Worst exp_w{"exp (x <= 88)", FLT_MIN}, sig_w{"sigmoid", FLT_MIN}, tanh_w{"tanh", 0.5};
  std::vector<float> x(kBlock), e(kBlock), s(kBlock), t(kBlock);
  int64_t count = 0;
  // every float32 from -kRange up to kRange, in the order of their bit patterns: negatives, then positives
  for (int sign = 0; sign < 2; ++sign) {
    uint32_t bits = 0;
    for (bool done = false; !done;) {
      int64_t n = 0;
      for (; n < kBlock; ++n, bits += stride) {
        float v;
        std::memcpy(&v, &bits, 4);
        if (!(v <= kRange)) {
          done = true;
          break;
        }
        x[n] = sign ? -v : v;
      }
      eval(x.data(), e.data(), s.data(), t.data(), n);
      for (int64_t k = 0; k < n; ++k) {
        const double xd = x[k];
        if (xd <= 88.0) exp_w.see(x[k], e[k], std::exp(xd));
        sig_w.see(x[k], s[k], 1.0 / (1.0 + std::exp(-xd)));
        tanh_w.see(x[k], t[k], std::tanh(xd));
      }
      count += n;
    }
  }
  std::printf("inputs: %lld float32 values in [-%g, %g]\n", static_cast<long long>(count), kRange, kRange);
  for (const Worst* w : {&exp_w, &sig_w, &tanh_w}) {
    std::printf("%-14s max %.2f ulp where |value| >= %.3g (at x = %.9g)", w->name, w->ulp, w->floor, w->at);
    if (w != &exp_w) std::printf(", max abs error %.3g", w->abs);
    std::printf("\n");
  }
  return 0;
}
