#pragma once
// Rotary position embedding on the GPU (rope.cu), the convention of src/ops/cpu/rope.hpp:
// within each head the pairs (x[2i], x[2i+1]) are rotated by the angle whose cos/sin are
// cos_table[s, i], sin_table[s, i]. Plain C++ launcher on the compute stream (asynchronous).
#include <cstdint>

#include "core/dtype.hpp"

namespace titan::cuda {

// x, y: [B, S, H, D] in dtype (f32 or bf16), D even; cos_table, sin_table: f32 [S_table >= S, D/2].
// sign = +1 rotates forward, -1 applies the inverse rotation (the backward: dx from dy).
// y may alias x (in place).
void rope_apply(const void* x, void* y, const float* cos_table, const float* sin_table, std::int64_t B, std::int64_t S,
                std::int64_t H, std::int64_t D, int sign, DType dtype);

}  // namespace titan::cuda
