#include "float8/float8.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "core/errors.hpp"

#ifdef TITAN_WITH_CUDA
#include "kernels/float8_cast.hpp"
#endif

namespace titan::float8 {

namespace {

float max_of(DType f8) { return f8 == DType::f8e4m3 ? kF8E4M3Max : kF8E5M2Max; }

// max|x| that propagates NaN (as torch.max / torch.amax do).
inline float absmax_step(float m, float v) {
  const float a = std::fabs(v);
  return (std::isnan(m) || std::isnan(a)) ? std::numeric_limits<float>::quiet_NaN() : (a > m ? a : m);
}

void require_2d_f32(const Tensor& x, const char* what) {
  if (x.dim() != 2 || x.dtype() != DType::f32)
    throw std::invalid_argument(std::string(what) + ": expects a 2-D float32 tensor, got " + shape_str(x.shape()));
#ifndef TITAN_WITH_CUDA
  if (!x.device().is_cpu()) throw std::invalid_argument(std::string(what) + ": tensor on " + x.device().str());
#endif
}

// An axiswise scale reducing along each row (one scale per row); otherwise per column.
bool per_row_axis(Granularity g, int reduce_dim) { return g == Granularity::axiswise && (reduce_dim == -1 || reduce_dim == 1); }

#ifdef TITAN_WITH_CUDA
// GPU tensors go through kernels/float8_cast.hpp, bit-identical to the loops below.
bool on_gpu(const Tensor& t) { return !t.device().is_cpu(); }
cuda::Fp8ScaleAxis gpu_axis(Granularity g, int reduce_dim) {
  if (g != Granularity::axiswise) return cuda::Fp8ScaleAxis::tensor;
  return per_row_axis(g, reduce_dim) ? cuda::Fp8ScaleAxis::per_row : cuda::Fp8ScaleAxis::per_column;
}
#endif

}  // namespace

Tensor amax(const Tensor& x, Granularity g, int reduce_dim) {
  require_2d_f32(x, "float8 amax");
  const std::int64_t R = x.size(0), C = x.size(1);
#ifdef TITAN_WITH_CUDA
  if (on_gpu(x)) {
    const auto axis = gpu_axis(g, reduce_dim);
    const Shape shape = axis == cuda::Fp8ScaleAxis::tensor ? Shape{1} : axis == cuda::Fp8ScaleAxis::per_row ? Shape{R, 1} : Shape{1, C};
    Tensor out = Tensor::empty(shape, DType::f32, x.device());
    if (axis == cuda::Fp8ScaleAxis::tensor) cuda::amax_tensorwise(x.raw(), DType::f32, R * C, out.data<float>());
    else if (axis == cuda::Fp8ScaleAxis::per_row) cuda::amax_rowwise(x.raw(), DType::f32, R, C, out.data<float>());
    else cuda::amax_colwise(x.raw(), DType::f32, R, C, out.data<float>());
    return out;
  }
#endif
  const float* p = x.data<float>();
  if (g == Granularity::tensorwise) {
    float m = 0;
    for (std::int64_t i = 0; i < R * C; ++i) m = absmax_step(m, p[i]);
    return Tensor::full({1}, m);
  }
  if (reduce_dim == -1 || reduce_dim == 1) {  // one amax per row
    Tensor out = Tensor::empty({R, 1});
    for (std::int64_t r = 0; r < R; ++r) {
      float m = 0;
      for (std::int64_t c = 0; c < C; ++c) m = absmax_step(m, p[r * C + c]);
      out.data<float>()[r] = m;
    }
    return out;
  }
  Tensor out = Tensor::zeros({1, C});  // one amax per column
  float* o = out.data<float>();
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t c = 0; c < C; ++c) o[c] = absmax_step(o[c], p[r * C + c]);
  return out;
}

Tensor amax_to_scale(const Tensor& amax, DType f8, bool round_to_power_of_2) {
#ifdef TITAN_WITH_CUDA
  if (on_gpu(amax)) {
    Tensor scale = Tensor::empty(amax.shape(), DType::f32, amax.device());
    cuda::amax_to_scale(amax.data<float>(), amax.numel(), f8, round_to_power_of_2, scale.data<float>(), nullptr);
    return scale;
  }
#endif
  Tensor scale = Tensor::empty(amax.shape());
  const float* a = amax.data<float>();
  float* s = scale.data<float>();
  for (std::int64_t i = 0; i < amax.numel(); ++i) {
    const double clamped = std::isnan(a[i]) ? a[i] : std::max(static_cast<double>(a[i]), kEps);
    float v = static_cast<float>(static_cast<double>(max_of(f8)) / clamped);
    if (round_to_power_of_2) v = std::exp2(std::floor(std::log2(v)));  // float32 ops, as torch on a float32 tensor
    s[i] = v;
  }
  return scale;
}

Float8Tensor cast_to_float8(const Tensor& x, DType f8, Granularity g, int reduce_dim, bool round_to_power_of_2) {
  require_2d_f32(x, "float8 cast");
  if (!x.device().is_cpu())  // the trainer's GPU path fake-quantizes; bytes come from cast_to_float8_with_scale
    throw std::invalid_argument("float8 cast_to_float8: a CPU tensor is needed, got one on " + x.device().str());
  if (f8 != DType::f8e4m3 && f8 != DType::f8e5m2) throw std::invalid_argument("float8 cast: target must be a float8 dtype");
  Float8Tensor out{Tensor::empty(x.shape(), f8), amax_to_scale(amax(x, g, reduce_dim), f8, round_to_power_of_2)};
  const std::int64_t R = x.size(0), C = x.size(1);
  const float* p = x.data<float>();
  const float* s = out.scale.data<float>();
  std::uint8_t* d = out.data.data<std::uint8_t>();
  const bool per_row = per_row_axis(g, reduce_dim);
  const bool per_col = g == Granularity::axiswise && !per_row;
  out.axis = per_row ? Float8Tensor::ScaleAxis::per_row
             : per_col ? Float8Tensor::ScaleAxis::per_column
                       : Float8Tensor::ScaleAxis::tensor;
  auto encode = f8 == DType::f8e4m3 ? f32_to_f8e4m3 : f32_to_f8e5m2;
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t c = 0; c < C; ++c) {
      const float scale = per_row ? s[r] : per_col ? s[c] : s[0];
      d[r * C + c] = encode(p[r * C + c] * scale);  // saturating, round to nearest even
    }
  return out;
}

Tensor Float8Tensor::dequantize() const {
  const std::int64_t R = data.size(0), C = data.size(1);
#ifdef TITAN_WITH_CUDA
  if (on_gpu(data)) {
    const Tensor s = scale.device() == data.device() ? scale : scale.to(data.device());
    const auto ax = axis == ScaleAxis::per_row      ? cuda::Fp8ScaleAxis::per_row
                    : axis == ScaleAxis::per_column ? cuda::Fp8ScaleAxis::per_column
                                                    : cuda::Fp8ScaleAxis::tensor;
    Tensor out = Tensor::empty({R, C}, DType::f32, data.device());
    cuda::dequantize_fp8(data.raw(), data.dtype(), R, C, s.data<float>(), ax, out.data<float>());
    return out;
  }
#endif
  Tensor out = Tensor::empty({R, C});
  const std::uint8_t* d = data.data<std::uint8_t>();
  const float* s = scale.data<float>();
  const bool per_row = axis == ScaleAxis::per_row, per_col = axis == ScaleAxis::per_column;
  auto decode = data.dtype() == DType::f8e4m3 ? f8e4m3_to_f32 : f8e5m2_to_f32;
  float* o = out.data<float>();
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t c = 0; c < C; ++c) {
      const float sc = per_row ? s[r] : per_col ? s[c] : s[0];
      o[r * C + c] = decode(d[r * C + c]) / sc;
    }
  return out;
}

Tensor fake_quantize(const Tensor& x, DType f8, Granularity g, int reduce_dim, bool round_to_power_of_2,
                     const float* fixed_scale, float* amax_out) {
  require_2d_f32(x, "float8 fake_quantize");
  const Tensor scale = fixed_scale ? Tensor::full({1}, *fixed_scale, DType::f32, x.device())
                                   : amax_to_scale(amax(x, g, reduce_dim), f8, round_to_power_of_2);
#ifdef TITAN_WITH_CUDA
  if (on_gpu(x)) {  // cast, then dequantize: the same two roundings as the fused CPU loop
    const auto axis = fixed_scale ? cuda::Fp8ScaleAxis::tensor : gpu_axis(g, reduce_dim);
    const std::int64_t R = x.size(0), C = x.size(1);
    Tensor q = Tensor::empty({R, C}, f8, x.device()), out = Tensor::empty({R, C}, DType::f32, x.device());
    cuda::cast_to_fp8(x.raw(), DType::f32, R, C, f8, scale.data<float>(), axis, q.raw(), nullptr);
    cuda::dequantize_fp8(q.raw(), f8, R, C, scale.data<float>(), axis, out.data<float>());
    if (amax_out) *amax_out = static_cast<float>(amax(x, Granularity::tensorwise, 0).item(0));
    return out;
  }
#endif
  const bool per_row = !fixed_scale && per_row_axis(g, reduce_dim);
  const bool per_col = !fixed_scale && g == Granularity::axiswise && !per_row;
  const std::int64_t R = x.size(0), C = x.size(1);
  Tensor out = Tensor::empty({R, C});
  const float* p = x.data<float>();
  const float* s = scale.data<float>();
  float* o = out.data<float>();
  auto encode = f8 == DType::f8e4m3 ? f32_to_f8e4m3 : f32_to_f8e5m2;
  auto decode = f8 == DType::f8e4m3 ? f8e4m3_to_f32 : f8e5m2_to_f32;
  float m = 0;
  for (std::int64_t r = 0; r < R; ++r)
    for (std::int64_t c = 0; c < C; ++c) {
      const float v = p[r * C + c];
      const float sc = per_row ? s[r] : per_col ? s[c] : s[0];
      o[r * C + c] = decode(encode(v * sc)) / sc;
      if (amax_out) m = absmax_step(m, v);
    }
  if (amax_out) *amax_out = m;
  return out;
}

Float8Tensor cast_to_float8_with_scale(const Tensor& x, DType f8, float scale) {
  require_2d_f32(x, "float8 cast");
#ifdef TITAN_WITH_CUDA
  if (on_gpu(x)) {
    Float8Tensor out{Tensor::empty(x.shape(), f8, x.device()), Tensor::full({1}, scale, DType::f32, x.device()),
                     Float8Tensor::ScaleAxis::tensor};
    cuda::cast_to_fp8(x.raw(), DType::f32, x.size(0), x.size(1), f8, out.scale.data<float>(), cuda::Fp8ScaleAxis::tensor,
                      out.data.raw(), nullptr);
    return out;
  }
#endif
  Float8Tensor out{Tensor::empty(x.shape(), f8), Tensor::full({1}, scale), Float8Tensor::ScaleAxis::tensor};
  const float* p = x.data<float>();
  std::uint8_t* d = out.data.data<std::uint8_t>();
  auto encode = f8 == DType::f8e4m3 ? f32_to_f8e4m3 : f32_to_f8e5m2;
  for (std::int64_t i = 0; i < x.numel(); ++i) d[i] = encode(p[i] * scale);
  return out;
}

Recipe recipe_from_name(const std::string& name, int amax_history_len) {
  Recipe r;
  r.name = name;
  r.amax_history_len = amax_history_len;
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
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    const double a = ref.item(i), d = a - x.item(i);
    signal += a * a;
    noise += d * d;
  }
  return 10.0 * std::log10(signal / noise);
}

}  // namespace titan::float8
