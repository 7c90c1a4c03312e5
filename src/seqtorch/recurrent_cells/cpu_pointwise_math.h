// Elementwise functions of the cells generated from equations (seqtorch/recurrent_cells/pointwise/cpp_code.py)
// beyond cpu_math.h's (part of the C++ cell interface, cpu_cell.h): exp, log and log1p over the whole range of
// floats, NaN-propagating maximum and minimum, and relu and sign as torch computes them. Written without libm
// calls (but sqrt, which vectorizes), so that a generated row loop stays vectorized like the hand-written cells'.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cpu_math.h"

namespace seqtorch_cpu {

// exp(x) for every x: cpu_math.h's fast_exp is clamped at |x| <= kMaxArg (enough for sigmoid and tanh); above
// it the argument is shifted by 4 ln 2 into range and the result scaled by 16, and beyond the largest finite
// result it is inf, as torch's. Below -kMaxArg the result is 0 (torch gives a subnormal there).
// (Both selects feed one multiplier: written as a select of the result, GCC left a loop that also takes a
// log_ of it unvectorized.)
template <typename T>
inline T exp_(T x) {
  constexpr T kLogMax = std::is_same_v<T, float> ? T(88.72283905206835) : T(709.782712893384);
  const bool high = x > T(ExpConstants<T>::kMaxArg);
  const T scale = x > kLogMax ? std::numeric_limits<T>::infinity() : (high ? T(16) : T(1));
  return fast_exp(high ? x - T(4 * 0.6931471805599453) : x) * scale;
}

template <typename T>
struct LogConstants;

template <>
struct LogConstants<float> {
  using Bits = int32_t;
  static constexpr int kTerms = 5;  // 2 atanh(s) to s^9: truncation below 1e-9 for |s| <= 0.172
  static constexpr int kMantissa = 23;
  static constexpr Bits kBias = 127;
  static constexpr float kSmallest = 1.17549435e-38f;  // the smallest normal float
  static constexpr float kSubnormalScale = 16777216.0f;  // 2^24
  static constexpr int kSubnormalShift = 24;
};

template <>
struct LogConstants<double> {
  using Bits = int64_t;
  static constexpr int kTerms = 11;  // to s^21: truncation below 1e-17
  static constexpr int kMantissa = 52;
  static constexpr Bits kBias = 1023;
  static constexpr double kSmallest = 2.2250738585072014e-308;
  static constexpr double kSubnormalScale = 18014398509481984.0;  // 2^54
  static constexpr int kSubnormalShift = 54;
};

// 1 + s^2/3 + s^4/5 + ... by Horner's rule over u = s^2, unrolled at compile time.
template <typename T, int K, int TERMS>
inline T atanh_series(T u) {
  if constexpr (K == TERMS - 1) {
    return T(1.0 / (2 * K + 1));
  } else {
    return atanh_series<T, K + 1, TERMS>(u) * u + T(1.0 / (2 * K + 1));
  }
}

// log(x): x = m 2^e with m in [sqrt(1/2), sqrt(2)), log x = e ln 2 + 2 atanh(s), s = (m - 1) / (m + 1).
// NaN for x < 0 or NaN, -inf at 0, inf at inf, as torch's.
template <typename T>
inline T log_(T x) {
  using C = LogConstants<T>;
  using Bits = typename C::Bits;
  const bool subnormal = x < T(C::kSmallest);
  const T scaled = subnormal ? x * T(C::kSubnormalScale) : x;
  Bits bits;
  std::memcpy(&bits, &scaled, sizeof(T));
  const Bits exponent = ((bits >> C::kMantissa) & ((Bits(1) << (8 * sizeof(T) - 1 - C::kMantissa)) - 1)) - C::kBias;
  const Bits mantissa_bits = (bits & ((Bits(1) << C::kMantissa) - 1)) | (C::kBias << C::kMantissa);
  T m;
  std::memcpy(&m, &mantissa_bits, sizeof(T));  // in [1, 2)
  const bool upper = m > T(1.4142135623730951);
  m = upper ? m * T(0.5) : m;
  const T e = T(exponent) + (upper ? T(1) : T(0)) - (subnormal ? T(C::kSubnormalShift) : T(0));
  const T s = (m - T(1)) / (m + T(1));
  const T r = e * T(0.6931471805599453) + T(2) * s * atanh_series<T, 0, C::kTerms>(s * s);
  constexpr T kInf = std::numeric_limits<T>::infinity();
  return (x > T(0) && x < kInf) ? r : (x == T(0) ? -kInf : (x == kInf ? kInf : std::numeric_limits<T>::quiet_NaN()));
}

// log(1 + x), accurate for small x: log(u) * x / (u - 1) with u = 1 + x (Goldberg's correction).
template <typename T>
inline T log1p_(T x) {
  const T u = T(1) + x;
  const T l = log_(u);
  return (u == T(1) || x == std::numeric_limits<T>::infinity()) ? x : l * (x / (u - T(1)));
}

template <typename T>
inline T expm1_(T x) {
  return exp_(x) - T(1);
}

// torch.maximum / torch.minimum: NaN if either is NaN.
template <typename T>
inline T maximum_(T a, T b) {
  return (a > b || a != a) ? a : b;
}

template <typename T>
inline T minimum_(T a, T b) {
  return (a < b || a != a) ? a : b;
}

// torch.relu (clamp_min(x, 0)): NaN stays NaN.
template <typename T>
inline T relu_(T x) {
  return x < T(0) ? T(0) : x;
}

// torch.sign: -1, 0 or 1; 0 for NaN.
template <typename T>
inline T sign_(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
}

}  // namespace seqtorch_cpu
