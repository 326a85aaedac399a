#include "models/llama3/state_dict_adapter.hpp"

#include <spdlog/fmt/fmt.h>

#include "core/errors.hpp"
#include "models/llama3/hf.hpp"

namespace titan::llama3 {

std::string StateDictAdapter::to_hf(const std::string& fqn) const { return to_hf_name(fqn); }

std::optional<std::string> StateDictAdapter::from_hf(const std::string& hf_name) const { return from_hf_name(hf_name); }

void StateDictAdapter::check_hf_config(const nlohmann::json& config, const std::string& config_path,
                                       const std::string& key) const {
  const ModelArgs hf = args_from_hf_config(config, config_path);
  const ModelArgs& m = args_;
  if (hf.dim != m.dim || hf.n_layers != m.n_layers || hf.n_heads != m.n_heads || hf.kv_heads() != m.kv_heads() ||
      hf.vocab_size != m.vocab_size || hf.ffn_hidden() != m.ffn_hidden())
    throw UserError(fmt::format("{}: '{}' is a Llama with hidden_size {}, {} layers, {} heads "
                                "({} kv), vocab {}, intermediate {}; model.flavor {} has {}, {}, {} ({}), {}, {}",
                                key, config_path, hf.dim, hf.n_layers, hf.n_heads, hf.kv_heads(), hf.vocab_size,
                                hf.ffn_hidden(), flavor_, m.dim, m.n_layers, m.n_heads, m.kv_heads(), m.vocab_size,
                                m.ffn_hidden()));
  check_hf_config_matches(config, m, config_path, key, flavor_);
}

std::map<std::string, checkpoint::HfRows> StateDictAdapter::read_rows(const std::string& dir,
                                                                      const checkpoint::RowRanges& wanted) const {
  return read_hf_rows(dir, args_, wanted);
}

void StateDictAdapter::write(const std::string& dir, const std::map<std::string, Tensor>& state_dict, DType dtype) const {
  write_hf(dir, state_dict, args_, dtype);
}

}  // namespace titan::llama3
