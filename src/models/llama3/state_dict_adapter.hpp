#pragma once
// Llama 3's state-dict adapter: the HF LlamaForCausalLM names, q/k RoPE layout and config.json of
// models/llama3/hf.hpp behind checkpoint::StateDictAdapter, for the HF import/export procedures.
#include <string>

#include "checkpoint/hf_adapter.hpp"
#include "models/llama3/args.hpp"

namespace titan::llama3 {

class StateDictAdapter final : public checkpoint::StateDictAdapter {
 public:
  // `flavor` names the model in config.json mismatch messages (model.flavor).
  StateDictAdapter(ModelArgs args, std::string flavor) : args_(std::move(args)), flavor_(std::move(flavor)) {}

  std::string to_hf(const std::string& fqn) const override;
  std::optional<std::string> from_hf(const std::string& hf_name) const override;
  void check_hf_config(const nlohmann::json& config, const std::string& config_path, const std::string& key) const override;
  std::map<std::string, checkpoint::HfRows> read_rows(const std::string& dir,
                                                      const checkpoint::RowRanges& wanted) const override;
  void write(const std::string& dir, const std::map<std::string, Tensor>& state_dict, DType dtype) const override;

 private:
  ModelArgs args_;
  std::string flavor_;
};

}  // namespace titan::llama3
