#pragma once
// Rotary position embedding, TorchTitan/Llama layout: within each head, element pairs
// (x[2i], x[2i+1]) are one complex number rotated by angle pos * freq_i:
//   y[2i]   = x[2i] cos - x[2i+1] sin
//   y[2i+1] = x[2i] sin + x[2i+1] cos
// x is [B, S, H, D] contiguous; cos/sin tables are [S, D/2]. Backward is the inverse rotation
// (same formula with -sin), so `sign` = -1 computes dx from dy.
#include <algorithm>
#include <cstdint>

#include "ops/cpu/threads.hpp"

namespace titan::ops::cpu {

template <class T>
void rope_apply(const T* x, T* y, const float* cos_t, const float* sin_t, std::int64_t B, std::int64_t S,
                std::int64_t H, std::int64_t D, int sign) {
  const std::int64_t half = D / 2;
  // Token rows (b, s) are independent: chunks of them on the CPU pool, the same bits on any count.
  const std::int64_t rows_per_chunk = std::max<std::int64_t>(1, kElementwiseGrain / std::max<std::int64_t>(H * D, 1));
  parallel_chunks(B * S, rows_per_chunk, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t bs = r0; bs < r1; ++bs) {
      const std::int64_t s = bs % S;
      const float* c = cos_t + s * half;
      const float* sn = sin_t + s * half;
      for (std::int64_t h = 0; h < H; ++h) {
        const std::int64_t base = (bs * H + h) * D;
        for (std::int64_t i = 0; i < half; ++i) {
          const T x0 = x[base + 2 * i], x1 = x[base + 2 * i + 1];
          const T ci = static_cast<T>(c[i]), si = static_cast<T>(sign * sn[i]);
          y[base + 2 * i] = x0 * ci - x1 * si;
          y[base + 2 * i + 1] = x0 * si + x1 * ci;
        }
      }
    }
  });
}

}  // namespace titan::ops::cpu
