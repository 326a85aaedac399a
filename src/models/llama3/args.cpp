#include "models/llama3/args.hpp"

namespace titan::llama3 {

std::int64_t ModelArgs::ffn_hidden() const {
  std::int64_t hidden = 4 * dim;
  hidden = static_cast<std::int64_t>(2 * hidden / 3);
  if (ffn_dim_multiplier) hidden = static_cast<std::int64_t>(*ffn_dim_multiplier * static_cast<double>(hidden));
  return multiple_of * ((hidden + multiple_of - 1) / multiple_of);
}

const std::vector<Flavor>& flavors() {
  static const std::vector<Flavor> table = [] {
    auto make = [](std::int64_t dim, std::int64_t layers, std::int64_t heads, std::optional<std::int64_t> kv,
                   std::int64_t vocab, std::int64_t multiple_of, std::optional<double> mult) {
      ModelArgs a;
      a.dim = dim;
      a.n_layers = layers;
      a.n_heads = heads;
      a.n_kv_heads = kv;
      a.vocab_size = vocab;
      a.multiple_of = multiple_of;
      a.ffn_dim_multiplier = mult;
      a.rope_theta = 500000;
      return a;
    };
    return std::vector<Flavor>{
        {"debugmodel", make(256, 6, 16, std::nullopt, 2048, 256, std::nullopt)},
        // Llama 3.2 1B/3B shapes (untied output here, as everywhere in titan.cpp).
        {"1B", make(2048, 16, 32, 8, 128256, 256, 1.5)},
        {"3B", make(3072, 28, 24, 8, 128256, 256, 1.0)},
        {"8B", make(4096, 32, 32, 8, 128256, 1024, 1.3)},
        {"70B", make(8192, 80, 64, 8, 128256, 4096, 1.3)},
        {"405B", make(16384, 126, 128, 8, 128256, 4096, 1.2)},
    };
  }();
  return table;
}

const ModelArgs* find_flavor(const std::string& name) {
  for (const auto& f : flavors())
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
                              std::int64_t checkpointed_blocks, std::int64_t element_bytes, bool widening_ops) {
  const std::int64_t T = batch * seq_len, E = element_bytes;
  const std::int64_t kv_dim = a.kv_heads() * a.head_dim();
  const std::int64_t block = T * (5 * a.dim + 2 * kv_dim + 3 * a.ffn_hidden()) * E + T * a.n_heads * 4;
  const std::int64_t plain_blocks = a.n_layers - checkpointed_blocks;
  const std::int64_t logit_bytes = widening_ops ? 8 : 2 * E;  // logits + their gradient (+ its f32 copy)
  std::int64_t bytes = plain_blocks * block + checkpointed_blocks * T * a.dim * E + T * 2 * a.dim * E +
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
