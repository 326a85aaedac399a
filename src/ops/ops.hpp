#pragma once
// The op API: device-independent functions on Tensors (DESIGN.md section 3). Each op checks its
// arguments and dispatches on device and dtype to an implementation: src/ops/cpu (the
// reference, f32 and f64) or kernels/ (CUDA). Forward and backward are separate functions; the
// autograd layer pairs them. Shapes use the model's layout: activations [B, S, ...] row-major,
// weights in PyTorch's [out_features, in_features] layout.
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace titan::ops {

// ---- capabilities ----
// Whether the ops on `device` take and produce tensors stored in `dtype` (the CUDA ops: f32 and
// bf16; the CPU reference: f32 and f64). FSDP's mixed-precision gather stores a bf16 parameter
// as f32 holding the bf16-rounded values where bf16 storage is not computed on.
bool computes_in(Device device, DType dtype);

// ---- GEMM ----
// y[.., N] = x[.., K] W[N, K]^T  (nn.Linear without bias; leading dims of x are flattened)
Tensor linear(const Tensor& x, const Tensor& w);
// dx[.., K] = dy[.., N] W[N, K]
Tensor linear_backward_input(const Tensor& dy, const Tensor& w);
// dw[N, K] (+)= dy^T x, summed over all rows of dy/x
void linear_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dw, bool accumulate);
// C[b] = alpha op(A[b]) op(B[b]) + beta C[b] for 2-D or batched 3-D A, B, C.
void matmul(bool trans_a, bool trans_b, double alpha, const Tensor& a, const Tensor& b, double beta, Tensor& c);

// ---- float8 (torchao's numerics, DESIGN.md section 5) ----
// A float8 operand is a 2-D tensor [R, C] of f8e4m3 / f8e5m2 values and float32 scales, one per
// group of elements; its value is data / scale. The groups:
//   tensor      the whole tensor; scale [1]
//   per_row     each row (the amax runs along dim -1); scale [R, 1]
//   per_column  each column (the amax runs along dim 0); scale [1, C]
// High-precision inputs are float32 or bfloat16 (bf16 widens to f32 exactly), on the CPU or CUDA.
enum class ScaleAxis { tensor, per_row, per_column };
constexpr double kFloat8Eps = 1e-12;

// max|x| per group, float32 in the scale's shape on x's device. NaN propagates (torch.amax); an
// empty group gives 0.
Tensor amax(const Tensor& x, ScaleAxis axis);
// scale = float32(float64(f8 max) / max(float64(amax), 1e-12)) elementwise, NaN kept (448 for
// e4m3, 57344 for e5m2); round_to_power_of_2: 2^floor(log2(scale)), computed in float32.
Tensor amax_to_scale(const Tensor& amax, DType f8, bool round_to_power_of_2);

// What a cast writes: the float8 data as it is, its transpose, or both in one pass. The backward
// GEMMs contract an operand over its rows; scaled_mm wants the contraction dim last, so they take
// the transposed copy.
enum class Float8Layout { row_major, transposed, both };
struct Float8Cast {
  Tensor data;    // [R, C] float8 (undefined for Float8Layout::transposed)
  Tensor data_t;  // [C, R] float8, data_t[c, r] = data[r, c] (undefined for Float8Layout::row_major)
  Tensor scale;   // float32 [1], [R, 1] or [1, C]; for data_t a per_column scale is one per row
                  // (scale.view({C, 1}) is its scaled_mm form)
  ScaleAxis axis = ScaleAxis::tensor;
};
// data = f8(float32(x) * scale): the product rounded once in float32, then saturated to +-max
// (infinities too) and rounded to nearest even; NaN stays NaN. `scale` is float32 with one
// element per group of `axis`, on x's device. `amax` (when given) is set to amax(x, tensor) as the
// cast reads x (on CUDA in the same pass): a delayed-scaling cast records it for its history.
Float8Cast cast_to_float8(const Tensor& x, DType f8, const Tensor& scale, ScaleAxis axis,
                          Float8Layout layout = Float8Layout::row_major, Tensor* amax = nullptr);
// Dynamic scaling: amax -> amax_to_scale -> cast.
Float8Cast cast_to_float8(const Tensor& x, DType f8, ScaleAxis axis, bool round_to_power_of_2,
                          Float8Layout layout = Float8Layout::row_major);
// The delayed float8 recipe's amax history (float8/float8_linear.hpp), a ring the device moves:
// row[pushes % L] = amax[0], then pushes += 1. row: f32 [L]; pushes: i64 [1]; amax: f32 [1]; all
// on one device. The position lives beside the row, not on the host, so that a captured step
// (compile.enable) advances it on every replay.
void amax_history_push(const Tensor& row, const Tensor& pushes, const Tensor& amax);
// float32(data) / scale: float32 [R, C] on data's device.
Tensor dequantize(const Tensor& data, const Tensor& scale, ScaleAxis axis);
// The transpose of float8 data: [R, C] -> [C, R], out[c, r] = data[r, c], same dtype and device.
// Only bytes move, so the values and a tensorwise scale stay as they are: this is how a GEMM that
// contracts a float8 operand over its rows (the grad_input GEMM on FSDP's gathered e4m3 weight)
// gets its TN layout without dequantizing and recasting.
Tensor transpose_float8(const Tensor& data);

// The float8 GEMM (torch._scaled_mm's role; the layout cuBLASLt's FP8 kernels take, "TN"):
//   y[M, N] = (a[M, K] / scale_a) (b[N, K] / scale_b)^T
// a and b are float8 with the contraction dim K last (for y = x W^T: a = x, b = W; for a GEMM that
// contracts an operand over its rows, that operand's transposed copy). scale_a is [1] (tensorwise)
// or [M, 1] (one per row of a), scale_b [1] or [N, 1]: the cast scales themselves (value = data /
// scale; torch._scaled_mm takes their reciprocals). A tensorwise scale may meet a rowwise one.
// out_dtype: float32 or bfloat16.
// - Emulation (CPU tensors, or emulate = true on any device): dequantize both operands, float32
//   GEMM (ops::linear), round to out_dtype: torchao's emulate mode, bit for bit wherever the f32
//   GEMM's summation order does not matter. use_fast_accum has no effect there.
// - CUDA: cuBLASLt FP8 with float32 accumulation (CUBLASLT_MATMUL_DESC_FAST_ACCUM when
//   use_fast_accum; torchao uses it for the output GEMM only), tensorwise scale pointers or, if
//   either scale is rowwise, outer-vector scales (cuBLASLt 12.9+ on sm_90). cuBLASLt's FP8 kernels
//   need K and N multiples of 16; other shapes run the emulation on the GPU. Not both e5m2.
Tensor scaled_mm(const Tensor& a, const Tensor& scale_a, const Tensor& b, const Tensor& scale_b, DType out_dtype,
                 bool use_fast_accum, bool emulate = false);
// What scaled_mm runs for tensors on `device`, in words (for logs): the emulation or cuBLASLt FP8.
std::string scaled_mm_implementation(Device device, bool emulate);

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
// sum_squares of each tensor (all on one device): an f64 [n] tensor on that device. On a GPU
// every sum is computed before the host reads any, so a whole gradient norm costs one host sync
// instead of one per tensor; the values are sum_squares's, bit for bit.
Tensor sum_squares_each(const std::vector<Tensor>& tensors);
// Gradient clipping without the host reading the norm (a steady-state GPU step has no host sync):
//   sum_squares_total: the sum over `tensors` (all on `device`) of sum_squares, added in list order
//     in double: an f64 [1] tensor on `device` (0 for no tensors);
//   clip_to_max_norm_: with norm = sqrt(total_sq[0]) and coef = max_norm / (norm + 1e-6), every
//     tensor *= coef when the norm is finite and coef < 1 (torch's clip_grad_norm_), bit for bit
//     scale_(t, coef); total_sq stays where it is (the CPU reads it, a GPU reads it in the kernel).
Tensor sum_squares_total(const std::vector<Tensor>& tensors, Device device);
void clip_to_max_norm_(const std::vector<Tensor>& tensors, const Tensor& total_sq, double max_norm);

// ---- optimizer ----
// One AdamW step (PyTorch's algorithm, decoupled weight decay) on every index i of the four lists:
// params[i] (f32 master weights), grads[i] (f32) and the f32 moments exp_avg[i] / exp_avg_sq[i],
// all of one shape and on one device (the lists may mix devices). With the scalars rounded to
// float32 once per call:
//   decay = 1 - lr wd;  step_size = lr / (1 - beta1^step);  inv_bias2_sqrt = 1 / sqrt(1 - beta2^step)
//   p *= decay;  m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   p -= step_size m / (sqrt(v) inv_bias2_sqrt + eps)
// The CPU updates each tensor in one loop; CUDA tensors all go to one multi-tensor launch (the
// same arithmetic, each operation rounded separately; the CPU loop may contract to FMA).
struct AdamWStep {
  double lr = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  std::int64_t step = 1;  // 1 for the first update
};
void adamw_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& exp_avg,
                const std::vector<Tensor>& exp_avg_sq, const AdamWStep& hp);
// The same update in two halves, so that a captured step (a CUDA graph, whose kernels keep the
// arguments they were captured with) can run it with each step's learning rate and bias
// corrections: adamw_scalars_into writes the float32 scalars above into `scalars`, an f32 [6]
// tensor {beta1, beta2, step_size, decay, eps, inv_bias2_sqrt} on the parameters' device (a GPU:
// queued, the host does not wait), and this adamw_step reads them from there. All tensors are on
// scalars' device. Bit for bit the one-call adamw_step.
void adamw_scalars_into(const Tensor& scalars, const AdamWStep& hp);
void adamw_step(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, const std::vector<Tensor>& exp_avg,
                const std::vector<Tensor>& exp_avg_sq, const Tensor& scalars);

// ---- embedding ----
// out[.., D] = weight[tokens[..], :]; tokens are int32 or int64. A token id outside the
// vocabulary is an error, never a silently used row: the CPU throws at once; a GPU writes a zero
// row and flags it on the device, and raise_device_errors throws it later (so that the host need
// not wait for the tokens).
Tensor embedding(const Tensor& weight, const Tensor& tokens);
// dweight[tokens[i], :] += dy[i, :]
void embedding_backward(const Tensor& dy, const Tensor& tokens, Tensor& dweight);
// Errors the ops on a GPU flag instead of waiting for the host (an out-of-range token id or
// cross-entropy target):
//   take_device_errors: what `device`'s ops flagged since the last take, cleared, as an f64 [1]
//     tensor on `device` (nonzero: something was flagged; always 0 on the CPU, which throws at
//     once), without the host waiting; read it back with other values (the trainer: with the
//     step's losses, one copy);
//   raise_device_errors(taken): throws for a nonzero value (reading `taken` if it is on a GPU);
//   raise_device_errors(device): both, one host sync on a GPU (validation, hf_check).
Tensor take_device_errors(Device device);
void raise_device_errors(const Tensor& taken);
void raise_device_errors(Device device);

// ---- embedding over a vocabulary shard (tensor parallel; CPU tensors) ----
// weight [R, D] holds rows [first_row, first_row + R) of the table: a token in that range gets
// its row, any other token (another rank's rows) a zero row; the backward adds only the rows of
// tokens in range. With first_row 0 and every token in range this is embedding().
Tensor embedding_rows(const Tensor& weight, const Tensor& tokens, std::int64_t first_row);
void embedding_rows_backward(const Tensor& dy, const Tensor& tokens, Tensor& dweight, std::int64_t first_row);

// ---- RMSNorm over the last dim ----
struct RmsNormOut {
  Tensor y, rstd;  // rstd [rows] is saved for backward
};
RmsNormOut rmsnorm(const Tensor& x, const Tensor& w, double eps);
// dx is returned; dw (same shape as w) is accumulated into. With `dx_add` (x's shape and dtype),
// dx = dx_add + the norm's gradient, rounded as add() rounds it, in the same pass (a residual
// stream's gradient joining the norm's).
Tensor rmsnorm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, const Tensor& rstd, Tensor& dw,
                        const Tensor& dx_add = Tensor());
// The residual add fused into the norm that reads it: h = a + b (add()'s bits), y = rmsnorm(h, w),
// reading a and b once instead of writing h and reading it back. Backward: rmsnorm_backward on h
// with the residual stream's gradient as dx_add.
struct AddRmsNormOut {
  Tensor h, y, rstd;
};
AddRmsNormOut add_rmsnorm(const Tensor& a, const Tensor& b, const Tensor& w, double eps);

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
// training.gpu_attention: "auto", "cudnn" or "titan" (kernels/attention.hpp's AttentionImpl), and
// debug.deterministic (cuDNN's deterministic backward), for every later GPU attention call of this
// process; the CPU has one implementation, deterministic.
void set_gpu_attention(const std::string& choice, bool deterministic);
// What attention at this shape runs on `device`, in words (the trainer logs it): on a GPU, cuDNN's
// fused flash attention or titan.cpp's kernels, with the reason cuDNN was not taken.
std::string attention_implementation(Device device, std::int64_t B, std::int64_t S, std::int64_t H, std::int64_t KV,
                                     std::int64_t D, DType dtype);

// ---- loss ----
struct CrossEntropyOut {
  // The mean over rows whose target != ignore_index: [1] where the logits are, f32 (f64 logits:
  // f64). On a GPU it is computed there, and the host waits for nothing (targets included).
  Tensor loss;
  std::int64_t n_valid = 0;  // the CPU's count of those rows (a GPU keeps it in `valid_rows`)
  Tensor lse;                // CUDA only: per-row log-sum-exp [N] f32, saved for backward
  Tensor valid_rows;         // CUDA only: that count, f64 [1] on the device
};
// logits [N, V], targets [N] int64. A target outside [0, V) other than ignore_index is an error:
// the CPU throws at once, a GPU flags it for take_device_errors (its loss is NaN).
CrossEntropyOut cross_entropy(const Tensor& logits, const Tensor& targets, std::int64_t ignore_index = -100);
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, const CrossEntropyOut& fwd, double dloss,
                              std::int64_t ignore_index = -100);

// ---- cross-entropy over vocabulary-sharded logits (loss parallel; CPU tensors) ----
// logits [N, Vs] are columns [first_col, first_col + Vs) of the full [N, V] logits, targets [N]
// int64 global ids. With m[n] the global row max (the MAX over shards of cross_entropy_row_max),
// the shard's part of each row is
//   sums[0, n] = sum_j exp(x[n, j] - m[n])                  (all rows)
//   sums[1, n] = x[n, t_n - first_col] if t_n is in this shard, else 0
// and summed over shards: loss_n = m[n] + log(sums[0, n]) - sums[1, n] (ignored rows: none).
// Everything in float64; m and sums are f64 tensors.
Tensor cross_entropy_row_max(const Tensor& logits);  // [N] f64
Tensor cross_entropy_shard_sums(const Tensor& logits, const Tensor& targets, std::int64_t first_col,
                                const Tensor& row_max);  // [2, N] f64
// dx[n, j] = g (exp(x[n, j] - m[n]) / sum[n] - [first_col + j == t_n]), g = dloss / n_valid; zero
// rows for ignored targets; `sum` the global sums[0]; dx in the logits' dtype.
Tensor cross_entropy_shard_backward(const Tensor& logits, const Tensor& targets, std::int64_t first_col,
                                    const Tensor& row_max, const Tensor& sum, std::int64_t n_valid, double dloss,
                                    std::int64_t ignore_index = -100);

}  // namespace titan::ops
