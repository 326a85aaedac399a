#pragma once
// exp for the float32 CPU kernels. Range reduction: x = n ln2 + r with |r| <= ln2/2 (Cody-Waite
// split of ln2), e^r by a degree-6 Taylor polynomial in Horner form, 2^n by building the exponent
// bits. Relative error below 2e-7 (about 2 ulp) on [-87, 88]; inputs are clamped to that range.
// The row helpers (x[i] = exp(x[i] - shift), optionally summed) are the softmax / cross-entropy
// hot loops: 8 lanes at a time with AVX2+FMA when the build targets it (16 where the CPU has
// AVX-512, with the same bits), else the scalar formula.
// The float64 reference path uses std::exp.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_ps(), a self-initialised variable that
// -Wmaybe-uninitialized reports wherever they are inlined; the warning's location is the header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
// AVX-512 code inside an AVX2 build: functions with this attribute, called where use_avx512()
// (ops/cpu/cpu_isa.hpp) says the CPU and OS run it.
#define TITAN_AVX512_TARGET __attribute__((target("avx512f")))
#include "ops/cpu/cpu_isa.hpp"
#endif

namespace titan::ops::cpu {

inline float fast_expf(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  // n = round(x / ln2) with the 1.5 * 2^23 trick (round to nearest in the FPU).
  const float shifter = 12582912.0f;
  const float n = (x * 1.44269504088896341f + shifter) - shifter;
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;
  return p * std::bit_cast<float>(bits);
}

#if defined(__AVX2__) && defined(__FMA__)
inline __m256 fast_expf8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860682030941723212e-6f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}
#endif

#if defined(__AVX2__) && defined(__FMA__)
// fast_expf8 on 16 lanes, operation for operation (so each lane gets the same bits).
TITAN_AVX512_TARGET inline __m512 fast_expf16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723212e-6f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

// The 16-lane steps of exp_shift_sum: returns how many elements it did (a multiple of 16). The
// 8 float accumulators take each half of a 16-lane result in turn, as two AVX2 steps would.
TITAN_AVX512_TARGET inline std::int64_t exp_shift_sum_512(float* x, std::int64_t n, float shift, __m256& acc) {
  std::int64_t i = 0;
  const __m512 s = _mm512_set1_ps(shift);
  for (; i + 16 <= n; i += 16) {
    const __m512 e = fast_expf16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
    _mm512_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, _mm512_castps512_ps256(e));
    acc = _mm256_add_ps(acc, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)));
  }
  return i;
}

TITAN_AVX512_TARGET inline std::int64_t exp_shift_scale_512(const float* x, float* out, std::int64_t n, float shift,
                                                            float scale) {
  std::int64_t i = 0;
  const __m512 s = _mm512_set1_ps(shift), k = _mm512_set1_ps(scale);
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_mul_ps(k, fast_expf16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s))));
  return i;
}
#endif

// x[i] = exp(x[i] - shift) for i < n; returns the sum of the results (accumulated in double).
inline double exp_shift_sum(float* x, std::int64_t n, float shift) {
  std::int64_t i = 0;
  double total = 0;
#if defined(__AVX2__) && defined(__FMA__)
  __m256 acc = _mm256_setzero_ps();
  const __m256 s = _mm256_set1_ps(shift);
  if (use_avx512()) i = exp_shift_sum_512(x, n, shift, acc);
  for (; i + 8 <= n; i += 8) {
    const __m256 e = fast_expf8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  for (float l : lanes) total += l;
#endif
  for (; i < n; ++i) {
    x[i] = fast_expf(x[i] - shift);
    total += x[i];
  }
  return total;
}
inline double exp_shift_sum(double* x, std::int64_t n, double shift) {
  double total = 0;
  for (std::int64_t i = 0; i < n; ++i) total += (x[i] = std::exp(x[i] - shift));
  return total;
}

// out[i] = scale * exp(x[i] - shift).
inline void exp_shift_scale(const float* x, float* out, std::int64_t n, float shift, float scale) {
  std::int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
  const __m256 s = _mm256_set1_ps(shift), k = _mm256_set1_ps(scale);
  if (use_avx512()) i = exp_shift_scale_512(x, out, n, shift, scale);
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(k, fast_expf8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s))));
#endif
  for (; i < n; ++i) out[i] = scale * fast_expf(x[i] - shift);
}
inline void exp_shift_scale(const double* x, double* out, std::int64_t n, double shift, double scale) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = scale * std::exp(x[i] - shift);
}

// max of x[0 .. n), n >= 1. GCC leaves an `omp simd reduction(max)` over std::max scalar (one
// dependent vmaxss per element); 4 independent 8-lane maxima instead.
inline float row_max(const float* x, std::int64_t n) {
  std::int64_t i = 0;
  float mx = x[0];
#if defined(__AVX2__) && defined(__FMA__)
  if (n >= 32) {
    __m256 m0 = _mm256_loadu_ps(x), m1 = m0, m2 = m0, m3 = m0;
    for (; i + 32 <= n; i += 32) {
      m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
      m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
      m2 = _mm256_max_ps(m2, _mm256_loadu_ps(x + i + 16));
      m3 = _mm256_max_ps(m3, _mm256_loadu_ps(x + i + 24));
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
    for (float l : lanes) mx = std::max(mx, l);
  }
#endif
  for (; i < n; ++i) mx = std::max(mx, x[i]);
  return mx;
}
inline double row_max(const double* x, std::int64_t n) {
  double mx = x[0];
  for (std::int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  return mx;
}

template <class T>
inline T exp_kernel(T x) {
  if constexpr (sizeof(T) == 4) return fast_expf(x);
  else return std::exp(x);
}

// sum of f(x[i]) in double over 8 interleaved accumulators (lane j takes i = j mod 8), combined
// pairwise at the end: a fixed order, so the result is the same on every run and thread count,
// and the loop vectorizes (one accumulator would serialise on the add latency).
template <class T, class F>
inline double sum_in_lanes(const T* x, std::int64_t n, F f) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += f(double(x[i + j]));
  for (int j = 0; i < n; ++i, ++j) acc[j] += f(double(x[i]));
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

}  // namespace titan::ops::cpu
