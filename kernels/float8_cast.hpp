#pragma once
// Float8 quantization kernels (torchao semantics, DESIGN.md section 5): amax, amax -> scale and
// the saturating cast, bit-identical to the CPU reference in src/ops/cpu/float8.hpp and
// titan::f32_to_f8e4m3 / f32_to_f8e5m2. Plain C++ launchers (raw device pointers, DType, int64
// sizes); everything runs asynchronously on the compute stream. See float8_cast.cu for the math.
//
// Matrices are row-major [rows, cols]. x is float32 or bfloat16 (bf16 is widened to f32 exactly,
// so a bf16 tensor quantizes exactly as its f32 copy does on the CPU). The float8 data are bytes.
#include <cstdint>

#include "core/dtype.hpp"

namespace titan::cuda {

// Which elements share a scale: one for the tensor; one per row (amax over each row, the GEMM
// operand that contracts over its columns); one per column (amax over each column: the operand
// that contracts over its rows, i.e. whose transposed copy is the GEMM input).
enum class Fp8ScaleAxis { tensor, per_row, per_column };

// (a) amax[0] = max |x[i]| over n elements; 0 for n == 0; NaN if any element is NaN.
void amax_tensorwise(const void* x, DType x_dtype, std::int64_t n, float* amax);
// (b) amax[r] = max_c |x[r, c]|  (amax has `rows` floats; 0 for an empty row).
void amax_rowwise(const void* x, DType x_dtype, std::int64_t rows, std::int64_t cols, float* amax);
//     amax[c] = max_r |x[r, c]|  (amax has `cols` floats).
void amax_colwise(const void* x, DType x_dtype, std::int64_t rows, std::int64_t cols, float* amax);

// (c) scale[i] = float32(float64(f8 max) / max(float64(amax[i]), 1e-12)), NaN stays NaN; with
// round_to_power_of_2, scale = 2^floor(log2(scale)) as float8.cpp computes it. scale_inv
// (nullable) gets 1.0f / scale (IEEE division: what the GEMMs consume). n elements.
void amax_to_scale(const float* amax, std::int64_t n, DType f8, bool round_to_power_of_2, float* scale,
                   float* scale_inv);

// (d) out[r, c] = f8(x[r, c] * s) with s = scale[0] (tensor), scale[r] (per_row) or scale[c]
// (per_column): f32 multiply, then round-to-nearest-even, saturation to +-max (infinities too),
// NaN kept. out (nullable) is [rows, cols]; out_t (nullable) is the transposed copy [cols, rows]
// written in the same pass (out_t[c, r] = out[r, c]). At least one of them must be given.
// f8 is f8e4m3 or f8e5m2. amax (nullable, 1 float) gets max|x| over the whole tensor, computed in
// the same pass (a delayed-scaling cast records it for its history without a second read of x).
void cast_to_fp8(const void* x, DType x_dtype, std::int64_t rows, std::int64_t cols, DType f8, const float* scale,
                 Fp8ScaleAxis axis, void* out, void* out_t, float* amax = nullptr);

// (e) out[r, c] = f32(q[r, c]) / s with the scale chosen as in (d) (IEEE division): the
// dequantized value the emulated float8 GEMMs multiply, as Float8Tensor::dequantize on the CPU.
void dequantize_fp8(const void* q, DType f8, std::int64_t rows, std::int64_t cols, const float* scale, Fp8ScaleAxis axis,
                    float* out);

// (f) scale_inv[i] = 1.0f / scale[n_in == 1 ? 0 : i] for i < n_out (IEEE division): the factors
// cuBLASLt's FP8 GEMM multiplies by; a single scale is broadcast to a vector (a tensorwise operand
// next to a rowwise one). n_in is 1 or n_out.
void scale_reciprocal(const float* scale, std::int64_t n_in, std::int64_t n_out, float* scale_inv);

// (f') The delayed recipe's history ring: row[*pushes % length] = *amax, then ++*pushes (one
// thread; the position is device memory so a CUDA graph advances it on every replay).
void amax_history_push(float* row, std::int64_t length, std::int64_t* pushes, const float* amax);

// (g) out[c, r] = q[r, c]: the transpose of float8 bytes q [rows, cols] into out [cols, rows]
// (both are bytes; the dtype does not matter). Tiled through shared memory as the fused cast +
// transpose is, on the compute stream.
void transpose_fp8(const void* q, std::int64_t rows, std::int64_t cols, void* out);

// (a|b) + (c) + (d) in sequence: amax (workspace, n_scales floats, left holding the amax),
// scale (n_scales floats), scale_inv (nullable), then the cast. n_scales is 1, rows or cols.
// per_row with only `out` (row-major) runs as one kernel that reads each row for its amax and
// casts it from cache: the same results in one launch and one read of x from memory.
void quantize_fp8(const void* x, DType x_dtype, std::int64_t rows, std::int64_t cols, DType f8, Fp8ScaleAxis axis,
                  bool round_to_power_of_2, float* amax, float* scale, float* scale_inv, void* out, void* out_t);

}  // namespace titan::cuda
