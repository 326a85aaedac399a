#include "models/llama3/args.hpp"

namespace titan::llama3 {

std::int64_t ModelArgs::ffn_hidden() const {
  std::int64_t hidden = 4 * dim;
  hidden = static_cast<std::int64_t>(2 * hidden / 3);
  if (ffn_dim_multiplier) hidden = static_cast<std::int64_t>(*ffn_dim_multiplier * static_cast<double>(hidden));
  return multiple_of * ((hidden + multiple_of - 1) / multiple_of);
}

namespace {

ModelArgs make(std::int64_t dim, std::int64_t layers, std::int64_t heads, std::optional<std::int64_t> kv,
               std::int64_t vocab, std::int64_t multiple_of, std::optional<double> mult) {
  ModelArgs a;
  a.dim = dim;
  a.n_layers = layers;
  a.n_heads = heads;
  a.n_kv_heads = kv;
  a.vocab_size = vocab;
  a.multiple_of = multiple_of;
  a.ffn_dim_multiplier = mult;
  return a;
}

// Llama 2 is the same transformer with RoPE base 10000 and no RoPE frequency scaling.
ModelArgs llama2(ModelArgs a) {
  a.rope_theta = 10000;
  a.rope_scaling = std::nullopt;
  return a;
}

}  // namespace

const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names{"llama3", "llama2"};
  return names;
}

const std::vector<Flavor>& flavors(const std::string& model_name) {
  static const std::vector<Flavor> llama3_table{
      {"debugmodel", make(256, 6, 16, std::nullopt, 2048, 256, std::nullopt)},
      // Llama 3.2 1B/3B shapes (untied output here, as everywhere in titan.cpp).
      {"1B", make(2048, 16, 32, 8, 128256, 256, 1.5)},
      {"3B", make(3072, 28, 24, 8, 128256, 256, 1.0)},
      {"8B", make(4096, 32, 32, 8, 128256, 1024, 1.3)},
      {"70B", make(8192, 80, 64, 8, 128256, 4096, 1.3)},
      {"405B", make(16384, 126, 128, 8, 128256, 4096, 1.2)},
  };
  // TorchTitan's llama2 table (torchtitan/models/llama/__init__.py, 2024); the vocabulary is
  // Llama 2's 32000 (TorchTitan took it from the tokenizer), the debug model's the test
  // tokenizer's 2048 as for llama3.
  static const std::vector<Flavor> llama2_table{
      {"debugmodel", llama2(make(256, 8, 16, std::nullopt, 2048, 256, std::nullopt))},
      {"271M", llama2(make(1024, 16, 8, std::nullopt, 32000, 256, std::nullopt))},
      {"1B", llama2(make(2048, 18, 16, std::nullopt, 32000, 256, std::nullopt))},
      {"7B", llama2(make(4096, 32, 32, std::nullopt, 32000, 256, std::nullopt))},
      {"13B", llama2(make(5120, 40, 40, std::nullopt, 32000, 256, std::nullopt))},
      {"26B", llama2(make(5120, 80, 40, std::nullopt, 32000, 256, std::nullopt))},
      {"70B", llama2(make(8192, 80, 64, 8, 32000, 4096, 1.3))},
  };
  static const std::vector<Flavor> none;
  if (model_name == "llama3") return llama3_table;
  if (model_name == "llama2") return llama2_table;
  return none;
}

const ModelArgs* find_flavor(const std::string& model_name, const std::string& name) {
  for (const auto& f : flavors(model_name))
    if (f.name == name) return &f.args;
  return nullptr;
}

ParamCount count_parameters(const ModelArgs& a) {
  const std::int64_t kv_dim = a.kv_heads() * a.head_dim();
  const std::int64_t attention = a.dim * a.dim * 2 + a.dim * kv_dim * 2;  // wq, wo, wk, wv
  const std::int64_t ffn = 3 * a.dim * a.ffn_hidden();                   // w1, w2, w3
  const std::int64_t norms = 2 * a.dim;                                  // attention_norm, ffn_norm
  ParamCount c;
  c.embedding = a.vocab_size * a.dim;
  c.total = c.embedding + a.n_layers * (attention + ffn + norms) + a.dim /* norm */ + a.vocab_size * a.dim /* output */;
  return c;
}

std::int64_t activation_bytes(const ModelArgs& a, std::int64_t batch, std::int64_t seq_len,
                              std::int64_t checkpointed_blocks, std::int64_t element_bytes, bool widening_ops,
                              bool per_op_sac) {
  const std::int64_t T = batch * seq_len, E = element_bytes;
  const std::int64_t kv_dim = a.kv_heads() * a.head_dim();
  const std::int64_t block = T * (5 * a.dim + 2 * kv_dim + 3 * a.ffn_hidden()) * E + T * a.n_heads * 4;
  const std::int64_t plain_blocks = a.n_layers - checkpointed_blocks;
  // What a checkpointed block keeps: its input; per-op SAC also the outputs of wq, wv, attention
  // (and its log-sum-exp), w1 and w2 (the 1st, 3rd, 5th and 7th matmul of the block).
  const std::int64_t kept_per_block =
      per_op_sac ? T * (4 * a.dim + kv_dim + a.ffn_hidden()) * E + T * a.n_heads * 4 : T * a.dim * E;
  const std::int64_t logit_bytes = widening_ops ? 8 : 2 * E;  // logits + their gradient (+ its f32 copy)
  std::int64_t bytes = plain_blocks * block + checkpointed_blocks * kept_per_block + T * 2 * a.dim * E +
                       T * a.vocab_size * logit_bytes;
  if (checkpointed_blocks > 0) bytes += block;  // the block being recomputed
  return bytes;
}

double flops_per_token(const ModelArgs& a, std::int64_t seq_len) {
  const ParamCount c = count_parameters(a);
  return 6.0 * static_cast<double>(c.total - c.embedding) +
         12.0 * static_cast<double>(a.n_layers * a.n_heads * a.head_dim() * seq_len);
}

}  // namespace titan::llama3
