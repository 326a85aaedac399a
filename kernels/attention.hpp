#pragma once
// Causal flash attention with grouped-query heads on the GPU (kernels/attention.cu), with exactly
// the semantics of the CPU op (src/ops/cpu/attention.hpp):
//   q [B, S, H, D], k and v [B, S, KV, D], out [B, S, H, D], all row-major, one dtype (f32 or bf16);
//   query head h reads kv head h / (H / KV); scale = 1 / sqrt(D);
//   out_i = sum_{j<=i} softmax_j(scale q_i.k_j) v_j,  lse [B, H, S] (f32) = log sum_{j<=i} exp(scale q_i.k_j).
// With cuDNN (set_attention_impl below), bf16 runs cuDNN's fused kernels: same semantics, its own
// summation order; its backward is deterministic only under set_attention_deterministic(true).
// D must be 16, 32, 64 or 128, H a multiple of KV (std::invalid_argument otherwise). Loads go to
// f32, every sum accumulates in f32, outputs are rounded once on the store. All launches run on
// the compute stream (runtime.hpp); the calls return without synchronizing.
#include <cstdint>
#include <string>

#include "core/dtype.hpp"

namespace titan::cuda {

void attention_forward(const void* q, const void* k, const void* v, void* out, float* lse, std::int64_t B,
                       std::int64_t S, std::int64_t H, std::int64_t KV, std::int64_t D, DType dtype);

// dq [B, S, H, D], dk and dv [B, S, KV, D] are overwritten (a kv head's gradients are the sum over
// its query-head group). Deterministic: no atomics; every output element is written by one thread.
void attention_backward(const void* dout, const void* q, const void* k, const void* v, const void* out,
                        const float* lse, void* dq, void* dk, void* dv, std::int64_t B, std::int64_t S,
                        std::int64_t H, std::int64_t KV, std::int64_t D, DType dtype);

// Which implementation runs a bf16 pass (f32 always runs titan.cpp's kernels below):
//   automatic: cuDNN's fused flash attention (cudnn_attention.hpp) where this build has it, libcudnn
//              loads and cuDNN builds a plan for the shape; otherwise titan.cpp's mma.sync kernels;
//   cudnn:     cuDNN only: a pass it cannot run throws std::runtime_error with cuDNN's reason;
//   titan:     titan.cpp's kernels only.
// Process-wide (bench_attention --impl and the GPU tests set it; training runs automatic).
enum class AttentionImpl { automatic, cudnn, titan };
void set_attention_impl(AttentionImpl impl);
// "auto", "cudnn" or "titan" (training.gpu_attention, bench_attention --impl); std::invalid_argument otherwise.
AttentionImpl attention_impl_named(const std::string& name);
// debug.deterministic: cuDNN's backward takes its deterministic algorithm (its default accumulates
// dQ with float atomics; titan.cpp's kernels are deterministic either way). Process-wide.
void set_attention_deterministic(bool on);
// What a call at this shape runs, in words, with the reason when cuDNN is not taken (the trainer's
// "attention:" log line). May build the shape's cuDNN plans (not inside a graph capture).
std::string attention_implementation(std::int64_t B, std::int64_t S, std::int64_t H, std::int64_t KV, std::int64_t D,
                                     DType dtype);

// Testing/debugging: when on, bf16 inputs also take the CUDA-core (SIMT) kernels that f32 uses,
// instead of the tensor-core (mma.sync) ones (the GPU tests compare the two paths).
void attention_force_simt(bool on);

}  // namespace titan::cuda
