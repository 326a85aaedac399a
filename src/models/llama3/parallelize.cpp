#include "models/llama3/parallelize.hpp"

namespace titan::llama3 {

void apply_fsdp(Transformer& model, dist::Fsdp& fsdp, const std::string& policy) {
  const bool reshard = policy != "never";
  fsdp.add_unit("tok_embeddings", {&model.tok_embeddings}, reshard);
  for (auto& [name, block] : model.layers.named_children()) fsdp.add_unit("layers." + name, {block}, reshard);
  fsdp.add_unit("norm, output", {&model.norm, &model.output()}, policy == "always");
}

}  // namespace titan::llama3
