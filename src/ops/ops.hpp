#pragma once
// The op API: device-independent functions on Tensors (DESIGN.md section 3). Each op checks its
// arguments and dispatches on device and dtype to an implementation: src/ops/cpu (the
// reference, f32 and f64) or kernels/ (CUDA). Forward and backward are separate functions; the
// autograd layer pairs them. Shapes use the model's layout: activations [B, S, ...] row-major,
// weights in PyTorch's [out_features, in_features] layout.
#include <cstdint>

#include "core/tensor.hpp"

namespace titan::ops {

// ---- GEMM ----
// y[.., N] = x[.., K] W[N, K]^T  (nn.Linear without bias; leading dims of x are flattened)
Tensor linear(const Tensor& x, const Tensor& w);
// dx[.., K] = dy[.., N] W[N, K]
Tensor linear_backward_input(const Tensor& dy, const Tensor& w);
// dw[N, K] (+)= dy^T x, summed over all rows of dy/x
void linear_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dw, bool accumulate);
// C[b] = alpha op(A[b]) op(B[b]) + beta C[b] for 2-D or batched 3-D A, B, C.
void matmul(bool trans_a, bool trans_b, double alpha, const Tensor& a, const Tensor& b, double beta, Tensor& c);

// ---- elementwise ----
Tensor add(const Tensor& a, const Tensor& b);
void add_(Tensor& a, const Tensor& b, double alpha = 1.0);  // a += alpha * b
void scale_(Tensor& a, double alpha);
// h = silu(a) * b (SwiGLU); backward gives da = dh * b * silu'(a), db = dh * silu(a).
Tensor swiglu(const Tensor& a, const Tensor& b);
void swiglu_backward(const Tensor& dh, const Tensor& a, const Tensor& b, Tensor& da, Tensor& db);

// ---- reductions ----
double sum(const Tensor& a);          // accumulated in double
double sum_squares(const Tensor& a);  // accumulated in double (grad-norm building block)

// ---- embedding ----
// out[.., D] = weight[tokens[..], :]; tokens are int32 or int64.
Tensor embedding(const Tensor& weight, const Tensor& tokens);
// dweight[tokens[i], :] += dy[i, :]
void embedding_backward(const Tensor& dy, const Tensor& tokens, Tensor& dweight);

// ---- RMSNorm over the last dim ----
struct RmsNormOut {
  Tensor y, rstd;  // rstd [rows] is saved for backward
};
RmsNormOut rmsnorm(const Tensor& x, const Tensor& w, double eps);
// dx is returned; dw (same shape as w) is accumulated into.
Tensor rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd, Tensor& dw);

// ---- RoPE ----
struct RopeScaling {  // Llama 3.1 frequency scaling (TorchTitan's RoPEScalingArgs)
  double scaling_factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double original_max_position_embeddings = 8192;
};
struct RopeTable {
  Tensor cos, sin;  // [max_seq_len, head_dim / 2], f32
};
// freq_i = theta^(-2i / head_dim), optionally scaled; angle(s, i) = s * freq_i (in double).
RopeTable rope_table(std::int64_t head_dim, std::int64_t max_seq_len, double theta, const RopeScaling* scaling);
// x [B, S, H, D] -> rotated copy (inverse = true rotates back: the backward of rope).
Tensor rope(const Tensor& x, const RopeTable& table, bool inverse = false);

// ---- attention ----
struct AttentionOut {
  Tensor out;  // [B, S, H, D]
  Tensor lse;  // [B, H, S] f32: log-sum-exp of each score row, saved for backward
};
// Causal SDPA with GQA: q [B, S, H, D], k/v [B, S, KV, D], H a multiple of KV, scale 1/sqrt(D).
AttentionOut attention(const Tensor& q, const Tensor& k, const Tensor& v);
struct AttentionGrads {
  Tensor dq, dk, dv;
};
AttentionGrads attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                  const AttentionOut& fwd);

// ---- loss ----
struct CrossEntropyOut {
  double loss = 0;          // mean over rows whose target != ignore_index
  std::int64_t n_valid = 0;
  Tensor lse;               // CUDA only: per-row log-sum-exp [N] f32, saved for backward
};
// logits [N, V], targets [N] int64.
CrossEntropyOut cross_entropy(const Tensor& logits, const Tensor& targets, std::int64_t ignore_index = -100);
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, const CrossEntropyOut& fwd, double dloss,
                              std::int64_t ignore_index = -100);

}  // namespace titan::ops
