#pragma once
// Llama 3 (and Llama 2) model arguments and TorchTitan's flavors tables (DESIGN.md section 4).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ops/ops.hpp"

namespace titan::llama3 {

struct ModelArgs {
  std::int64_t dim = 4096;
  std::int64_t n_layers = 32;
  std::int64_t n_heads = 32;
  std::optional<std::int64_t> n_kv_heads;  // unset = n_heads (no GQA)
  std::int64_t vocab_size = 128256;
  std::int64_t multiple_of = 256;           // FFN hidden size is rounded up to a multiple of this
  std::optional<double> ffn_dim_multiplier;
  double norm_eps = 1e-5;
  double rope_theta = 500000;
  // Llama 3.1 RoPE frequency scaling; TorchTitan applies it to every llama3 flavor.
  std::optional<ops::RopeScaling> rope_scaling = ops::RopeScaling{};
  std::int64_t max_seq_len = 2048;          // follows training.seq_len

  std::int64_t kv_heads() const { return n_kv_heads.value_or(n_heads); }
  std::int64_t head_dim() const { return dim / n_heads; }
  // SwiGLU hidden size: int(2 * 4 * dim / 3), times ffn_dim_multiplier (truncated), rounded up to
  // a multiple of multiple_of.
  std::int64_t ffn_hidden() const;
};

struct Flavor {
  std::string name;
  ModelArgs args;
};

// The model names (model.name) this Llama implementation covers: llama3, llama2.
const std::vector<std::string>& model_names();
// llama3: debugmodel, 1B, 3B, 8B, 70B, 405B; llama2: debugmodel, 271M, 1B, 7B, 13B, 26B, 70B
// (TorchTitan's tables). Empty for an unknown model name.
const std::vector<Flavor>& flavors(const std::string& model_name);
const ModelArgs* find_flavor(const std::string& model_name, const std::string& name);

struct ParamCount {
  std::int64_t total = 0;
  std::int64_t embedding = 0;  // tok_embeddings only (excluded from the FLOP count)
};
ParamCount count_parameters(const ModelArgs& args);

// Bytes of activations one training step keeps for backward (f32), per rank, for `batch`
// sequences of `seq_len` tokens. Per block without checkpointing: the block input and the two
// norm outputs, rotated q and k, v, the attention output and its log-sum-exp, the residual h,
// the two FFN projections and their SwiGLU product:
//   T (5 dim + 2 kv_dim + n_heads + 3 ffn_hidden) floats, T = batch * seq_len.
// A checkpointed block keeps only its input (T dim), plus one block's worth while it is
// recomputed in backward. The head keeps the final norm's input and output and the logits, and
// the loss's backward adds the logits' gradient at the peak: T (2 dim + 2 vocab).
// `checkpointed_blocks` is how many of the n_layers blocks are checkpointed; with `per_op_sac` a
// checkpointed block also keeps its kept matmul and attention outputs,
//   T (4 dim + kv_dim + ffn_hidden) + the log-sum-exps. Activations take
// `element_bytes` each (4 for f32, 2 for bf16); the log-sum-exps stay f32. `widening_ops`: the
// ops widen bf16 to f32 internally (the CPU), so the output GEMM's backward holds an f32 copy of
// the logits' gradient beside the bf16 logits and gradient: 8 bytes per logit either way.
std::int64_t activation_bytes(const ModelArgs& args, std::int64_t batch, std::int64_t seq_len,
                              std::int64_t checkpointed_blocks, std::int64_t element_bytes = 4,
                              bool widening_ops = false, bool per_op_sac = false);

// Training FLOPs per token (DESIGN.md section 9):
// 6 * (params - embedding params) + 12 * n_layers * n_heads * head_dim * seq_len.
double flops_per_token(const ModelArgs& args, std::int64_t seq_len);

}  // namespace titan::llama3
