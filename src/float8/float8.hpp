#pragma once
// Float8 training numerics, torchao's semantics (DESIGN.md section 5).
//
//   amax   tensorwise: max|x| over the tensor; axiswise: max|x| along one dim (keepdim), NaN propagates
//   scale  float32( float64(fp8_max) / max(float64(amax), 1e-12) ); with power-of-2 rounding
//          (rowwise recipes) scale = exp2(floor(log2(scale))) computed in float32
//   cast   data = saturate_to_fp8(float32(x) * scale), round to nearest even, NaN kept
//   dequantize  float32(data) / scale
// A Float8Tensor holds the float8 data and its float32 scale: shape [1] (tensorwise), [R, 1]
// (one per row: amax over the last dim) or [1, C] (one per column: amax over dim 0).
#include <string>

#include "core/tensor.hpp"

namespace titan::float8 {

constexpr double kEps = 1e-12;

enum class Granularity { tensorwise, axiswise };

// How one GEMM operand is cast. `enabled = false` keeps it in high precision.
struct CastConfig {
  bool enabled = true;
  Granularity granularity = Granularity::tensorwise;
  DType dtype = DType::f8e4m3;
};

struct Float8Tensor {
  enum class ScaleAxis { tensor, per_row, per_column };
  Tensor data;   // f8e4m3 or f8e5m2, [R, C]
  Tensor scale;  // f32: [1], [R, 1] or [1, C]
  ScaleAxis axis = ScaleAxis::tensor;
  DType orig_dtype = DType::f32;  // what dequantize() and the emulated GEMMs produce
  Tensor dequantize() const;  // f32 [R, C]
};

// Which dim of a 2-D operand an axiswise scale reduces over: -1 = along each row (one scale per
// row), 0 = along each column (one scale per column).
Tensor amax(const Tensor& x, Granularity g, int reduce_dim);
Tensor amax_to_scale(const Tensor& amax, DType f8, bool round_to_power_of_2);
// Fused: amax, scale and cast of a 2-D float32 tensor in one call (the amax pass and the cast
// pass read x once each; no intermediate copies).
Float8Tensor cast_to_float8(const Tensor& x, DType f8, Granularity g, int reduce_dim, bool round_to_power_of_2);

// The recipes (quantize.linear.float8.recipe_name): the cast of each operand of the three GEMMs
// of a linear layer, y = x W^T, dx = dy W, dW = dy^T x.
struct Recipe {
  std::string name;
  CastConfig input, weight, grad_output;              // output GEMM and grad_input's dy
  CastConfig weight_for_grad_input;                    // W in dx = dy W
  CastConfig input_for_grad_weight, grad_output_for_grad_weight;  // x and dy in dW = dy^T x
  bool round_scales_to_power_of_2 = false;
  bool delayed = false;           // tensorwise casts with scales from an amax history
  int amax_history_len = 16;
};
// tensorwise (default): e4m3 input/weight, e5m2 grad_output, one scale each.
// rowwise: everything e4m3, axiswise along each GEMM's contraction dim, power-of-2 scales.
// rowwise_with_gw_hp: rowwise output GEMM; dx from rowwise dy and a tensorwise weight;
//                     dW in high precision.
// delayed: tensorwise dtypes; each scale comes from the max of that operand's amax history (the
//          last amax_history_len steps) instead of the current tensor; the first step is dynamic.
// Throws UserError for an unknown name.
Recipe recipe_from_name(const std::string& name, int amax_history_len = 16);

// cast_to_float8(...).dequantize() fused into one pass after the amax pass, without the float8
// intermediate: what the emulated GEMMs consume. `fixed_scale` (tensorwise), when given, replaces
// the amax-derived scale (delayed scaling). Bit-identical to casting then dequantizing.
// With `fixed_scale` the cast needs no amax first, so the tensor's amax is measured in the same
// single pass and returned through `amax_out` (delayed scaling's history entry).
Tensor fake_quantize(const Tensor& x, DType f8, Granularity g, int reduce_dim, bool round_to_power_of_2,
                     const float* fixed_scale = nullptr, float* amax_out = nullptr);

// Casts a 2-D float32 tensor with a given tensorwise scale (delayed scaling).
Float8Tensor cast_to_float8_with_scale(const Tensor& x, DType f8, float scale);

// 10 log10(|ref|^2 / |ref - x|^2): torchao's signal-to-quantization-noise ratio in dB.
double sqnr(const Tensor& ref, const Tensor& x);

}  // namespace titan::float8
