#include "train/preflight.hpp"

#include <cstdio>

#include "core/errors.hpp"
#include "data/dataset.hpp"

namespace titan::train {

namespace {
std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / double(1ull << 30));
  return buf;
}
}  // namespace

std::unique_ptr<data::Tokenizer> load_training_tokenizer(const config::JobConfig& cfg, const Plan& plan) {
  auto tokenizer = data::load_tokenizer(cfg.model.tokenizer, cfg.model.hf_assets_path);
  if (tokenizer->vocab_size() > plan.model.vocab_size)
    throw UserError("model: the tokenizer has " + std::to_string(tokenizer->vocab_size()) + " tokens but flavor " +
                    plan.flavor + " has vocab_size " + std::to_string(plan.model.vocab_size) +
                    "; pick a flavor whose vocabulary holds the tokenizer's");
  return tokenizer;
}

std::vector<std::string> input_problems(const config::JobConfig& cfg, const Plan& plan) {
  std::vector<std::string> problems;
  auto check = [&](auto&& what) {
    try {
      what();
    } catch (const UserError& e) {
      problems.push_back(e.what());
    }
  };
  check([&] { load_training_tokenizer(cfg, plan); });
  check([&] { data::resolve_dataset_files(cfg.training.dataset, cfg.training.dataset_path.value_or("")); });
  if (cfg.validation.enable)
    check([&] { data::resolve_dataset_files(cfg.validation.dataset, cfg.validation.dataset_path.value_or("")); });
  return problems;
}

MemoryFit check_memory(const Plan& plan, const DeviceInfo& devices, int ranks_on_node) {
  MemoryFit fit;
  double per_rank = double(plan.memory.total());
  if (plan.on_gpu) {
    per_rank = double(plan.memory.device_total());  // offloaded state is in host memory
    if (devices.gpu_memory_bytes == 0) return fit;  // the GPU could not be queried: nothing to compare
    // Ranks of a node share its GPUs (local rank mod count).
    const int per_gpu = (ranks_on_node + devices.cuda_devices - 1) / devices.cuda_devices;
    const double need = per_rank * per_gpu;
    fit.fits = need <= double(devices.gpu_memory_bytes);
    fit.text = "needs ~" + gib(need) + " of GPU memory (" + gib(per_rank) + " per rank x " + std::to_string(per_gpu) +
               " rank(s) per GPU); the GPU has " + gib(double(devices.gpu_memory_bytes));
    return fit;
  }
  if (devices.host_available_bytes == 0) return fit;  // unknown (no /proc/meminfo): nothing to compare
  const double need = per_rank * ranks_on_node;
  fit.fits = need <= double(devices.host_available_bytes);
  fit.text = "needs ~" + gib(need) + " of host memory (" + gib(per_rank) + " per rank x " +
             std::to_string(ranks_on_node) + " rank(s) on this node); the node has " +
             gib(double(devices.host_available_bytes)) + " available";
  return fit;
}

}  // namespace titan::train
