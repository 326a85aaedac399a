#pragma once
// RMSNorm over the last dimension (rows of length D):
//   r = 1 / sqrt(mean(x^2) + eps),  y = x * r * w
// Backward, with n = x * r and g = dy * w:
//   dx = r * (g - n * mean(g * n)),   dw += sum_rows dy * n
// Fused residual (a Llama block's h = x + attention(...) feeding ffn_norm): the forward takes
// x + residual as its input and stores it; the backward adds the residual stream's gradient to dx.
// Row sums accumulate in double for float inputs (one row at a time), so results do not depend on
// D's blocking; dw sums over fixed chunks of rows, then over the chunks in order. rstd[rows] is
// saved for backward.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ops/cpu/threads.hpp"

namespace titan::ops::cpu {

// With `residual` (and `h`), the residual add is fused in: h = x + residual is stored and then
// normalised, the row still in cache (the bits of an add followed by rmsnorm on h).
template <class T>
void rmsnorm_forward(const T* x, const T* w, T* y, T* rstd, std::int64_t rows, std::int64_t D, double eps,
                     const T* residual = nullptr, T* h = nullptr) {
  // Rows are independent: chunks of rows on the pool (backward sums dw over rows, so it stays serial).
  const std::int64_t rows_per_chunk = std::max<std::int64_t>(1, kElementwiseGrain / std::max<std::int64_t>(D, 1));
  parallel_chunks(rows, rows_per_chunk, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * D;
      if (residual) {
        T* hr = h + r * D;
        const T* rr = residual + r * D;
        for (std::int64_t i = 0; i < D; ++i) hr[i] = xr[i] + rr[i];
        xr = hr;
      }
      double ss = 0;
#pragma omp simd reduction(+ : ss)
      for (std::int64_t i = 0; i < D; ++i) ss += double(xr[i]) * double(xr[i]);
      const T rs = static_cast<T>(1.0 / std::sqrt(ss / double(D) + eps));
      rstd[r] = rs;
      T* yr = y + r * D;
      for (std::int64_t i = 0; i < D; ++i) yr[i] = xr[i] * rs * w[i];
    }
  });
}

// With `dx_add`, dx = dx_add + the norm's input gradient (the residual stream's gradient added in
// the same pass; a second loop over the row in cache, so the sum is rounded as a separate add).
template <class T>
void rmsnorm_backward(const T* dy, const T* x, const T* w, const T* rstd, T* dx, T* dw, std::int64_t rows,
                      std::int64_t D, const T* dx_add = nullptr) {
  // Chunks of rows on the CPU pool; each sums its rows' dw into its own partial, and the partials
  // are added to dw in chunk order. The chunks are fixed by rows and D, so the bits do not depend
  // on the thread count; at most 64 of them, so the partials stay at most 64 x D.
  const std::int64_t rows_per_chunk = std::max({std::int64_t(1), kElementwiseGrain / std::max<std::int64_t>(D, 1),
                                                (rows + 63) / 64});
  const std::int64_t chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  std::vector<T> partial(static_cast<size_t>(std::max<std::int64_t>(chunks, 0) * D), T(0));
  parallel_chunks(rows, rows_per_chunk, [&](std::int64_t r0, std::int64_t r1) {
    T* dwc = partial.data() + (r0 / rows_per_chunk) * D;
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * D;
      const T* dyr = dy + r * D;
      const T rs = rstd[r];
      double dot = 0;  // sum_i g_i * n_i
#pragma omp simd reduction(+ : dot)
      for (std::int64_t i = 0; i < D; ++i) dot += double(dyr[i]) * double(w[i]) * double(xr[i]) * double(rs);
      const T mean_dot = static_cast<T>(dot / double(D));
      T* dxr = dx + r * D;
      for (std::int64_t i = 0; i < D; ++i) {
        const T n = xr[i] * rs;
        dxr[i] = rs * (dyr[i] * w[i] - n * mean_dot);
        dwc[i] += dyr[i] * n;
      }
      if (dx_add) {
        const T* ar = dx_add + r * D;
        for (std::int64_t i = 0; i < D; ++i) dxr[i] += ar[i];
      }
    }
  });
  for (std::int64_t c = 0; c < chunks; ++c) {
    const T* dwc = partial.data() + c * D;
    for (std::int64_t i = 0; i < D; ++i) dw[i] += dwc[i];
  }
}

}  // namespace titan::ops::cpu
