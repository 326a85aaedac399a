// Elementwise kernels: one thread per element in a grid-stride loop, loads widened to f32 and
// one rounding on the store. Conversions to float8 use the CUDA intrinsics with saturation to
// the largest finite value (__NV_SATFINITE), which is torchao's clamp-then-cast; NaN stays NaN
// (e4m3fn's only NaN pattern, e5m2's canonical one).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "common.cuh"
#include "elementwise.hpp"
#include "multi_tensor.cuh"

namespace titan::cuda {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float load_any(const void* p, DType dt, std::int64_t i) {
  switch (dt) {
    case DType::f32: return static_cast<const float*>(p)[i];
    case DType::bf16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case DType::f16: return __half2float(static_cast<const __half*>(p)[i]);
    case DType::f8e4m3: {
      __nv_fp8_e4m3 v;
      v.__x = static_cast<const __nv_fp8_storage_t*>(p)[i];
      return float(v);
    }
    case DType::f8e5m2: {
      __nv_fp8_e5m2 v;
      v.__x = static_cast<const __nv_fp8_storage_t*>(p)[i];
      return float(v);
    }
    default: return 0.f;
  }
}

__device__ __forceinline__ void store_any(void* p, DType dt, std::int64_t i, float x) {
  switch (dt) {
    case DType::f32: static_cast<float*>(p)[i] = x; break;
    case DType::bf16: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(x); break;
    case DType::f16: static_cast<__half*>(p)[i] = __float2half_rn(x); break;
    case DType::f8e4m3:
      static_cast<__nv_fp8_storage_t*>(p)[i] = __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
      break;
    case DType::f8e5m2:
      static_cast<__nv_fp8_storage_t*>(p)[i] = __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E5M2);
      break;
    default: break;
  }
}

bool is_storage_float(DType dt) {
  return dt == DType::f32 || dt == DType::bf16 || dt == DType::f16 || dt == DType::f8e4m3 || dt == DType::f8e5m2;
}

__global__ void convert_kernel(const void* src, DType sdt, void* dst, DType ddt, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    store_any(dst, ddt, i, load_any(src, sdt, i));
}

__global__ void fill_kernel(void* dst, DType dt, std::int64_t n, float value) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    store_any(dst, dt, i, value);
}

template <class A, class B>
__global__ void add_scaled_kernel(A* a, const B* b, std::int64_t n, float alpha) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    a[i] = from_f32<A>(to_f32(a[i]) + alpha * to_f32(b[i]));
}

template <class T>
__global__ void add_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    out[i] = from_f32<T>(__fadd_rn(to_f32(a[i]), to_f32(b[i])));
}

template <class T>
__global__ void scale_kernel(T* a, std::int64_t n, float alpha) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    a[i] = from_f32<T>(to_f32(a[i]) * alpha);
}

// Every thread works the coefficient out from *total_sq itself (one cached load): no second
// kernel and no host read between the norm and the scaling.
template <class T>
__global__ void scale_by_clip_coef_kernel(T* a, std::int64_t n, const double* total_sq, double max_norm) {
  const double norm = sqrt(*total_sq);
  const double coef = max_norm / (norm + 1e-6);
  if (!isfinite(norm) || !(coef < 1.0)) return;
  const float alpha = static_cast<float>(coef);
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    a[i] = from_f32<T>(to_f32(a[i]) * alpha);
}

// Multi-tensor form (multi_tensor.cuh): block c scales its chunk of one tensor.
__global__ void scale_by_clip_coef_multi_kernel(const __grid_constant__ MultiTensorBatch<F32Span> batch,
                                                const double* total_sq, double max_norm) {
  const double norm = sqrt(*total_sq);
  const double coef = max_norm / (norm + 1e-6);
  if (!isfinite(norm) || !(coef < 1.0)) return;
  const float alpha = static_cast<float>(coef);
  std::int64_t begin = 0, end = 0;
  const F32Span& t = multi_tensor_chunk(batch, blockIdx.x, &begin, &end);
  for (std::int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) t.data[j] = t.data[j] * alpha;
}

}  // namespace

void scale_by_clip_coef(const std::vector<F32Span>& tensors, const double* total_sq, double max_norm) {
  for_each_multi_tensor_batch(tensors, [&](const MultiTensorBatch<F32Span>& batch, int chunks) {
    scale_by_clip_coef_multi_kernel<<<chunks, kThreads, 0, compute_stream()>>>(batch, total_sq, max_norm);
    TITAN_CUDA_LAUNCH_CHECK();
  });
}

void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, std::int64_t n) {
  if (n == 0) return;
  if (!is_storage_float(src_dtype) || !is_storage_float(dst_dtype))
    throw_usage_error(std::string("cuda::convert: ") + std::string(dtype_name(src_dtype)) + " -> " +
                      std::string(dtype_name(dst_dtype)) + " is not a floating conversion");
  convert_kernel<<<grid_for(n, kThreads), kThreads, 0, compute_stream()>>>(src, src_dtype, dst, dst_dtype, n);
  TITAN_CUDA_LAUNCH_CHECK();
}

void fill(void* dst, DType dtype, std::int64_t n, double value) {
  if (n == 0) return;
  if (!is_storage_float(dtype)) throw_usage_error("cuda::fill: dtype " + std::string(dtype_name(dtype)) + " is not a float");
  fill_kernel<<<grid_for(n, kThreads), kThreads, 0, compute_stream()>>>(dst, dtype, n, float(value));
  TITAN_CUDA_LAUNCH_CHECK();
}

void add_scaled(void* a, DType a_dtype, const void* b, DType b_dtype, std::int64_t n, float alpha) {
  if (n == 0) return;
  dispatch_float(a_dtype, "cuda::add_scaled", [&](auto ta) {
    using A = decltype(ta);
    dispatch_float(b_dtype, "cuda::add_scaled", [&](auto tb) {
      using B = decltype(tb);
      add_scaled_kernel<<<grid_for(n, kThreads), kThreads, 0, compute_stream()>>>(static_cast<A*>(a), static_cast<const B*>(b), n, alpha);
    });
  });
  TITAN_CUDA_LAUNCH_CHECK();
}

void add(const void* a, const void* b, void* out, DType dtype, std::int64_t n) {
  if (n == 0) return;
  dispatch_float(dtype, "cuda::add", [&](auto t) {
    using T = decltype(t);
    add_kernel<<<grid_for(n, kThreads), kThreads, 0, compute_stream()>>>(static_cast<const T*>(a), static_cast<const T*>(b),
                                                                         static_cast<T*>(out), n);
  });
  TITAN_CUDA_LAUNCH_CHECK();
}

void scale(void* a, DType dtype, std::int64_t n, float alpha) {
  if (n == 0) return;
  dispatch_float(dtype, "cuda::scale", [&](auto t) {
    using T = decltype(t);
    scale_kernel<<<grid_for(n, kThreads), kThreads, 0, compute_stream()>>>(static_cast<T*>(a), n, alpha);
  });
  TITAN_CUDA_LAUNCH_CHECK();
}

void scale_by_clip_coef(void* a, DType dtype, std::int64_t n, const double* total_sq, double max_norm) {
  if (n == 0) return;
  dispatch_float(dtype, "cuda::scale_by_clip_coef", [&](auto t) {
    using T = decltype(t);
    scale_by_clip_coef_kernel<<<grid_for(n, kThreads), kThreads, 0, compute_stream()>>>(static_cast<T*>(a), n, total_sq,
                                                                                         max_norm);
  });
  TITAN_CUDA_LAUNCH_CHECK();
}

}  // namespace titan::cuda
