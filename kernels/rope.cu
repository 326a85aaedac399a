// Rotary position embedding (launcher in rope.hpp), the pairs convention of src/ops/cpu/rope.hpp:
// within each head, (x[2i], x[2i+1]) is one complex number rotated by the table's angle:
//   y[2i]   = x[2i] * cos[s, i] - x[2i+1] * sign * sin[s, i]
//   y[2i+1] = x[2i] * sign * sin[s, i] + x[2i+1] * cos[s, i]
// sign = -1 is the inverse rotation, i.e. the backward (dx from dy).
//
// Layout: x, y [B, S, H, D] contiguous (f32 or bf16), cos/sin f32 [S_table, D/2] (row s used for
// sequence position s; S_table >= S). Pair p of the flattened tensor (p < B*S*H*D/2) sits at
// elements 2p, 2p+1, with i = p % (D/2) and s = (p / (D/2) / H) % S. One thread per pair
// (grid-stride), the pair loaded and stored as one 2-element access when x and y are aligned to
// 2 * sizeof(T); f32 math, one rounding on store. Each thread reads its pair before writing it,
// so y may alias x. 32-bit index math when the pair count fits.
#include <cstring>

#include "common.cuh"
#include "rope.hpp"

namespace titan::cuda {
namespace {

template <class T>
struct Pair;
template <> struct Pair<float> { using raw = uint2; };
template <> struct Pair<__nv_bfloat16> { using raw = unsigned int; };

template <class T, bool PAIRED, class I>
__global__ void rope_kernel(const T* x, T* y, const float* __restrict__ cos_t, const float* __restrict__ sin_t,
                            I pairs, I half, I H, I S, float sign) {
  const I stride = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
  for (I p = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); p < pairs;
       p += stride) {
    const I row = p / half;
    const I i = p - row * half;
    const I s = (row / H) % S;
    const float c = cos_t[static_cast<std::int64_t>(s) * half + i];
    const float sn = sign * sin_t[static_cast<std::int64_t>(s) * half + i];
    const std::int64_t e = 2 * static_cast<std::int64_t>(p);
    float x0, x1;
    if constexpr (PAIRED) {
      const typename Pair<T>::raw raw = *reinterpret_cast<const typename Pair<T>::raw*>(x + e);
      T v[2];
      memcpy(v, &raw, sizeof raw);
      x0 = to_f32(v[0]);
      x1 = to_f32(v[1]);
    } else {
      x0 = to_f32(x[e]);
      x1 = to_f32(x[e + 1]);
    }
    const float y0 = x0 * c - x1 * sn;
    const float y1 = x0 * sn + x1 * c;
    if constexpr (PAIRED) {
      T v[2] = {from_f32<T>(y0), from_f32<T>(y1)};
      typename Pair<T>::raw raw;
      memcpy(&raw, v, sizeof raw);
      *reinterpret_cast<typename Pair<T>::raw*>(y + e) = raw;
    } else {
      y[e] = from_f32<T>(y0);
      y[e + 1] = from_f32<T>(y1);
    }
  }
}

template <class T, bool PAIRED>
void launch(const T* x, T* y, const float* c, const float* s, std::int64_t pairs, std::int64_t half, std::int64_t H,
            std::int64_t S, float sign) {
  constexpr int threads = 256;
  const unsigned grid = grid_for(pairs, threads);
  if (pairs <= 0x7fffffffLL)
    rope_kernel<T, PAIRED, unsigned><<<grid, threads, 0, compute_stream()>>>(
        x, y, c, s, static_cast<unsigned>(pairs), static_cast<unsigned>(half), static_cast<unsigned>(H),
        static_cast<unsigned>(S), sign);
  else
    rope_kernel<T, PAIRED, std::int64_t><<<grid, threads, 0, compute_stream()>>>(x, y, c, s, pairs, half, H, S, sign);
  TITAN_CUDA_LAUNCH_CHECK();
}

}  // namespace

void rope_apply(const void* x, void* y, const float* cos_table, const float* sin_table, std::int64_t B, std::int64_t S,
                std::int64_t H, std::int64_t D, int sign, DType dtype) {
  if (B < 0 || S < 0 || H < 0 || D < 0) throw_usage_error("rope_apply: negative size");
  if (D % 2 != 0) throw_usage_error("rope_apply: head dim D must be even, got " + std::to_string(D));
  if (sign != 1 && sign != -1) throw_usage_error("rope_apply: sign must be +1 or -1");
  const std::int64_t pairs = B * S * H * (D / 2);
  if (pairs == 0) return;
  dispatch_float(dtype, "rope_apply", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x);
    T* yp = static_cast<T*>(y);
    const std::uintptr_t mask = 2 * sizeof(T) - 1;
    const bool paired = ((reinterpret_cast<std::uintptr_t>(x) | reinterpret_cast<std::uintptr_t>(y)) & mask) == 0;
    if (paired) launch<T, true>(xp, yp, cos_table, sin_table, pairs, D / 2, H, S, static_cast<float>(sign));
    else launch<T, false>(xp, yp, cos_table, sin_table, pairs, D / 2, H, S, static_cast<float>(sign));
  });
}

}  // namespace titan::cuda
