#pragma once
// Multi-tensor AdamW on the GPU: every parameter of a step in one launch.
#include <cstdint>
#include <vector>

namespace titan::cuda {

struct AdamWTensor {
  float* param;        // f32 master weights (shard)
  const float* grad;   // f32 gradient
  float* exp_avg;      // f32 first moment
  float* exp_avg_sq;   // f32 second moment
  std::int64_t n;
};
// The scalars exactly as ops::adamw_scalars_into computes them on the host (same f32 rounding),
// in device memory: the kernels read them when they run, so a CUDA graph that captured this
// launch uses each step's learning rate and bias corrections.
//   p *= decay; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//   p -= step_size * m / (sqrt(v) * inv_bias2_sqrt + eps)
struct AdamWScalars {
  float beta1, beta2, step_size, decay, eps, inv_bias2_sqrt;
};
void adamw_step(const std::vector<AdamWTensor>& tensors, const AdamWScalars* device_scalars);

}  // namespace titan::cuda
