#pragma once
// AdamW's per-element update on the CPU (ops::adamw_step), the scalars precomputed in float32:
//   p *= decay; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= step_size m / (sqrt(v) inv_bias2_sqrt + eps)
#include <cmath>
#include <cstdint>

namespace titan::ops::cpu {

inline void adamw_update(float* pp, const float* gp, float* mp, float* vp, std::int64_t n, float b1, float b2,
                         float step_size, float decay, float eps, float inv_bias2_sqrt) {
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) {
    pp[j] *= decay;
    mp[j] = b1 * mp[j] + (1.0f - b1) * gp[j];
    vp[j] = b2 * vp[j] + (1.0f - b2) * gp[j] * gp[j];
    const float denom = std::sqrt(vp[j]) * inv_bias2_sqrt + eps;
    pp[j] -= step_size * mp[j] / denom;
  }
}

}  // namespace titan::ops::cpu
