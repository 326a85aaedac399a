#pragma once
// Float8 quantization on the CPU (the reference; kernels/float8_cast.cu matches it bit for bit),
// torchao's semantics (DESIGN.md section 5), on row-major float32 x [R, C]. A scale group is the
// whole tensor, a row or a column (ops::ScaleAxis); `scale` holds one float per group.
//   amax   max|x| per group, NaN propagating (torch.amax), 0 for an empty group
//   scale  float32(float64(fmax) / max(float64(amax), 1e-12)), NaN kept; optionally 2^floor(log2)
//   cast   f8(float32(x) * scale): titan::f32_to_f8e4m3 / f32_to_f8e5m2 (saturating, RNE, NaN kept)
//   dequantize  float32(q) / scale
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/dtype.hpp"

namespace titan::ops::cpu {

enum class F8Group { tensor, row, column };

inline float absmax_step(float m, float v) {
  const float a = std::fabs(v);
  return (std::isnan(m) || std::isnan(a)) ? std::numeric_limits<float>::quiet_NaN() : (a > m ? a : m);
}

inline void float8_amax(const float* x, std::int64_t R, std::int64_t C, F8Group g, float* out) {
  if (g == F8Group::tensor) {
    float m = 0;
    for (std::int64_t i = 0; i < R * C; ++i) m = absmax_step(m, x[i]);
    out[0] = m;
  } else if (g == F8Group::row) {
    for (std::int64_t r = 0; r < R; ++r) {
      float m = 0;
      for (std::int64_t c = 0; c < C; ++c) m = absmax_step(m, x[r * C + c]);
      out[r] = m;
    }
  } else {
    std::fill(out, out + C, 0.0f);
    for (std::int64_t r = 0; r < R; ++r)
      for (std::int64_t c = 0; c < C; ++c) out[c] = absmax_step(out[c], x[r * C + c]);
  }
}

inline void float8_amax_to_scale(const float* amax, std::int64_t n, float fmax, double eps, bool pow2, float* scale) {
  for (std::int64_t i = 0; i < n; ++i) {
    const double clamped = std::isnan(amax[i]) ? amax[i] : std::max(static_cast<double>(amax[i]), eps);
    float v = static_cast<float>(static_cast<double>(fmax) / clamped);
    if (pow2) v = std::exp2(std::floor(std::log2(v)));  // float32 ops, as torch on a float32 tensor
    scale[i] = v;
  }
}

inline float group_scale(const float* scale, F8Group g, std::int64_t r, std::int64_t c) {
  return g == F8Group::tensor ? scale[0] : g == F8Group::row ? scale[r] : scale[c];
}

// out [R, C] and/or out_t [C, R] (either may be null). The transposed copy is written in 32 x 32
// tiles so that both the reads and the writes stay in cache.
inline void float8_cast(const float* x, std::int64_t R, std::int64_t C, DType f8, const float* scale, F8Group g,
                        std::uint8_t* out, std::uint8_t* out_t) {
  auto encode = f8 == DType::f8e4m3 ? f32_to_f8e4m3 : f32_to_f8e5m2;
  if (out)
    for (std::int64_t r = 0; r < R; ++r) {
      const float* xr = x + r * C;
      std::uint8_t* o = out + r * C;
      if (g == F8Group::column) {
        for (std::int64_t c = 0; c < C; ++c) o[c] = encode(xr[c] * scale[c]);
      } else {
        const float s = g == F8Group::row ? scale[r] : scale[0];
        for (std::int64_t c = 0; c < C; ++c) o[c] = encode(xr[c] * s);
      }
    }
  if (!out_t) return;
  constexpr std::int64_t kTile = 32;
  for (std::int64_t r0 = 0; r0 < R; r0 += kTile)
    for (std::int64_t c0 = 0; c0 < C; c0 += kTile) {
      const std::int64_t r1 = std::min(R, r0 + kTile), c1 = std::min(C, c0 + kTile);
      for (std::int64_t c = c0; c < c1; ++c)
        for (std::int64_t r = r0; r < r1; ++r)
          out_t[c * R + r] = out ? out[r * C + c] : encode(x[r * C + c] * group_scale(scale, g, r, c));
    }
}

// out [C, R] = the transpose of the float8 bytes in [R, C]. Blocked in 64 x 64 tiles: a tile's 64
// source rows and 64 destination rows (4 KiB each way) stay in L1 while it is copied, so neither
// the reads nor the strided writes go to memory once per byte.
inline void float8_transpose(const std::uint8_t* in, std::int64_t R, std::int64_t C, std::uint8_t* out) {
  constexpr std::int64_t kBlock = 64;
  for (std::int64_t r0 = 0; r0 < R; r0 += kBlock)
    for (std::int64_t c0 = 0; c0 < C; c0 += kBlock) {
      const std::int64_t r1 = std::min(R, r0 + kBlock), c1 = std::min(C, c0 + kBlock);
      for (std::int64_t c = c0; c < c1; ++c) {
        std::uint8_t* o = out + c * R;
        for (std::int64_t r = r0; r < r1; ++r) o[r] = in[r * C + c];
      }
    }
}

// A 256-entry table holds every float8 value, so each element is one load and one division.
inline void float8_dequantize(const std::uint8_t* q, std::int64_t R, std::int64_t C, DType f8, const float* scale,
                              F8Group g, float* out) {
  auto decode = f8 == DType::f8e4m3 ? f8e4m3_to_f32 : f8e5m2_to_f32;
  float value[256];
  for (int b = 0; b < 256; ++b) value[b] = decode(static_cast<std::uint8_t>(b));
  for (std::int64_t r = 0; r < R; ++r) {
    const std::uint8_t* qr = q + r * C;
    float* o = out + r * C;
    if (g == F8Group::column) {
      for (std::int64_t c = 0; c < C; ++c) o[c] = value[qr[c]] / scale[c];
    } else {
      const float s = g == F8Group::row ? scale[r] : scale[0];
      for (std::int64_t c = 0; c < C; ++c) o[c] = value[qr[c]] / s;
    }
  }
}

}  // namespace titan::ops::cpu
