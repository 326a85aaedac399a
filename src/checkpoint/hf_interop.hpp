#pragma once
// HF interop procedures (DESIGN.md section 8): check an HF folder's config.json, import the rows a
// rank owns (checkpoint.initial_load_in_hf), export the full model (checkpoint.last_save_in_hf).
// The model-specific part (names, layouts, config.json) is the StateDictAdapter's.
#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "checkpoint/checkpointer.hpp"
#include "checkpoint/hf_adapter.hpp"

namespace titan::checkpoint {

// `path`/config.json must exist, parse, and describe the adapter's model; checked before the model
// is allocated. `key` is the config key that named the folder (for error messages).
void check_hf_folder(const StateDictAdapter& adapter, const std::string& key, const std::string& path);

// Fills each of `params` (name = the model's FQN, rows = this rank's rows of it, written in place)
// from the HF folder `path`: each rank reads only the rows it owns, no collectives. Throws
// UserError prefixed with `key` for a missing, corrupt or misshapen tensor.
void import_hf(const StateDictAdapter& adapter, const std::string& key, const std::string& path,
               const std::vector<ShardedTensor>& params);

// Writes `state_dict` (FQN -> full tensor) as HF safetensors into `folder`/step-`step`-hf in
// `export_dtype` (float16 | bfloat16 | float32), through a .tmp folder renamed when complete, and
// logs the time since `started`.
void export_hf(const StateDictAdapter& adapter, const std::map<std::string, Tensor>& state_dict,
               const std::string& folder, std::int64_t step, const std::string& export_dtype,
               std::chrono::steady_clock::time_point started);

}  // namespace titan::checkpoint
