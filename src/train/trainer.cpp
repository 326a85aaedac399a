#include "train/trainer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <stdexcept>
#include <unistd.h>

#include "autograd/functions.hpp"
#include "checkpoint/checkpointer.hpp"
#include "checkpoint/safetensors.hpp"
#include "config/toml_io.hpp"
#include "core/errors.hpp"
#include "core/fault.hpp"
#include "data/dataset.hpp"
#include "dist/fsdp.hpp"
#include "dist/process_group.hpp"
#include "data/tokenizer.hpp"
#include "models/llama3/hf.hpp"
#include "models/llama3/model.hpp"
#include "models/llama3/parallelize.hpp"
#include "optim/adamw.hpp"
#include "train/metrics.hpp"
#include "train/preflight.hpp"

#ifdef TITAN_WITH_CUDA
#include "kernels/runtime.hpp"
#endif

namespace titan::train {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The device this rank trains on: the plan's training.device, resolved. The CUDA backend is
// experimental: it has not run on a GPU yet (docs/cuda.md). Ranks of a node share its GPUs (local
// rank mod count); their collectives go through host memory (the MPI-staged process group; NCCL
// is still to come); float8 runs torchao's emulation with GPU casts.
Device training_device(const Plan& plan, int local_rank) {
  if (plan.device_kind != "cuda") return Device::cpu();
  const DeviceInfo info = probe_devices(local_rank);
  if (!info.cuda_built)
    throw UserError("training.device = cuda: this build has no CUDA backend (nvcc was not found when it was built); "
                    "use training.device = cpu or auto");
  if (info.cuda_devices == 0)
    throw UserError("training.device = cuda: no GPU is visible to this process; use training.device = cpu or auto");
  return Device::cuda(local_rank % info.cuda_devices);
}

// Peak and capacity of the memory the step log reports: the GPU's when training there.
struct MemoryReading {
  double peak_bytes, total_bytes;
};
MemoryReading memory_reading(Device device, double host_total) {
#ifdef TITAN_WITH_CUDA
  if (!device.is_cpu()) {
    const auto stats = cuda::memory_stats();
    return {double(stats.peak), double(cuda::device_properties(device.index).total_memory)};
  }
#endif
  (void)device;
  return {double(cpu_peak_bytes()), host_total};
}

// The per-rank peak for the mfu column: the GPU's dense bf16 tensor-core peak from a small table
// (0, i.e. not computed, for GPUs not in it), or the CPU's measured GEMM throughput.
double peak_flops(Device device) {
#ifdef TITAN_WITH_CUDA
  if (!device.is_cpu()) {
    const std::string name = cuda::device_properties(device.index).name;
    if (name.find("H100") != std::string::npos || name.find("H200") != std::string::npos) return 989.4e12;
    if (name.find("A100") != std::string::npos) return 312e12;
    return 0;
  }
#endif
  (void)device;
  return measure_cpu_peak_flops();
}

void reset_memory_peak(Device device) {
#ifdef TITAN_WITH_CUDA
  if (!device.is_cpu()) cuda::reset_peak_memory();
#endif
  (void)device;
  reset_cpu_peak_bytes();
}

// Mean loss over `batches` validation windows (all of them when batches == -1), without recording.
double validate(llama3::Transformer& model, const data::TokenWindows& windows, std::int64_t local_batch,
                std::int64_t batches, bool bf16, Device device, std::int64_t* used) {
  autograd::NoGradGuard no_grad;
  const std::int64_t available = windows.num_windows() / local_batch;
  if (available == 0)
    throw UserError("validation: the validation set holds " + std::to_string(windows.num_windows()) +
                    " windows, fewer than validation.local_batch_size = " + std::to_string(local_batch) +
                    "; use a smaller batch or seq_len, or more validation data");
  const std::int64_t n = batches < 0 ? available : std::min(batches, available);
  data::DataLoader loader(windows, local_batch, 0, 1, 1);
  double total = 0;
  for (std::int64_t b = 0; b < n; ++b) {
    auto batch = loader.micro_batch(0, device);
    autograd::Variable logits;
    {
      std::optional<autograd::Bf16ComputeGuard> mixed;
      if (bf16) mixed.emplace();
      logits = model.forward_tokens(batch.inputs);
    }
    total += autograd::cross_entropy(logits, batch.labels).data().item(0);
    loader.advance();
  }
  *used = n;
  return n ? total / double(n) : 0.0;
}

// The model as checkpoints record it (a checkpoint of another shape must not load).
nlohmann::json model_description(const Plan& plan) {
  const auto& m = plan.model;
  return {{"flavor", plan.flavor}, {"dim", m.dim},           {"n_layers", m.n_layers},     {"n_heads", m.n_heads},
          {"n_kv_heads", m.kv_heads()}, {"vocab_size", m.vocab_size}, {"ffn_hidden", m.ffn_hidden()}};
}

// The rows of params[i]'s full value this rank owns: its FSDP shard's, or all of them.
dist::Fsdp::ShardRows owned_rows(const dist::Fsdp* fsdp, const std::vector<autograd::Variable*>& params, size_t i) {
  if (fsdp) return fsdp->shard_rows(i);
  return {params[i]->shape(), 0, params[i]->shape()[0]};
}

// This rank's share of the training state: the rows of every parameter it owns (all of them
// without FSDP) and the matching rows of the AdamW moments, as views (a save copies them).
checkpoint::TrainingState training_state(dist::Fsdp* fsdp, const std::vector<autograd::Variable*>& params,
                                         const std::vector<std::string>& names, optim::AdamW& opt) {
  checkpoint::TrainingState s;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto [global, begin, end] = owned_rows(fsdp, params, i);
    Shape local = global;
    local[0] = end - begin;
    auto rows = [&](const Tensor& t) { return t.view_range(0, local); };  // a shard's real rows come first
    s.model.push_back({"model." + names[i], global, begin, end, rows(params[i]->data())});
    if (opt.exp_avg()[i].defined()) {
      s.optimizer.push_back({"optimizer.exp_avg." + names[i], global, begin, end, rows(opt.exp_avg()[i])});
      s.optimizer.push_back({"optimizer.exp_avg_sq." + names[i], global, begin, end, rows(opt.exp_avg_sq()[i])});
    }
  }
  return s;
}

// Every parameter's full value by FQN, on rank 0 (others get an empty map). With FSDP the ranks
// of the first replica gather each parameter over their shard group.
std::map<std::string, Tensor> full_parameters(dist::Fsdp* fsdp, dist::DeviceMesh& mesh,
                                              const std::vector<autograd::Variable*>& params,
                                              const std::vector<std::string>& names) {
  std::map<std::string, Tensor> out;
  if (mesh.replicate_index() != 0) return out;
  for (size_t i = 0; i < params.size(); ++i) {
    // Written by the host, so GPU parameters are copied down first.
    const Tensor& local = params[i]->data();
    Tensor full = fsdp ? fsdp->full_parameter(i) : local.device().is_cpu() ? local : local.to(Device::cpu());
    if (mesh.dp_rank() == 0) out.emplace(names[i], full);
  }
  return out;
}

// checkpoint.initial_load_in_hf: the folder's config.json must describe this run's model (sizes,
// RoPE, norm eps, model_type); checked before the model is allocated.
// `key` is the config key that named the folder (for error messages).
void check_hf_config(const std::string& key, const std::string& path, const Plan& plan) {
  const std::string config_path = (std::filesystem::path(path) / "config.json").string();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(config_path, ec))
    throw UserError(key + ": '" + config_path + "' is missing; an HF model folder has one");
  std::ifstream in(config_path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const nlohmann::json config = checkpoint::parse_json(text, key + ": '" + config_path + "'");
  if (!config.is_object()) throw UserError(key + ": '" + config_path + "' is not a config.json (not a JSON object)");
  const llama3::ModelArgs hf = llama3::args_from_hf_config(config, config_path);
  const llama3::ModelArgs& m = plan.model;
  if (hf.dim != m.dim || hf.n_layers != m.n_layers || hf.n_heads != m.n_heads || hf.kv_heads() != m.kv_heads() ||
      hf.vocab_size != m.vocab_size || hf.ffn_hidden() != m.ffn_hidden())
    throw UserError(fmt::format("{}: '{}' is a Llama with hidden_size {}, {} layers, {} heads "
                                "({} kv), vocab {}, intermediate {}; model.flavor {} has {}, {}, {} ({}), {}, {}",
                                key, config_path, hf.dim, hf.n_layers, hf.n_heads, hf.kv_heads(), hf.vocab_size,
                                hf.ffn_hidden(), plan.flavor, m.dim, m.n_layers, m.n_heads, m.kv_heads(), m.vocab_size,
                                m.ffn_hidden()));
  llama3::check_hf_config_matches(config, m, config_path, key, plan.flavor);
}

// checkpoint.initial_load_in_hf: every rank reads the rows it owns from the HF files (no
// collectives: the caller agrees with the other ranks, then refreshes FSDP's copies). The
// folder's config.json was checked by check_hf_config before the model was allocated.
void import_hf(const std::string& key, const std::string& path, const Plan& plan, dist::Fsdp* fsdp, const std::vector<autograd::Variable*>& params,
               const std::vector<std::string>& names) {
  const auto t0 = Clock::now();
  const llama3::ModelArgs& m = plan.model;
  // Each rank reads only the rows it owns (ranged reads; q/k through whole heads).
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> wanted;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto [global, begin, end] = owned_rows(fsdp, params, i);
    wanted[names[i]] = {begin, end};
  }
  std::map<std::string, llama3::HfRows> weights;
  try {
    weights = llama3::read_hf_rows(path, m, wanted);
  } catch (const PeerFailure&) {
    throw;
  } catch (const UserError& e) {
    throw UserError(key + ": " + e.what() + "; re-download or re-export that HF model", e.exit_code());
  }
  for (size_t i = 0; i < params.size(); ++i) {
    auto it = weights.find(names[i]);
    if (it == weights.end())
      throw UserError(key + ": '" + path + "' has no tensor '" + llama3::to_hf_name(names[i]) + "'");
    const auto [global, begin, end] = owned_rows(fsdp, params, i);
    if (it->second.global != global || !it->second.rows.defined())
      throw UserError(key + ": '" + path + "' tensor '" + llama3::to_hf_name(names[i]) +
                      "' has shape " + shape_str(it->second.global) + ", the model's is " + shape_str(global));
    Shape local = global;
    local[0] = end - begin;
    if (local[0] > 0) params[i]->data().view_range(0, local).copy_from(it->second.rows);
  }
  spdlog::info("checkpoint: loaded HF weights from '{}' ({} tensors) in {:.2f}s", path, weights.size(), seconds_since(t0));
}

double mib(std::int64_t bytes) { return double(bytes) / double(1 << 20); }

// What this rank holds of the training state: its parameter shards, their gradients and the
// AdamW moments (everything f32).
StateBytes state_bytes(const dist::Fsdp* fsdp, const std::vector<autograd::Variable*>& params, optim::AdamW& opt) {
  StateBytes b;
  if (fsdp) {
    const auto s = fsdp->state_bytes();
    b.params = s.params;
    b.grads = s.grads;
  } else {
    for (auto* p : params) {
      b.params += std::int64_t(p->data().nbytes());
      if (p->grad().defined()) b.grads += std::int64_t(p->grad().nbytes());
    }
  }
  for (auto* moments : {&opt.exp_avg(), &opt.exp_avg_sq()})
    for (const auto& t : *moments)
      if (t.defined()) b.optimizer += std::int64_t(t.nbytes());
  return b;
}

}  // namespace

TrainResult train(const config::JobConfig& cfg, const Plan& plan, const dist::World& world) {
  // Collectives during set-up and the first step may wait for slow ranks (data tokenization,
  // first allocations): comm.init_timeout_seconds; afterwards comm.train_timeout_seconds.
  dist::set_collective_timeout(double(cfg.comm.init_timeout_seconds), "comm.init_timeout_seconds");
  dist::DeviceMesh mesh(world, plan.dims.replicate, plan.dims.shard);
  const FaultInjection fault = FaultInjection::parse(cfg.debug.fault);
  if (fault.kind != FaultInjection::Kind::none)
    spdlog::warn("fault injection: world rank {} will {} at step {} (debug.fault)", fault.rank, cfg.debug.fault.substr(0, cfg.debug.fault.find(':')), fault.step);
  const bool bf16 = cfg.training.mixed_precision_param == "bfloat16";
  if (bf16)
    spdlog::info("mixed precision: weights, activations and their gradients rounded to bfloat16; master weights, "
                 "optimizer state, loss and reductions in float32");
  if (cfg.compile.enable)
    spdlog::info("compile.enable: no effect (CUDA graphs for the GPU step are not implemented yet)");

  const std::uint64_t seed = static_cast<std::uint64_t>(cfg.debug.seed.value_or(0));
  auto tokenizer = load_training_tokenizer(cfg, plan);
  const auto t_data = Clock::now();
  data::TokenWindows windows(data::resolve_dataset_files(cfg.training.dataset, cfg.training.dataset_path.value_or("")),
                             *tokenizer, plan.seq_len, seed);
  spdlog::info("data: {} tokens, {} windows of {} + 1, tokenizer {} ({:.2f}s{})", windows.num_tokens(),
               windows.num_windows(), plan.seq_len, tokenizer->fingerprint(), seconds_since(t_data),
               windows.from_cache() ? ", from the tokenization cache" : "");
  std::unique_ptr<data::TokenWindows> val_windows;
  if (cfg.validation.enable) {
    val_windows = std::make_unique<data::TokenWindows>(
        data::resolve_dataset_files(cfg.validation.dataset, cfg.validation.dataset_path.value_or("")), *tokenizer,
        cfg.validation.seq_len, seed);
    if (val_windows->num_windows() < cfg.validation.local_batch_size)
      throw UserError("validation: the validation set holds " + std::to_string(val_windows->num_windows()) +
                      " windows, fewer than validation.local_batch_size = " +
                      std::to_string(cfg.validation.local_batch_size) +
                      "; use a smaller batch or seq_len, or more validation data");
  }

  // Checkpoints: what to resume from is decided, and its metadata checked against this run's
  // model and data, before the model is allocated (another flavor's checkpoint is one line, not
  // an OOM kill). Reads files only: no collectives before the set-up agreement below.
  std::unique_ptr<checkpoint::Checkpointer> ckpt;
  // Where HF weights come from when there is no checkpoint to resume, as TorchTitan: the key
  // naming the folder, and the folder (initial_load_path, else model.hf_assets_path).
  std::optional<std::pair<std::string, std::string>> hf_source;
  if (cfg.checkpoint.enable) {
    ckpt = std::make_unique<checkpoint::Checkpointer>(cfg, mesh, model_description(plan), config::to_toml(cfg));
    ckpt->set_data_description({{"seq_len", plan.seq_len},
                                {"tokenizer", tokenizer->fingerprint()},
                                {"dataset", cfg.training.dataset},
                                {"dataset_path", cfg.training.dataset_path.value_or("")},
                                {"num_tokens", windows.num_tokens()},
                                {"seed", seed}});
    if (!ckpt->select() && cfg.checkpoint.initial_load_in_hf) {
      hf_source = cfg.checkpoint.initial_load_path
                      ? std::pair<std::string, std::string>("checkpoint.initial_load_path", *cfg.checkpoint.initial_load_path)
                      : std::pair<std::string, std::string>("model.hf_assets_path", cfg.model.hf_assets_path);
      check_hf_config(hf_source->first, hf_source->second, plan);
    }
  }

  // With more than one rank the model is built on the meta device and FSDP materialises only
  // this rank's shards (no rank ever holds the full model); one process trains it as it is.
  const bool sharded = plan.dims.world > 1;
  const Device device = training_device(plan, world.local_rank());
  std::unique_ptr<llama3::Transformer> model_ptr;
  {
    std::optional<nn::MetaGuard> meta;
    if (sharded) meta.emplace();
    model_ptr = std::make_unique<llama3::Transformer>(plan.model);
    if (plan.float8) {
      int converted = 0;
      for (const auto& d : float8::convert_to_float8(*model_ptr, cfg.float8.filter_fqns, plan.float8_recipe,
                                                     static_cast<int>(cfg.float8.amax_history_len)))
        converted += d.convert;
      spdlog::info("float8: {} Linear layers use the {} recipe (emulated: float8 operands, float32 GEMMs)", converted,
                   plan.float8_recipe);
    }
  }
  llama3::Transformer& model = *model_ptr;
  model.set_activation_checkpointing(plan.ac);
  std::unique_ptr<dist::Fsdp> fsdp;
  std::vector<autograd::Variable*> params;
  if (sharded) {
    model.build_rope_table();
    dist::FsdpOptions fo;
    fo.param_dtype = bf16 ? DType::bf16 : DType::f32;
    fo.reduce_dtype = cfg.training.mixed_precision_reduce == "bfloat16" ? DType::bf16 : DType::f32;
    fo.device = device;
    fo.float8_all_gather = plan.float8 && cfg.float8.enable_fsdp_float8_all_gather;
    fo.precompute_float8_scales = fo.float8_all_gather && cfg.float8.precompute_float8_dynamic_scale_for_fsdp;
    fsdp = std::make_unique<dist::Fsdp>(mesh, fo);
    llama3::apply_fsdp(model, *fsdp, cfg.parallelism.fsdp_reshard_after_forward);
    fsdp->init_shards([&](const std::string& fqn, Tensor& rows, std::int64_t first) {
      llama3::init_parameter(fqn, rows, first, plan.model, seed);
    });
    params = fsdp->sharded_parameters();
    if (!device.is_cpu()) model.move_to(device);  // the RoPE table (the parameters are FSDP's)
    fsdp->refresh_after_update();  // precomputed float8 scales for the first step too
    spdlog::info("fsdp: {} on {} ranks; units tok_embeddings, layers.0..{}, [norm, output]; all-gather in {}{}; "
                 "reshard_after_forward {}",
                 plan.dims.describe(), plan.dims.world, plan.model.n_layers - 1, bf16 ? "bfloat16" : "float32",
                 fo.float8_all_gather ? std::string(" (float8 weights as e4m3") +
                                            (fo.precompute_float8_scales ? ", scales precomputed)" : ")")
                                      : "",
                 cfg.parallelism.fsdp_reshard_after_forward);
  } else {
    llama3::init_weights(model, seed);  // on the host (the initializers' RNG streams), then moved
    if (!device.is_cpu()) {
      model.move_to(device);
      spdlog::info("device: training on {} (experimental CUDA backend, training.device = {})", device.str(), cfg.training.device);
    }
    for (auto& [fqn, p] : model.named_parameters()) params.push_back(p);
  }
  std::vector<std::string> param_names;  // FQNs, in the order of params
  if (fsdp)
    for (size_t i = 0; i < params.size(); ++i) param_names.push_back(fsdp->fqn_of(i));
  else
    for (auto& [fqn, p] : model.named_parameters()) param_names.push_back(fqn);

  optim::AdamW optimizer(params, {cfg.optimizer.lr, cfg.optimizer.beta1, cfg.optimizer.beta2, cfg.optimizer.eps,
                                  cfg.optimizer.weight_decay});
  std::vector<std::string> warnings;
  const double* decay_ratio = cfg.lr_scheduler.decay_ratio ? &*cfg.lr_scheduler.decay_ratio : nullptr;
  const auto schedule =
      optim::LrSchedule::build(cfg.lr_scheduler.total_steps.value_or(cfg.training.steps), cfg.lr_scheduler.warmup_steps,
                               decay_ratio, cfg.lr_scheduler.decay_type, cfg.lr_scheduler.min_lr_factor, &warnings);
  for (const auto& w : warnings) spdlog::warn("{}", w);

  data::DataLoader loader(windows, plan.batch.local_batch, mesh.dp_rank(), plan.dims.dp(), plan.batch.grad_accum);
  std::error_code ec;
  std::filesystem::create_directories(cfg.job.dump_folder, ec);
  const bool write_metrics = world.rank() == 0 || cfg.metrics.save_for_all_ranks;
  const std::string suffix = world.rank() == 0 ? "" : "_rank" + std::to_string(world.rank());
  MetricsLogger metrics(plan.flops_per_token, peak_flops(device),
                        write_metrics ? (std::filesystem::path(cfg.job.dump_folder) / ("metrics" + suffix + ".jsonl")).string() : "");
  const bool show_eta = isatty(STDOUT_FILENO) || isatty(STDERR_FILENO);
  const double mem_total = physical_memory_bytes();

  // Every rank must be ready before the first collective: a rank whose setup failed (say, a data
  // file missing on its node) is waiting in this same reduction in main, so nobody hangs.
  if (const int agreed = world.agree_exit_code(kExitOk); agreed != kExitOk)
    throw PeerFailure("stopping: another rank failed while setting up (its error is reported above)", agreed);

  // Checkpoints: resume from the run's latest one (or initial_load_path); save on schedule.
  std::int64_t start_step = 1, lr_offset = 0;
  const std::int64_t tokens_per_step = plan.batch.global_batch * plan.seq_len;
  auto current_state = [&](std::int64_t step) {
    checkpoint::TrainingState s = training_state(fsdp.get(), params, param_names, optimizer);
    s.progress = {step, step * tokens_per_step, loader.windows_consumed(), optimizer.steps(), step + lr_offset, seed};
    s.extra["float8_delayed"] = float8::delayed_scaling_state(model);
    return s;
  };
  std::optional<checkpoint::Checkpointer::Loaded> loaded;
  checkpoint::TrainingState state;
  if (ckpt) {
    optimizer.init_state();  // zero moments, as the first step would make them, for the load to fill
    state = current_state(0);
    loaded = ckpt->load(state);
    if (!loaded && hf_source) import_hf(hf_source->first, hf_source->second, plan, fsdp.get(), params, param_names);
    // The steps after the resumed one are trained again: their old metrics rows go (file I/O
    // only, so before the agreement: a failure here is this rank's own error line).
    const auto& excluded = cfg.checkpoint.exclude_from_loading;
    if (loaded && !loaded->model_only && std::find(excluded.begin(), excluded.end(), "train_state") == excluded.end())
      metrics.truncate_after(state.progress.step);
  }
  // A rank whose load failed (a corrupt shard only it reads) is in main's agreement with its own
  // error: the others meet it here, before any collective, and stop at once instead of waiting
  // for it in the first all-gather until the comm timeout.
  if (const int agreed = world.agree_exit_code(kExitOk); agreed != kExitOk)
    throw PeerFailure("stopping: another rank failed while loading the checkpoint (its error is reported above)", agreed);
  if (ckpt) {
    if (!loaded && hf_source && fsdp) fsdp->refresh_after_update();  // gathered copies follow the imported shards
    if (loaded) {
      const checkpoint::TrainProgress& pr = state.progress;
      start_step = pr.step + 1;
      lr_offset = pr.lr_scheduler_steps - pr.step;
      optimizer.set_steps(pr.optimizer_steps);
      loader.set_windows_consumed(pr.windows_consumed);
      if (state.extra.contains("float8_delayed")) float8::load_delayed_scaling_state(model, state.extra["float8_delayed"]);
      if (fsdp) fsdp->refresh_after_update();  // gathered copies and float8 scales follow the loaded shards
      if (start_step > cfg.training.steps)
        spdlog::warn("checkpoint: the loaded step {} is not below training.steps = {}; nothing left to train", pr.step,
                     cfg.training.steps);
    }
    if (cfg.checkpoint.create_seed_checkpoint) {
      ckpt->save(0, current_state(0), false);
      spdlog::info("checkpoint: wrote the seed checkpoint step-0 (create_seed_checkpoint); not training");
      return {};
    }
  }

  TrainResult result;
  const auto t_train = Clock::now();
  for (std::int64_t step = start_step; step <= cfg.training.steps; ++step) {
    const auto t_step = Clock::now();
    if (ckpt) ckpt->poll();  // completes an async save every rank has finished writing
    reset_memory_peak(device);
    double data_seconds = 0, loss_sum = 0;
    optimizer.zero_grad();
    dist::reset_comm_stats();
    const std::int64_t amax_reduces_before = fsdp ? fsdp->float8_amax_all_reduces() : 0;
    fault.at_step_start(world.rank(), step);
    for (std::int64_t micro = 0; micro < plan.batch.grad_accum; ++micro) {
      const auto t0 = Clock::now();
      auto batch = loader.micro_batch(micro, device);
      data_seconds += seconds_since(t0);
      // Gradient accumulation: FSDP reduces gradients only after the last micro-batch.
      if (fsdp) fsdp->set_requires_gradient_sync(micro == plan.batch.grad_accum - 1);
      autograd::Variable logits;
      {
        std::optional<autograd::Bf16ComputeGuard> mixed;
        if (bf16) mixed.emplace();
        logits = model.forward_tokens(batch.inputs);
      }
      autograd::Variable loss = autograd::cross_entropy(logits, batch.labels);  // float32, as TorchTitan's .float()
      loss_sum += loss.data().item(0);
      // Each micro-batch contributes 1/grad_accum of the step's mean loss.
      loss.backward(Tensor::full({1}, 1.0 / double(plan.batch.grad_accum)));
    }
    loader.advance();
    // The logged loss is the global mean: every data-parallel rank's mean over its slice, averaged.
    Tensor step_loss = Tensor::full({1}, loss_sum / double(plan.batch.grad_accum), DType::f64);
    if (plan.dims.dp() > 1) mesh.world_group().all_reduce(step_loss, dist::ReduceOp::avg);
    const double loss = step_loss.item(0);
    std::function<double(double)> global_sum;
    if (fsdp) global_sum = [&](double local) { return fsdp->sum_over_shards(local); };
    const double grad_norm = optim::clip_grad_norm(params, cfg.training.max_norm, global_sum);
    if (!std::isfinite(loss) || !std::isfinite(grad_norm))
      throw UserError(fmt::format("step {}: loss is {} and grad norm {}; training diverged (lower optimizer.lr or "
                                  "lengthen lr_scheduler.warmup_steps)",
                                  step, loss, grad_norm),
                      kExitRuntimeError);
    const double lr = cfg.optimizer.lr * schedule.factor(step - 1 + lr_offset);
    optimizer.step(lr);
    if (fsdp) fsdp->refresh_after_update();
    // Delayed float8 scaling: this step's amaxes join the histories (one reduction for the model).
    float8::sync_amax_histories(model, [&](std::vector<float>& amaxes) {
      Tensor t = Tensor::empty({static_cast<std::int64_t>(amaxes.size())});
      std::copy(amaxes.begin(), amaxes.end(), t.data<float>());
      mesh.world_group().all_reduce(t, dist::ReduceOp::max);  // one reduction for the whole model
      std::copy(t.data<float>(), t.data<float>() + t.numel(), amaxes.begin());
    });
    if (step == start_step) {
      dist::set_collective_timeout(double(cfg.comm.train_timeout_seconds), "comm.train_timeout_seconds");
      const StateBytes sb = state_bytes(fsdp.get(), params, optimizer);
      spdlog::info("memory/rank: params {:.2f} MiB + grads {:.2f} MiB + AdamW state {:.2f} MiB = {:.2f} MiB (f32, "
                   "sharded over {})",
                   mib(sb.params), mib(sb.grads), mib(sb.optimizer), mib(sb.total()), plan.dims.shard);
    }
    if (step == start_step) result.first_loss = loss;
    result.last_loss = loss;
    result.steps = step;

    if (step % cfg.metrics.log_freq == 0 || step == 1 || step == cfg.training.steps) {
      StepMetrics m;
      m.step = step;
      m.loss = loss;
      m.grad_norm = grad_norm;
      m.lr = lr;
      m.step_seconds = seconds_since(t_step);
      m.data_seconds = data_seconds;
      m.tokens = plan.batch.local_batch * plan.batch.grad_accum * plan.seq_len;
      const MemoryReading mem = memory_reading(device, mem_total);
      m.memory_peak_gib = mem.peak_bytes / double(1ull << 30);
      m.memory_pct = 100.0 * mem.peak_bytes / mem.total_bytes;
      m.comm = dist::comm_stats();
      m.float8_amax_all_reduces = fsdp ? fsdp->float8_amax_all_reduces() - amax_reduces_before : 0;
      m.state = state_bytes(fsdp.get(), params, optimizer);
      if (show_eta && step < cfg.training.steps)
        m.eta_seconds = seconds_since(t_train) / double(step) * double(cfg.training.steps - step);
      metrics.log(m);
    }
    if (val_windows && step % cfg.validation.freq == 0) {
      std::int64_t used = 0;
      const double vloss = validate(model, *val_windows, cfg.validation.local_batch_size, cfg.validation.steps, bf16, device, &used);
      metrics.log_validation(step, vloss, used);
    }
    if (ckpt && ckpt->due(step, cfg.training.steps)) {
      if (step == cfg.training.steps && cfg.checkpoint.last_save_in_hf) {
        // The last save as HF safetensors: the full model on rank 0, in export_dtype.
        ckpt->wait();
        const auto t0 = Clock::now();
        const auto full = full_parameters(fsdp.get(), mesh, params, param_names);
        if (world.rank() == 0) {
          const auto dir = std::filesystem::path(ckpt->folder()) / ("step-" + std::to_string(step) + "-hf");
          const DType dt = cfg.checkpoint.export_dtype == "bfloat16" ? DType::bf16
                           : cfg.checkpoint.export_dtype == "float16" ? DType::f16 : DType::f32;
          std::filesystem::remove_all(dir.string() + ".tmp");
          llama3::write_hf(dir.string() + ".tmp", full, plan.model, dt);
          std::filesystem::remove_all(dir);
          std::filesystem::rename(dir.string() + ".tmp", dir);
          spdlog::info("checkpoint: exported step {} as HF safetensors ({}) to {} in {:.2f}s", step,
                       cfg.checkpoint.export_dtype, dir.string(), seconds_since(t0));
        }
        mesh.world_group().barrier();
      } else {
        ckpt->save(step, current_state(step), step == cfg.training.steps);
      }
    }
  }
  if (ckpt) ckpt->wait();
  spdlog::info("training done: {} steps in {:.1f}s, loss {:.4f} -> {:.4f}", result.steps, seconds_since(t_train),
               result.first_loss, result.last_loss);
  return result;
}

}  // namespace titan::train
