// CUDA implementations of the op API: argument checks, output allocation on the inputs' GPU,
// and calls into kernels/ (one launcher family per header). See cuda_ops.hpp.
#include "ops/cuda_ops.hpp"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/adamw.hpp"
#include "kernels/attention.hpp"
#include "kernels/cross_entropy.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/embedding.hpp"
#include "kernels/float8_cast.hpp"
#include "kernels/gemm.hpp"
#include "kernels/reduce.hpp"
#include "kernels/rmsnorm.hpp"
#include "kernels/rope.hpp"
#include "kernels/runtime.hpp"
#include "kernels/swiglu.hpp"

namespace titan::ops::cuda_impl {

namespace {

void require(bool ok, const char* op, const std::string& why) {
  if (!ok) throw std::invalid_argument(std::string(op) + ": " + why);
}

// Every tensor defined, on the same GPU; float ones f32 or bf16.
void check(const char* op, std::initializer_list<const Tensor*> ts) {
  const Device dev = (*ts.begin())->device();
  for (const Tensor* t : ts) {
    require(t->defined(), op, "undefined tensor");
    require(t->device() == dev, op, "tensors on " + t->device().str() + " and " + dev.str());
  }
}
void check_float(const char* op, const Tensor& t) {
  require(t.dtype() == DType::f32 || t.dtype() == DType::bf16, op,
          "dtype " + std::string(dtype_name(t.dtype())) + " is not supported on CUDA (float32, bfloat16)");
}
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  require(a.dtype() == b.dtype(), op,
          "dtypes differ (" + std::string(dtype_name(a.dtype())) + " vs " + std::string(dtype_name(b.dtype())) + ")");
}

std::int64_t rows_of(const Tensor& t) { return t.size(-1) ? t.numel() / t.size(-1) : 0; }

void check_shape(const char* op, const Tensor& t, const Shape& want, const char* what) {
  require(t.shape() == want, op, std::string(what) + " is " + shape_str(t.shape()) + ", expected " + shape_str(want));
}

// Token ids are checked by the kernels, not copied to the host (a host sync per call): an id
// outside the vocabulary writes a zero row and raises the device flag that raise_device_errors()
// reads. The vocabulary size of the latest call, for its message.
std::int64_t g_last_vocab = 0;
std::int64_t g_last_targets_vocab = 0;  // likewise for cross_entropy's targets

}  // namespace

Tensor linear(const Tensor& x, const Tensor& w) {
  check("linear", {&x, &w});
  check_float("linear", x);
  check_same_dtype("linear", x, w);
  Shape shape = x.shape();
  shape.back() = w.size(0);
  Tensor y = Tensor::empty(shape, x.dtype(), x.device());
  const std::int64_t M = rows_of(x), N = w.size(0), K = w.size(1);
  cuda::gemm(false, true, M, N, K, 1.f, x.raw(), x.dtype(), K, 0, w.raw(), w.dtype(), K, 0, 0.f, y.raw(), y.dtype(), N, 0, 1);
  return y;
}

Tensor linear_backward_input(const Tensor& dy, const Tensor& w) {
  check("linear_backward_input", {&dy, &w});
  check_float("linear_backward_input", dy);
  check_same_dtype("linear_backward_input", dy, w);
  Shape shape = dy.shape();
  shape.back() = w.size(1);
  Tensor dx = Tensor::empty(shape, dy.dtype(), dy.device());
  const std::int64_t M = rows_of(dy), N = w.size(0), K = w.size(1);
  cuda::gemm(false, false, M, K, N, 1.f, dy.raw(), dy.dtype(), N, 0, w.raw(), w.dtype(), K, 0, 0.f, dx.raw(), dx.dtype(), K, 0, 1);
  return dx;
}

void linear_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dw, bool accumulate) {
  check("linear_backward_weight", {&dy, &x, &dw});
  check_float("linear_backward_weight", dy);
  check_same_dtype("linear_backward_weight", dy, x);
  check_float("linear_backward_weight", dw);  // f32 grads accumulate bf16 products in f32
  const std::int64_t M = rows_of(dy), N = dy.size(-1), K = x.size(-1);
  cuda::gemm(true, false, N, K, M, 1.f, dy.raw(), dy.dtype(), N, 0, x.raw(), x.dtype(), K, 0, accumulate ? 1.f : 0.f,
             dw.raw(), dw.dtype(), K, 0, 1);
}

void matmul(bool trans_a, bool trans_b, double alpha, const Tensor& a, const Tensor& b, double beta, Tensor& c) {
  check("matmul", {&a, &b, &c});
  check_float("matmul", a);
  check_same_dtype("matmul", a, b);
  check_float("matmul", c);
  const bool batched = a.dim() == 3;
  const std::int64_t batch = batched ? a.size(0) : 1;
  const std::int64_t ar = a.size(-2), ac = a.size(-1), br = b.size(-2), bc = b.size(-1);
  const std::int64_t M = trans_a ? ac : ar, K = trans_a ? ar : ac, N = trans_b ? br : bc;
  cuda::gemm(trans_a, trans_b, M, N, K, float(alpha), a.raw(), a.dtype(), ac, ar * ac, b.raw(), b.dtype(), bc, br * bc,
             float(beta), c.raw(), c.dtype(), N, M * N, batch);
}

void add_(Tensor& a, const Tensor& b, double alpha) {
  check("add", {&a, &b});
  check_float("add", a);
  check_float("add", b);
  cuda::add_scaled(a.raw(), a.dtype(), b.raw(), b.dtype(), a.numel(), float(alpha));
}

Tensor add(const Tensor& a, const Tensor& b) {
  check("add", {&a, &b});
  check_float("add", a);
  check_float("add", b);
  require(a.numel() == b.numel(), "add", shape_str(a.shape()) + " + " + shape_str(b.shape()));
  if (a.dtype() != b.dtype()) {  // mixed (a bf16 value + an f32 one): the copy-and-accumulate form
    Tensor out = a.clone();
    add_(out, b, 1.0);
    return out;
  }
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  cuda::add(a.raw(), b.raw(), out.raw(), a.dtype(), a.numel());
  return out;
}

void scale_(Tensor& a, double alpha) {
  check("scale", {&a});
  check_float("scale", a);
  cuda::scale(a.raw(), a.dtype(), a.numel(), float(alpha));
}

Tensor swiglu(const Tensor& a, const Tensor& b) {
  check("swiglu", {&a, &b});
  check_float("swiglu", a);
  check_same_dtype("swiglu", a, b);
  Tensor h = Tensor::empty(a.shape(), a.dtype(), a.device());
  cuda::swiglu_forward(a.raw(), b.raw(), h.raw(), a.numel(), a.dtype());
  return h;
}

void swiglu_backward(const Tensor& dh, const Tensor& a, const Tensor& b, Tensor& da, Tensor& db) {
  check("swiglu_backward", {&dh, &a, &b});
  check_float("swiglu_backward", a);
  check_same_dtype("swiglu_backward", a, b);
  check_same_dtype("swiglu_backward", a, dh);
  check_shape("swiglu_backward", dh, a.shape(), "dh");
  check_shape("swiglu_backward", b, a.shape(), "b");
  da = Tensor::empty(a.shape(), a.dtype(), a.device());
  db = Tensor::empty(b.shape(), b.dtype(), b.device());
  cuda::swiglu_backward(dh.raw(), a.raw(), b.raw(), da.raw(), db.raw(), a.numel(), a.dtype());
}

double sum(const Tensor& a) {
  check("sum", {&a});
  check_float("sum", a);
  return cuda::sum(a.raw(), a.dtype(), a.numel());
}

double sum_squares(const Tensor& a) {
  check("sum_squares", {&a});
  check_float("sum_squares", a);
  return cuda::sum_squares(a.raw(), a.dtype(), a.numel());
}

// The flags' bits: 1 an embedding token, 2 a cross-entropy target outside the vocabulary.
Tensor take_device_errors(Device device) {
  Tensor out = Tensor::empty({1}, DType::f64, device);
  cuda::embedding_take_out_of_range_async(out.data<double>());     // writes 0 or 1
  cuda::cross_entropy_take_out_of_range_async(out.data<double>());  // adds 2
  return out;
}

void raise_device_errors(double flags) {
  const int bits = static_cast<int>(flags);
  std::string what;
  if (bits & 1)
    what = "embedding: a token id outside the vocabulary of " + std::to_string(g_last_vocab) +
           " reached the GPU (its row was not used)";
  if (bits & 2)
    what += (what.empty() ? "" : "; ") + std::string("cross_entropy: a target outside the vocabulary of ") +
            std::to_string(g_last_targets_vocab) + " reached the GPU (its loss is NaN)";
  throw std::out_of_range(what + "; the tokenizer and model.vocab_size disagree");
}

Tensor sum_squares_each(const std::vector<Tensor>& tensors) {
  Tensor out = Tensor::empty({std::int64_t(tensors.size())}, DType::f64, tensors.front().device());
  for (size_t i = 0; i < tensors.size(); ++i) {
    check("sum_squares_each", {&tensors[i]});
    check_float("sum_squares_each", tensors[i]);
    cuda::sum_squares_async(tensors[i].raw(), tensors[i].dtype(), tensors[i].numel(), out.data<double>() + i);
  }
  return out;
}

Tensor sum_squares_total(const std::vector<Tensor>& tensors) {
  const Tensor each = sum_squares_each(tensors);
  Tensor out = Tensor::empty({1}, DType::f64, each.device());
  cuda::sum_in_order_async(each.data<double>(), each.numel(), out.data<double>());
  return out;  // `each` goes back to the stream-ordered pool after the kernel that reads it
}

void clip_to_max_norm_(const std::vector<Tensor>& tensors, const Tensor& total_sq, double max_norm) {
  std::vector<cuda::F32Span> f32;  // the usual case (f32 gradients): one launch per 48 tensors
  for (const Tensor& t : tensors) {
    check("clip_to_max_norm_", {&t});
    check_float("clip_to_max_norm_", t);
    if (t.dtype() == DType::f32) f32.push_back({t.data<float>(), t.numel()});
    else cuda::scale_by_clip_coef(t.raw(), t.dtype(), t.numel(), total_sq.data<double>(), max_norm);
  }
  cuda::scale_by_clip_coef(f32, total_sq.data<double>(), max_norm);
}

namespace {

cuda::Fp8ScaleAxis fp8_axis(ScaleAxis a) {
  return a == ScaleAxis::tensor ? cuda::Fp8ScaleAxis::tensor
         : a == ScaleAxis::per_row ? cuda::Fp8ScaleAxis::per_row
                                   : cuda::Fp8ScaleAxis::per_column;
}

bool is_aligned16(const Tensor& t) { return reinterpret_cast<std::uintptr_t>(t.raw()) % 16 == 0; }

// cuBLASLt's FP8 kernels want 16-byte aligned operands; a view at another offset is copied.
Tensor aligned16(const Tensor& t) { return is_aligned16(t) ? t : t.clone(); }

// A scale (or amax) per group of `axis` of an [R, C] tensor: [1], [R, 1] or [1, C].
Shape scale_shape(ScaleAxis axis, std::int64_t R, std::int64_t C) {
  return axis == ScaleAxis::tensor ? Shape{1} : axis == ScaleAxis::per_row ? Shape{R, 1} : Shape{1, C};
}

// A cast's result with its float8 buffers allocated for `layout` (filled by the caller's kernel).
Float8Cast empty_float8_cast(const Tensor& x, DType f8, Tensor scale, ScaleAxis axis, Float8Layout layout) {
  const std::int64_t R = x.size(0), C = x.size(1);
  Float8Cast out;
  out.scale = std::move(scale);
  out.axis = axis;
  if (layout != Float8Layout::transposed) out.data = Tensor::empty({R, C}, f8, x.device());
  if (layout != Float8Layout::row_major) out.data_t = Tensor::empty({C, R}, f8, x.device());
  return out;
}

void* raw_or_null(const Tensor& t) { return t.defined() ? t.raw() : nullptr; }

}  // namespace

Tensor amax(const Tensor& x, ScaleAxis axis) {
  check("amax", {&x});
  const std::int64_t R = x.size(0), C = x.size(1);
  Tensor out = Tensor::empty(scale_shape(axis, R, C), DType::f32, x.device());
  if (axis == ScaleAxis::tensor) cuda::amax_tensorwise(x.raw(), x.dtype(), R * C, out.data<float>());
  else if (axis == ScaleAxis::per_row) cuda::amax_rowwise(x.raw(), x.dtype(), R, C, out.data<float>());
  else cuda::amax_colwise(x.raw(), x.dtype(), R, C, out.data<float>());
  return out;
}

void amax_history_push(const Tensor& row, const Tensor& pushes, const Tensor& amax) {
  check("amax_history_push", {&row, &pushes, &amax});
  cuda::amax_history_push(row.data<float>(), row.numel(), pushes.data<std::int64_t>(), amax.data<float>());
}

Tensor amax_to_scale(const Tensor& amax, DType f8, bool round_to_power_of_2) {
  check("amax_to_scale", {&amax});
  Tensor scale = Tensor::empty(amax.shape(), DType::f32, amax.device());
  cuda::amax_to_scale(amax.data<float>(), amax.numel(), f8, round_to_power_of_2, scale.data<float>(), nullptr);
  return scale;
}

Float8Cast cast_to_float8(const Tensor& x, DType f8, const Tensor& scale, ScaleAxis axis, Float8Layout layout,
                          Tensor* amax) {
  check("cast_to_float8", {&x, &scale});
  Float8Cast out = empty_float8_cast(x, f8, scale, axis, layout);
  if (amax) *amax = Tensor::empty({1}, DType::f32, x.device());
  cuda::cast_to_fp8(x.raw(), x.dtype(), x.size(0), x.size(1), f8, scale.data<float>(), fp8_axis(axis), raw_or_null(out.data),
                    raw_or_null(out.data_t), amax ? amax->data<float>() : nullptr);
  return out;
}

// Dynamic scaling in one call of cuda::quantize_fp8 (amax, scale and cast; rowwise row-major casts
// run as one kernel). The amax is a workspace here.
Float8Cast cast_to_float8(const Tensor& x, DType f8, ScaleAxis axis, bool round_to_power_of_2, Float8Layout layout) {
  check("cast_to_float8", {&x});
  const std::int64_t R = x.size(0), C = x.size(1);
  const Shape shape = scale_shape(axis, R, C);
  Float8Cast out = empty_float8_cast(x, f8, Tensor::empty(shape, DType::f32, x.device()), axis, layout);
  const Tensor amax = Tensor::empty(shape, DType::f32, x.device());
  cuda::quantize_fp8(x.raw(), x.dtype(), R, C, f8, fp8_axis(axis), round_to_power_of_2, amax.data<float>(),
                     out.scale.data<float>(), nullptr, raw_or_null(out.data), raw_or_null(out.data_t));
  return out;
}

Tensor dequantize(const Tensor& data, const Tensor& scale, ScaleAxis axis) {
  check("dequantize", {&data, &scale});
  Tensor out = Tensor::empty(data.shape(), DType::f32, data.device());
  cuda::dequantize_fp8(data.raw(), data.dtype(), data.size(0), data.size(1), scale.data<float>(), fp8_axis(axis),
                       out.data<float>());
  return out;
}

Tensor transpose_float8(const Tensor& data) {
  check("transpose_float8", {&data});
  const std::int64_t R = data.size(0), C = data.size(1);
  Tensor out = Tensor::empty({C, R}, data.dtype(), data.device());
  cuda::transpose_fp8(data.raw(), R, C, out.raw());
  return out;
}

bool scaled_mm_supported(std::int64_t N, std::int64_t K) { return N % 16 == 0 && K % 16 == 0; }

Tensor scaled_mm(const Tensor& a, const Tensor& scale_a, const Tensor& b, const Tensor& scale_b, DType out_dtype,
                 bool use_fast_accum) {
  check("scaled_mm", {&a, &scale_a, &b, &scale_b});
  const std::int64_t M = a.size(0), N = b.size(0), K = a.size(1);
  const bool rowwise = scale_a.numel() != 1 || scale_b.numel() != 1;
  // cuBLASLt multiplies by the dequantization factors: 1 / scale, one per operand or per row.
  Tensor inv_a = Tensor::empty({rowwise ? M : 1}, DType::f32, a.device());
  Tensor inv_b = Tensor::empty({rowwise ? N : 1}, DType::f32, a.device());
  cuda::scale_reciprocal(scale_a.data<float>(), scale_a.numel(), inv_a.numel(), inv_a.data<float>());
  cuda::scale_reciprocal(scale_b.data<float>(), scale_b.numel(), inv_b.numel(), inv_b.data<float>());
  const Tensor a16 = aligned16(a), b16 = aligned16(b);
  Tensor y = Tensor::empty({M, N}, out_dtype, a.device());
  cuda::gemm_fp8(M, N, K, a16.raw(), a.dtype(), inv_a.data<float>(), b16.raw(), b.dtype(), inv_b.data<float>(), y.raw(),
                 out_dtype, rowwise ? cuda::Fp8Scaling::rowwise : cuda::Fp8Scaling::tensorwise, use_fast_accum);
  return y;
}

void adamw_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& exp_avg,
                const std::vector<Tensor>& exp_avg_sq, const Tensor& scalars) {
  check("adamw_step", {&scalars});
  std::vector<cuda::AdamWTensor> ts;
  ts.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    check("adamw_step", {&params[i], &grads[i], &exp_avg[i], &exp_avg_sq[i]});
    ts.push_back({params[i].data<float>(), grads[i].data<float>(), exp_avg[i].data<float>(), exp_avg_sq[i].data<float>(),
                  params[i].numel()});
  }
  cuda::adamw_step(ts, reinterpret_cast<const cuda::AdamWScalars*>(scalars.data<float>()));
}

Tensor embedding(const Tensor& weight, const Tensor& tokens) {
  check("embedding", {&weight, &tokens});
  check_float("embedding", weight);
  require(tokens.dtype() == DType::i32 || tokens.dtype() == DType::i64, "embedding", "tokens must be int32 or int64");
  g_last_vocab = weight.size(0);
  Shape shape = tokens.shape();
  shape.push_back(weight.size(1));
  Tensor out = Tensor::empty(shape, weight.dtype(), weight.device());
  cuda::embedding_forward(weight.raw(), tokens.raw(), tokens.dtype(), out.raw(), tokens.numel(), weight.size(0),
                          weight.size(1), weight.dtype());
  return out;
}

void embedding_backward(const Tensor& dy, const Tensor& tokens, Tensor& dweight) {
  check("embedding_backward", {&dy, &tokens, &dweight});
  check_float("embedding_backward", dy);
  require(dy.numel() == tokens.numel() * dweight.size(1), "embedding_backward",
          "dy " + shape_str(dy.shape()) + " does not match " + std::to_string(tokens.numel()) + " tokens of width " +
              std::to_string(dweight.size(1)));
  g_last_vocab = dweight.size(0);
  // The scatter-add accumulates in f32; a bf16 weight gradient gets an f32 buffer added to it.
  Tensor acc = dweight.dtype() == DType::f32 ? dweight : Tensor::zeros(dweight.shape(), DType::f32, dweight.device());
  cuda::embedding_backward(dy.raw(), tokens.raw(), tokens.dtype(), acc.data<float>(), tokens.numel(), dweight.size(0),
                           dweight.size(1), dy.dtype());
  if (dweight.dtype() != DType::f32) add_(dweight, acc, 1.0);
}

RmsNormOut rmsnorm(const Tensor& x, const Tensor& w, double eps) {
  check("rmsnorm", {&x, &w});
  check_float("rmsnorm", x);
  check_same_dtype("rmsnorm", x, w);
  // rstd is kept in f32 on the GPU whatever the activation dtype.
  RmsNormOut o{Tensor::empty(x.shape(), x.dtype(), x.device()), Tensor::empty({rows_of(x)}, DType::f32, x.device())};
  cuda::rmsnorm_forward(x.raw(), w.raw(), o.y.raw(), o.rstd.data<float>(), rows_of(x), x.size(-1), eps, x.dtype());
  return o;
}

// Whether a fused norm takes the same kernel path as the separate ops would: the fused kernel
// vectorizes only when its extra operand is 16-byte aligned too, and a different path sums the
// row in a different order (the last bit of rstd). A view at an odd offset runs unfused.
bool fused_norm_path_same(const Tensor& extra, const Tensor& other) { return is_aligned16(extra) && is_aligned16(other); }

AddRmsNormOut add_rmsnorm(const Tensor& a, const Tensor& b, const Tensor& w, double eps) {
  check("add_rmsnorm", {&a, &b, &w});
  check_float("add_rmsnorm", a);
  check_same_dtype("add_rmsnorm", a, b);
  check_same_dtype("add_rmsnorm", a, w);
  if (!fused_norm_path_same(a, b)) {
    Tensor h = add(a, b);
    RmsNormOut o = rmsnorm(h, w, eps);
    return {h, o.y, o.rstd};
  }
  AddRmsNormOut o{Tensor::empty(a.shape(), a.dtype(), a.device()), Tensor::empty(a.shape(), a.dtype(), a.device()),
                  Tensor::empty({rows_of(a)}, DType::f32, a.device())};
  cuda::rmsnorm_forward(a.raw(), w.raw(), o.y.raw(), o.rstd.data<float>(), rows_of(a), a.size(-1), eps, a.dtype(), b.raw(),
                        o.h.raw());
  return o;
}

Tensor rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd, Tensor& dw,
                        const Tensor& dx_add) {
  check("rmsnorm_backward", {&dy, &x, &w, &rstd, &dw});
  check_float("rmsnorm_backward", x);
  check_same_dtype("rmsnorm_backward", x, dy);
  check_same_dtype("rmsnorm_backward", x, w);
  check_shape("rmsnorm_backward", dy, x.shape(), "dy");
  check_shape("rmsnorm_backward", rstd, {rows_of(x)}, "rstd");
  check_shape("rmsnorm_backward", dw, w.shape(), "dw");
  require(rstd.dtype() == DType::f32, "rmsnorm_backward", "rstd must be float32 on CUDA");
  if (dx_add.defined() && !fused_norm_path_same(dx_add, dy)) return add(rmsnorm_backward(dy, x, w, rstd, dw, Tensor()), dx_add);
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor acc = dw.dtype() == DType::f32 ? dw : Tensor::zeros(dw.shape(), DType::f32, dw.device());
  cuda::rmsnorm_backward(dy.raw(), x.raw(), w.raw(), rstd.data<float>(), dx.raw(), acc.data<float>(), rows_of(x),
                         x.size(-1), x.dtype(), raw_or_null(dx_add));
  if (dw.dtype() != DType::f32) add_(dw, acc, 1.0);
  return dx;
}

Tensor rope(const Tensor& x, const RopeTable& table, bool inverse) {
  check("rope", {&x});
  check_float("rope", x);
  // The model keeps its table on the device (RopeTable::to); a CPU table is copied per call.
  const Tensor cos = table.cos.device() == x.device() ? table.cos : table.cos.to(x.device());
  const Tensor sin = table.sin.device() == x.device() ? table.sin : table.sin.to(x.device());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  cuda::rope_apply(x.raw(), y.raw(), cos.data<float>(), sin.data<float>(), x.size(0), x.size(1), x.size(2), x.size(3),
                   inverse ? -1 : 1, x.dtype());
  return y;
}

AttentionOut attention(const Tensor& q, const Tensor& k, const Tensor& v) {
  check("attention", {&q, &k, &v});
  check_float("attention", q);
  check_same_dtype("attention", q, k);
  check_same_dtype("attention", q, v);
  const std::int64_t B = q.size(0), S = q.size(1), H = q.size(2), D = q.size(3), KV = k.size(2);
  AttentionOut o{Tensor::empty(q.shape(), q.dtype(), q.device()), Tensor::empty({B, H, S}, DType::f32, q.device())};
  cuda::attention_forward(q.raw(), k.raw(), v.raw(), o.out.raw(), o.lse.data<float>(), B, S, H, KV, D, q.dtype());
  return o;
}

void set_gpu_attention(const std::string& choice, bool deterministic) {
  cuda::set_attention_deterministic(deterministic);
  cuda::set_attention_impl(cuda::attention_impl_named(choice));
}

std::string attention_implementation(std::int64_t B, std::int64_t S, std::int64_t H, std::int64_t KV, std::int64_t D,
                                     DType dtype) {
  return cuda::attention_implementation(B, S, H, KV, D, dtype);
}

AttentionGrads attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const AttentionOut& fwd) {
  check("attention_backward", {&dout, &q, &k, &v, &fwd.out, &fwd.lse});
  check_float("attention_backward", q);
  check_same_dtype("attention_backward", q, dout);
  check_same_dtype("attention_backward", q, k);
  check_same_dtype("attention_backward", q, v);
  check_same_dtype("attention_backward", q, fwd.out);
  check_shape("attention_backward", dout, q.shape(), "dout");
  check_shape("attention_backward", fwd.lse, {q.size(0), q.size(2), q.size(1)}, "lse");
  const std::int64_t B = q.size(0), S = q.size(1), H = q.size(2), D = q.size(3), KV = k.size(2);
  AttentionGrads g{Tensor::empty(q.shape(), q.dtype(), q.device()), Tensor::empty(k.shape(), k.dtype(), k.device()),
                   Tensor::empty(v.shape(), v.dtype(), v.device())};
  cuda::attention_backward(dout.raw(), q.raw(), k.raw(), v.raw(), fwd.out.raw(), fwd.lse.data<float>(), g.dq.raw(),
                           g.dk.raw(), g.dv.raw(), B, S, H, KV, D, q.dtype());
  return g;
}

CrossEntropyOut cross_entropy(const Tensor& logits, const Tensor& targets, std::int64_t ignore_index) {
  check("cross_entropy", {&logits, &targets});
  check_float("cross_entropy", logits);
  const std::int64_t N = logits.size(0), V = logits.size(1);
  // Targets are not copied back (a host sync per call): the kernel flags one outside the
  // vocabulary for take_device_errors, and the mean is taken on the device.
  g_last_targets_vocab = V;
  CrossEntropyOut o;
  Tensor loss_rows = Tensor::empty({N}, DType::f32, logits.device());
  o.lse = Tensor::empty({N}, DType::f32, logits.device());
  o.loss = Tensor::empty({1}, DType::f32, logits.device());
  o.valid_rows = Tensor::empty({1}, DType::f64, logits.device());
  cuda::cross_entropy_forward(logits.raw(), targets.data<std::int64_t>(), N, V, ignore_index, loss_rows.data<float>(),
                              o.lse.data<float>(), logits.dtype());
  cuda::cross_entropy_mean(loss_rows.data<float>(), targets.data<std::int64_t>(), N, ignore_index, o.loss.data<float>(),
                           o.valid_rows.data<double>());
  return o;
}

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, const CrossEntropyOut& fwd, double dloss,
                              std::int64_t ignore_index) {
  check("cross_entropy_backward", {&logits, &targets});
  check_float("cross_entropy_backward", logits);
  require(fwd.lse.defined() && fwd.lse.device() == logits.device() && fwd.valid_rows.defined() &&
              fwd.valid_rows.device() == logits.device(),
          "cross_entropy_backward", "needs the forward's per-row log-sum-exp and row count on the same device");
  check_shape("cross_entropy_backward", fwd.lse, {logits.size(0)}, "lse");
  Tensor dx = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
  cuda::cross_entropy_backward(logits.raw(), targets.data<std::int64_t>(), fwd.lse.data<float>(), dloss,
                               fwd.valid_rows.data<double>(), dx.raw(), logits.size(0), logits.size(1), ignore_index,
                               logits.dtype());
  return dx;
}

}  // namespace titan::ops::cuda_impl
