// Elementwise math of the C++ cell interface (cpu_cell.h; triton_math.py's counterpart): a vectorizable exp,
// the gate and cell activations, and their derivatives. Shared by every cell's cpu.h
// (seqtorch/recurrent_cells/*/cpu.h) and by the loops that choose the activations (seqtorch/ops/csrc).
//
// exp is computed by a branch-free Cody-Waite reduction and a Taylor polynomial (float: degree 7; double:
// degree 12) that the compiler vectorizes; sigmoid and tanh are written from it (libm's scalar expf/tanhf
// would make the loops slower than the Python ones they replace). Their errors over every float32 input,
// measured by benchmarks/math_accuracy.py, are in docs/benchmarks.md.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace seqtorch_cpu {

template <typename T>
struct ExpConstants;

template <>
struct ExpConstants<float> {
  using Bits = int32_t;
  static constexpr float kMaxArg = 88.0f;
  static constexpr float kShifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  static constexpr float kLn2Hi = 0.693145751953125f;
  static constexpr float kLn2Lo = 1.428606765330187045e-06f;
  static constexpr int kDegree = 7;
  static constexpr int kMantissa = 23;
  static constexpr Bits kBias = 127;
};

template <>
struct ExpConstants<double> {
  using Bits = int64_t;
  static constexpr double kMaxArg = 708.0;
  static constexpr double kShifter = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double kLn2Hi = 0.6931471803691238;
  static constexpr double kLn2Lo = 1.9082149292705877e-10;
  static constexpr int kDegree = 12;
  static constexpr int kMantissa = 52;
  static constexpr Bits kBias = 1023;
};

// a * b + c in one rounding where the CPU has FMA (the library is built with -ffp-contract=off, so the
// compiler fuses nothing on its own), else two.
template <typename T>
inline T fmadd(T a, T b, T c) {
#ifdef __FMA__
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// Horner's rule for sum_{K <= k <= DEGREE} r^(k - K) / k!, unrolled at compile time (K = 0: e^r).
template <typename T, int K, int DEGREE>
inline T taylor_exp(T r) {
  constexpr double kInvFactorial[13] = {1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040,
                                        1.0 / 40320, 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800,
                                        1.0 / 479001600};
  if constexpr (K == DEGREE) {
    return T(kInvFactorial[K]);
  } else {
    return fmadd(taylor_exp<T, K + 1, DEGREE>(r), r, T(kInvFactorial[K]));
  }
}

// exp(x) for |x| <= kMaxArg (clamped beyond: the callers only need sigmoid and tanh, which saturate).
template <typename T>
inline T fast_exp(T x) {
  using C = ExpConstants<T>;
  using Bits = typename C::Bits;
  x = x < -C::kMaxArg ? -C::kMaxArg : (x > C::kMaxArg ? C::kMaxArg : x);
  const T shifted = fmadd(x, T(1.4426950408889634), C::kShifter);  // round(x / ln 2) sits in the low bits
  const T n = shifted - C::kShifter;
  T r = fmadd(-n, T(C::kLn2Hi), x);  // exact: kLn2Hi's low bits are zero
  r = fmadd(-n, T(C::kLn2Lo), r);    // |r| <= ln(2) / 2
  const T p = taylor_exp<T, 0, C::kDegree>(r);
  Bits bits;
  std::memcpy(&bits, &shifted, sizeof(T));
  bits = (bits + C::kBias) << C::kMantissa;  // 2^n: the shifter's own bits fall off the top
  T scale;
  std::memcpy(&scale, &bits, sizeof(T));
  return p * scale;
}

template <typename T>
inline T sigmoid(T x) { return T(1) / (T(1) + fast_exp(-x)); }

// tanh(x) = 1 - 2 / (e^2x + 1): exact at both tails, 1 - |tanh| held to an absolute ulp near +-1 (which 1 - y^2,
// the backward's derivative, needs). Near 0 it keeps an absolute precision of ~1e-7, not a relative one:
// tanh(1e-8) comes out as 0 or ~1e-7. Forms that keep both (from expm1, or a blend of two) cost 12% of the
// LSTM's gate math (measured), and the float32 tolerance is absolute (tests/conftest.py's table).
template <typename T>
inline T tanh_(T x) { return T(1) - T(2) / (fast_exp(T(2) * x) + T(1)); }

// The gates' squashing functions (recurrent_activation), by number as the loops dispatch them (GATE_IDS in
// triton_math.py numbers them the same):
// 0 sigmoid, 1 Keras 2's hard sigmoid clip(0.2 x + 0.5, 0, 1), 2 torch's hardsigmoid clamp(x + 3, 0, 6) / 6.
enum Gate : int { kSigmoid = 0, kHardSigmoidKeras2 = 1, kHardsigmoid = 2 };

// torch's hardsigmoid_backward multiplies by the float constant 1.0f / 6.0f in every dtype.
constexpr float kHardsigmoidSlope = 1.0f / 6.0f;

// The elementwise functions of one scan, fixed at compile time: ACT the cell's main activation (relu or
// tanh), GATE the gates' function. Derivatives are those of the reference's autograd formulas; the hard
// sigmoids read the pre-activation (Keras 2's is a torch.clamp, whose gradient passes at the bounds;
// torch's hardsigmoid passes strictly inside -3 < x < 3).
template <bool RELU, int GATE>
struct Activations {
  static constexpr bool kNeedsPre = GATE != kSigmoid;

  template <typename T>
  static T act(T x) {
    if constexpr (RELU) {
      return x < T(0) ? T(0) : x;
    } else {
      return tanh_(x);
    }
  }

  template <typename T>
  static T act_grad(T y) {
    if constexpr (RELU) {
      return y > T(0) ? T(1) : T(0);
    } else {
      return T(1) - y * y;
    }
  }

  template <typename T>
  static T gate(T x) {
    if constexpr (GATE == kHardSigmoidKeras2) {
      const T z = T(0.2) * x + T(0.5);
      return z < T(0) ? T(0) : (z > T(1) ? T(1) : z);
    } else if constexpr (GATE == kHardsigmoid) {
      const T z = x + T(3);
      return (z < T(0) ? T(0) : (z > T(6) ? T(6) : z)) / T(6);
    } else {
      return sigmoid(x);
    }
  }

  template <typename T>
  static T gate_grad(T y, T pre) {
    if constexpr (GATE == kHardSigmoidKeras2) {
      const T z = T(0.2) * pre + T(0.5);
      return (z >= T(0) && z <= T(1)) ? T(0.2) : T(0);
    } else if constexpr (GATE == kHardsigmoid) {
      return (pre > T(-3) && pre < T(3)) ? T(kHardsigmoidSlope) : T(0);
    } else {
      return y * (T(1) - y);
    }
  }
};

}  // namespace seqtorch_cpu
