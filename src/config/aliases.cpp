#include "config/aliases.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "core/errors.hpp"

namespace titan::config {

namespace {

bool has_prefix(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix &&
         (s.size() == prefix.size() || s[prefix.size()] == '.');
}

std::string since_until(std::string_view since, std::string_view until) {
  return since == until ? "TorchTitan " + std::string(since)
                        : "TorchTitan " + std::string(since) + " to " + std::string(until);
}

// The renamed section `path` lives under, if any.
const CompatSection* renamed_section(std::string_view path) {
  for (const auto& s : compat_sections())
    if (!s.to.empty() && has_prefix(path, s.from)) return &s;
  return nullptr;
}

std::string* text_of(RawValue& raw) {
  return std::holds_alternative<CliText>(raw) ? &std::get<CliText>(raw).text : std::get_if<std::string>(&raw);
}

}  // namespace

// clang-format off
const std::vector<CompatKey>& compat_keys() {
  using H = CompatHow;
  static const std::vector<CompatKey> table = {
      // Renamed or moved keys.
      {"training.batch_size", H::Rename, "training.local_batch_size", "2024-02", "2025-05"},
      {"training.compile", H::Rename, "compile.enable", "2024-02", "2025-08"},
      {"training.seed", H::Rename, "debug.seed", "2024-10", "2025-10"},
      {"training.deterministic", H::Rename, "debug.deterministic", "2024-12", "2025-10"},
      {"training.warmup_steps", H::Rename, "lr_scheduler.warmup_steps", "2024-02", "2025-03"},
      {"training.checkpoint_folder", H::Rename, "checkpoint.folder", "2024-02", "2024-04"},
      {"training.checkpoint_interval", H::Rename, "checkpoint.interval", "2024-02", "2024-04"},
      {"training.data_parallel_degree", H::Rename, "parallelism.data_parallel_shard_degree", "2024-02", "2024-09"},
      {"training.data_parallel_replicate_degree", H::Rename, "parallelism.data_parallel_replicate_degree", "2024-09", "2025-03"},
      {"training.data_parallel_shard_degree", H::Rename, "parallelism.data_parallel_shard_degree", "2024-09", "2025-03"},
      {"training.tensor_parallel_degree", H::Rename, "parallelism.tensor_parallel_degree", "2024-03", "2025-03"},
      {"training.sequence_parallel_degree", H::Rename, "parallelism.tensor_parallel_degree", "2024-02", "2024-03"},
      {"training.pipeline_parallel_degree", H::Rename, "parallelism.pipeline_parallel_degree", "2024-02", "2024-05"},
      {"training.fsdp_reshard_after_forward", H::Rename, "parallelism.fsdp_reshard_after_forward", "2025-02", "2025-03"},
      {"training.disable_loss_parallel", H::Rename, "parallelism.disable_loss_parallel", "2024-12", "2025-03"},
      {"training.enable_fsdp_fp8_all_gather", H::Rename, "quantize.linear.float8.enable_fsdp_float8_all_gather", "2024-07", "2024-07"},
      {"training.enable_fsdp_float8_all_gather", H::Rename, "quantize.linear.float8.enable_fsdp_float8_all_gather", "2024-07", "2024-07"},
      {"training.precompute_float8_dynamic_scale_for_fsdp", H::Rename, "quantize.linear.float8.precompute_float8_dynamic_scale_for_fsdp", "2024-07", "2024-07"},
      {"experimental.context_parallel_degree", H::Rename, "parallelism.context_parallel_degree", "2024-10", "2025-03"},
      {"experimental.context_parallel_rotate_method", H::Rename, "parallelism.context_parallel_rotate_method", "2024-12", "2025-03"},
      {"experimental.enable_async_tensor_parallel", H::Rename, "parallelism.enable_async_tensor_parallel", "2024-06", "2025-03"},
      {"experimental.pipeline_parallel_degree", H::Rename, "parallelism.pipeline_parallel_degree", "2024-05", "2025-03"},
      {"experimental.pipeline_parallel_schedule", H::Rename, "parallelism.pipeline_parallel_schedule", "2024-05", "2025-03"},
      {"checkpoint.enable_checkpoint", H::Rename, "checkpoint.enable", "2024-04", "2025-08"},
      {"checkpoint.model_weights_only", H::Rename, "checkpoint.last_save_model_only", "2024-04", "2025-06"},
      {"checkpoint.last_save_model_weights_only", H::Rename, "checkpoint.last_save_model_only", "2025-06", "2025-07"},
      {"checkpoint.initial_load_model_weights_only", H::Rename, "checkpoint.initial_load_model_only", "2025-06", "2025-07"},
      {"checkpoint.last_save_in_safetensors_format", H::Rename, "checkpoint.last_save_in_hf", "2025-07", "2025-07"},
      {"lr_scheduler.lr_min", H::Rename, "lr_scheduler.min_lr_factor", "2025-03", "2025-07"},
      {"model.tokenizer_path", H::Rename, "model.hf_assets_path", "2024-02", "2026-02"},
      {"job.print_args", H::Rename, "job.print_config", "2024-12", "2025-10"},
      {"validation.enabled", H::Rename, "validation.enable", "2025-07", "2025-08"},
      {"profiling.run_profiler", H::Rename, "profiling.enable_profiling", "2024-02", "2024-04"},
      {"profiling.profile_every_x_iter", H::Rename, "profiling.profile_freq", "2024-02", "2024-04"},
      {"comm.timeout_seconds", H::Rename, "comm.train_timeout_seconds", "2024-03", "2024-03"},
      // Booleans that became their negation.
      {"metrics.enable_color_printing", H::Negate, "metrics.disable_color_printing", "2024-04", "2024-12"},
      {"metrics.rank_0_only", H::Negate, "metrics.save_for_all_ranks", "2024-05", "2025-03"},
      {"training.enable_loss_parallel", H::Negate, "parallelism.disable_loss_parallel", "2024-03", "2024-12"},
      // Flags that became the float8 converter.
      {"training.fp8_linear", H::EnablesConverter, "quantize.linear.float8", "2024-03", "2024-07"},
      {"training.enable_fp8_linear", H::EnablesConverter, "quantize.linear.float8", "2024-07", "2024-07"},
      {"training.enable_float8_linear", H::EnablesConverter, "quantize.linear.float8", "2024-07", "2024-07"},
      {"float8.enable_float8_linear", H::EnablesConverter, "quantize.linear.float8", "2024-07", "2025-02"},
      // Keys that only tune what titan.cpp does anyway or a feature it lacks.
      {"job.use_for_integration_test", H::Ignore, "", "2024-03", "2025-08",
       "marked the file for TorchTitan's own integration tests; it does not change training"},
      {"job.custom_config_module", H::Ignore, "", "2025-10", "2026-02",
       "imports a Python module that extends JobConfig; titan.cpp has no Python (the keys such a module adds are unknown here)"},
      {"job.save_config_folder", H::Ignore, "", "2025-10", "2025-10",
       "was the folder of the saved config for one release; use job.save_config_file"},
      {"training.checkpoint_interval_type", H::Ignore, "", "2024-02", "2024-04",
       "chose steps or seconds as the unit of the checkpoint interval; titan.cpp counts steps", "steps|step"},
      {"checkpoint.interval_type", H::Ignore, "", "2024-04", "2025-02",
       "chose steps or seconds as the unit of checkpoint.interval; titan.cpp counts steps", "steps|step"},
      {"checkpoint.enable_ft_dataloader_checkpoints", H::Ignore, "", "2025-10", "2026-02",
       "saves data positions for TorchFT replicas; titan.cpp has no TorchFT (its checkpoints always hold the data position)"},
      {"checkpoint.initial_load_in_hf_quantized", H::Ignore, "", "2025-10", "2026-02",
       "loads HF weights stored quantized and dequantizes them; titan.cpp reads f32/bf16/f16 safetensors only", "false"},
      {"training.data_parallel_type", H::Ignore, "", "2024-07", "2024-09",
       "chose FSDP or DDP; titan.cpp shards with FSDP (DDP is parallelism.data_parallel_replicate_degree = N with data_parallel_shard_degree = 1)", "fsdp"},
      {"training.enable_selective_ac", H::Ignore, "", "2024-02", "2024-03",
       "turned selective activation checkpointing on; set activation_checkpoint.mode = \"selective\" instead", "false"},
      {"training.warmup_pct", H::Ignore, "", "2024-02", "2024-02",
       "warmed the LR up over this fraction of training.steps; the warm-up here is lr_scheduler.warmup_steps"},
      {"training.float8_scaling_type_input", H::Ignore, "", "2024-07", "2024-07",
       "chose dynamic or delayed float8 scaling for inputs; dynamic is the default recipe, delayed is quantize.linear.float8.recipe_name = \"delayed\"", "dynamic"},
      {"training.float8_scaling_type_weight", H::Ignore, "", "2024-07", "2024-07",
       "chose dynamic or delayed float8 scaling for weights; dynamic is the default recipe, delayed is quantize.linear.float8.recipe_name = \"delayed\"", "dynamic"},
      {"training.float8_scaling_type_grad_output", H::Ignore, "", "2024-07", "2024-07",
       "chose dynamic or delayed float8 scaling for output gradients; dynamic is the default recipe, delayed is quantize.linear.float8.recipe_name = \"delayed\"", "dynamic"},
      {"float8.scaling_type_input", H::Ignore, "", "2024-07", "2024-12",
       "chose dynamic or delayed float8 scaling for inputs; dynamic is the default recipe, delayed is quantize.linear.float8.recipe_name = \"delayed\"", "dynamic"},
      {"float8.scaling_type_weight", H::Ignore, "", "2024-07", "2024-12",
       "chose dynamic or delayed float8 scaling for weights; dynamic is the default recipe, delayed is quantize.linear.float8.recipe_name = \"delayed\"", "dynamic"},
      {"float8.scaling_type_grad_output", H::Ignore, "", "2024-07", "2024-12",
       "chose dynamic or delayed float8 scaling for output gradients; dynamic is the default recipe, delayed is quantize.linear.float8.recipe_name = \"delayed\"", "dynamic"},
      {"float8.force_recompute_fp8_weight_in_bwd", H::Ignore, "", "2025-02", "2025-07",
       "recomputed the float8 weight in backward to save memory under FSDP; titan.cpp's backward casts the gathered weight again anyway"},
      {"float8.moe_fqns_prototype", H::Ignore, "", "2025-06", "2025-09",
       "converted MoE experts to float8 grouped GEMMs; titan.cpp's Llama is dense"},
      {"model.norm_type", H::Ignore, "", "2024-04", "2025-04",
       "chose the block norm; titan.cpp's Llama uses (fused) RMSNorm", "rmsnorm|fused_rmsnorm|compiled_rmsnorm|np_rmsnorm"},
      {"model.use_flex_attn", H::Ignore, "", "2025-03", "2025-04",
       "ran attention through FlexAttention; titan.cpp's fused causal attention computes the same result", "*"},
      {"model.attn_mask_type", H::Ignore, "", "2025-04", "2025-04",
       "chose the attention mask; titan.cpp's attention is causal over the whole sequence", "causal"},
      {"metrics.disable_logging_from_checkpoint", H::Ignore, "", "2025-03", "2025-03",
       "silenced the checkpointer's log lines; titan.cpp logs one line per save"},
      {"optimizer.fused", H::Ignore, "", "2024-06", "2025-02",
       "chose PyTorch's fused AdamW kernel; titan.cpp always runs its own fused AdamW"},
      {"activation_checkpoint.early_stop", H::Ignore, "", "2025-08", "2026-02",
       "stops torch.utils.checkpoint's recomputation early; titan.cpp recomputes exactly what backward needs"},
      {"activation_checkpoint.preserve_rng_state", H::Ignore, "", "2025-10", "2026-02",
       "stashes the RNG state around recomputation; titan.cpp's Llama draws no random numbers in forward, so recomputation is exact either way"},
      {"activation_checkpoint.determinism_check", H::Ignore, "", "2025-10", "2026-02",
       "chooses torch.utils.checkpoint's recomputation check; titan.cpp's recomputation is bit-identical by construction (tested)"},
      {"activation_checkpoint.debug", H::Ignore, "", "2025-10", "2026-02",
       "captures torch.utils.checkpoint debug information; titan.cpp has none to capture"},
      {"activation_checkpoint.memory_budget", H::Ignore, "", "2025-10", "2026-02",
       "tunes torch.compile's partitioner for mode = \"memory_budget\", which titan.cpp does not have"},
      {"activation_checkpoint.visualize_memory_budget_pareto", H::Ignore, "", "2025-10", "2026-02",
       "plots torch.compile's memory-budget trade-off; titan.cpp has no torch.compile"},
      {"comm.save_traces_file_prefix", H::Ignore, "", "2025-09", "2026-02",
       "names NCCL flight-recorder files; titan.cpp has no flight recorder (comm.trace_buf_size)"},
      {"comm.mode", H::Ignore, "", "2025-11", "2026-02",
       "switches to a fake or local communication backend for dry runs; titan.cpp's equivalent is run_train --dry-run (--world-size N)", "default"},
      {"debug.moe_force_load_balance", H::Ignore, "", "2025-10", "2026-02",
       "balances MoE expert routing; titan.cpp's Llama is dense"},
      {"training.debug_moe_force_load_balance", H::Ignore, "", "2025-10", "2025-10",
       "balances MoE expert routing; titan.cpp's Llama is dense"},
      {"experimental.custom_import", H::Ignore, "", "2025-03", "2026-02",
       "imports a Python module (custom models or components); titan.cpp has no Python"},
      {"experimental.custom_args_module", H::Ignore, "", "2025-03", "2026-02",
       "imports a Python module that extends JobConfig; titan.cpp has no Python (the keys such a module adds are unknown here)"},
      {"experimental.custom_model_path", H::Ignore, "", "2025-02", "2025-03",
       "imports a Python model definition; titan.cpp has no Python (model.name must be one of its own)"},
      {"experimental.enable_compiled_autograd", H::Ignore, "", "2024-07", "2025-03",
       "compiles the backward with torch's compiled autograd; titan.cpp's backward is already compiled C++"},
      {"parallelism.enable_compiled_autograd", H::Ignore, "", "2025-03", "2025-10",
       "compiles the backward with torch's compiled autograd; titan.cpp's backward is already compiled C++"},
      {"experimental.torch_spmd", H::Ignore, "", "2024-09", "2024-09",
       "traced the model with an experimental SPMD compiler; titan.cpp has no torch tracing (its kernels are compiled already)"},
      {"experimental.pipeline_parallel_microbatches", H::Ignore, "", "2024-05", "2025-03",
       "set the pipeline's micro-batches; titan.cpp has no pipeline parallelism (pipeline_parallel_degree must be 1)"},
      {"experimental.pipeline_parallel_schedule_csv", H::Ignore, "", "2024-11", "2025-03",
       "read a pipeline schedule from CSV; titan.cpp has no pipeline parallelism (pipeline_parallel_degree must be 1)"},
      {"experimental.pipeline_parallel_split_mode", H::Ignore, "", "2024-05", "2024-08",
       "chose how the model is split into pipeline stages; titan.cpp has no pipeline parallelism (pipeline_parallel_degree must be 1)"},
      {"experimental.pipeline_parallel_split_points", H::Ignore, "", "2024-05", "2025-03",
       "named the pipeline stage boundaries; titan.cpp has no pipeline parallelism (pipeline_parallel_degree must be 1)"},
      {"parallelism.pipeline_parallel_microbatches", H::Ignore, "", "2025-03", "2025-04",
       "set the pipeline's micro-batches; titan.cpp has no pipeline parallelism (pipeline_parallel_degree must be 1)"},
      {"parallelism.pipeline_parallel_split_points", H::Ignore, "", "2025-03", "2025-10",
       "named the pipeline stage boundaries; titan.cpp has no pipeline parallelism (pipeline_parallel_degree must be 1)"},
      {"parallelism.pipeline_parallel_schedule_csv", H::Ignore, "", "2025-03", "2026-02",
       "reads a pipeline schedule from CSV; titan.cpp has no pipeline parallelism (pipeline_parallel_degree must be 1)"},
      {"parallelism.pipeline_parallel_layers_per_stage", H::Ignore, "", "2025-04", "2026-02",
       "sets layers per pipeline stage; titan.cpp has no pipeline parallelism (pipeline_parallel_degree must be 1)"},
      {"parallelism.pipeline_parallel_first_stage_less_layers", H::Ignore, "", "2025-07", "2026-02",
       "shortens the first pipeline stage; titan.cpp has no pipeline parallelism (pipeline_parallel_degree must be 1)"},
      {"parallelism.pipeline_parallel_last_stage_less_layers", H::Ignore, "", "2025-07", "2026-02",
       "shortens the last pipeline stage; titan.cpp has no pipeline parallelism (pipeline_parallel_degree must be 1)"},
      {"parallelism.module_fqns_per_model_part", H::Ignore, "", "2025-07", "2026-02",
       "lists the modules of each pipeline stage; titan.cpp has no pipeline parallelism (pipeline_parallel_degree must be 1)"},
      {"parallelism.pipeline_parallel_expert_parallel_overlap", H::Ignore, "", "2025-12", "2026-02",
       "overlaps pipeline and expert-parallel communication; titan.cpp has neither (both degrees must be 1)"},
      {"parallelism.expert_parallel_comm_backend", H::Ignore, "", "2025-12", "2026-02",
       "chooses the MoE all-to-all backend; titan.cpp's Llama is dense"},
      {"parallelism.context_parallel_load_balancer", H::Ignore, "", "2026-01", "2026-02",
       "balances causal work across context-parallel ranks; titan.cpp has no context parallelism (context_parallel_degree must be 1)"},
  };
  return table;
}

const std::vector<CompatSection>& compat_sections() {
  static const std::vector<CompatSection> table = {
      {"float8", "quantize.linear.float8", "2024-07", "2025-09", ""},
      {"quantize.dense.float8", "quantize.linear.float8", "2025-09", "2025-09", ""},
      {"fault_tolerance", "", "2025-02", "2026-02", "TorchFT replica groups; titan.cpp has no TorchFT (a crashed run resumes from its last checkpoint)"},
      {"memory_estimation", "", "2024-07", "2026-02", "TorchTitan's fake-mode memory estimate; titan.cpp's --dry-run prints the memory plan"},
      {"estimate", "", "2024-06", "2024-06", "TorchTitan's fake-mode memory estimate; titan.cpp's --dry-run prints the memory plan"},
      {"mx", "", "2025-05", "2025-09", "MX (microscaling) formats; titan.cpp has float8 only"},
      {"quantize.linear.mx", "", "2025-09", "2026-02", "MX (microscaling) formats; titan.cpp has float8 only"},
      {"quantize.dense.mx", "", "2025-09", "2025-09", "MX (microscaling) formats; titan.cpp has float8 only"},
      {"quantize.grouped_mm", "", "2025-09", "2026-02", "quantized MoE grouped GEMMs; titan.cpp's Llama is dense"},
      {"quantize.moe", "", "2025-09", "2025-09", "quantized MoE grouped GEMMs; titan.cpp's Llama is dense"},
      {"training.dataloader", "", "2025-12", "2026-02", "PyTorch DataLoader worker settings; titan.cpp's loader runs in the training process"},
      {"validation.dataloader", "", "2025-12", "2026-02", "PyTorch DataLoader worker settings; titan.cpp's loader runs in the training process"},
  };
  return table;
}
// clang-format on

const CompatKey* find_compat_key(std::string_view full) {
  for (const auto& k : compat_keys())
    if (k.from == full) return &k;
  return nullptr;
}

std::string normalize_key(std::string_view key) {
  std::string out(key);
  std::replace(out.begin(), out.end(), '-', '_');
  return out;
}

CanonicalKey canonical_section(std::string_view path) {
  if (const CompatSection* s = renamed_section(path)) {
    std::string to = std::string(s->to) + std::string(path.substr(s->from.size()));
    return {to, "[" + std::string(s->from) + "] is deprecated (" + since_until(s->since, s->until) + "); use [" +
                    std::string(s->to) + "]"};
  }
  return {std::string(path), std::nullopt};
}

CanonicalKey canonical_key(std::string_view full) {
  if (const CompatKey* k = find_compat_key(full); k && (k->how == CompatHow::Rename || k->how == CompatHow::Negate)) {
    const std::string negated = k->how == CompatHow::Negate ? " (negated: true there is false here)" : "";
    return {std::string(k->to), "'" + std::string(k->from) + "' is deprecated (" + since_until(k->since, k->until) +
                                    "); use '" + std::string(k->to) + "'" + negated};
  }
  CanonicalKey out = canonical_section(full);
  if (out.deprecation) out.deprecation = "'" + std::string(full) + "' is deprecated; use '" + out.key + "'";
  return out;
}

void apply_value_aliases(const KeyInfo& key, std::string_view original_key, RawValue& raw,
                         std::vector<std::string>& warnings) {
  if (key.full == "model.converters") {
    auto rename = [&](std::string& item) {
      if (item == "float8") {
        warnings.push_back("converter \"float8\" is deprecated; use \"quantize.linear.float8\"");
        item = "quantize.linear.float8";
      }
    };
    if (auto* list = std::get_if<std::vector<std::string>>(&raw)) {
      for (auto& item : *list) rename(item);
    } else if (std::string* text = text_of(raw)) {
      // A comma-separated string: rewrite item by item.
      std::string out, item;
      for (size_t i = 0; i <= text->size(); ++i) {
        if (i == text->size() || (*text)[i] == ',') {
          rename(item);
          out += (out.empty() ? "" : ",") + item;
          item.clear();
        } else if (!std::isspace(static_cast<unsigned char>((*text)[i]))) {
          item += (*text)[i];
        }
      }
      *text = out;
    }
  }
  if (key.full == "model.name") {
    // TorchTitan's first model name (2024-02 to 2024-04) was "llama", with Llama 2's flavors.
    if (std::string* text = text_of(raw); text && *text == "llama") {
      warnings.push_back("model.name = \"llama\" is deprecated (TorchTitan 2024-02 to 2024-04); use \"llama2\"");
      *text = "llama2";
    }
  }
  if (key.full == "model.hf_assets_path" && original_key == "model.tokenizer_path") {
    // tokenizer_path named the tokenizer file itself; hf_assets_path names the folder holding it.
    if (std::string* text = text_of(raw)) {
      std::filesystem::path p(*text);
      if (p.has_extension()) *text = p.parent_path().empty() ? "." : p.parent_path().string();
    }
  }
  if (const CompatKey* k = find_compat_key(original_key); k && k->how == CompatHow::Negate) {
    if (bool* b = std::get_if<bool>(&raw)) {
      *b = !*b;
    } else if (std::string* text = text_of(raw)) {
      // CLI text of a boolean; anything else is left for assign() to reject with the key's name.
      if (*text == "true") *text = "false";
      else if (*text == "false") *text = "true";
    }
  }
}

std::string ignored_key_warning(const CompatKey& key, std::string_view value, const std::string& origin) {
  // An empty string would read as a missing value in the message.
  const std::string shown = value.empty() ? std::string("\"\"") : std::string(value);
  const std::string where = std::string(key.from) + " = " + shown + " (" + origin + ")";
  if (key.harmless != "*") {
    std::vector<std::string_view> ok;
    for (size_t start = 0;;) {
      const size_t bar = key.harmless.find('|', start);
      ok.push_back(key.harmless.substr(start, bar == std::string_view::npos ? std::string_view::npos : bar - start));
      if (bar == std::string_view::npos) break;
      start = bar + 1;
    }
    if (std::find(ok.begin(), ok.end(), value) == ok.end()) {
      std::string allowed;
      for (size_t i = 0; i < ok.size(); ++i) allowed += (i ? " or \"" : "\"") + std::string(ok[i]) + "\"";
      throw UserError("config: " + where + ": in TorchTitan this key " + std::string(key.note) +
                      "; here only " + allowed + " can be honoured; remove the key");
    }
  }
  return where + " is a TorchTitan key (" + std::string(key.since) + " to " + std::string(key.until) + ") that " + std::string(key.note) +
         "; ignored";
}

bool converter_flag_on(std::string_view value) { return !(value.empty() || value == "false"); }

void add_legacy_converters(JobConfig& cfg, const std::vector<std::string>& converters) {
  for (const auto& c : converters) {
    auto& list = cfg.model.converters;
    if (std::find(list.begin(), list.end(), c) == list.end()) list.push_back(c);
  }
}

const CompatSection* ignored_section(std::string_view path) {
  for (const auto& s : compat_sections())
    if (s.to.empty() && has_prefix(path, s.from)) return &s;
  return nullptr;
}

bool is_compat_section(std::string_view path) {
  auto under = [&](std::string_view full) {
    return full.size() > path.size() && full.substr(0, path.size()) == path && full[path.size()] == '.';
  };
  if (std::any_of(compat_sections().begin(), compat_sections().end(),
                  [&](const CompatSection& s) { return under(s.from); }))
    return true;
  return std::any_of(compat_keys().begin(), compat_keys().end(), [&](const CompatKey& k) {
    return k.from.size() > path.size() && k.from.substr(0, path.size()) == path && k.from[path.size()] == '.';
  });
}

}  // namespace titan::config
