#pragma once
// Float8 training numerics, torchao's semantics (DESIGN.md section 5): the recipes, and the
// float8 vocabulary (granularity along a GEMM's contraction dim) over the op API, which does the
// work on every device (ops.hpp: amax, amax_to_scale, cast_to_float8, dequantize, scaled_mm).
//
//   amax   tensorwise: max|x| over the tensor; axiswise: max|x| along one dim (keepdim), NaN propagates
//   scale  float32( float64(fp8_max) / max(float64(amax), 1e-12) ); with power-of-2 rounding
//          (rowwise recipes) scale = exp2(floor(log2(scale))) computed in float32
//   cast   data = saturate_to_fp8(float32(x) * scale), round to nearest even, NaN kept
//   dequantize  float32(data) / scale
// A Float8Tensor holds the float8 data and its float32 scale: shape [1] (tensorwise), [R, 1]
// (one per row: amax over the last dim) or [1, C] (one per column: amax over dim 0).
#include <functional>
#include <string>

#include "core/tensor.hpp"
#include "ops/ops.hpp"

namespace titan::float8 {

constexpr double kEps = ops::kFloat8Eps;

enum class Granularity { tensorwise, axiswise };

// How one GEMM operand is cast. `enabled = false` keeps it in high precision.
struct CastConfig {
  bool enabled = true;
  Granularity granularity = Granularity::tensorwise;
  DType dtype = DType::f8e4m3;
};

// The op API's scale groups of a 2-D operand cast with granularity `g` along `reduce_dim`:
// tensorwise -> one scale; axiswise along -1 (or 1) -> one per row; along 0 -> one per column.
ops::ScaleAxis scale_axis(Granularity g, int reduce_dim);

struct Float8Tensor {
  Tensor data;   // f8e4m3 or f8e5m2, [R, C]
  Tensor scale;  // f32: [1], [R, 1] or [1, C]
  ops::ScaleAxis axis = ops::ScaleAxis::tensor;
  Tensor dequantize() const { return ops::dequantize(data, scale, axis); }  // f32 [R, C]
};

// Which dim of a 2-D operand an axiswise scale reduces over: -1 = along each row (one scale per
// row), 0 = along each column (one scale per column). x is float32 or bfloat16.
Tensor amax(const Tensor& x, Granularity g, int reduce_dim);
Tensor amax_to_scale(const Tensor& amax, DType f8, bool round_to_power_of_2);
Float8Tensor cast_to_float8(const Tensor& x, DType f8, Granularity g, int reduce_dim, bool round_to_power_of_2);
// Casts a 2-D tensor with a given tensorwise scale (delayed scaling, FSDP's float8 all-gather):
// an f32 [1] tensor on x's device (not read by the host), or a host value.
Float8Tensor cast_to_float8_with_scale(const Tensor& x, DType f8, const Tensor& scale);
Float8Tensor cast_to_float8_with_scale(const Tensor& x, DType f8, float scale);

// The recipes (quantize.linear.float8.recipe_name): the cast of each operand of the three GEMMs
// of a linear layer, y = x W^T, dx = dy W, dW = dy^T x, and each GEMM's settings (torchao's
// Float8LinearConfig / Float8GemmConfig). Only the grad_weight GEMM may run in high precision.
struct Recipe {
  std::string name;
  CastConfig input, weight, grad_output;              // output GEMM and grad_input's dy
  CastConfig weight_for_grad_input;                    // W in dx = dy W
  CastConfig input_for_grad_weight, grad_output_for_grad_weight;  // x and dy in dW = dy^T x
  bool round_scales_to_power_of_2 = false;
  bool delayed = false;           // tensorwise casts with scales from an amax history
  int amax_history_len = 16;
  // Fast accumulation per GEMM (torchao: the output GEMM only).
  bool fast_accum_output = true, fast_accum_grad_input = false, fast_accum_grad_weight = false;
  // quantize.linear.float8.emulate: every scaled_mm emulated (dequantize + float32 GEMM) on every
  // device; otherwise only where the op API has no FP8 GEMM (the CPU).
  bool emulate = false;
  // Tensor parallel (tensorwise dynamic scaling only): the layer's operands are parts of tensors
  // split over a group, so every tensorwise amax is replaced by its MAX over that group before it
  // becomes a scale (torchao computes the amax of the whole DTensor). Null: one rank's tensors.
  std::function<void(const Tensor&)> amax_over_group;
};
// tensorwise (default): e4m3 input/weight, e5m2 grad_output, one scale each.
// rowwise: everything e4m3, axiswise along each GEMM's contraction dim, power-of-2 scales.
// rowwise_with_gw_hp: rowwise output GEMM; dx from rowwise dy and a tensorwise weight;
//                     dW in high precision.
// delayed: tensorwise dtypes; each scale comes from the max of that operand's amax history (the
//          last amax_history_len steps) instead of the current tensor; the first step is dynamic.
// Throws UserError for an unknown name.
Recipe recipe_from_name(const std::string& name, int amax_history_len = 16, bool emulate = false);

// cast_to_float8(...).dequantize(): the values an emulated GEMM multiplies. `fixed_scale`
// (tensorwise), when given, replaces the amax-derived scale; `amax_out`, when given, receives the
// tensor's tensorwise amax.
Tensor fake_quantize(const Tensor& x, DType f8, Granularity g, int reduce_dim, bool round_to_power_of_2,
                     const float* fixed_scale = nullptr, float* amax_out = nullptr);

// 10 log10(|ref|^2 / |ref - x|^2): torchao's signal-to-quantization-noise ratio in dB.
double sqnr(const Tensor& ref, const Tensor& x);

}  // namespace titan::float8
