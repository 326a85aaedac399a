// Deterministic sums: pass 1 runs a fixed grid of kBlocks blocks; block b accumulates elements
// b*blockDim + t, + gridDim*blockDim, ... in double per thread, then a shared-memory tree
// reduction writes partial[b]. Pass 2 (one block) adds the kBlocks partials in the same tree
// order. The grid never depends on timing, so the result is bit-identical run to run.
// Squares are taken in f32 precision of the element widened to double (grad-norm semantics).
#include "common.cuh"
#include "reduce.hpp"

namespace titan::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kBlocks = 512;

__device__ double block_sum_double(double v) {
  __shared__ double shared[kThreads];
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  return shared[0];
}

template <class T, bool kSquare>
__global__ void partial_sums(const T* x, std::int64_t n, double* partial) {
  double acc = 0;
  for (std::int64_t i = blockIdx.x * std::int64_t(kThreads) + threadIdx.x; i < n; i += std::int64_t(kBlocks) * kThreads) {
    const double v = to_f32(x[i]);
    acc += kSquare ? v * v : v;
  }
  const double total = block_sum_double(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

__global__ void final_sum(const double* partial, double* out) {
  double acc = 0;
  for (int i = threadIdx.x; i < kBlocks; i += kThreads) acc += partial[i];
  const double total = block_sum_double(acc);
  if (threadIdx.x == 0) *out = total;
}

__global__ void sum_in_order_kernel(const double* x, std::int64_t n, double* out) {
  double acc = 0;
  for (std::int64_t i = 0; i < n; ++i) acc += x[i];
  *out = acc;
}

template <bool kSquare>
void reduce(const void* x, DType dtype, std::int64_t n, double* out) {
  double* partial = static_cast<double*>(allocate(kBlocks * sizeof(double)));
  dispatch_float(dtype, kSquare ? "cuda::sum_squares" : "cuda::sum", [&](auto t) {
    using T = decltype(t);
    partial_sums<T, kSquare><<<kBlocks, kThreads, 0, compute_stream()>>>(static_cast<const T*>(x), n, partial);
  });
  TITAN_CUDA_LAUNCH_CHECK();
  final_sum<<<1, kThreads, 0, compute_stream()>>>(partial, out);
  TITAN_CUDA_LAUNCH_CHECK();
  deallocate(partial, kBlocks * sizeof(double));
}

double to_host(void (*f)(const void*, DType, std::int64_t, double*), const void* x, DType dtype, std::int64_t n) {
  double* d = static_cast<double*>(allocate(sizeof(double)));
  f(x, dtype, n, d);
  double h = 0;
  copy(&h, d, sizeof(double));
  deallocate(d, sizeof(double));
  return h;
}

}  // namespace

void sum_async(const void* x, DType dtype, std::int64_t n, double* out) { reduce<false>(x, dtype, n, out); }
void sum_squares_async(const void* x, DType dtype, std::int64_t n, double* out) { reduce<true>(x, dtype, n, out); }
void sum_in_order_async(const double* x, std::int64_t n, double* out) {
  sum_in_order_kernel<<<1, 1, 0, compute_stream()>>>(x, n, out);
  TITAN_CUDA_LAUNCH_CHECK();
}
double sum(const void* x, DType dtype, std::int64_t n) { return to_host(sum_async, x, dtype, n); }
double sum_squares(const void* x, DType dtype, std::int64_t n) { return to_host(sum_squares_async, x, dtype, n); }

}  // namespace titan::cuda
