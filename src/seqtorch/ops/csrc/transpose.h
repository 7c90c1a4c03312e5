// A weight's transpose, copied once per scan for the forward's brgemm products (gemm.h: brgemm reads its B
// K x N row-major, and a forward multiplies by W^T with W stored N x K).
//
// Why not W.t().contiguous(): ATen's transposing copy goes through a scratch tile and a memcpy per row,
// 85 us for the small language model's 800 x 200 W (1 thread, this machine), per weight and per scan: 9%
// of that model's inference. Sixteen rows by sixteen columns transposed in AVX-512 registers take 17 us for
// it (2600 x 650: 525 us against 1520 us, bound by memory there). Without AVX-512, a 16 x 16 tile at a time
// in plain loops (51 us).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace seqtorch_cpu {
namespace transpose_detail {

constexpr int64_t kTile = 16;

// dst[c * ldd + r] = src[r * ld + c] for r in [r0, r1), c in [c0, c1)
template <typename T>
inline void transpose_block(const T* src, int64_t ld, T* dst, int64_t ldd, int64_t r0, int64_t r1, int64_t c0,
                            int64_t c1) {
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t r = r0; r < r1; ++r) dst[c * ldd + r] = src[r * ld + c];
  }
}

#ifdef __AVX512F__
// One 16 x 16 float tile: src's 16 rows (stride ld) become dst's 16 columns (dst's row stride ldd). Pairs
// of rows interleave by element, then by pairs, then by 128-bit lanes twice (the usual four rounds).
inline void transpose_tile16(const float* src, int64_t ld, float* dst, int64_t ldd) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ld);
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
    t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);
    t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
    r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xdd);
  }
  for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * ldd, r[i]);
}
#endif

}  // namespace transpose_detail

// dst (cols x rows, contiguous) = src^T, src rows x cols with row stride ld.
template <typename T>
void transpose_into(const T* src, int64_t rows, int64_t cols, int64_t ld, T* dst) {
  using transpose_detail::kTile;
  for (int64_t r0 = 0; r0 < rows; r0 += kTile) {
    const int64_t r1 = std::min(rows, r0 + kTile);
    int64_t c0 = 0;
#ifdef __AVX512F__
    if constexpr (std::is_same_v<T, float>) {
      if (r1 - r0 == kTile) {
        for (; c0 + kTile <= cols; c0 += kTile) {
          transpose_detail::transpose_tile16(src + r0 * ld + c0, ld, dst + c0 * rows + r0, rows);
        }
      }
    }
#endif
    for (; c0 < cols; c0 += kTile) {
      transpose_detail::transpose_block(src, ld, dst, rows, r0, r1, c0, std::min(cols, c0 + kTile));
    }
  }
}

}  // namespace seqtorch_cpu
