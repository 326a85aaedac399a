#pragma once
// Causal scaled-dot-product attention with grouped-query heads on the CPU.
//
// Layout: q [B, S, H, D], k and v [B, S, KV, D], out [B, S, H, D]; query head h reads kv head
// h / (H / KV) (TorchTitan's repeat_kv). For each (b, h):
//   P = softmax(scale * Q K^T + causal mask),  O = P V,  lse_i = log sum_{j<=i} exp(scale q_i.k_j)
// Work goes in blocks of kBlock query rows: rows [i0, i1) only ever see keys [0, i1), so the
// masked upper triangle is (almost) never computed, and a block's scores (kBlock x i1) stay in
// cache. Only lse is saved for backward, which recomputes P block by block (flash attention):
//   dV += P^T dO,  dP = dO V^T,  dS = P * (dP - rowsum(dO * O)),  dQ = scale dS K,  dK += scale dS^T Q
// GEMMs go through BLAS with row strides H*D / KV*D, so no head is copied out. Row reductions
// are `omp simd` loops: vectorized, in a fixed (build-dependent, run-independent) order.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ops/cpu/blas.hpp"
#include "ops/cpu/fast_math.hpp"

namespace titan::ops::cpu {

constexpr std::int64_t kAttentionBlock = 64;

template <class T>
void attention_forward(const T* q, const T* k, const T* v, T* out, float* lse, std::int64_t B, std::int64_t S,
                       std::int64_t H, std::int64_t KV, std::int64_t D) {
  const T scale = static_cast<T>(1.0 / std::sqrt(double(D)));
  const std::int64_t group = H / KV;
  const int ldq = int(H * D), ldk = int(KV * D);
  std::vector<T> scores(static_cast<size_t>(kAttentionBlock * S));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h) {
      const std::int64_t g = h / group;
      const T* qh = q + (b * S * H + h) * D;
      const T* kg = k + (b * S * KV + g) * D;
      const T* vg = v + (b * S * KV + g) * D;
      T* oh = out + (b * S * H + h) * D;
      float* lse_h = lse + (b * H + h) * S;
      for (std::int64_t i0 = 0; i0 < S; i0 += kAttentionBlock) {
        const std::int64_t i1 = std::min(S, i0 + kAttentionBlock), n = i1 - i0;
        gemm(false, true, int(n), int(i1), int(D), scale, qh + i0 * ldq, ldq, kg, ldk, T(0), scores.data(), int(i1));
        for (std::int64_t r = 0; r < n; ++r) {
          T* row = scores.data() + r * i1;
          const std::int64_t last = i0 + r;  // keys 0..last are visible
          T mx = row[0];
#pragma omp simd reduction(max : mx)
          for (std::int64_t j = 1; j <= last; ++j) mx = std::max(mx, row[j]);
          const double sum = exp_shift_sum(row, last + 1, mx);
          const T inv = static_cast<T>(1.0 / sum);
#pragma omp simd
          for (std::int64_t j = 0; j <= last; ++j) row[j] *= inv;
          std::fill(row + last + 1, row + i1, T(0));
          lse_h[i0 + r] = static_cast<float>(double(mx) + std::log(sum));
        }
        gemm(false, false, int(n), int(D), int(i1), T(1), scores.data(), int(i1), vg, ldk, T(0), oh + i0 * ldq, ldq);
      }
    }
}

// dq, dk and dv are overwritten (a kv head's gradients are summed over its query group).
template <class T>
void attention_backward(const T* dout, const T* q, const T* k, const T* v, const T* out, const float* lse, T* dq,
                        T* dk, T* dv, std::int64_t B, std::int64_t S, std::int64_t H, std::int64_t KV, std::int64_t D) {
  const T scale = static_cast<T>(1.0 / std::sqrt(double(D)));
  const std::int64_t group = H / KV;
  const int ldq = int(H * D), ldk = int(KV * D);
  std::fill(dk, dk + B * S * KV * D, T(0));
  std::fill(dv, dv + B * S * KV * D, T(0));
  std::vector<T> p(static_cast<size_t>(kAttentionBlock * S)), dp(static_cast<size_t>(kAttentionBlock * S));
  std::vector<T> delta(static_cast<size_t>(kAttentionBlock));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h) {
      const std::int64_t g = h / group;
      const std::int64_t qoff = (b * S * H + h) * D, koff = (b * S * KV + g) * D;
      const float* lse_h = lse + (b * H + h) * S;
      for (std::int64_t i0 = 0; i0 < S; i0 += kAttentionBlock) {
        const std::int64_t i1 = std::min(S, i0 + kAttentionBlock), n = i1 - i0;
        const T* q_blk = q + qoff + i0 * ldq;
        const T* do_blk = dout + qoff + i0 * ldq;
        // Recompute P for this block from the saved log-sum-exp.
        gemm(false, true, int(n), int(i1), int(D), scale, q_blk, ldq, k + koff, ldk, T(0), p.data(), int(i1));
        for (std::int64_t r = 0; r < n; ++r) {
          T* row = p.data() + r * i1;
          const std::int64_t last = i0 + r;
          exp_shift_scale(row, row, last + 1, static_cast<T>(lse_h[i0 + r]), T(1));
          std::fill(row + last + 1, row + i1, T(0));
          const T* o_row = out + qoff + (i0 + r) * ldq;
          const T* do_row = do_blk + r * ldq;
          T d = 0;  // delta_i = dO_i . O_i
#pragma omp simd reduction(+ : d)
          for (std::int64_t c = 0; c < D; ++c) d += do_row[c] * o_row[c];
          delta[r] = d;
        }
        gemm(true, false, int(i1), int(D), int(n), T(1), p.data(), int(i1), do_blk, ldq, T(1), dv + koff, ldk);
        gemm(false, true, int(n), int(i1), int(D), T(1), do_blk, ldq, v + koff, ldk, T(0), dp.data(), int(i1));
        for (std::int64_t r = 0; r < n; ++r) {
          T* dpr = dp.data() + r * i1;
          const T* pr = p.data() + r * i1;
          const T dr = delta[r];
#pragma omp simd
          for (std::int64_t j = 0; j < i1; ++j) dpr[j] = pr[j] * (dpr[j] - dr);
        }
        gemm(false, false, int(n), int(D), int(i1), scale, dp.data(), int(i1), k + koff, ldk, T(0), dq + qoff + i0 * ldq, ldq);
        gemm(true, false, int(i1), int(D), int(n), scale, dp.data(), int(i1), q_blk, ldq, T(1), dk + koff, ldk);
      }
    }
}

}  // namespace titan::ops::cpu
