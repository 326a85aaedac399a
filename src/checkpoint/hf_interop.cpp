#include "checkpoint/hf_interop.hpp"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "checkpoint/safetensors.hpp"
#include "core/errors.hpp"

namespace titan::checkpoint {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

void check_hf_folder(const StateDictAdapter& adapter, const std::string& key, const std::string& path) {
  const std::string config_path = (std::filesystem::path(path) / "config.json").string();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(config_path, ec))
    throw UserError(key + ": '" + config_path + "' is missing; an HF model folder has one");
  std::ifstream in(config_path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const nlohmann::json config = parse_json(text, key + ": '" + config_path + "'");
  if (!config.is_object()) throw UserError(key + ": '" + config_path + "' is not a config.json (not a JSON object)");
  adapter.check_hf_config(config, config_path, key);
}

void import_hf(const StateDictAdapter& adapter, const std::string& key, const std::string& path,
               const std::vector<ShardedTensor>& params) {
  const auto t0 = std::chrono::steady_clock::now();
  RowRanges wanted;
  for (const auto& p : params) wanted[p.name] = {p.row_begin, p.row_end};
  std::map<std::string, HfRows> weights;
  try {
    weights = adapter.read_rows(path, wanted);
  } catch (const PeerFailure&) {
    throw;
  } catch (const UserError& e) {
    throw UserError(key + ": " + e.what() + "; re-download or re-export that HF model", e.exit_code());
  }
  for (const auto& p : params) {
    auto it = weights.find(p.name);
    if (it == weights.end()) throw UserError(key + ": '" + path + "' has no tensor '" + adapter.to_hf(p.name) + "'");
    if (it->second.global != p.global_shape || !it->second.rows.defined())
      throw UserError(key + ": '" + path + "' tensor '" + adapter.to_hf(p.name) + "' has shape " +
                      shape_str(it->second.global) + ", the model's is " + shape_str(p.global_shape));
    if (p.row_end > p.row_begin) p.rows.copy_from(it->second.rows);  // a view: the copy lands in the shard
  }
  spdlog::info("checkpoint: loaded HF weights from '{}' ({} tensors) in {:.2f}s", path, weights.size(), seconds_since(t0));
}

void export_hf(const StateDictAdapter& adapter, const std::map<std::string, Tensor>& state_dict,
               const std::string& folder, std::int64_t step, const std::string& export_dtype,
               std::chrono::steady_clock::time_point started) {
  const auto dir = std::filesystem::path(folder) / ("step-" + std::to_string(step) + "-hf");
  const DType dt = export_dtype == "bfloat16" ? DType::bf16 : export_dtype == "float16" ? DType::f16 : DType::f32;
  std::filesystem::remove_all(dir.string() + ".tmp");
  adapter.write(dir.string() + ".tmp", state_dict, dt);
  std::filesystem::remove_all(dir);
  std::filesystem::rename(dir.string() + ".tmp", dir);
  spdlog::info("checkpoint: exported step {} as HF safetensors ({}) to {} in {:.2f}s", step, export_dtype, dir.string(),
               seconds_since(started));
}

}  // namespace titan::checkpoint
