#include "float8/float8.hpp"

#include <cmath>

#include "core/errors.hpp"

namespace titan::float8 {

ops::ScaleAxis scale_axis(Granularity g, int reduce_dim) {
  if (g == Granularity::tensorwise) return ops::ScaleAxis::tensor;
  return reduce_dim == -1 || reduce_dim == 1 ? ops::ScaleAxis::per_row : ops::ScaleAxis::per_column;
}

Tensor amax(const Tensor& x, Granularity g, int reduce_dim) { return ops::amax(x, scale_axis(g, reduce_dim)); }

Tensor amax_to_scale(const Tensor& amax, DType f8, bool round_to_power_of_2) {
  return ops::amax_to_scale(amax, f8, round_to_power_of_2);
}

Float8Tensor cast_to_float8(const Tensor& x, DType f8, Granularity g, int reduce_dim, bool round_to_power_of_2) {
  const ops::Float8Cast c = ops::cast_to_float8(x, f8, scale_axis(g, reduce_dim), round_to_power_of_2);
  return {c.data, c.scale, c.axis};
}

Float8Tensor cast_to_float8_with_scale(const Tensor& x, DType f8, const Tensor& scale) {
  const ops::Float8Cast c = ops::cast_to_float8(x, f8, scale, ops::ScaleAxis::tensor);
  return {c.data, c.scale, c.axis};
}

Float8Tensor cast_to_float8_with_scale(const Tensor& x, DType f8, float scale) {
  return cast_to_float8_with_scale(x, f8, Tensor::full({1}, scale, DType::f32, x.device()));
}

Tensor fake_quantize(const Tensor& x, DType f8, Granularity g, int reduce_dim, bool round_to_power_of_2,
                     const float* fixed_scale, float* amax_out) {
  if (amax_out) *amax_out = static_cast<float>(ops::amax(x, ops::ScaleAxis::tensor).item(0));
  const Float8Tensor q = fixed_scale ? cast_to_float8_with_scale(x, f8, *fixed_scale)
                                     : cast_to_float8(x, f8, g, reduce_dim, round_to_power_of_2);
  return q.dequantize();
}

Recipe recipe_from_name(const std::string& name, int amax_history_len, bool emulate) {
  Recipe r;
  r.name = name;
  r.amax_history_len = amax_history_len;
  r.emulate = emulate;
  const CastConfig e4m3_tw{true, Granularity::tensorwise, DType::f8e4m3};
  const CastConfig e5m2_tw{true, Granularity::tensorwise, DType::f8e5m2};
  const CastConfig e4m3_axis{true, Granularity::axiswise, DType::f8e4m3};
  const CastConfig high_precision{false, Granularity::tensorwise, DType::f32};
  if (name == "tensorwise" || name == "delayed") {
    r.delayed = name == "delayed";
    r.input = r.weight = r.weight_for_grad_input = r.input_for_grad_weight = e4m3_tw;
    r.grad_output = r.grad_output_for_grad_weight = e5m2_tw;
  } else if (name == "rowwise") {
    r.input = r.weight = r.grad_output = r.weight_for_grad_input = r.input_for_grad_weight =
        r.grad_output_for_grad_weight = e4m3_axis;
    r.round_scales_to_power_of_2 = true;
  } else if (name == "rowwise_with_gw_hp") {
    r.input = r.weight = r.grad_output = e4m3_axis;
    r.weight_for_grad_input = e4m3_tw;
    r.input_for_grad_weight = r.grad_output_for_grad_weight = high_precision;
    r.round_scales_to_power_of_2 = true;
  } else {
    throw UserError("quantize.linear.float8.recipe_name: unknown recipe '" + name +
                    "' (tensorwise, rowwise, rowwise_with_gw_hp, delayed)");
  }
  return r;
}

double sqnr(const Tensor& ref, const Tensor& x) {
  double signal = 0, noise = 0;
  const std::int64_t ref_numel = ref.numel();
  for (std::int64_t i = 0; i < ref_numel; ++i) {
    const double a = ref.item(i), d = a - x.item(i);
    signal += a * a;
    noise += d * d;
  }
  return 10.0 * std::log10(signal / noise);
}

}  // namespace titan::float8
