#pragma once
// Shared device-side helpers for every kernel family in kernels/ (compiled by nvcc only).
//
// Storage dtypes on the GPU are f32 and bf16 for activations/weights (float8 bytes in the
// float8 family); every kernel loads into f32 registers, computes in f32 and rounds once on the
// store (round to nearest even, as the CPU backend's conversions). `dispatch_float` picks the
// template instance from a titan::DType at the launcher, so each kernel is written once.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "core/dtype.hpp"
#include "runtime.hpp"

namespace titan::cuda {

// Throws std::runtime_error("CUDA error in <what> (<file>:<line>): <message>").
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line);
[[noreturn]] void throw_usage_error(const std::string& message);  // std::invalid_argument

#define TITAN_CUDA_CHECK(expr)                                                                   \
  do {                                                                                           \
    cudaError_t titan_err_ = (expr);                                                             \
    if (titan_err_ != cudaSuccess) ::titan::cuda::throw_cuda_error(titan_err_, #expr, __FILE__, __LINE__); \
  } while (0)
// After a <<<...>>> launch: reports bad launch configurations at once (asynchronous faults
// surface at the next synchronizing call).
#define TITAN_CUDA_LAUNCH_CHECK() TITAN_CUDA_CHECK(cudaGetLastError())

// The stream every kernel of this process runs on (see runtime.hpp).
inline cudaStream_t compute_stream() { return static_cast<cudaStream_t>(stream_handle()); }

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Calls f(T{}) with T = float for DType::f32 and __nv_bfloat16 for DType::bf16.
template <class F>
void dispatch_float(DType dt, const char* op, F&& f) {
  if (dt == DType::f32) f(float{});
  else if (dt == DType::bf16) f(__nv_bfloat16{});
  else throw_usage_error(std::string(op) + ": dtype " + std::string(dtype_name(dt)) + " is not supported on CUDA (float32, bfloat16)");
}

inline unsigned grid_for(std::int64_t n, int threads, std::int64_t max_blocks = 65535LL * 8) {
  std::int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return static_cast<unsigned>(b < max_blocks ? b : max_blocks);
}

// Vectorized access: N consecutive T (N * sizeof(T) bytes, aligned to that) moved as one
// memory transaction of the matching raw type, converted to/from f32 registers.
template <int Bytes>
struct RawVec;
template <> struct RawVec<2> { using type = unsigned short; };
template <> struct RawVec<4> { using type = unsigned int; };
template <> struct RawVec<8> { using type = uint2; };
template <> struct RawVec<16> { using type = uint4; };

template <class T, int N>
__device__ __forceinline__ void load_f32(const T* p, float (&out)[N]) {
  using R = typename RawVec<sizeof(T) * N>::type;
  const R raw = *reinterpret_cast<const R*>(p);
  T v[N];
  memcpy(v, &raw, sizeof(R));
#pragma unroll
  for (int k = 0; k < N; ++k) out[k] = to_f32(v[k]);
}
template <class T, int N>
__device__ __forceinline__ void store_f32(T* p, const float (&in)[N]) {
  using R = typename RawVec<sizeof(T) * N>::type;
  T v[N];
#pragma unroll
  for (int k = 0; k < N; ++k) v[k] = from_f32<T>(in[k]);
  R raw;
  memcpy(&raw, v, sizeof(R));
  *reinterpret_cast<R*>(p) = raw;
}

// Sum / max over groups of kLanes lanes (lanes differing only in their low log2(kLanes) bits;
// 32: the whole warp). Every lane of a group gets its group's result.
template <int kLanes = 32>
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kLanes / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <int kLanes = 32>
__device__ __forceinline__ float warp_max(float v) {
  for (int o = kLanes / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` is 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.f;
  return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : -INFINITY;
  return warp_max(v);
}

}  // namespace titan::cuda
