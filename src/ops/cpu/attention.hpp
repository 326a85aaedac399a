#pragma once
// Causal scaled-dot-product attention with grouped-query heads, one (batch, head) at a time.
//
// Layout: q [B, S, H, D], k and v [B, S, KV, D], out [B, S, H, D]; query head h reads kv head
// h / (H / KV) (TorchTitan's repeat_kv). Per (b, h):
//   P = softmax(scale * Q K^T + causal mask),  O = P V,  lse[b, h, i] = log sum_j exp(scale * q_i.k_j)
// Only one S x S score matrix exists at a time (not one per head), and only lse is saved for
// backward, which recomputes P from it (the flash-attention trick):
//   dV += P^T dO,  dP = dO V^T,  dS = P * (dP - rowsum(dO * O)),  dQ = scale dS K,  dK += scale dS^T Q
// GEMMs go through BLAS with row strides H*D / KV*D, so no head is ever copied out.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "ops/cpu/blas.hpp"

namespace titan::ops::cpu {

template <class T>
void attention_forward(const T* q, const T* k, const T* v, T* out, float* lse, std::int64_t B, std::int64_t S,
                       std::int64_t H, std::int64_t KV, std::int64_t D) {
  const T scale = static_cast<T>(1.0 / std::sqrt(double(D)));
  const std::int64_t group = H / KV;
  const int ldq = int(H * D), ldk = int(KV * D);
  std::vector<T> scores(static_cast<size_t>(S * S));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h) {
      const std::int64_t g = h / group;
      const T* qh = q + (b * S * H + h) * D;
      const T* kg = k + (b * S * KV + g) * D;
      const T* vg = v + (b * S * KV + g) * D;
      T* oh = out + (b * S * H + h) * D;
      gemm(false, true, int(S), int(S), int(D), scale, qh, ldq, kg, ldk, T(0), scores.data(), int(S));
      for (std::int64_t i = 0; i < S; ++i) {
        T* row = scores.data() + i * S;
        T mx = row[0];
        for (std::int64_t j = 1; j <= i; ++j) mx = std::max(mx, row[j]);
        double sum = 0;
        for (std::int64_t j = 0; j <= i; ++j) {
          row[j] = std::exp(row[j] - mx);
          sum += row[j];
        }
        const T inv = static_cast<T>(1.0 / sum);
        for (std::int64_t j = 0; j <= i; ++j) row[j] *= inv;
        std::fill(row + i + 1, row + S, T(0));
        lse[(b * H + h) * S + i] = static_cast<float>(double(mx) + std::log(sum));
      }
      gemm(false, false, int(S), int(D), int(S), T(1), scores.data(), int(S), vg, ldk, T(0), oh, ldq);
    }
}

// dq is overwritten; dk and dv are overwritten too (each kv head's grads are summed over its group).
template <class T>
void attention_backward(const T* dout, const T* q, const T* k, const T* v, const T* out, const float* lse, T* dq,
                        T* dk, T* dv, std::int64_t B, std::int64_t S, std::int64_t H, std::int64_t KV, std::int64_t D) {
  const T scale = static_cast<T>(1.0 / std::sqrt(double(D)));
  const std::int64_t group = H / KV;
  const int ldq = int(H * D), ldk = int(KV * D);
  std::fill(dk, dk + B * S * KV * D, T(0));
  std::fill(dv, dv + B * S * KV * D, T(0));
  std::vector<T> p(static_cast<size_t>(S * S)), dp(static_cast<size_t>(S * S)), delta(static_cast<size_t>(S));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h) {
      const std::int64_t g = h / group;
      const std::int64_t qoff = (b * S * H + h) * D, koff = (b * S * KV + g) * D;
      // Recompute P from the saved log-sum-exp.
      gemm(false, true, int(S), int(S), int(D), scale, q + qoff, ldq, k + koff, ldk, T(0), p.data(), int(S));
      for (std::int64_t i = 0; i < S; ++i) {
        T* row = p.data() + i * S;
        const T l = static_cast<T>(lse[(b * H + h) * S + i]);
        for (std::int64_t j = 0; j <= i; ++j) row[j] = std::exp(row[j] - l);
        std::fill(row + i + 1, row + S, T(0));
        // delta_i = dO_i . O_i
        double d = 0;
        for (std::int64_t c = 0; c < D; ++c) d += double(dout[qoff + i * ldq + c]) * double(out[qoff + i * ldq + c]);
        delta[i] = static_cast<T>(d);
      }
      gemm(true, false, int(S), int(D), int(S), T(1), p.data(), int(S), dout + qoff, ldq, T(1), dv + koff, ldk);
      gemm(false, true, int(S), int(S), int(D), T(1), dout + qoff, ldq, v + koff, ldk, T(0), dp.data(), int(S));
      for (std::int64_t i = 0; i < S; ++i)
        for (std::int64_t j = 0; j < S; ++j) dp[i * S + j] = p[i * S + j] * (dp[i * S + j] - delta[i]);
      gemm(false, false, int(S), int(D), int(S), scale, dp.data(), int(S), k + koff, ldk, T(0), dq + qoff, ldq);
      gemm(true, false, int(S), int(D), int(S), scale, dp.data(), int(S), q + qoff, ldq, T(1), dk + koff, ldk);
    }
}

}  // namespace titan::ops::cpu
