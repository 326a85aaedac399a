#pragma once
// Elementwise CUDA launchers (plain C++ header): dtype conversion, fill, axpy, scale, clip.
#include <cstdint>
#include <vector>

#include "core/dtype.hpp"

namespace titan::cuda {

// dst[i] = src[i] converted (f32, bf16, f16, f8e4m3, f8e5m2 either way; floats round to nearest
// even, float8 saturates to +-max and keeps NaN: the same rules as core/dtype.hpp).
void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, std::int64_t n);
// dst[i] = value (rounded to dtype).
void fill(void* dst, DType dtype, std::int64_t n, double value);
// a[i] += alpha * b[i] (a and b f32 or bf16, may differ: a bf16 grad + f32 update is allowed).
void add_scaled(void* a, DType a_dtype, const void* b, DType b_dtype, std::int64_t n, float alpha);
// out[i] = a[i] + b[i], all three `dtype` (f32 or bf16), rounded once: the bits of add_scaled
// with alpha 1 on a copy of a, in one pass instead of two.
void add(const void* a, const void* b, void* out, DType dtype, std::int64_t n);
// a[i] *= alpha
void scale(void* a, DType dtype, std::int64_t n, float alpha);
// Gradient clipping from a sum of squares in device memory, without the host reading it: with
// norm = sqrt(*total_sq) and coef = max_norm / (norm + 1e-6), a[i] *= float(coef) when the norm is
// finite and coef < 1, else a is left as it is (scale()'s arithmetic; torch's clip_grad_norm_).
void scale_by_clip_coef(void* a, DType dtype, std::int64_t n, const double* total_sq, double max_norm);
// The same over many f32 tensors (a model's gradients): one launch per 48 tensors, not one each.
struct F32Span {
  float* data;
  std::int64_t n;
};
void scale_by_clip_coef(const std::vector<F32Span>& tensors, const double* total_sq, double max_norm);

}  // namespace titan::cuda
