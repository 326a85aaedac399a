#include "train/checkpoint_options.hpp"

#include <filesystem>

namespace titan::train {

checkpoint::CheckpointOptions checkpoint_options(const config::JobConfig& cfg) {
  const auto& c = cfg.checkpoint;
  checkpoint::CheckpointOptions o;
  o.folder = (std::filesystem::path(cfg.job.dump_folder) / c.folder).string();
  o.enable = c.enable;
  o.load_only = c.load_only;
  o.interval = c.interval;
  o.enable_first_step_checkpoint = c.enable_first_step_checkpoint;
  o.async = c.async_mode != "disabled";
  o.keep_latest_k = c.keep_latest_k;
  o.load_step = c.load_step;
  o.initial_load_path = c.initial_load_path;
  o.initial_load_model_only = c.initial_load_model_only;
  o.initial_load_in_hf = c.initial_load_in_hf;
  o.last_save_model_only = c.last_save_model_only;
  o.export_dtype = c.export_dtype;
  o.exclude_from_loading = c.exclude_from_loading;
  o.fault = FaultInjection::parse(cfg.debug.fault);
  return o;
}

}  // namespace titan::train
