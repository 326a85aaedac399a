// Multi-tensor AdamW (multi_tensor.cuh): one launch per 48 parameters instead of one each. The
// per-element arithmetic is the CPU optimizer's, operation for operation, each rounded
// separately (__fmul_rn/__fadd_rn keep nvcc from contracting to FMA); the CPU loop may contract,
// so the two agree to an ulp or so.
#include "adamw.hpp"
#include "common.cuh"
#include "multi_tensor.cuh"

namespace titan::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void adamw_kernel(const __grid_constant__ MultiTensorBatch<AdamWTensor> batch,
                             const AdamWScalars* __restrict__ scalars) {
  const AdamWScalars s = *scalars;
  std::int64_t begin = 0, end = 0;
  const AdamWTensor& t = multi_tensor_chunk(batch, blockIdx.x, &begin, &end);
  const float one_b1 = __fsub_rn(1.0f, s.beta1), one_b2 = __fsub_rn(1.0f, s.beta2);
  for (std::int64_t j = begin + threadIdx.x; j < end; j += kThreads) {
    const float g = t.grad[j];
    float p = __fmul_rn(t.param[j], s.decay);
    const float m = __fadd_rn(__fmul_rn(s.beta1, t.exp_avg[j]), __fmul_rn(one_b1, g));
    const float v = __fadd_rn(__fmul_rn(s.beta2, t.exp_avg_sq[j]), __fmul_rn(__fmul_rn(one_b2, g), g));
    const float denom = __fadd_rn(__fmul_rn(__fsqrt_rn(v), s.inv_bias2_sqrt), s.eps);
    p = __fsub_rn(p, __fdiv_rn(__fmul_rn(s.step_size, m), denom));
    t.param[j] = p;
    t.exp_avg[j] = m;
    t.exp_avg_sq[j] = v;
  }
}

}  // namespace

void adamw_step(const std::vector<AdamWTensor>& tensors, const AdamWScalars* device_scalars) {
  for_each_multi_tensor_batch(tensors, [&](const MultiTensorBatch<AdamWTensor>& batch, int chunks) {
    adamw_kernel<<<chunks, kThreads, 0, compute_stream()>>>(batch, device_scalars);
    TITAN_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace titan::cuda
