#pragma once
// SwiGLU gating on the GPU (swiglu.cu): h = silu(a) * b elementwise, and its backward.
// Plain C++ launchers on the compute stream (asynchronous); dtype f32 or bf16 for every tensor.
#include <cstdint>

#include "core/dtype.hpp"

namespace titan::cuda {

// h[i] = silu(a[i]) * b[i] for i < n. h may alias a or b.
void swiglu_forward(const void* a, const void* b, void* h, std::int64_t n, DType dtype);

// da = dh * b * silu'(a), db = dh * silu(a), silu'(a) = s * (1 + a * (1 - s)), s = sigmoid(a).
// da / db may alias any one input each (every element is read before it is written).
void swiglu_backward(const void* dh, const void* a, const void* b, void* da, void* db, std::int64_t n, DType dtype);

}  // namespace titan::cuda
