#include "train/trainer.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <unistd.h>

#include "autograd/functions.hpp"
#include "core/errors.hpp"
#include "data/dataset.hpp"
#include "dist/process_group.hpp"
#include "data/tokenizer.hpp"
#include "models/llama3/model.hpp"
#include "optim/adamw.hpp"
#include "train/metrics.hpp"

namespace titan::train {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Mean loss over `batches` validation windows (all of them when batches == -1), without recording.
double validate(llama3::Transformer& model, const data::TokenWindows& windows, std::int64_t local_batch,
                std::int64_t batches, bool bf16, std::int64_t* used) {
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
    auto batch = loader.micro_batch(0);
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

}  // namespace

TrainResult train(const config::JobConfig& cfg, const Plan& plan, const dist::World& world) {
  if (plan.dims.shard > 1)
    throw UserError("training with data_parallel_shard_degree = " + std::to_string(plan.dims.shard) +
                        " (FSDP/HSDP sharding) is not implemented yet; set parallelism.data_parallel_shard_degree = 1 "
                        "and data_parallel_replicate_degree = " + std::to_string(plan.dims.world) +
                        " to train replicated (DDP), or use --dry-run to check a sharded config",
                    kExitNotImplemented);
  // Replicated data parallelism: every rank holds the whole model, trains on its slice of each
  // global batch, and averages gradients (and the logged loss) over the replicate group.
  dist::DeviceMesh mesh(world, plan.dims.replicate, plan.dims.shard);
  const bool bf16 = cfg.training.mixed_precision_param == "bfloat16";
  if (bf16)
    spdlog::info("mixed precision: weights, activations and their gradients rounded to bfloat16; master weights, "
                 "optimizer state, loss and reductions in float32");
  if (cfg.compile.enable)
    spdlog::info("compile.enable: no effect on the CPU backend (it selects CUDA graphs and fused float8 casts on a GPU)");

  const std::uint64_t seed = static_cast<std::uint64_t>(cfg.debug.seed.value_or(0));
  auto tokenizer = data::load_tokenizer(cfg.model.tokenizer, cfg.model.hf_assets_path);
  if (tokenizer->vocab_size() > plan.model.vocab_size)
    throw UserError("model: the tokenizer has " + std::to_string(tokenizer->vocab_size()) + " tokens but flavor " +
                    plan.flavor + " has vocab_size " + std::to_string(plan.model.vocab_size) +
                    "; pick a flavor whose vocabulary holds the tokenizer's");
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

  llama3::Transformer model(plan.model);
  model.set_activation_checkpointing(plan.ac);
  if (plan.float8) {
    int converted = 0;
    for (const auto& d : float8::convert_to_float8(model, cfg.float8.filter_fqns, plan.float8_recipe,
                                                   static_cast<int>(cfg.float8.amax_history_len)))
      converted += d.convert;
    spdlog::info("float8: {} Linear layers use the {} recipe (emulated: float8 operands, float32 GEMMs)", converted,
                 plan.float8_recipe);
  }
  llama3::init_weights(model, seed);
  std::vector<autograd::Variable*> params;
  for (auto& [fqn, p] : model.named_parameters()) params.push_back(p);

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
  MetricsLogger metrics(plan.flops_per_token, measure_cpu_peak_flops(),
                        write_metrics ? (std::filesystem::path(cfg.job.dump_folder) / ("metrics" + suffix + ".jsonl")).string() : "");
  const bool show_eta = isatty(STDOUT_FILENO) || isatty(STDERR_FILENO);
  const double mem_total = physical_memory_bytes();

  // Every rank must be ready before the first collective: a rank whose setup failed (say, a data
  // file missing on its node) is waiting in this same reduction in main, so nobody hangs.
  if (const int agreed = world.agree_exit_code(kExitOk); agreed != kExitOk)
    throw PeerFailure("stopping: another rank failed while setting up (its error is reported above)", agreed);

  TrainResult result;
  const auto t_train = Clock::now();
  for (std::int64_t step = 1; step <= cfg.training.steps; ++step) {
    const auto t_step = Clock::now();
    reset_cpu_peak_bytes();
    double data_seconds = 0, loss_sum = 0;
    optimizer.zero_grad();
    for (std::int64_t micro = 0; micro < plan.batch.grad_accum; ++micro) {
      const auto t0 = Clock::now();
      auto batch = loader.micro_batch(micro);
      data_seconds += seconds_since(t0);
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
    Tensor step_loss = Tensor::full({1}, loss_sum / double(plan.batch.grad_accum), DType::f64);
    if (plan.dims.dp() > 1) {
      for (auto* p : params)
        if (p->grad().defined()) mesh.replicate_group().all_reduce(p->grad(), dist::ReduceOp::avg);
      mesh.replicate_group().all_reduce(step_loss, dist::ReduceOp::avg);
    }
    const double loss = step_loss.item(0);
    const double grad_norm = optim::clip_grad_norm(params, cfg.training.max_norm);
    if (!std::isfinite(loss) || !std::isfinite(grad_norm))
      throw UserError(fmt::format("step {}: loss is {} and grad norm {}; training diverged (lower optimizer.lr or "
                                  "lengthen lr_scheduler.warmup_steps)",
                                  step, loss, grad_norm),
                      kExitRuntimeError);
    const double lr = cfg.optimizer.lr * schedule.factor(step - 1);
    optimizer.step(lr);
    // Delayed float8 scaling: this step's amaxes join the histories (one reduction for the model).
    float8::sync_amax_histories(model, [&](std::vector<float>& amaxes) {
      Tensor t = Tensor::empty({static_cast<std::int64_t>(amaxes.size())});
      std::copy(amaxes.begin(), amaxes.end(), t.data<float>());
      mesh.world_group().all_reduce(t, dist::ReduceOp::max);  // one reduction for the whole model
      std::copy(t.data<float>(), t.data<float>() + t.numel(), amaxes.begin());
    });
    if (step == 1) result.first_loss = loss;
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
      m.memory_peak_gib = double(cpu_peak_bytes()) / double(1ull << 30);
      m.memory_pct = 100.0 * double(cpu_peak_bytes()) / mem_total;
      if (show_eta && step < cfg.training.steps)
        m.eta_seconds = seconds_since(t_train) / double(step) * double(cfg.training.steps - step);
      metrics.log(m);
    }
    if (val_windows && step % cfg.validation.freq == 0) {
      std::int64_t used = 0;
      const double vloss = validate(model, *val_windows, cfg.validation.local_batch_size, cfg.validation.steps, bf16, &used);
      metrics.log_validation(step, vloss, used);
    }
  }
  spdlog::info("training done: {} steps in {:.1f}s, loss {:.4f} -> {:.4f}", result.steps, seconds_since(t_train),
               result.first_loss, result.last_loss);
  return result;
}

}  // namespace titan::train
