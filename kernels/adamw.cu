// Multi-tensor AdamW: the host packs up to kMaxTensors (pointer set, length) records and a
// prefix table of 64K-element chunks into one kernel argument block; block c finds its tensor by
// a short search in the chunk table and updates elements [c_start, c_start + kChunk) of it.
// One launch per kMaxTensors tensors instead of one per parameter. The per-element arithmetic is
// the CPU optimizer's, operation for operation, each rounded separately (__fmul_rn/__fadd_rn keep
// nvcc from contracting to FMA); the CPU loop may contract, so the two agree to an ulp or so.
#include "adamw.hpp"
#include "common.cuh"

namespace titan::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxTensors = 48;
constexpr std::int64_t kChunk = 65536;

struct Batch {
  AdamWTensor t[kMaxTensors];
  int chunk_begin[kMaxTensors + 1];  // prefix sums of chunks per tensor
  int count;
};

__global__ void adamw_kernel(const __grid_constant__ Batch batch, AdamWScalars s) {
  int lo = 0, hi = batch.count - 1;
  const int c = blockIdx.x;
  while (lo < hi) {  // last tensor whose first chunk is <= c
    const int mid = (lo + hi + 1) / 2;
    if (batch.chunk_begin[mid] <= c) lo = mid;
    else hi = mid - 1;
  }
  const AdamWTensor& t = batch.t[lo];
  const std::int64_t begin = std::int64_t(c - batch.chunk_begin[lo]) * kChunk;
  const std::int64_t end = begin + kChunk < t.n ? begin + kChunk : t.n;
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

void adamw_step(const std::vector<AdamWTensor>& tensors, const AdamWScalars& s) {
  std::size_t i = 0;
  while (i < tensors.size()) {
    Batch batch{};
    int chunks = 0;
    batch.count = 0;
    for (; i < tensors.size() && batch.count < kMaxTensors; ++i) {
      if (tensors[i].n == 0) continue;
      batch.t[batch.count] = tensors[i];
      batch.chunk_begin[batch.count] = chunks;
      chunks += int((tensors[i].n + kChunk - 1) / kChunk);
      ++batch.count;
    }
    batch.chunk_begin[batch.count] = chunks;
    if (batch.count == 0) break;
    adamw_kernel<<<chunks, kThreads, 0, compute_stream()>>>(batch, s);
    TITAN_CUDA_LAUNCH_CHECK();
  }
}

}  // namespace titan::cuda
