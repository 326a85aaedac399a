#pragma once
// Causal grouped-query attention through cuDNN's fused flash attention (cuDNN's graph API, built
// with the cuDNN frontend's headers), for bf16, with the contract of attention.hpp:
//   q [B, S, H, D], k and v [B, S, KV, D], out [B, S, H, D], row-major bf16 (read by cuDNN as
//   [B, heads, S, D] with strides {S*heads*D, D, heads*D, 1}: no copies);
//   scale = 1 / sqrt(D); causal with the diagonal at the top left (query i sees keys j <= i);
//   lse [B, H, S] f32 = cuDNN's softmax "stats": the natural-log sum of exp(scale q_i.k_j) over
//   j <= i, the same value titan.cpp's kernels save, so either backward can follow either forward.
// The backward runs cuDNN's default algorithm (dQ accumulated with float atomics: run-to-run
// differences in the last bits), or with `deterministic` its deterministic one, which keeps a
// B x H x S x S bf16 workspace (4 GiB at B=1, H=32, S=8192). A plan whose workspace exceeds
// kCudnnWorkspaceBudget is refused (titan.cpp's kernels, deterministic and O(S), run instead).
// libcudnn is opened at run time (dlopen "libcudnn.so.9"): a machine without it, a build without
// the frontend's headers (scripts/cudnn_frontend.sh), or a shape cuDNN builds no plan for leaves
// attention.cu on titan.cpp's own kernels. Only attention.cu includes this file.
#include <cstdint>
#include <string>

namespace titan::cuda {

inline constexpr std::int64_t kCudnnWorkspaceBudget = std::int64_t(2) << 30;  // bytes, per call

// "" when cuDNN runs this pass (forward, or backward) at this shape; else why not, in a phrase.
// The first ask for a shape builds its plan (milliseconds to seconds) and keeps it; later asks
// and calls reuse it. Must not be first asked inside a CUDA graph capture.
std::string cudnn_attention_unsupported(std::int64_t B, std::int64_t S, std::int64_t H, std::int64_t KV,
                                        std::int64_t D, bool backward, bool deterministic);

// Run the cached plan on the compute stream. False (and the shape is marked unsupported, with
// cuDNN's message) when cuDNN refuses to run it: the caller then runs its own kernels. A CUDA
// error that was pending before the call, or a refusal during a CUDA graph capture, throws
// std::runtime_error instead (falling back would hide it, or break the capture).
bool cudnn_attention_forward(const void* q, const void* k, const void* v, void* out, float* lse, std::int64_t B,
                             std::int64_t S, std::int64_t H, std::int64_t KV, std::int64_t D);
bool cudnn_attention_backward(const void* dout, const void* q, const void* k, const void* v, const void* out,
                              const float* lse, void* dq, void* dk, void* dv, std::int64_t B, std::int64_t S,
                              std::int64_t H, std::int64_t KV, std::int64_t D, bool deterministic);

// "cuDNN 9.19.0 (frontend 1.32.0)", or why there is no cuDNN here.
std::string cudnn_description();

}  // namespace titan::cuda
