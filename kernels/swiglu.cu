// SwiGLU gating, forward and backward (launchers in swiglu.hpp), elementwise over n elements:
//   s = sigmoid(a) = 1 / (1 + exp(-a)),  silu(a) = a * s,  h = silu(a) * b
//   da = dh * b * silu'(a),  silu'(a) = s * (1 + a * (1 - s)),   db = dh * silu(a)
// (the formulas of ops::swiglu / ops::swiglu_backward on the CPU). All arithmetic in f32 with
// expf (not the fast __expf), one rounding on store.
//
// Layout: flat contiguous arrays of n elements, f32 or bf16. When every pointer is 16-byte
// aligned, thread t of the grid-stride loop handles vectors of VEC = 16 / sizeof(T) elements
// (one 128-bit access per array) and the n % VEC tail elements are taken by the first threads;
// otherwise VEC = 1. Every element is read before the same thread writes it, so an output may
// alias an input.
#include <cstring>

#include "common.cuh"
#include "swiglu.hpp"

namespace titan::cuda {
namespace {

__device__ __forceinline__ float sigmoidf(float a) { return 1.0f / (1.0f + expf(-a)); }

template <class T, int N>
__device__ __forceinline__ void swiglu_fwd_at(const T* a, const T* b, T* h) {
  float av[N], bv[N], hv[N];
  load_f32<T, N>(a, av);
  load_f32<T, N>(b, bv);
#pragma unroll
  for (int k = 0; k < N; ++k) hv[k] = av[k] / (1.0f + expf(-av[k])) * bv[k];
  store_f32<T, N>(h, hv);
}

template <class T, int N>
__device__ __forceinline__ void swiglu_bwd_at(const T* dh, const T* a, const T* b, T* da, T* db) {
  float dv[N], av[N], bv[N], dav[N], dbv[N];
  load_f32<T, N>(dh, dv);
  load_f32<T, N>(a, av);
  load_f32<T, N>(b, bv);
#pragma unroll
  for (int k = 0; k < N; ++k) {
    const float s = sigmoidf(av[k]);
    dav[k] = dv[k] * bv[k] * s * (1.0f + av[k] * (1.0f - s));
    dbv[k] = dv[k] * (av[k] * s);
  }
  store_f32<T, N>(da, dav);
  store_f32<T, N>(db, dbv);
}

template <class T, int VEC>
__global__ void swiglu_forward_kernel(const T* a, const T* b, T* h, std::int64_t n) {
  const std::int64_t nvec = n / VEC;
  const std::int64_t tid = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t v = tid; v < nvec; v += stride) swiglu_fwd_at<T, VEC>(a + v * VEC, b + v * VEC, h + v * VEC);
  const std::int64_t e = nvec * VEC + tid;  // tail (< VEC elements)
  if (e < n) swiglu_fwd_at<T, 1>(a + e, b + e, h + e);
}

template <class T, int VEC>
__global__ void swiglu_backward_kernel(const T* dh, const T* a, const T* b, T* da, T* db, std::int64_t n) {
  const std::int64_t nvec = n / VEC;
  const std::int64_t tid = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t v = tid; v < nvec; v += stride)
    swiglu_bwd_at<T, VEC>(dh + v * VEC, a + v * VEC, b + v * VEC, da + v * VEC, db + v * VEC);
  const std::int64_t e = nvec * VEC + tid;
  if (e < n) swiglu_bwd_at<T, 1>(dh + e, a + e, b + e, da + e, db + e);
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

constexpr int kThreads = 256;

}  // namespace

void swiglu_forward(const void* a, const void* b, void* h, std::int64_t n, DType dtype) {
  if (n < 0) throw_usage_error("swiglu_forward: negative size");
  if (n == 0) return;
  dispatch_float(dtype, "swiglu_forward", [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = 16 / sizeof(T);
    const T* ap = static_cast<const T*>(a);
    const T* bp = static_cast<const T*>(b);
    T* hp = static_cast<T*>(h);
    if (aligned16(a) && aligned16(b) && aligned16(h))
      swiglu_forward_kernel<T, V><<<grid_for(n / V + 1, kThreads), kThreads, 0, compute_stream()>>>(ap, bp, hp, n);
    else
      swiglu_forward_kernel<T, 1><<<grid_for(n, kThreads), kThreads, 0, compute_stream()>>>(ap, bp, hp, n);
    TITAN_CUDA_LAUNCH_CHECK();
  });
}

void swiglu_backward(const void* dh, const void* a, const void* b, void* da, void* db, std::int64_t n, DType dtype) {
  if (n < 0) throw_usage_error("swiglu_backward: negative size");
  if (n == 0) return;
  dispatch_float(dtype, "swiglu_backward", [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = 16 / sizeof(T);
    const T* dhp = static_cast<const T*>(dh);
    const T* ap = static_cast<const T*>(a);
    const T* bp = static_cast<const T*>(b);
    T* dap = static_cast<T*>(da);
    T* dbp = static_cast<T*>(db);
    if (aligned16(dh) && aligned16(a) && aligned16(b) && aligned16(da) && aligned16(db))
      swiglu_backward_kernel<T, V><<<grid_for(n / V + 1, kThreads), kThreads, 0, compute_stream()>>>(dhp, ap, bp, dap,
                                                                                                     dbp, n);
    else
      swiglu_backward_kernel<T, 1><<<grid_for(n, kThreads), kThreads, 0, compute_stream()>>>(dhp, ap, bp, dap, dbp, n);
    TITAN_CUDA_LAUNCH_CHECK();
  });
}

}  // namespace titan::cuda
