#include "config/validate.hpp"

#include <algorithm>
#include <charconv>

#include "config/schema.hpp"
#include "core/errors.hpp"
#include "core/fault.hpp"

namespace titan::config {

namespace {

[[noreturn]] void fail(const JobConfig& cfg, const std::string& key, const std::string& what) {
  throw UserError("config: " + key + " (" + source_of(cfg, key) + ") " + what);
}

// Every item of a list key must be one of `allowed`.
void check_list_items(const JobConfig& cfg, const std::string& key, const std::vector<std::string>& items,
                      const std::vector<std::string>& allowed) {
  for (const auto& item : items) {
    if (std::find(allowed.begin(), allowed.end(), item) != allowed.end()) continue;
    std::string choices;
    for (const auto& a : allowed) choices += (choices.empty() ? "" : ", ") + a;
    std::string msg = "lists \"" + printable(item) + "\", which is not one of: " + choices;
    if (auto near = closest_match(item, allowed)) msg += "; did you mean \"" + *near + "\"?";
    fail(cfg, key, msg);
  }
}

bool any_float8_key_set(const JobConfig& cfg) {
  for (const auto& k : schema())
    // filter_fqns alone is a harmless preset (TorchTitan's configs keep ["output"] ready for
    // --model.converters); any other float8 setting without the converter is probably a mistake.
    if (k.section == "quantize.linear.float8" && k.name != "filter_fqns" && !equals_default(k, cfg)) return true;
  return false;
}

}  // namespace

std::string source_of(const JobConfig& cfg, const std::string& full_key) {
  auto it = cfg.sources.find(full_key);
  return it == cfg.sources.end() ? "default" : it->second;
}

void validate(JobConfig& cfg) {
  (void)FaultInjection::parse(cfg.debug.fault);  // a malformed fault spec is one line before anything runs
  if (cfg.checkpoint.create_seed_checkpoint && cfg.checkpoint.load_only)
    throw UserError("checkpoint.create_seed_checkpoint = true writes step-0, but checkpoint.load_only = true forbids saving; "
                    "unset one of them");
  // Converters: only float8 linears exist in titan.cpp.
  check_list_items(cfg, "model.converters", cfg.model.converters, {"quantize.linear.float8"});
  const bool float8 = std::find(cfg.model.converters.begin(), cfg.model.converters.end(),
                                "quantize.linear.float8") != cfg.model.converters.end();
  const auto& f8 = cfg.float8;
  if (f8.recipe_name && f8.enable_fsdp_float8_all_gather)
    fail(cfg, "quantize.linear.float8.enable_fsdp_float8_all_gather",
         "= true cannot be combined with quantize.linear.float8.recipe_name = \"" + printable(*f8.recipe_name) +
             "\" (" + source_of(cfg, "quantize.linear.float8.recipe_name") +
             "): float8 all-gather is for the default tensorwise recipe; unset recipe_name or disable the all-gather");
  if (f8.precompute_float8_dynamic_scale_for_fsdp && !f8.enable_fsdp_float8_all_gather)
    cfg.warnings.push_back(
        "quantize.linear.float8.precompute_float8_dynamic_scale_for_fsdp has no effect without "
        "quantize.linear.float8.enable_fsdp_float8_all_gather");
  if (cfg.parallelism.enable_async_tensor_parallel && cfg.parallelism.tensor_parallel_degree == 1)
    cfg.warnings.push_back("parallelism.enable_async_tensor_parallel has no effect without tensor parallelism "
                           "(parallelism.tensor_parallel_degree = 1)");
  if (!float8 && any_float8_key_set(cfg))
    cfg.warnings.push_back(
        "[quantize.linear.float8] settings are ignored: model.converters does not list \"quantize.linear.float8\"");

  check_list_items(cfg, "compile.components", cfg.compile.components, {"model", "loss"});

  // Profiling: TorchTitan's schedule needs wait = profile_freq - (warmup + active) >= 0.
  if (cfg.profiling.enable_profiling &&
      cfg.profiling.profile_freq < cfg.profiling.profiler_warmup + cfg.profiling.profiler_active)
    fail(cfg, "profiling.profile_freq",
         "= " + std::to_string(cfg.profiling.profile_freq) + " is shorter than profiling.profiler_warmup (" +
             std::to_string(cfg.profiling.profiler_warmup) + ") + profiling.profiler_active (" +
             std::to_string(cfg.profiling.profiler_active) +
             "): each profiling cycle is profile_freq steps and ends with the warm-up and recorded steps");
  check_list_items(cfg, "checkpoint.exclude_from_loading", cfg.checkpoint.exclude_from_loading,
                   {"model", "optimizer", "lr_scheduler", "dataloader", "train_state"});

  // Checkpoints (TorchTitan's rules).
  if (cfg.checkpoint.keep_latest_k == 1)
    fail(cfg, "checkpoint.keep_latest_k",
         "= 1 is not allowed: the newest checkpoint may still be being written; use 0 (keep all) or >= 2");
  if (cfg.checkpoint.last_save_in_hf && !cfg.checkpoint.last_save_model_only)
    fail(cfg, "checkpoint.last_save_in_hf",
         "= true needs checkpoint.last_save_model_only = true (HF safetensors hold only the model)");
  if (cfg.checkpoint.initial_load_in_hf && !cfg.checkpoint.initial_load_model_only)
    fail(cfg, "checkpoint.initial_load_in_hf",
         "= true needs checkpoint.initial_load_model_only = true (HF safetensors hold only the model)");

  // Selective activation checkpointing: every Nth block.
  if (cfg.activation_checkpoint.mode == "selective") {
    const std::string& opt = cfg.activation_checkpoint.selective_ac_option;
    long long n = 0;
    auto res = std::from_chars(opt.data(), opt.data() + opt.size(), n);
    const bool positive_int = !opt.empty() && res.ec == std::errc() && res.ptr == opt.data() + opt.size() && n >= 1;
    if (!positive_int && opt != "op")
      fail(cfg, "activation_checkpoint.selective_ac_option",
           "= \"" + printable(opt) + "\" must be a positive integer N (checkpoint every Nth block) or \"op\" (per-op)");
  }

  // Schedule.
  const std::int64_t schedule_steps = cfg.lr_scheduler.total_steps.value_or(cfg.training.steps);
  if (cfg.lr_scheduler.warmup_steps > schedule_steps)
    cfg.warnings.push_back("lr_scheduler.warmup_steps (" + std::to_string(cfg.lr_scheduler.warmup_steps) +
                           ") exceeds the " + std::to_string(schedule_steps) +
                           " scheduled steps: the LR never leaves warmup");
}

}  // namespace titan::config
