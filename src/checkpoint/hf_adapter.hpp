#pragma once
// The state-dict adapter (TorchTitan's StateDictAdapter): what the HF import/export procedures
// (checkpoint/hf_interop.hpp) need to know of one model family, so that checkpoint/ itself names
// no model. A model implements it next to its definition (models/llama3/state_dict_adapter.hpp).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "core/tensor.hpp"

namespace titan::checkpoint {

// Rows [begin, end) (the model's row order) of one tensor read from an HF folder: `global` is the
// full tensor's shape in the file; `rows` is left undefined when the range does not fit it (the
// caller reports the shape mismatch).
struct HfRows {
  Shape global;
  Tensor rows;
};

// Row range [begin, end) wanted of each parameter, by the model's FQN.
using RowRanges = std::map<std::string, std::pair<std::int64_t, std::int64_t>>;

class StateDictAdapter {
 public:
  virtual ~StateDictAdapter() = default;

  // The HF name of a model FQN, and back (nullopt for an HF name that is no parameter of the model).
  virtual std::string to_hf(const std::string& fqn) const = 0;
  virtual std::optional<std::string> from_hf(const std::string& hf_name) const = 0;

  // `config` (the parsed config.json at `config_path`) must describe the model this run trains;
  // throws UserError "`key`: '`config_path`' ..." naming what differs and the fix.
  virtual void check_hf_config(const nlohmann::json& config, const std::string& config_path,
                               const std::string& key) const = 0;

  // Reads the wanted rows of each tensor from the HF safetensors in `dir`, converted to the
  // model's layout. Throws UserError naming the file and tensor for a missing or corrupt one.
  virtual std::map<std::string, HfRows> read_rows(const std::string& dir, const RowRanges& wanted) const = 0;

  // Writes a full state dict (FQN -> full tensor) as HF safetensors + config.json into `dir`, in `dtype`.
  virtual void write(const std::string& dir, const std::map<std::string, Tensor>& state_dict, DType dtype) const = 0;
};

}  // namespace titan::checkpoint
