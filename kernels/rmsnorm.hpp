#pragma once
// RMSNorm on the GPU (rmsnorm.cu): y = x * rstd * w over the last dimension, with the per-row
// rstd saved for backward. Plain C++ launchers; pointers are device pointers, dtype is the storage
// dtype of x, w, y, dy, dx (f32 or bf16); rstd and dw_accum are always f32. Everything runs on the
// compute stream (asynchronous).
#include <cstdint>

#include "core/dtype.hpp"

namespace titan::cuda {

// x, y: [rows, D]; w: [D]; rstd: [rows] f32. y must not alias x.
// With `residual` [rows, D] (and `h` [rows, D]), the residual add is fused in: h = x + residual
// (rounded to dtype, the bits of add()) is written and normalised. h aliases nothing.
void rmsnorm_forward(const void* x, const void* w, void* y, float* rstd, std::int64_t rows, std::int64_t D, double eps,
                     DType dtype, const void* residual = nullptr, void* h = nullptr);

// dx [rows, D] (dtype) is written; dw_accum [D] f32 is ADDED to: dw += sum over rows of dy * x * rstd.
// Deterministic (fixed blocking and summation order; no float atomics). dx must not alias dy or x.
// With `dx_add` [rows, D] (dtype), dx = dx_add + the norm's gradient rounded to dtype first (the
// bits of a separate add); dx may alias dx_add.
void rmsnorm_backward(const void* dy, const void* x, const void* w, const float* rstd, void* dx, float* dw_accum,
                      std::int64_t rows, std::int64_t D, DType dtype, const void* dx_add = nullptr);

}  // namespace titan::cuda
