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
void scale_(Tensor& a, double alpha);
Tensor swiglu(const Tensor& a, const Tensor& b);
void swiglu_backward(const Tensor& dh, const Tensor& a, const Tensor& b, Tensor& da, Tensor& db);
double sum(const Tensor& a);
double sum_squares(const Tensor& a);
Tensor embedding(const Tensor& weight, const Tensor& tokens);
void embedding_backward(const Tensor& dy, const Tensor& tokens, Tensor& dweight);
RmsNormOut rmsnorm(const Tensor& x, const Tensor& w, double eps);
Tensor rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd, Tensor& dw);
Tensor rope(const Tensor& x, const RopeTable& table, bool inverse);
AttentionOut attention(const Tensor& q, const Tensor& k, const Tensor& v);
AttentionGrads attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const AttentionOut& fwd);
CrossEntropyOut cross_entropy(const Tensor& logits, const Tensor& targets, std::int64_t ignore_index);
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, const CrossEntropyOut& fwd, double dloss,
                              std::int64_t ignore_index);

}  // namespace titan::ops::cuda_impl
