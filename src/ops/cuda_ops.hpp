#pragma once
// The CUDA side of the op API (compiled only with the CUDA backend): the same functions as
// ops.hpp for tensors on a GPU. ops.cpp checks shapes and sends CUDA tensors here; these check
// devices and dtypes (f32 or bf16 storage, mixed only where noted), allocate outputs on the
// inputs' device and call the kernel launchers in kernels/.
#include "ops/ops.hpp"

namespace titan::ops::cuda_impl {

Tensor linear(const Tensor& x, const Tensor& w);
Tensor linear_backward_input(const Tensor& dy, const Tensor& w);
void linear_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dw, bool accumulate);  // dw f32 or x's dtype
void matmul(bool trans_a, bool trans_b, double alpha, const Tensor& a, const Tensor& b, double beta, Tensor& c);
void add_(Tensor& a, const Tensor& b, double alpha);
Tensor add(const Tensor& a, const Tensor& b);
void scale_(Tensor& a, double alpha);
void set_gpu_attention(const std::string& choice, bool deterministic);
std::string attention_implementation(std::int64_t B, std::int64_t S, std::int64_t H, std::int64_t KV, std::int64_t D,
                                     DType dtype);
Tensor swiglu(const Tensor& a, const Tensor& b);
void swiglu_backward(const Tensor& dh, const Tensor& a, const Tensor& b, Tensor& da, Tensor& db);
double sum(const Tensor& a);
double sum_squares(const Tensor& a);
Tensor sum_squares_each(const std::vector<Tensor>& tensors);
Tensor sum_squares_total(const std::vector<Tensor>& tensors);
void clip_to_max_norm_(const std::vector<Tensor>& tensors, const Tensor& total_sq, double max_norm);
Tensor take_device_errors(Device device);
// Throws the flagged errors (ops::raise_device_errors found the taken flags nonzero).
[[noreturn]] void raise_device_errors(double flags);
Tensor amax(const Tensor& x, ScaleAxis axis);
Tensor amax_to_scale(const Tensor& amax, DType f8, bool round_to_power_of_2);
void amax_history_push(const Tensor& row, const Tensor& pushes, const Tensor& amax);
Float8Cast cast_to_float8(const Tensor& x, DType f8, const Tensor& scale, ScaleAxis axis, Float8Layout layout,
                          Tensor* amax);
Float8Cast cast_to_float8(const Tensor& x, DType f8, ScaleAxis axis, bool round_to_power_of_2, Float8Layout layout);
Tensor dequantize(const Tensor& data, const Tensor& scale, ScaleAxis axis);
Tensor transpose_float8(const Tensor& data);
// Whether cuBLASLt's FP8 kernels take a y[M, N] = a[M, K] b[N, K]^T (K and N multiples of 16);
// ops::scaled_mm emulates the others.
bool scaled_mm_supported(std::int64_t N, std::int64_t K);
// cuBLASLt FP8 (kernels/gemm.hpp gemm_fp8) with the reciprocals of the scales; a tensorwise scale
// next to a rowwise one is broadcast to a vector.
Tensor scaled_mm(const Tensor& a, const Tensor& scale_a, const Tensor& b, const Tensor& scale_b, DType out_dtype,
                 bool use_fast_accum);
// The multi-tensor AdamW launch (kernels/adamw.hpp); the kernel reads ops::adamw_step's float32
// scalars from `scalars` (f32 [6] on the device), so a captured launch takes each step's values.
void adamw_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& exp_avg,
                const std::vector<Tensor>& exp_avg_sq, const Tensor& scalars);
Tensor embedding(const Tensor& weight, const Tensor& tokens);
void embedding_backward(const Tensor& dy, const Tensor& tokens, Tensor& dweight);
RmsNormOut rmsnorm(const Tensor& x, const Tensor& w, double eps);
Tensor rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd, Tensor& dw,
                        const Tensor& dx_add);
AddRmsNormOut add_rmsnorm(const Tensor& a, const Tensor& b, const Tensor& w, double eps);
Tensor rope(const Tensor& x, const RopeTable& table, bool inverse);
AttentionOut attention(const Tensor& q, const Tensor& k, const Tensor& v);
AttentionGrads attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const AttentionOut& fwd);
CrossEntropyOut cross_entropy(const Tensor& logits, const Tensor& targets, std::int64_t ignore_index);
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, const CrossEntropyOut& fwd, double dloss,
                              std::int64_t ignore_index);

}  // namespace titan::ops::cuda_impl
