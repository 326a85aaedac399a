#include "ops/ops.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

#include "core/backend.hpp"
#include "core/trace.hpp"
#include "ops/cpu/adamw.hpp"
#include "ops/cpu/threads.hpp"
#include "ops/cpu/attention.hpp"
#include "ops/cpu/blas.hpp"
#include "ops/cpu/embedding.hpp"
#include "ops/cpu/fast_math.hpp"
#include "ops/cpu/float8.hpp"
#include "ops/cpu/loss.hpp"
#include "ops/cpu/norm.hpp"
#include "ops/cpu/rope.hpp"

#ifdef TITAN_WITH_CUDA
#include "ops/cuda_ops.hpp"
// A CUDA tensor goes to the CUDA implementation of the op (after the device-independent shape
// checks above the line); everything below the line is the CPU reference.
#define TITAN_CUDA_DISPATCH(tensor, call) \
  if (!(tensor).device().is_cpu()) return cuda_impl::call
#else
#define TITAN_CUDA_DISPATCH(tensor, call)
#endif

namespace titan::ops {

namespace {

[[noreturn]] void bad(const std::string& op, const std::string& why) { throw std::invalid_argument(op + ": " + why); }

void require(bool ok, const char* op, const std::string& why) {
  if (!ok) bad(op, why);
}

// Calls f(T{}) with T = float or double after checking that every tensor is a CPU tensor of the
// same floating dtype.
template <class F>
void dispatch(const char* op, std::initializer_list<const Tensor*> ts, F&& f) {
  const Tensor& first = **ts.begin();
  for (const Tensor* t : ts) {
    require(t->defined(), op, "undefined tensor");
    require(t->device().is_cpu(), op, "tensor on " + t->device().str() + " (no CUDA backend in this build)");
    require(t->dtype() == first.dtype(), op,
            "dtypes differ (" + std::string(dtype_name(t->dtype())) + " vs " + std::string(dtype_name(first.dtype())) + ")");
  }
  if (first.dtype() == DType::f32) f(float{});
  else if (first.dtype() == DType::f64) f(double{});
  else bad(op, "dtype " + std::string(dtype_name(first.dtype())) + " is not supported (float32, float64)");
}

std::int64_t rows_of(const Tensor& t) { return t.numel() / t.size(-1); }

// ---- bfloat16 and float16 on the CPU: storage types ----
// The CPU kernels compute in f32 (or f64). A CPU op given bf16 (or f16) tensors widens them to
// f32 (exact), runs the f32 kernel, and rounds each output to that dtype once. Those are the
// rounding points of a CUDA kernel with half inputs/outputs and f32 math, so a half-precision run
// on the CPU loses precision where the GPU's does, and its activations take half the memory.
// Outputs that stay f32 on every device (rmsnorm's rstd, attention's lse, the loss) stay f32 here.
// any_cpu_half notes which half dtype the op was given (a run uses one), and to_half rounds to it:
// nested calls on the widened f32 tensors leave the note alone.
thread_local DType t_half = DType::bf16;
bool is_half(DType dt) { return dt == DType::bf16 || dt == DType::f16; }
bool any_cpu_half(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->defined() && t->device().is_cpu() && is_half(t->dtype())) {
      t_half = t->dtype();
      return true;
    }
  return false;
}
Tensor widened(const Tensor& t) { return t.defined() && is_half(t.dtype()) ? t.to(DType::f32) : t; }
// A GEMM of two bf16 tensors runs as a native bf16 GEMM with f32 accumulation where the CPU has
// AVX512_BF16/AMX and training.cpu_bf16_gemm allows (ops/cpu/blas.hpp); the products are exact
// either way, so it differs from the widened f32 GEMM in summation order only. (f16: widened.)
bool native_bf16(const Tensor& a, const Tensor& b) {
  return a.dtype() == DType::bf16 && b.dtype() == DType::bf16 && cpu::gemm_bf16_native();
}
const std::uint16_t* bf16_bits(const Tensor& t) { return t.data<std::uint16_t>(); }
Tensor to_half(const Tensor& t) { return t.to(t_half); }

}  // namespace

bool computes_in(Device device, DType dtype) {
  if (device.is_cpu()) return dtype == DType::f32 || dtype == DType::f64 || is_half(dtype);
  return dtype == DType::f32 || dtype == DType::bf16;  // the CUDA ops
}

Tensor linear(const Tensor& x, const Tensor& w) {
  TITAN_TRACE_SPAN("gemm", "linear");  // profiling.enable_profiling (core/trace.hpp)
  require(w.dim() == 2 && x.size(-1) == w.size(1), "linear",
          "x " + shape_str(x.shape()) + " does not match weight " + shape_str(w.shape()));
  TITAN_CUDA_DISPATCH(x, linear(x, w));
  Shape out_shape = x.shape();
  out_shape.back() = w.size(0);
  const std::int64_t M = rows_of(x), N = w.size(0), K = w.size(1);
  if (any_cpu_half({&x, &w})) {
    if (!native_bf16(x, w)) return to_half(linear(widened(x), widened(w)));
    Tensor yf = Tensor::empty(out_shape, DType::f32);
    cpu::gemm_bf16(false, true, int(M), int(N), int(K), 1.f, bf16_bits(x), int(K), bf16_bits(w), int(K), 0.f,
                   yf.data<float>(), int(N));
    return to_half(yf);
  }
  Tensor y = Tensor::empty(out_shape, x.dtype());
  dispatch("linear", {&x, &w}, [&](auto t) {
    using T = decltype(t);
    cpu::gemm(false, true, int(M), int(N), int(K), T(1), x.data<T>(), int(K), w.data<T>(), int(K), T(0), y.data<T>(), int(N));
  });
  return y;
}

Tensor linear_backward_input(const Tensor& dy, const Tensor& w) {
  TITAN_TRACE_SPAN("gemm", "linear_backward_input");  // profiling.enable_profiling (core/trace.hpp)
  require(dy.size(-1) == w.size(0), "linear_backward_input", "dy " + shape_str(dy.shape()) + " vs weight " + shape_str(w.shape()));
  TITAN_CUDA_DISPATCH(dy, linear_backward_input(dy, w));
  Shape shape = dy.shape();
  shape.back() = w.size(1);
  const std::int64_t M = rows_of(dy), N = w.size(0), K = w.size(1);
  if (any_cpu_half({&dy, &w})) {
    if (!native_bf16(dy, w)) return to_half(linear_backward_input(widened(dy), widened(w)));
    Tensor dxf = Tensor::empty(shape, DType::f32);
    cpu::gemm_bf16(false, false, int(M), int(K), int(N), 1.f, bf16_bits(dy), int(N), bf16_bits(w), int(K), 0.f,
                   dxf.data<float>(), int(K));
    return to_half(dxf);
  }
  Tensor dx = Tensor::empty(shape, dy.dtype());
  dispatch("linear_backward_input", {&dy, &w}, [&](auto t) {
    using T = decltype(t);
    cpu::gemm(false, false, int(M), int(K), int(N), T(1), dy.data<T>(), int(N), w.data<T>(), int(K), T(0), dx.data<T>(), int(K));
  });
  return dx;
}

void linear_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dw, bool accumulate) {
  TITAN_TRACE_SPAN("gemm", "linear_backward_weight");  // profiling.enable_profiling (core/trace.hpp)
  const std::int64_t M = rows_of(dy), N = dy.size(-1), K = x.size(-1);
  require(rows_of(x) == M && dw.size(0) == N && dw.size(1) == K, "linear_backward_weight", "shape mismatch");
  TITAN_CUDA_DISPATCH(dy, linear_backward_weight(dy, x, dw, accumulate));
  if (any_cpu_half({&dy, &x, &dw})) {
    Tensor dwf = dw.dtype() == DType::f32 ? dw : accumulate ? widened(dw) : Tensor::empty(dw.shape(), DType::f32);
    if (native_bf16(dy, x))
      cpu::gemm_bf16(true, false, int(N), int(K), int(M), 1.f, bf16_bits(dy), int(N), bf16_bits(x), int(K),
                     accumulate ? 1.f : 0.f, dwf.data<float>(), int(K));
    else
      linear_backward_weight(widened(dy), widened(x), dwf, accumulate);
    if (dwf.raw() != dw.raw()) dw.copy_from(dwf);
    return;
  }
  dispatch("linear_backward_weight", {&dy, &x, &dw}, [&](auto t) {
    using T = decltype(t);
    cpu::gemm(true, false, int(N), int(K), int(M), T(1), dy.data<T>(), int(N), x.data<T>(), int(K), T(accumulate ? 1 : 0),
              dw.data<T>(), int(K));
  });
}

void matmul(bool trans_a, bool trans_b, double alpha, const Tensor& a, const Tensor& b, double beta, Tensor& c) {
  TITAN_TRACE_SPAN("gemm", "matmul");  // profiling.enable_profiling (core/trace.hpp)
  require(a.dim() == b.dim() && a.dim() == c.dim() && (a.dim() == 2 || a.dim() == 3), "matmul", "expects 2-D or 3-D tensors");
  const bool batched = a.dim() == 3;
  const std::int64_t batch = batched ? a.size(0) : 1;
  const std::int64_t ar = a.size(-2), ac = a.size(-1), br = b.size(-2), bc = b.size(-1);
  const std::int64_t M = trans_a ? ac : ar, K = trans_a ? ar : ac, N = trans_b ? br : bc;
  require(!batched || (b.size(0) == batch && c.size(0) == batch), "matmul",
          "batch sizes differ: " + shape_str(a.shape()) + ", " + shape_str(b.shape()) + ", " + shape_str(c.shape()));
  require((trans_b ? bc : br) == K && c.size(-2) == M && c.size(-1) == N, "matmul",
          shape_str(a.shape()) + " x " + shape_str(b.shape()) + " -> " + shape_str(c.shape()) + " do not fit");
  TITAN_CUDA_DISPATCH(a, matmul(trans_a, trans_b, alpha, a, b, beta, c));
  if (any_cpu_half({&a, &b, &c})) {
    Tensor cf = c.dtype() == DType::f32 ? c : widened(c);
    if (native_bf16(a, b)) {
      for (std::int64_t i = 0; i < batch; ++i)
        cpu::gemm_bf16(trans_a, trans_b, int(M), int(N), int(K), float(alpha), bf16_bits(a) + i * ar * ac, int(ac),
                       bf16_bits(b) + i * br * bc, int(bc), float(beta), cf.data<float>() + i * M * N, int(N));
    } else {
      matmul(trans_a, trans_b, alpha, widened(a), widened(b), beta, cf);
    }
    if (cf.raw() != c.raw()) c.copy_from(cf);
    return;
  }
  dispatch("matmul", {&a, &b, &c}, [&](auto t) {
    using T = decltype(t);
    for (std::int64_t i = 0; i < batch; ++i)
      cpu::gemm(trans_a, trans_b, int(M), int(N), int(K), T(alpha), a.data<T>() + i * ar * ac, int(ac),
                b.data<T>() + i * br * bc, int(bc), T(beta), c.data<T>() + i * M * N, int(N));
  });
}

// ---- float8 ----

namespace {

cpu::F8Group group_of(ScaleAxis a) {
  return a == ScaleAxis::tensor ? cpu::F8Group::tensor : a == ScaleAxis::per_row ? cpu::F8Group::row : cpu::F8Group::column;
}
std::int64_t groups_of(ScaleAxis a, std::int64_t R, std::int64_t C) {
  return a == ScaleAxis::tensor ? 1 : a == ScaleAxis::per_row ? R : C;
}
Shape scale_shape_of(ScaleAxis a, std::int64_t R, std::int64_t C) {
  return a == ScaleAxis::tensor ? Shape{1} : a == ScaleAxis::per_row ? Shape{R, 1} : Shape{1, C};
}
bool is_float8(DType dt) { return dt == DType::f8e4m3 || dt == DType::f8e5m2; }
float float8_max(DType f8) { return f8 == DType::f8e4m3 ? kF8E4M3Max : kF8E5M2Max; }

void require_cpu(const char* op, const Tensor& t) {
  require(t.device().is_cpu(), op, "tensor on " + t.device().str() + " (no CUDA backend in this build)");
}
void require_float8_target(const char* op, DType f8) {
  require(is_float8(f8), op, "the target dtype must be float8_e4m3fn or float8_e5m2, got " + std::string(dtype_name(f8)));
}
// A high-precision operand: defined, 2-D, float32 or bfloat16.
void require_2d_high_precision(const char* op, const Tensor& x) {
  require(x.defined() && x.dim() == 2, op, "expects a 2-D tensor, got " + (x.defined() ? shape_str(x.shape()) : "none"));
  require(x.dtype() == DType::f32 || x.dtype() == DType::bf16, op,
          "dtype " + std::string(dtype_name(x.dtype())) + " is not supported (float32, bfloat16)");
}
void require_2d_float8(const char* op, const Tensor& q) {
  require(q.defined() && q.dim() == 2 && is_float8(q.dtype()), op,
          "expects 2-D float8 data, got " + (q.defined() ? shape_str(q.shape()) + " " + std::string(dtype_name(q.dtype())) : "none"));
}
// A float32 scale with one element per group of `axis`, on `device`.
void require_scale(const char* op, const Tensor& scale, ScaleAxis axis, std::int64_t R, std::int64_t C, Device device) {
  require(scale.defined() && scale.dtype() == DType::f32, op, "the scale must be a float32 tensor");
  require(scale.numel() == groups_of(axis, R, C), op,
          "scale " + shape_str(scale.shape()) + " does not have one element per group of a " + shape_str({R, C}) + " tensor");
  require(scale.device() == device, op, "scale on " + scale.device().str() + ", data on " + device.str());
}
// scaled_mm's scale of an operand with `rows` rows: [1] (any one-element shape) or [rows, 1].
ScaleAxis mm_scale_axis(const Tensor& scale, std::int64_t rows, const char* what) {
  require(scale.defined() && scale.dtype() == DType::f32, "scaled_mm", std::string(what) + " must be a float32 tensor");
  if (scale.numel() == 1) return ScaleAxis::tensor;
  require(scale.shape() == Shape{rows, 1}, "scaled_mm",
          std::string(what) + " is " + shape_str(scale.shape()) + ", expected [1] or " + shape_str({rows, 1}));
  return ScaleAxis::per_row;
}
Tensor as_f32(const Tensor& x) { return x.dtype() == DType::f32 ? x : x.to(DType::f32); }

}  // namespace

Tensor amax(const Tensor& x, ScaleAxis axis) {
  require_2d_high_precision("amax", x);
  TITAN_CUDA_DISPATCH(x, amax(x, axis));
  require_cpu("amax", x);
  const std::int64_t R = x.size(0), C = x.size(1);
  Tensor out = Tensor::empty(scale_shape_of(axis, R, C));
  cpu::float8_amax(as_f32(x).data<float>(), R, C, group_of(axis), out.data<float>());
  return out;
}

void amax_history_push(const Tensor& row, const Tensor& pushes, const Tensor& amax) {
  require(row.defined() && row.dtype() == DType::f32 && row.numel() >= 1 && amax.defined() &&
              amax.dtype() == DType::f32 && amax.numel() == 1 && pushes.defined() && pushes.dtype() == DType::i64 &&
              pushes.numel() == 1,
          "amax_history_push", "expects a float32 row, an int64 [1] push count and a float32 [1] amax");
  require(row.device() == pushes.device() && row.device() == amax.device(), "amax_history_push",
          "the row, the count and the amax are on different devices");
  TITAN_CUDA_DISPATCH(row, amax_history_push(row, pushes, amax));
  std::int64_t& n = *pushes.data<std::int64_t>();
  row.data<float>()[n % row.numel()] = *amax.data<float>();
  ++n;
}

Tensor amax_to_scale(const Tensor& amax, DType f8, bool round_to_power_of_2) {
  require(amax.defined() && amax.dtype() == DType::f32, "amax_to_scale", "expects a float32 amax tensor");
  require_float8_target("amax_to_scale", f8);
  TITAN_CUDA_DISPATCH(amax, amax_to_scale(amax, f8, round_to_power_of_2));
  require_cpu("amax_to_scale", amax);
  Tensor scale = Tensor::empty(amax.shape());
  cpu::float8_amax_to_scale(amax.data<float>(), amax.numel(), float8_max(f8), kFloat8Eps, round_to_power_of_2,
                            scale.data<float>());
  return scale;
}

Float8Cast cast_to_float8(const Tensor& x, DType f8, const Tensor& scale, ScaleAxis axis, Float8Layout layout,
                          Tensor* amax_out) {
  require_2d_high_precision("cast_to_float8", x);
  require_float8_target("cast_to_float8", f8);
  const std::int64_t R = x.size(0), C = x.size(1);
  require_scale("cast_to_float8", scale, axis, R, C, x.device());
  TITAN_CUDA_DISPATCH(x, cast_to_float8(x, f8, scale, axis, layout, amax_out));
  require_cpu("cast_to_float8", x);
  if (amax_out) *amax_out = amax(x, ScaleAxis::tensor);  // the reference: its own pass
  Float8Cast out;
  out.scale = scale;
  out.axis = axis;
  if (layout != Float8Layout::transposed) out.data = Tensor::empty({R, C}, f8);
  if (layout != Float8Layout::row_major) out.data_t = Tensor::empty({C, R}, f8);
  cpu::float8_cast(as_f32(x).data<float>(), R, C, f8, scale.data<float>(), group_of(axis),
                   out.data.defined() ? out.data.data<std::uint8_t>() : nullptr,
                   out.data_t.defined() ? out.data_t.data<std::uint8_t>() : nullptr);
  return out;
}

Float8Cast cast_to_float8(const Tensor& x, DType f8, ScaleAxis axis, bool round_to_power_of_2, Float8Layout layout) {
  require_2d_high_precision("cast_to_float8", x);
  require_float8_target("cast_to_float8", f8);
  TITAN_CUDA_DISPATCH(x, cast_to_float8(x, f8, axis, round_to_power_of_2, layout));
  return cast_to_float8(x, f8, amax_to_scale(amax(x, axis), f8, round_to_power_of_2), axis, layout);
}

Tensor dequantize(const Tensor& data, const Tensor& scale, ScaleAxis axis) {
  require_2d_float8("dequantize", data);
  const std::int64_t R = data.size(0), C = data.size(1);
  require_scale("dequantize", scale, axis, R, C, data.device());
  TITAN_CUDA_DISPATCH(data, dequantize(data, scale, axis));
  require_cpu("dequantize", data);
  Tensor out = Tensor::empty({R, C});
  cpu::float8_dequantize(data.data<std::uint8_t>(), R, C, data.dtype(), scale.data<float>(), group_of(axis),
                         out.data<float>());
  return out;
}

Tensor transpose_float8(const Tensor& data) {
  require_2d_float8("transpose_float8", data);
  TITAN_CUDA_DISPATCH(data, transpose_float8(data));
  require_cpu("transpose_float8", data);
  const std::int64_t R = data.size(0), C = data.size(1);
  Tensor out = Tensor::empty({C, R}, data.dtype());
  cpu::float8_transpose(data.data<std::uint8_t>(), R, C, out.data<std::uint8_t>());
  return out;
}

Tensor scaled_mm(const Tensor& a, const Tensor& scale_a, const Tensor& b, const Tensor& scale_b, DType out_dtype,
                 bool use_fast_accum, bool emulate) {
  TITAN_TRACE_SPAN("gemm", "scaled_mm");  // profiling.enable_profiling (core/trace.hpp)
  require_2d_float8("scaled_mm", a);
  require_2d_float8("scaled_mm", b);
  require(a.size(1) == b.size(1), "scaled_mm",
          "a " + shape_str(a.shape()) + " and b " + shape_str(b.shape()) + " must share their last (contraction) dim");
  require(out_dtype == DType::f32 || out_dtype == DType::bf16, "scaled_mm",
          "out_dtype " + std::string(dtype_name(out_dtype)) + " is not supported (float32, bfloat16)");
  const std::int64_t M = a.size(0), N = b.size(0), K = a.size(1);
  const ScaleAxis axis_a = mm_scale_axis(scale_a, M, "scale_a"), axis_b = mm_scale_axis(scale_b, N, "scale_b");
  for (const Tensor* t : {&scale_a, &b, &scale_b})
    require(t->device() == a.device(), "scaled_mm", "tensors on " + a.device().str() + " and " + t->device().str());
#ifdef TITAN_WITH_CUDA
  if (!emulate && !a.device().is_cpu() && cuda_impl::scaled_mm_supported(N, K))
    return cuda_impl::scaled_mm(a, scale_a, b, scale_b, out_dtype, use_fast_accum);
#else
  (void)use_fast_accum;  // the emulation accumulates in float32 either way
  (void)emulate;         // and is all a build without CUDA has
  (void)K;
#endif
  // torchao's emulate mode: mm(a.float() / scale_a, b.float() / scale_b).to(out_dtype).
  const Tensor y = linear(dequantize(a, scale_a, axis_a), dequantize(b, scale_b, axis_b));
  return y.dtype() == out_dtype ? y : y.to(out_dtype);
}

std::string scaled_mm_implementation(Device device, bool emulate) {
  if (emulate || device.is_cpu()) return "emulated: float8 operands dequantized, float32 GEMMs";
  return "cuBLASLt FP8 GEMMs, float32 accumulation";
}

Tensor add(const Tensor& a, const Tensor& b) {
  TITAN_CUDA_DISPATCH(a, add(a, b));
  // One pass, out = a + b (the bits of clone + add_, whose a + 1 * b is a + b, without the copy).
  require(a.numel() == b.numel(), "add", shape_str(a.shape()) + " + " + shape_str(b.shape()));
  if (any_cpu_half({&a, &b})) {
    Tensor sum = add(widened(a), widened(b));
    return is_half(a.dtype()) ? to_half(sum) : sum;
  }
  Tensor out = Tensor::empty(a.shape(), a.dtype());
  dispatch("add", {&a, &b}, [&](auto t) {
    using T = decltype(t);
    const T *pa = a.data<T>(), *pb = b.data<T>();
    T* po = out.data<T>();
    cpu::parallel_chunks(a.numel(), cpu::kElementwiseGrain, [&](std::int64_t i0, std::int64_t i1) {
      for (std::int64_t i = i0; i < i1; ++i) po[i] = pa[i] + pb[i];
    });
  });
  return out;
}

void add_(Tensor& a, const Tensor& b, double alpha) {
  require(a.numel() == b.numel(), "add", shape_str(a.shape()) + " + " + shape_str(b.shape()));
  TITAN_CUDA_DISPATCH(a, add_(a, b, alpha));
  if (any_cpu_half({&a, &b})) {
    Tensor af = widened(a);
    add_(af, widened(b), alpha);
    if (af.raw() != a.raw()) a.copy_from(af);
    return;
  }
  dispatch("add", {&a, &b}, [&](auto t) {
    using T = decltype(t);
    T* pa = a.data<T>();
    const T* pb = b.data<T>();
    const T al = static_cast<T>(alpha);
    cpu::parallel_chunks(a.numel(), cpu::kElementwiseGrain, [&](std::int64_t i0, std::int64_t i1) {
      for (std::int64_t i = i0; i < i1; ++i) pa[i] += al * pb[i];
    });
  });
}

void scale_(Tensor& a, double alpha) {
  TITAN_CUDA_DISPATCH(a, scale_(a, alpha));
  if (any_cpu_half({&a})) {
    Tensor af = widened(a);
    scale_(af, alpha);
    a.copy_from(af);
    return;
  }
  dispatch("scale", {&a}, [&](auto t) {
    using T = decltype(t);
    T* p = a.data<T>();
    const std::int64_t a_numel = a.numel();
    for (std::int64_t i = 0; i < a_numel; ++i) p[i] *= static_cast<T>(alpha);
  });
}

Tensor swiglu(const Tensor& a, const Tensor& b) {
  require(a.shape() == b.shape(), "swiglu", shape_str(a.shape()) + " vs " + shape_str(b.shape()));
  TITAN_CUDA_DISPATCH(a, swiglu(a, b));
  if (any_cpu_half({&a, &b})) return to_half(swiglu(widened(a), widened(b)));
  Tensor h = Tensor::empty(a.shape(), a.dtype());
  dispatch("swiglu", {&a, &b}, [&](auto t) {
    using T = decltype(t);
    const T *pa = a.data<T>(), *pb = b.data<T>();
    T* ph = h.data<T>();
    cpu::parallel_chunks(a.numel(), cpu::kElementwiseGrain, [&](std::int64_t i0, std::int64_t i1) {
#pragma omp simd
      for (std::int64_t i = i0; i < i1; ++i) ph[i] = pa[i] / (T(1) + cpu::exp_kernel<T>(-pa[i])) * pb[i];
    });
  });
  return h;
}

void swiglu_backward(const Tensor& dh, const Tensor& a, const Tensor& b, Tensor& da, Tensor& db) {
  TITAN_CUDA_DISPATCH(a, swiglu_backward(dh, a, b, da, db));
  if (any_cpu_half({&dh, &a, &b})) {
    Tensor daf, dbf;
    swiglu_backward(widened(dh), widened(a), widened(b), daf, dbf);
    da = to_half(daf);
    db = to_half(dbf);
    return;
  }
  da = Tensor::empty(a.shape(), a.dtype());
  db = Tensor::empty(b.shape(), b.dtype());
  dispatch("swiglu_backward", {&dh, &a, &b}, [&](auto t) {
    using T = decltype(t);
    const T *pdh = dh.data<T>(), *pa = a.data<T>(), *pb = b.data<T>();
    T *pda = da.data<T>(), *pdb = db.data<T>();
    cpu::parallel_chunks(a.numel(), cpu::kElementwiseGrain, [&](std::int64_t i0, std::int64_t i1) {
#pragma omp simd
      for (std::int64_t i = i0; i < i1; ++i) {
        const T s = T(1) / (T(1) + cpu::exp_kernel<T>(-pa[i]));  // sigmoid
        const T silu = pa[i] * s;
        pda[i] = pdh[i] * pb[i] * s * (T(1) + pa[i] * (T(1) - s));
        pdb[i] = pdh[i] * silu;
      }
    });
  });
}

double sum(const Tensor& a) {
  TITAN_CUDA_DISPATCH(a, sum(a));
  if (any_cpu_half({&a})) return sum(widened(a));
  double s = 0;
  dispatch("sum", {&a}, [&](auto t) {
    using T = decltype(t);
    const T* p = a.data<T>();
    const std::int64_t a_numel = a.numel();
    s = cpu::sum_in_lanes(p, a_numel, [](double x) { return x; });
  });
  return s;
}

double sum_squares(const Tensor& a) {
  TITAN_CUDA_DISPATCH(a, sum_squares(a));
  if (any_cpu_half({&a})) return sum_squares(widened(a));
  double s = 0;
  dispatch("sum_squares", {&a}, [&](auto t) {
    using T = decltype(t);
    const T* p = a.data<T>();
    const std::int64_t a_numel = a.numel();
    s = cpu::sum_in_lanes(p, a_numel, [](double x) { return x * x; });
  });
  return s;
}

Tensor sum_squares_each(const std::vector<Tensor>& tensors) {
  if (tensors.empty()) return Tensor::empty({0}, DType::f64);
  const Device device = tensors.front().device();
  for (const Tensor& t : tensors)
    require(t.device() == device, "sum_squares_each", "tensors on " + device.str() + " and " + t.device().str());
  TITAN_CUDA_DISPATCH(tensors.front(), sum_squares_each(tensors));
  Tensor out = Tensor::empty({std::int64_t(tensors.size())}, DType::f64);
  for (size_t i = 0; i < tensors.size(); ++i) out.data<double>()[i] = sum_squares(tensors[i]);
  return out;
}

Tensor sum_squares_total(const std::vector<Tensor>& tensors, Device device) {
  for (const Tensor& t : tensors)
    require(t.device() == device, "sum_squares_total", "tensors on " + device.str() + " and " + t.device().str());
  if (tensors.empty()) return Tensor::zeros({1}, DType::f64, device);
  TITAN_CUDA_DISPATCH(tensors.front(), sum_squares_total(tensors));
  double total = 0;
  for (const double part : sum_squares_each(tensors).to_vector()) total += part;
  return Tensor::full({1}, total, DType::f64);
}

void clip_to_max_norm_(const std::vector<Tensor>& tensors, const Tensor& total_sq, double max_norm) {
  require(total_sq.numel() == 1 && total_sq.dtype() == DType::f64, "clip_to_max_norm_",
          "total_sq must be a one-element float64 tensor (sum_squares_total)");
  for (const Tensor& t : tensors)
    require(t.device() == total_sq.device(), "clip_to_max_norm_",
            "a tensor on " + t.device().str() + ", total_sq on " + total_sq.device().str());
  if (tensors.empty() || max_norm <= 0) return;
  TITAN_CUDA_DISPATCH(total_sq, clip_to_max_norm_(tensors, total_sq, max_norm));
  const double norm = std::sqrt(total_sq.item(0));
  const double coef = max_norm / (norm + 1e-6);
  if (!std::isfinite(norm) || !(coef < 1.0)) return;
  for (Tensor t : tensors) scale_(t, coef);
}

namespace {
// ops::adamw_step's float32 scalars, in the order of the [6] tensor (and of cuda::AdamWScalars).
constexpr std::int64_t kAdamWScalars = 6;
std::array<float, kAdamWScalars> adamw_f32(const AdamWStep& hp) {
  const double bias1 = 1.0 - std::pow(hp.beta1, double(hp.step));
  const double bias2_sqrt = std::sqrt(1.0 - std::pow(hp.beta2, double(hp.step)));
  return {static_cast<float>(hp.beta1),       static_cast<float>(hp.beta2),
          static_cast<float>(hp.lr / bias1),  static_cast<float>(1.0 - hp.lr * hp.weight_decay),
          static_cast<float>(hp.eps),         static_cast<float>(1.0 / bias2_sqrt)};
}

void check_adamw_lists(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                       const std::vector<Tensor>& exp_avg, const std::vector<Tensor>& exp_avg_sq) {
  require(grads.size() == params.size() && exp_avg.size() == params.size() && exp_avg_sq.size() == params.size(),
          "adamw_step", "the parameter, gradient and moment lists differ in length");
  for (size_t i = 0; i < params.size(); ++i)
    for (const Tensor* t : {&params[i], &grads[i], &exp_avg[i], &exp_avg_sq[i]}) {
      require(t->defined() && t->dtype() == DType::f32, "adamw_step", "tensor " + std::to_string(i) + " must be float32");
      require(t->numel() == params[i].numel(), "adamw_step", "tensor " + std::to_string(i) + ": shapes differ");
      require(t->device() == params[i].device(), "adamw_step",
              "tensor " + std::to_string(i) + ": the parameter, its gradient and its moments are on different devices");
    }
}

void adamw_cpu(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
               const float* s) {
  float *p = param.data<float>(), *m = exp_avg.data<float>(), *v = exp_avg_sq.data<float>();
  const float* g = grad.data<float>();
  cpu::parallel_chunks(param.numel(), cpu::kElementwiseGrain, [&](std::int64_t j0, std::int64_t j1) {
    cpu::adamw_update(p + j0, g + j0, m + j0, v + j0, j1 - j0, s[0], s[1], s[2], s[3], s[4], s[5]);
  });
}
}  // namespace

void adamw_scalars_into(const Tensor& scalars, const AdamWStep& hp) {
  require(scalars.defined() && scalars.dtype() == DType::f32 && scalars.numel() == kAdamWScalars,
          "adamw_scalars_into", "expects a float32 tensor of 6 elements");
  const std::array<float, kAdamWScalars> s = adamw_f32(hp);
  copy_bytes(scalars.raw(), scalars.device(), s.data(), Device::cpu(), sizeof s);  // to a GPU: queued, no host wait
}

void adamw_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& exp_avg,
                const std::vector<Tensor>& exp_avg_sq, const Tensor& scalars) {
  check_adamw_lists(params, grads, exp_avg, exp_avg_sq);
  require(scalars.defined() && scalars.dtype() == DType::f32 && scalars.numel() == kAdamWScalars,
          "adamw_step", "scalars must be what adamw_scalars_into wrote (float32, 6 elements)");
  for (const Tensor& p : params)
    require(p.device() == scalars.device(), "adamw_step",
            "a parameter on " + p.device().str() + ", the scalars on " + scalars.device().str());
  if (params.empty()) return;
  TITAN_CUDA_DISPATCH(scalars, adamw_step(params, grads, exp_avg, exp_avg_sq, scalars));
  for (size_t i = 0; i < params.size(); ++i) adamw_cpu(params[i], grads[i], exp_avg[i], exp_avg_sq[i], scalars.data<float>());
}

void adamw_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& exp_avg,
                const std::vector<Tensor>& exp_avg_sq, const AdamWStep& hp) {
  check_adamw_lists(params, grads, exp_avg, exp_avg_sq);
  // The lists may mix devices: CPU tensors are updated here, each other device's in one call.
  const std::array<float, kAdamWScalars> s = adamw_f32(hp);
  std::vector<Device> others;
  for (size_t i = 0; i < params.size(); ++i) {
    const Device d = params[i].device();
    if (d.is_cpu()) adamw_cpu(params[i], grads[i], exp_avg[i], exp_avg_sq[i], s.data());
    else if (std::find(others.begin(), others.end(), d) == others.end()) others.push_back(d);
  }
  for (const Device d : others) {
    std::vector<Tensor> lists[4];
    for (size_t i = 0; i < params.size(); ++i)
      if (params[i].device() == d)
        for (int k = 0; k < 4; ++k) lists[k].push_back((k == 0 ? params : k == 1 ? grads : k == 2 ? exp_avg : exp_avg_sq)[i]);
    Tensor scalars = Tensor::empty({kAdamWScalars}, DType::f32, d);
    adamw_scalars_into(scalars, hp);
    adamw_step(lists[0], lists[1], lists[2], lists[3], scalars);
  }
}

Tensor take_device_errors(Device device) {
#ifdef TITAN_WITH_CUDA
  if (!device.is_cpu()) return cuda_impl::take_device_errors(device);
#endif
  return Tensor::zeros({1}, DType::f64, device);
}

void raise_device_errors(const Tensor& taken) {
  require(taken.numel() == 1, "raise_device_errors", "expects what take_device_errors returned");
  const double flags = taken.item(0);
  if (flags == 0) return;
#ifdef TITAN_WITH_CUDA
  cuda_impl::raise_device_errors(flags);
#endif
  throw std::logic_error("raise_device_errors: a flag was raised, but this build has no GPU ops to raise it");
}

void raise_device_errors(Device device) { raise_device_errors(take_device_errors(device)); }

Tensor embedding(const Tensor& weight, const Tensor& tokens) {
  require(weight.dim() == 2, "embedding", "weight must be 2-D, got " + shape_str(weight.shape()));
  require(tokens.device() == weight.device(), "embedding", "tokens on " + tokens.device().str() + ", weight on " + weight.device().str());
  TITAN_CUDA_DISPATCH(weight, embedding(weight, tokens));
  if (any_cpu_half({&weight})) {  // exact: widening and rounding back give the same bits
    Tensor out = embedding(widened(weight), tokens);
    return to_half(out);
  }
  Shape shape = tokens.shape();
  shape.push_back(weight.size(1));
  Tensor out = Tensor::empty(shape, weight.dtype());
  dispatch("embedding", {&weight}, [&](auto t) {
    using T = decltype(t);
    cpu::embedding_forward(weight.data<T>(), tokens, out.data<T>(), weight.size(0), weight.size(1));
  });
  return out;
}

void embedding_backward(const Tensor& dy, const Tensor& tokens, Tensor& dweight) {
  require(tokens.device() == dy.device(), "embedding_backward", "tokens on " + tokens.device().str() + ", dy on " + dy.device().str());
  TITAN_CUDA_DISPATCH(dy, embedding_backward(dy, tokens, dweight));
  if (any_cpu_half({&dy, &dweight})) {
    Tensor dwf = widened(dweight);
    embedding_backward(widened(dy), tokens, dwf);
    if (dwf.raw() != dweight.raw()) dweight.copy_from(dwf);
    return;
  }
  dispatch("embedding_backward", {&dy, &dweight}, [&](auto t) {
    using T = decltype(t);
    cpu::embedding_backward(dy.data<T>(), tokens, dweight.data<T>(), dweight.size(0), dweight.size(1));
  });
}

RmsNormOut rmsnorm(const Tensor& x, const Tensor& w, double eps) {
  require(w.dim() == 1 && w.size(0) == x.size(-1), "rmsnorm", "x " + shape_str(x.shape()) + " vs w " + shape_str(w.shape()));
  TITAN_CUDA_DISPATCH(x, rmsnorm(x, w, eps));
  if (any_cpu_half({&x, &w})) {
    RmsNormOut o = rmsnorm(widened(x), widened(w), eps);
    return {to_half(o.y), o.rstd};
  }
  RmsNormOut o{Tensor::empty(x.shape(), x.dtype()), Tensor::empty({rows_of(x)}, x.dtype())};
  dispatch("rmsnorm", {&x, &w}, [&](auto t) {
    using T = decltype(t);
    cpu::rmsnorm_forward(x.data<T>(), w.data<T>(), o.y.data<T>(), o.rstd.data<T>(), rows_of(x), x.size(-1), eps);
  });
  return o;
}

Tensor rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd, Tensor& dw,
                        const Tensor& dx_add) {
  if (dx_add.defined()) {
    require(dx_add.shape() == x.shape() && dx_add.device() == x.device(), "rmsnorm_backward",
            "dx_add " + shape_str(dx_add.shape()) + " on " + dx_add.device().str() + " must match x " + shape_str(x.shape()) +
                " on " + x.device().str());
    if (dx_add.dtype() != x.dtype()) return add(rmsnorm_backward(dy, x, w, rstd, dw), dx_add);  // add()'s mixed form
  }
  TITAN_CUDA_DISPATCH(x, rmsnorm_backward(dy, x, w, rstd, dw, dx_add));
  if (any_cpu_half({&dy, &x, &w, &dw})) {
    // Emulated half: the norm's gradient is rounded to the dtype first, then added (add()'s bits).
    Tensor dwf = widened(dw);
    Tensor dx = to_half(rmsnorm_backward(widened(dy), widened(x), widened(w), rstd, dwf));
    if (dwf.raw() != dw.raw()) dw.copy_from(dwf);
    return dx_add.defined() ? add(dx, dx_add) : dx;
  }
  Tensor dx = Tensor::empty(x.shape(), x.dtype());
  dispatch("rmsnorm_backward", {&dy, &x, &w, &rstd, &dw}, [&](auto t) {
    using T = decltype(t);
    cpu::rmsnorm_backward(dy.data<T>(), x.data<T>(), w.data<T>(), rstd.data<T>(), dx.data<T>(), dw.data<T>(), rows_of(x),
                          x.size(-1), dx_add.defined() ? dx_add.data<T>() : nullptr);
  });
  return dx;
}

AddRmsNormOut add_rmsnorm(const Tensor& a, const Tensor& b, const Tensor& w, double eps) {
  require(a.shape() == b.shape(), "add_rmsnorm", "a " + shape_str(a.shape()) + " vs b " + shape_str(b.shape()));
  require(w.dim() == 1 && w.size(0) == a.size(-1), "add_rmsnorm", "a " + shape_str(a.shape()) + " vs w " + shape_str(w.shape()));
  // Mixed dtypes (what add() accepts) and emulated half on the CPU: the separate ops.
  const bool separate = a.dtype() != b.dtype() || a.dtype() != w.dtype();
  if (!separate) {
    TITAN_CUDA_DISPATCH(a, add_rmsnorm(a, b, w, eps));
  }
  if (separate || any_cpu_half({&a, &b, &w})) {
    Tensor h = add(a, b);
    RmsNormOut o = rmsnorm(h, w, eps);
    return {h, o.y, o.rstd};
  }
  AddRmsNormOut o{Tensor::empty(a.shape(), a.dtype()), Tensor::empty(a.shape(), a.dtype()), Tensor::empty({rows_of(a)}, a.dtype())};
  dispatch("add_rmsnorm", {&a, &b, &w}, [&](auto t) {
    using T = decltype(t);
    cpu::rmsnorm_forward(a.data<T>(), w.data<T>(), o.y.data<T>(), o.rstd.data<T>(), rows_of(a), a.size(-1), eps,
                         b.data<T>(), o.h.data<T>());
  });
  return o;
}

RopeTable rope_table(std::int64_t head_dim, std::int64_t max_seq_len, double theta, const RopeScaling* scaling) {
  require(head_dim % 2 == 0, "rope_table", "head_dim must be even, got " + std::to_string(head_dim));
  const std::int64_t half = head_dim / 2;
  std::vector<double> freqs(half);
  for (std::int64_t i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(theta, double(2 * i) / double(head_dim));
    if (scaling) {
      // Llama 3.1: keep high frequencies, divide low ones by the factor, interpolate in between.
      const double wavelen = 2 * std::numbers::pi / f;
      const double low_wavelen = scaling->original_max_position_embeddings / scaling->low_freq_factor;
      const double high_wavelen = scaling->original_max_position_embeddings / scaling->high_freq_factor;
      if (wavelen > low_wavelen) {
        f /= scaling->scaling_factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (scaling->original_max_position_embeddings / wavelen - scaling->low_freq_factor) /
                              (scaling->high_freq_factor - scaling->low_freq_factor);
        f = (1 - smooth) * f / scaling->scaling_factor + smooth * f;
      }
    }
    freqs[i] = f;
  }
  RopeTable t{Tensor::empty({max_seq_len, half}), Tensor::empty({max_seq_len, half})};
  float* c = t.cos.data<float>();
  float* s = t.sin.data<float>();
  for (std::int64_t p = 0; p < max_seq_len; ++p)
    for (std::int64_t i = 0; i < half; ++i) {
      const double angle = double(p) * freqs[i];
      c[p * half + i] = static_cast<float>(std::cos(angle));
      s[p * half + i] = static_cast<float>(std::sin(angle));
    }
  return t;
}

Tensor rope(const Tensor& x, const RopeTable& table, bool inverse) {
  require(x.dim() == 4, "rope", "expects [B, S, H, D], got " + shape_str(x.shape()));
  require(x.size(1) <= table.cos.size(0) && x.size(3) == 2 * table.cos.size(1), "rope",
          "x " + shape_str(x.shape()) + " does not fit the table " + shape_str(table.cos.shape()));
  TITAN_CUDA_DISPATCH(x, rope(x, table, inverse));
  if (any_cpu_half({&x})) return to_half(rope(widened(x), table, inverse));
  require(table.cos.device().is_cpu(), "rope", "a CPU tensor needs the table on the CPU");
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch("rope", {&x}, [&](auto t) {
    using T = decltype(t);
    cpu::rope_apply(x.data<T>(), y.data<T>(), table.cos.data<float>(), table.sin.data<float>(), x.size(0), x.size(1),
                    x.size(2), x.size(3), inverse ? -1 : 1);
  });
  return y;
}

AttentionOut attention(const Tensor& q, const Tensor& k, const Tensor& v) {
  TITAN_TRACE_SPAN("attention", "attention");  // profiling.enable_profiling (core/trace.hpp)
  require(q.dim() == 4 && k.dim() == 4 && k.shape() == v.shape(), "attention", "expects q [B,S,H,D], k/v [B,S,KV,D]");
  const std::int64_t B = q.size(0), S = q.size(1), H = q.size(2), D = q.size(3), KV = k.size(2);
  require(k.size(0) == B && k.size(1) == S && k.size(3) == D && KV > 0 && H % KV == 0, "attention",
          "q " + shape_str(q.shape()) + " and k " + shape_str(k.shape()) + " do not fit (H must be a multiple of KV)");
  TITAN_CUDA_DISPATCH(q, attention(q, k, v));
  if (any_cpu_half({&q, &k, &v})) {
    AttentionOut o = attention(widened(q), widened(k), widened(v));
    return {to_half(o.out), o.lse};
  }
  AttentionOut o{Tensor::empty(q.shape(), q.dtype()), Tensor::empty({B, H, S}, DType::f32)};
  dispatch("attention", {&q, &k, &v}, [&](auto t) {
    using T = decltype(t);
    cpu::attention_forward(q.data<T>(), k.data<T>(), v.data<T>(), o.out.data<T>(), o.lse.data<float>(), B, S, H, KV, D);
  });
  return o;
}

void set_gpu_attention(const std::string& choice, bool deterministic) {
  if (choice != "auto" && choice != "cudnn" && choice != "titan")
    bad("set_gpu_attention", "expects auto, cudnn or titan, got '" + choice + "'");
#ifdef TITAN_WITH_CUDA
  cuda_impl::set_gpu_attention(choice, deterministic);
#else
  (void)deterministic;
#endif
}

std::string attention_implementation(Device device, std::int64_t B, std::int64_t S, std::int64_t H, std::int64_t KV,
                                     std::int64_t D, DType dtype) {
#ifdef TITAN_WITH_CUDA
  if (!device.is_cpu()) return cuda_impl::attention_implementation(B, S, H, KV, D, dtype);
#endif
  (void)device, (void)B, (void)S, (void)H, (void)KV, (void)D;
  return "titan.cpp's CPU flash attention (" + std::string(dtype_name(dtype)) + ")";
}

AttentionGrads attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const AttentionOut& fwd) {
  TITAN_TRACE_SPAN("attention", "attention_backward");  // profiling.enable_profiling (core/trace.hpp)
  const std::int64_t B = q.size(0), S = q.size(1), H = q.size(2), D = q.size(3), KV = k.size(2);
  TITAN_CUDA_DISPATCH(q, attention_backward(dout, q, k, v, fwd));
  if (any_cpu_half({&dout, &q, &k, &v, &fwd.out})) {
    AttentionGrads g = attention_backward(widened(dout), widened(q), widened(k), widened(v), {widened(fwd.out), fwd.lse});
    return {to_half(g.dq), to_half(g.dk), to_half(g.dv)};
  }
  AttentionGrads g{Tensor::empty(q.shape(), q.dtype()), Tensor::empty(k.shape(), k.dtype()),
                   Tensor::empty(v.shape(), v.dtype())};
  dispatch("attention_backward", {&dout, &q, &k, &v, &fwd.out}, [&](auto t) {
    using T = decltype(t);
    cpu::attention_backward(dout.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(), fwd.out.data<T>(), fwd.lse.data<float>(),
                            g.dq.data<T>(), g.dk.data<T>(), g.dv.data<T>(), B, S, H, KV, D);
  });
  return g;
}

CrossEntropyOut cross_entropy(const Tensor& logits, const Tensor& targets, std::int64_t ignore_index) {
  require(logits.dim() == 2 && targets.dim() == 1 && targets.size(0) == logits.size(0) && targets.dtype() == DType::i64,
          "cross_entropy", "expects logits [N, V] and int64 targets [N], got " + shape_str(logits.shape()) + " and " +
                               shape_str(targets.shape()));
  require(targets.device() == logits.device(), "cross_entropy", "targets on " + targets.device().str() + ", logits on " + logits.device().str());
  TITAN_CUDA_DISPATCH(logits, cross_entropy(logits, targets, ignore_index));
  const std::int64_t N = logits.size(0), V = logits.size(1);
  const std::int64_t* tg = targets.data<std::int64_t>();
  for (std::int64_t n = 0; n < N; ++n)
    require(tg[n] == ignore_index || (tg[n] >= 0 && tg[n] < V), "cross_entropy",
            "target " + std::to_string(tg[n]) + " at row " + std::to_string(n) + " is outside the vocabulary of " + std::to_string(V));
  CrossEntropyOut o;
  if (any_cpu_half({&logits})) {
    if (logits.dtype() == DType::f16) return cross_entropy(widened(logits), targets, ignore_index);
    // bf16: widened row by row, no f32 copy of the logits; the loss in f32
    o.loss = Tensor::full({1}, cpu::cross_entropy_forward<float>(logits.data<std::uint16_t>(), tg, N, V, ignore_index, &o.n_valid));
    return o;
  }
  dispatch("cross_entropy", {&logits}, [&](auto t) {
    using T = decltype(t);
    o.loss = Tensor::full({1}, cpu::cross_entropy_forward<T>(logits.data<T>(), tg, N, V, ignore_index, &o.n_valid),
                          logits.dtype());
  });
  return o;
}

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, const CrossEntropyOut& fwd, double dloss,
                              std::int64_t ignore_index) {
  require(targets.device() == logits.device(), "cross_entropy_backward", "targets on " + targets.device().str() + ", logits on " + logits.device().str());
  TITAN_CUDA_DISPATCH(logits, cross_entropy_backward(logits, targets, fwd, dloss, ignore_index));
  Tensor dx = Tensor::empty(logits.shape(), logits.dtype());
  if (any_cpu_half({&logits})) {
    if (logits.dtype() == DType::f16) return to_half(cross_entropy_backward(widened(logits), targets, fwd, dloss, ignore_index));
    // bf16: row by row, as the forward
    cpu::cross_entropy_backward<float>(logits.data<std::uint16_t>(), targets.data<std::int64_t>(), dx.data<std::uint16_t>(),
                                       logits.size(0), logits.size(1), ignore_index, fwd.n_valid, dloss);
    return dx;
  }
  dispatch("cross_entropy_backward", {&logits}, [&](auto t) {
    using T = decltype(t);
    cpu::cross_entropy_backward<T>(logits.data<T>(), targets.data<std::int64_t>(), dx.data<T>(), logits.size(0),
                                logits.size(1), ignore_index, fwd.n_valid, dloss);
  });
  return dx;
}

// ---- tensor-parallel pieces (CPU only: the plan refuses tensor parallelism on CUDA) ----

namespace {
// Token i of an int32/int64 token tensor.
std::int64_t token_at(const Tensor& tokens, std::int64_t i) {
  return tokens.dtype() == DType::i64 ? tokens.data<std::int64_t>()[i] : std::int64_t(tokens.data<std::int32_t>()[i]);
}
}  // namespace

Tensor embedding_rows(const Tensor& weight, const Tensor& tokens, std::int64_t first_row) {
  require(weight.dim() == 2 && weight.device().is_cpu() && tokens.device().is_cpu(), "embedding_rows",
          "expects a 2-D weight and tokens on the CPU");
  if (any_cpu_half({&weight})) return to_half(embedding_rows(widened(weight), tokens, first_row));
  require(weight.dtype() == DType::f32, "embedding_rows", "expects float32 or bfloat16 weights");
  const std::int64_t R = weight.size(0), D = weight.size(1), n = tokens.numel();
  Shape shape = tokens.shape();
  shape.push_back(D);
  Tensor out = Tensor::zeros(shape, DType::f32);
  const float* w = weight.data<float>();
  float* o = out.data<float>();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t r = token_at(tokens, i) - first_row;
    if (r >= 0 && r < R) std::copy(w + r * D, w + (r + 1) * D, o + i * D);
  }
  return out;
}

void embedding_rows_backward(const Tensor& dy, const Tensor& tokens, Tensor& dweight, std::int64_t first_row) {
  require(dy.device().is_cpu() && dweight.device().is_cpu() && dweight.dtype() == DType::f32, "embedding_rows_backward",
          "expects CPU tensors and a float32 dweight");
  const Tensor g = widened(dy);
  const std::int64_t R = dweight.size(0), D = dweight.size(1), n = tokens.numel();
  const float* gy = g.data<float>();
  float* dw = dweight.data<float>();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t r = token_at(tokens, i) - first_row;
    if (r >= 0 && r < R)
      for (std::int64_t d = 0; d < D; ++d) dw[r * D + d] += gy[i * D + d];
  }
}

Tensor cross_entropy_row_max(const Tensor& logits) {
  require(logits.dim() == 2 && logits.device().is_cpu(), "cross_entropy_row_max", "expects [N, V] logits on the CPU");
  const Tensor x = widened(logits);
  const std::int64_t N = x.size(0), V = x.size(1);
  Tensor m = Tensor::empty({N}, DType::f64);
  for (std::int64_t n = 0; n < N; ++n) {
    const float* row = x.data<float>() + n * V;
    m.data<double>()[n] = V ? double(*std::max_element(row, row + V)) : -INFINITY;
  }
  return m;
}

Tensor cross_entropy_shard_sums(const Tensor& logits, const Tensor& targets, std::int64_t first_col, const Tensor& row_max) {
  require(logits.dim() == 2 && logits.device().is_cpu() && targets.dtype() == DType::i64 &&
              targets.numel() == logits.size(0) && row_max.dtype() == DType::f64,
          "cross_entropy_shard_sums", "expects [N, V] CPU logits, int64 targets [N] and an f64 row max");
  const Tensor x = widened(logits);
  const std::int64_t N = x.size(0), V = x.size(1);
  Tensor out = Tensor::zeros({2, N}, DType::f64);
  double* sum = out.data<double>();
  double* tgt = sum + N;
  for (std::int64_t n = 0; n < N; ++n) {
    const float* row = x.data<float>() + n * V;
    const double m = row_max.data<double>()[n];
    double s = 0;
    for (std::int64_t j = 0; j < V; ++j) s += std::exp(double(row[j]) - m);
    sum[n] = s;
    const std::int64_t t = targets.data<std::int64_t>()[n] - first_col;
    if (t >= 0 && t < V) tgt[n] = double(row[t]);
  }
  return out;
}

Tensor cross_entropy_shard_backward(const Tensor& logits, const Tensor& targets, std::int64_t first_col,
                                    const Tensor& row_max, const Tensor& sum, std::int64_t n_valid, double dloss,
                                    std::int64_t ignore_index) {
  require(logits.dim() == 2 && logits.device().is_cpu(), "cross_entropy_shard_backward", "expects [N, V] logits on the CPU");
  const Tensor x = widened(logits);
  const std::int64_t N = x.size(0), V = x.size(1);
  Tensor dx = Tensor::zeros({N, V}, DType::f32);
  const double g = n_valid ? dloss / double(n_valid) : 0.0;
  for (std::int64_t n = 0; n < N; ++n) {
    const std::int64_t target = targets.data<std::int64_t>()[n];
    if (target == ignore_index) continue;
    const float* row = x.data<float>() + n * V;
    float* d = dx.data<float>() + n * V;
    const double m = row_max.data<double>()[n], k = g / sum.data<double>()[n];
    for (std::int64_t j = 0; j < V; ++j) d[j] = float(k * std::exp(double(row[j]) - m));
    const std::int64_t t = target - first_col;
    if (t >= 0 && t < V) d[t] = float(double(d[t]) - g);
  }
  return any_cpu_half({&logits}) ? to_half(dx) : dx;
}

}  // namespace titan::ops
