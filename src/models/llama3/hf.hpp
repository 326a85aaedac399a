#pragma once
// Hugging Face Llama interop (transformers' LlamaForCausalLM): parameter names, the q/k layout
// of RoPE, and config.json.
//
// Names: tok_embeddings.weight <-> model.embed_tokens.weight; layers.{i}.attention.{wq,wk,wv,wo}
// <-> model.layers.{i}.self_attn.{q,k,v,o}_proj; feed_forward.{w1,w2,w3} <-> mlp.{gate,down,up}_proj;
// attention_norm <-> input_layernorm; ffn_norm <-> post_attention_layernorm; norm <-> model.norm;
// output <-> lm_head (all ".weight").
//
// RoPE layout: titan.cpp (like Meta's and TorchTitan's Llama) rotates adjacent pairs (2i, 2i+1)
// of each head; HF's rotate_half pairs i with i + head_dim/2. Exporting wq/wk therefore reorders
// the rows of every head from [head_dim/2, 2] to [2, head_dim/2] (row 2i -> i, 2i+1 -> i + D/2),
// and importing undoes it; the attention scores are unchanged.
#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>

#include "checkpoint/hf_adapter.hpp"
#include "core/tensor.hpp"
#include "models/llama3/args.hpp"

namespace titan::llama3 {

std::string to_hf_name(const std::string& fqn);
// nullopt for a name that is not a Llama parameter (e.g. rotary_emb.inv_freq).
std::optional<std::string> from_hf_name(const std::string& hf_name);

// Rows of a [n_heads * head_dim, in] q/k weight in HF order (to_hf) or back (from HF).
Tensor permute_rope_rows(const Tensor& w, std::int64_t n_heads, bool to_hf);
// Whether `fqn` is a q or k projection (the weights that need the permutation) and how many heads it has.
std::optional<std::int64_t> rope_heads(const std::string& fqn, const ModelArgs& args);

// config.json for LlamaForCausalLM, and the ModelArgs of one (throws UserError naming `path` and
// the key for a config this model cannot represent).
nlohmann::json hf_config(const ModelArgs& args, DType dtype);
ModelArgs args_from_hf_config(const nlohmann::json& config, const std::string& path);
// The rest of config.json that the shapes do not show, against the model a run trains
// (`flavor`): model_type must be "llama", and rope_theta, rope_scaling (llama3 factors, or none)
// and rms_norm_eps must equal the model's (relative 1e-6), else the weights would load and train
// with the wrong RoPE or norm. Throws UserError "`key`: '`path`' has rope_theta 10000, model.flavor
// debugmodel has 500000; ..." naming the field, both values and the fix.
void check_hf_config_matches(const nlohmann::json& config, const ModelArgs& args, const std::string& path,
                             const std::string& key, const std::string& flavor);

}  // namespace titan::llama3

namespace titan::llama3 {

// Writes `params` (TorchTitan FQN -> full tensor) as HF safetensors: `dir`/model.safetensors
// (HF names, q/k rows in HF order, `dtype`) and `dir`/config.json.
void write_hf(const std::string& dir, const std::map<std::string, Tensor>& params, const ModelArgs& args, DType dtype);
// Reads HF safetensors from `dir` (model.safetensors, or the files of model.safetensors.index.json)
// as TorchTitan FQN -> full tensor in its stored dtype, q/k rows back in titan.cpp's order.
// Throws UserError naming the file and tensor for a missing, unknown or misshapen tensor.
std::map<std::string, Tensor> read_hf(const std::string& dir, const ModelArgs& args);

// The same, reading only rows [begin, end) (titan.cpp's row order) of each FQN in `wanted`: what
// one FSDP rank owns. q/k rows come through the whole heads that hold them. `global` is the full
// tensor's shape from the file; `rows` is left undefined when the range does not fit it (the
// caller reports the shape mismatch).
using HfRows = checkpoint::HfRows;
std::map<std::string, HfRows> read_hf_rows(const std::string& dir, const ModelArgs& args,
                                           const std::map<std::string, std::pair<std::int64_t, std::int64_t>>& wanted);

}  // namespace titan::llama3
