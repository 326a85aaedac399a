#include "train/trainer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <unistd.h>

#include "autograd/functions.hpp"
#include "checkpoint/hf_interop.hpp"
#include "config/toml_io.hpp"
#include "core/backend.hpp"
#include "core/step_capture.hpp"
#include "core/errors.hpp"
#include "core/logging.hpp"
#include "core/trace.hpp"
#include "dist/process_group.hpp"
#include "float8/float8_linear.hpp"
#include "models/llama3/parallelize.hpp"
#include "models/llama3/state_dict_adapter.hpp"
#include "train/checkpoint_options.hpp"
#include "train/float8_converter.hpp"
#include "train/model_print.hpp"
#include "train/preflight.hpp"
#include "train/report.hpp"

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
  double peak_bytes, peak_reserved_bytes, total_bytes;
};
MemoryReading memory_reading(Device device, double host_total) {
  const MemoryStats stats = backend_for(device).memory_stats(device.index);
  return {double(stats.peak), double(stats.peak_reserved), stats.capacity > 0 ? double(stats.capacity) : host_total};
}

// The per-rank peak for the mfu column: the device's dense bf16 peak as its backend reports it
// (0, i.e. not computed, for GPUs it does not know), or on the CPU the plan's calibrated GEMM
// peak (train/cpu_gemm.hpp), with the run's threads.
double peak_flops(Device device, const Plan& plan) {
  if (device.is_cpu()) return plan.cpu_gemm ? plan.cpu_gemm->peak_flops : calibrate_cpu_gemm_peak();
  return backend_for(device).properties(device.index).peak_bf16_flops;
}

// report.html is a convenience: a failed write warns instead of failing a finished run.
void write_report(const ReportInput& report, const std::string& path) {
  std::ofstream f(path, std::ios::binary);
  f << render_report(report);
  f.close();
  if (f) spdlog::info("report: {} (loss, grad norm, lr and tokens/s curves; open it in a browser)", path);
  else spdlog::warn("report: could not write {}; metrics.jsonl holds the same figures", path);
}

// The host's peak is reset too on a GPU run, as the device's: both count from the first step.
void reset_memory_peak(Device device) {
  backend_for(device).reset_peak(device.index);
  if (!device.is_cpu()) reset_cpu_peak_bytes();
}

// Reads `parts` (tensors on `device`, any dtypes and shapes) back in one copy: they are packed
// into one buffer there (8-byte aligned), so a GPU makes the host wait once for all of them.
// Returns host tensors, in order.
std::vector<Tensor> read_together(const std::vector<Tensor>& parts, Device device) {
  std::vector<std::size_t> at;
  std::size_t bytes = 0;
  for (const Tensor& p : parts) {
    at.push_back(bytes);
    bytes += (p.nbytes() + 7) / 8 * 8;
  }
  Tensor buf = Tensor::empty({std::int64_t(bytes / 8)}, DType::f64, device);
  for (size_t i = 0; i < parts.size(); ++i) buf.view_bytes(at[i], parts[i].shape(), parts[i].dtype()).copy_from(parts[i]);
  const Tensor host = buf.to(Device::cpu());
  std::vector<Tensor> out;
  for (size_t i = 0; i < parts.size(); ++i) out.push_back(host.view_bytes(at[i], parts[i].shape(), parts[i].dtype()));
  return out;
}

// Mean loss over `batches` validation batches (all of them when batches == -1), without
// recording. The batches are split over the data-parallel ranks: rank r evaluates batches r,
// r + dp, r + 2 dp, ...; the per-batch losses are summed over ranks in one all-reduce, so the
// result is one process's mean up to summation order. Every rank runs the same number of forwards
// (FSDP gathers in each), the ones past the last batch on batch 0, not counted.
double validate(llama3::Transformer& model, const data::TokenWindows& windows, std::int64_t local_batch,
                std::int64_t batches, Device device, int dp_rank, int dp, dist::ProcessGroup& group,
                const std::function<autograd::Variable(const autograd::Variable&, const Tensor&)>& loss_fn,
                std::int64_t* used) {
  autograd::NoGradGuard no_grad;
  const std::int64_t available = windows.num_windows() / local_batch;
  if (available == 0)
    throw UserError("validation: the validation set holds " + std::to_string(windows.num_windows()) +
                    " windows, fewer than validation.local_batch_size = " + std::to_string(local_batch) +
                    "; use a smaller batch or seq_len, or more validation data");
  const std::int64_t n = batches < 0 ? available : std::min(batches, available);
  data::DataLoader loader(windows, local_batch, 0, 1, 1);
  // This rank's losses stay where they are computed and are read in one copy at the end (on a GPU:
  // one host sync for the whole validation, not one per batch).
  std::vector<Tensor> losses;
  for (std::int64_t round = 0; round * dp < n; ++round) {
    const std::int64_t b = round * dp + dp_rank;
    loader.set_windows_consumed((b < n ? b : 0) * local_batch);
    auto batch = loader.micro_batch(0, device);
    autograd::Variable logits = model.forward_tokens(batch.inputs);
    const Tensor loss = loss_fn(logits, batch.labels).data();
    if (b < n) losses.push_back(loss);
  }
  losses.push_back(ops::take_device_errors(device));
  const std::vector<Tensor> host = read_together(losses, device);
  ops::raise_device_errors(host.back());
  Tensor total = Tensor::zeros({1}, DType::f64);
  for (size_t i = 0; i + 1 < host.size(); ++i) total.set(0, total.item(0) + host[i].item(0));
  if (dp > 1) group.all_reduce(total, dist::ReduceOp::sum);
  *used = n;
  return n ? total.item(0) / double(n) : 0.0;
}

// The model as checkpoints record it (a checkpoint of another shape must not load).
nlohmann::json model_description(const Plan& plan) {
  const auto& m = plan.model;
  nlohmann::json d = {{"flavor", plan.flavor},         {"dim", m.dim},
                      {"n_layers", m.n_layers},        {"n_heads", m.n_heads},
                      {"n_kv_heads", m.kv_heads()},    {"vocab_size", m.vocab_size},
                      {"ffn_hidden", m.ffn_hidden()}};
  // The model name only when it is not llama3, so that llama3 checkpoints written before Llama 2
  // existed still match; a llama2 flavor of llama3's shape still differs by name (RoPE base).
  if (plan.model_name != "llama3") d["name"] = plan.model_name;
  return d;
}

// All of a tensor-parallel parameter (or moment) from every TP rank's local part, split on `dim`
// (0: rows, 1: columns): one all-gather over the TP group.
Tensor gather_tp(const Tensor& local, int dim, dist::ProcessGroup& tp) {
  const int T = tp.size();
  const Tensor& src = local;  // views are contiguous slices
  Tensor buf = Tensor::empty({T * src.numel()}, src.dtype(), src.device());
  tp.all_gather(src.view({src.numel()}), buf);
  Shape full = src.shape();
  full[size_t(dim)] *= T;
  if (dim == 0) return buf.view(full);
  const std::int64_t rows = src.size(0), C = src.size(1);
  Tensor out = Tensor::empty(full, src.dtype(), src.device());
  for (int t = 0; t < T; ++t)
    for (std::int64_t r = 0; r < rows; ++r) out.view_range(r * C * T + t * C, {C}).copy_from(buf.view_range((t * rows + r) * C, {C}));
  return out;
}

// This rank's share of the training state: the rows of every parameter its FSDP shards own (all
// of them on a 1x1 mesh) and the matching rows of the AdamW moments, as global row ranges.
// Tensor parallel: a parameter split on its rows is a further row offset; one split on its columns
// travels as whole rows (a checkpoint holds row ranges of the global tensor only): for a save they
// are gathered over the TP group and only TP rank 0 keeps them (as it alone keeps the parameters
// replicated over the TP group); for a load (`fill_after_load`)
// every TP rank gets a whole-row buffer to fill, whose columns the returned fix-ups copy back.
checkpoint::TrainingState training_state(const dist::Fsdp& fsdp, const std::vector<autograd::Variable*>& params,
                                         const std::vector<std::string>& names, optim::AdamW& opt,
                                         const dist::TpLayout& tp_layout, dist::ProcessGroup& tp, bool for_load,
                                         std::vector<ColumnFixup>* fixups) {
  checkpoint::TrainingState s;
  for (size_t i = 0; i < params.size(); ++i) {
    // Named, not a structured binding: clang 14 cannot capture a binding in a lambda.
    const dist::Fsdp::ShardRows shard = fsdp.shard_rows(i);
    const Shape& local_global = shard.global_shape;
    const std::int64_t begin = shard.row_begin, end = shard.row_end;
    const int dim = tp_layout.dim_of(names[i]);
    const Shape global = tp_layout.global_shape(names[i], local_global);
    Shape local = local_global;
    local[0] = end - begin;
    const std::int64_t row_offset = dim == 0 ? tp_layout.rank * local_global[0] : 0;
    auto add = [&](std::vector<checkpoint::ShardedTensor>& list, const std::string& name, const Tensor& t) {
      const Tensor rows = t.view_range(0, local);  // a shard's real rows come first
      if (dim < 0 && !for_load && tp_layout.rank != 0) return;  // TP replicas: rank 0 writes them
      if (dim != 1) {
        list.push_back({name, global, begin + row_offset, end + row_offset, rows});
      } else if (for_load) {
        Shape whole = local;
        whole[1] = global[1];
        // This rank's columns go in first, so a buffer the load leaves alone (the model under
        // exclude_from_loading) puts back what was there.
        Tensor full = Tensor::zeros(whole, rows.dtype(), rows.device());
        const std::int64_t c = local[1], first_col = tp_layout.rank * c;
        for (std::int64_t r = 0; r < local[0]; ++r) full.view_range(r * global[1] + first_col, {c}).copy_from(rows.view_range(r * c, {c}));
        list.push_back({name, global, begin, end, full});
        fixups->push_back({rows, full, first_col});
      } else {
        Tensor full = gather_tp(rows, 1, tp);
        if (tp_layout.rank == 0) list.push_back({name, global, begin, end, full});
      }
    };
    add(s.model, "model." + names[i], params[i]->data());
    if (opt.exp_avg()[i].defined()) {
      add(s.optimizer, "optimizer.exp_avg." + names[i], opt.exp_avg()[i]);
      add(s.optimizer, "optimizer.exp_avg_sq." + names[i], opt.exp_avg_sq()[i]);
    }
  }
  return s;
}

// Every parameter's full value by FQN, in host memory on rank 0 (others get an empty map): the
// ranks of the first replica gather each parameter over their shard group (and TP group).
std::map<std::string, Tensor> full_parameters(dist::Fsdp& fsdp, dist::DeviceMesh& mesh,
                                              const std::vector<std::string>& names, const dist::TpLayout& tp_layout) {
  std::map<std::string, Tensor> out;
  if (mesh.replicate_index() != 0) return out;
  for (size_t i = 0; i < names.size(); ++i) {
    Tensor full = fsdp.full_parameter(i);
    const int dim = tp_layout.dim_of(names[i]);
    if (dim >= 0) full = gather_tp(full, dim, mesh.tp_group());
    if (mesh.dp_rank() == 0 && mesh.tp_index() == 0) out.emplace(names[i], full);
  }
  return out;
}

double mib(std::int64_t bytes) { return double(bytes) / double(1 << 20); }

// What this rank holds of the training state: its parameter shards, their gradients and the
// AdamW moments (everything f32).
StateBytes state_bytes(const dist::Fsdp& fsdp, optim::AdamW& opt) {
  StateBytes b;
  const auto s = fsdp.state_bytes();
  b.params = s.params;
  b.grads = s.grads;
  for (auto* moments : {&opt.exp_avg(), &opt.exp_avg_sq()})
    for (const auto& t : *moments)
      if (t.defined()) b.optimizer += std::int64_t(t.nbytes());
  return b;
}

// model.converters, as the plan resolved them (quantize.linear.float8 is the one converter).
ModelConverters build_model_converters(const config::JobConfig& cfg, const Plan& plan, Device device) {
  ModelConverters converters;
  if (plan.float8) {
    Float8ConverterOptions o;
    o.filter_fqns = cfg.float8.filter_fqns;
    o.recipe_name = plan.float8_recipe;
    o.amax_history_len = static_cast<int>(cfg.float8.amax_history_len);
    o.emulate = cfg.float8.emulate;
    o.enable_fsdp_float8_all_gather = cfg.float8.enable_fsdp_float8_all_gather;
    o.precompute_float8_dynamic_scale_for_fsdp = cfg.float8.precompute_float8_dynamic_scale_for_fsdp;
    o.device = device;
    converters.push_back(std::make_unique<Float8Converter>(std::move(o)));
  }
  return converters;
}

}  // namespace

Trainer::Trainer(const config::JobConfig& cfg, const Plan& plan, const dist::World& world)
    : cfg_(cfg), plan_(plan), world_(world) {
  // Collectives during set-up and the first step may wait for slow ranks (data tokenization,
  // first allocations): comm.init_timeout_seconds; afterwards comm.train_timeout_seconds.
  dist::set_collective_timeout(double(cfg.comm.init_timeout_seconds), "comm.init_timeout_seconds");
  mesh_ = std::make_unique<dist::DeviceMesh>(world, plan.dims.replicate, plan.dims.shard, plan.dims.tp);
  fault_ = FaultInjection::parse(cfg.debug.fault);
  if (fault_.kind != FaultInjection::Kind::none)
    spdlog::warn("fault injection: world rank {} will {} at step {} (debug.fault)", fault_.rank,
                 cfg.debug.fault.substr(0, cfg.debug.fault.find(':')), fault_.step);
  if (plan.param_dtype != DType::f32)
    spdlog::info("mixed precision: FSDP gathers {} weights, so activations and their gradients are {} tensors where "
                 "the device's ops take them (ops compute in float32{}); master weights, optimizer state and the loss in "
                 "float32, reductions in {}{}",
                 dtype_name(plan.param_dtype), dtype_name(plan.param_dtype),
                 plan.cpu_gemm && plan.param_dtype == DType::bf16 ? "; GEMMs: " + plan.cpu_gemm->bf16 : std::string(),
                 dtype_name(plan.reduce_dtype), plan.precision_note.empty() ? "" : " (" + plan.precision_note + ")");
  if (plan.param_dtype == DType::f16) {
    scaler_ = GradScalerState{cfg.training.loss_scale_init, 0, 0};
    spdlog::info("loss scaling: dynamic, initial scale {}, x2 after {} steps without inf/NaN gradients, x0.5 and the "
                 "step skipped on any (GradScaler's rules)",
                 cfg.training.loss_scale_init, cfg.training.loss_scale_growth_interval);
  }
  // debug.deterministic: the one nondeterministic path it switches off is cuDNN attention's default
  // backward on a GPU (docs/training.md, "Determinism"); the run states the guarantee and what it
  // rests on.
  // A GEMM library may split work differently for another thread count (OpenBLAS 0.3.21's Zen
  // kernel: 1 and 2 threads differ by ~1e-9 in the gradient norm), so the guarantee is for a
  // fixed thread count.
  const std::string gemm_note =
      "; " + (plan.cpu_gemm ? plan.cpu_gemm->library : std::string("openblas")) + " GEMMs with the same thread count";
  if (cfg.debug.deterministic)
    spdlog::info("debug.deterministic: on; every kernel on {} is deterministic (fixed reduction order, no float atomics{}), "
                 "so a rerun with the same config, seed, world size and build repeats these losses bit for bit",
                 plan.device_kind, plan.device_kind == "cuda" ? "; cuBLASLt with titan.cpp's own workspace, cuDNN attention's "
                                                                "deterministic backward, same GPU model"
                                                              : gemm_note);
  seed_ = static_cast<std::uint64_t>(cfg.debug.seed.value_or(0));
}

Trainer::~Trainer() = default;

std::unique_ptr<Trainer> Trainer::build(const config::JobConfig& cfg, const Plan& plan, const dist::World& world) {
  std::unique_ptr<Trainer> t(new Trainer(cfg, plan, world));
  t->build_data();
  t->build_checkpointer();
  t->build_model();
  t->build_optimizer_and_metrics();
  t->restore();
  if (cfg.compile.enable) {
    const std::string blocker = t->compile_blocker();
    if (!blocker.empty()) {
      spdlog::warn("compile.enable: steps run eagerly: {}", blocker);
    } else {
      // Two eager steps first: they make what a step keeps (AdamW's moments, cuBLASLt's plans and
      // workspace) before the capture, which must find them in place.
      t->compile_ = Compile::pending;
      t->capture_step_ = t->start_step_ + 2;
      spdlog::info("compile.enable: step {} will be captured{}", t->capture_step_,
                   t->device_.is_cpu() ? " (on the CPU: checked, then run eagerly each step)"
                                       : " as a CUDA graph and replayed after");
    }
  }
  return t;
}

void Trainer::build_data() {
  tokenizer_ = load_training_tokenizer(cfg_, plan_);
  const auto t_data = Clock::now();
  windows_ = std::make_unique<data::TokenWindows>(
      data::resolve_dataset_files(cfg_.training.dataset, cfg_.training.dataset_path.value_or("")), *tokenizer_,
      plan_.seq_len, seed_);
  spdlog::info("data: {} tokens, {} windows of {} + 1, tokenizer {} ({:.2f}s{})", windows_->num_tokens(),
               windows_->num_windows(), plan_.seq_len, tokenizer_->fingerprint(), seconds_since(t_data),
               windows_->from_cache() ? ", from the tokenization cache" : "");
  if (cfg_.validation.enable) {
    val_windows_ = std::make_unique<data::TokenWindows>(
        data::resolve_dataset_files(cfg_.validation.dataset, cfg_.validation.dataset_path.value_or("")), *tokenizer_,
        cfg_.validation.seq_len, seed_);
    if (val_windows_->num_windows() < cfg_.validation.local_batch_size)
      throw UserError("validation: the validation set holds " + std::to_string(val_windows_->num_windows()) +
                      " windows, fewer than validation.local_batch_size = " +
                      std::to_string(cfg_.validation.local_batch_size) +
                      "; use a smaller batch or seq_len, or more validation data");
  }
}

// What to resume from is decided, and its metadata checked against this run's model and data,
// before the model is allocated (another flavor's checkpoint is one line, not an OOM kill). Reads
// files only: no collectives before the set-up agreement in restore().
void Trainer::build_checkpointer() {
  hf_adapter_ = std::make_unique<llama3::StateDictAdapter>(plan_.model, plan_.flavor);
  if (!cfg_.checkpoint.enable) return;
  ckpt_ = std::make_unique<checkpoint::Checkpointer>(checkpoint_options(cfg_), *mesh_, model_description(plan_),
                                                     config::to_toml(cfg_));
  ckpt_->set_data_description({{"seq_len", plan_.seq_len},
                               {"tokenizer", tokenizer_->fingerprint()},
                               {"dataset", cfg_.training.dataset},
                               {"dataset_path", cfg_.training.dataset_path.value_or("")},
                               {"num_tokens", windows_->num_tokens()},
                               {"seed", seed_}});
  if (!ckpt_->select() && cfg_.checkpoint.initial_load_in_hf) {
    hf_source_ = cfg_.checkpoint.initial_load_path
                     ? std::pair<std::string, std::string>("checkpoint.initial_load_path", *cfg_.checkpoint.initial_load_path)
                     : std::pair<std::string, std::string>("model.hf_assets_path", cfg_.model.hf_assets_path);
    checkpoint::check_hf_folder(*hf_adapter_, hf_source_->first, hf_source_->second);
  }
}

// The model is built on the meta device, converted, and FSDP materialises only this rank's shards
// (no rank ever holds the full model). One process is a 1x1 mesh: the same path, one shard.
void Trainer::build_model() {
  device_ = training_device(plan_, world_.local_rank());
  converters_ = build_model_converters(cfg_, plan_, device_);
  {
    nn::MetaGuard meta;
    model_ = std::make_unique<llama3::Transformer>(plan_.model);
    for (auto& c : converters_) c->convert(*model_);
    // model.print_after_conversion: as TorchTitan, once every converter has run (full shapes: before sharding).
    if (cfg_.model.print_after_conversion) spdlog::info("model after conversion:\n{}", describe_model(*model_));
  }
  llama3::Transformer& model = *model_;
  // profiling.enable_profiling: module spans hook in before FSDP, so a unit's span holds its all-gather.
  profiler_ = std::make_unique<Profiler>(cfg_, world_.rank(), device_);
  profiler_->attach(model);
  // profiling.enable_memory_snapshot: from here on, so it sees the shards FSDP makes next.
  memory_snapshot_ = std::make_unique<MemorySnapshot>(cfg_, world_.rank(), device_);
  model.build_rope_table();
  if (plan_.dims.tp > 1 && !device_.is_cpu())
    throw UserError("parallelism.tensor_parallel_degree = " + std::to_string(plan_.dims.tp) +
                    ": tensor parallelism runs on the CPU backend only in this build (the CUDA path has no TP yet); "
                    "use training.device = cpu or tensor_parallel_degree = 1");
  dist::FsdpOptions fo;
  fo.param_dtype = plan_.param_dtype;
  fo.reduce_dtype = plan_.reduce_dtype;
  fo.device = device_;
  fo.offload = cfg_.training.enable_cpu_offload;
  if (fo.offload)
    spdlog::info(device_.is_cpu() ? "cpu offload: training on the CPU, the sharded state is in host memory already (the "
                                    "same path, no copies)"
                                  : "cpu offload: master weights, gradients and AdamW state in host memory; each all-gather "
                                    "copies the shards to the GPU, gradients return to the host, AdamW runs on the host");
  // comm.backend: device tensors' collectives on NCCL (nccl; auto when the build has it and each
  // rank of the node has a GPU of its own: NCCL refuses two ranks on one GPU); mpi keeps them
  // staged through host memory.
  // One process has nothing to exchange: its groups of one stay in memory whatever the backend
  // (an NCCL communicator of one rank would only add a stream, events and the watchdog).
  if (!device_.is_cpu() && cfg_.comm.backend != "mpi" && world_.size() > 1) {
    // Making the groups is collective, so every rank must decide the same: NCCL for auto only if
    // no rank shares a GPU (one MAX over the ranks' "I share one").
    Tensor shares = Tensor::full({1}, world_.local_size() > backend_for(device_).device_count() ? 1.0 : 0.0, DType::f64);
    mesh_->world_group().all_reduce(shares, dist::ReduceOp::max);
    const bool own_gpu = shares.item(0) == 0;
    if (cfg_.comm.backend == "nccl" || (own_gpu && !dist::device_group_backend(device_.kind).empty())) {
      mesh_->use_device_collectives(device_);
      device_collectives_ = true;
      spdlog::info("comm: {} collectives on {} tensors (host tensors: MPI)", dist::device_group_backend(device_.kind),
                   device_.str());
    }
  }
  // Under TP each FSDP parameter is itself a part of a weight split over the TP group: an
  // all-gather extension's scale (float8 all-gather) is the MAX over shard x tp.
  if (plan_.dims.tp > 1) fo.extension_max_also = &mesh_->tp_group();
  // fsdp_reshard_after_forward = N (ZeRO++ hpZ; the plan checked that N divides the shard degree).
  if (plan_.hpz > 1) {
    mesh_->make_shard_subgroups(int(plan_.hpz));
    fo.hpz_group = mesh_->shard_subgroup();
    spdlog::info("fsdp: reshard_after_forward = {} (hpZ): after forward each unit stays sharded over {} adjacent ranks "
                 "(world ranks of this group: {}); the backward all-gathers run within them",
                 plan_.hpz, plan_.hpz, fo.hpz_group->describe());
  }
  fsdp_ = std::make_unique<dist::Fsdp>(*mesh_, fo);
  fsdp_->set_prefetch(cfg_.parallelism.fsdp_prefetch);
  // Tensor parallel first (the parameters become their TP-local parts), then FSDP shards those.
  loss_parallel_ = plan_.dims.tp > 1 && !cfg_.parallelism.disable_loss_parallel;
  // Async TP's fused pairs compute their GEMMs outside per-op AC's policy (which saves chosen
  // matmuls' outputs), so per-op AC keeps the separate ops.
  const bool async_tp = cfg_.parallelism.enable_async_tensor_parallel && plan_.ac.mode != llama3::ActivationCheckpointing::Mode::op;
  tp_ = llama3::apply_tp(model, mesh_->tp_group(), loss_parallel_, async_tp);
  // After TP: per-op AC's forced recomputes match weights by their (TP-local) shapes.
  model.set_activation_checkpointing(plan_.ac);
  llama3::apply_fsdp(model, *fsdp_, cfg_.parallelism.fsdp_reshard_after_forward);
  fsdp_->init_shards([&](const std::string& fqn, Tensor& rows, std::int64_t first) {
    tp_.init_local(fqn, rows, first, [&](Tensor& part, std::int64_t global_first) {
      llama3::init_parameter(fqn, part, global_first, plan_.model, seed_);
    });
  });
  params_ = fsdp_->sharded_parameters();
  if (!device_.is_cpu()) {
    model.move_to(device_);  // the RoPE table (the parameters are FSDP's)
    spdlog::info("device: training on {} (experimental CUDA backend, training.device = {})", device_.str(),
                 cfg_.training.device);
    // Which attention kernels the step runs (cuDNN's plans for the step's shape, and validation's,
    // are built here: none is built later inside a CUDA graph capture).
    ops::set_gpu_attention(cfg_.training.gpu_attention, cfg_.debug.deterministic);
    const llama3::ModelArgs& a = plan_.model;
    const std::int64_t tp = plan_.dims.tp;
    auto attention_at = [&](std::int64_t batch, std::int64_t seq, const char* what) {
      std::string attention;
      bool failed = false;
      try {
        attention = ops::attention_implementation(device_, batch, seq, a.n_heads / tp, a.kv_heads() / tp, a.head_dim(),
                                                  plan_.param_dtype);
      } catch (const std::exception& e) {
        attention = e.what();
        failed = true;
      }
      if (cfg_.training.gpu_attention == "cudnn" && (failed || attention.find("(cuDNN: ") != std::string::npos))
        throw UserError(std::string("training.gpu_attention = \"cudnn\", but cuDNN cannot run the ") + what +
                        " attention: " + attention + "; set it to auto or titan" +
                        (cfg_.debug.deterministic ? " (or unset debug.deterministic)" : ""));
      spdlog::info("attention{}: {}", std::string(what) == "training" ? "" : " (validation)", attention);
    };
    attention_at(plan_.batch.local_batch, plan_.seq_len, "training");
    if (cfg_.validation.enable &&
        (cfg_.validation.local_batch_size != plan_.batch.local_batch || cfg_.validation.seq_len != plan_.seq_len))
      attention_at(cfg_.validation.local_batch_size, cfg_.validation.seq_len, "validation");
  }
  parallel_.local_shard = [this](const autograd::Variable& w) -> const Tensor& { return fsdp_->local_shard_of(w); };
  parallel_.max_over_shards = [this](const Tensor& t) {
    mesh_->shard_group().all_reduce(t, dist::ReduceOp::max);
    if (tp_.active()) mesh_->tp_group().all_reduce(t, dist::ReduceOp::max);
  };
  if (tp_.active()) parallel_.max_over_tp = [this](const Tensor& t) { mesh_->tp_group().all_reduce(t, dist::ReduceOp::max); };
  parallel_.max_over_world = [this](const Tensor& t) { mesh_->world_group().all_reduce(t, dist::ReduceOp::max); };
  parallel_.data_parallel_size = plan_.dims.dp();
  for (auto& c : converters_) c->parallelized(*model_, parallel_);
  shards_loaded();
  const bool float8_all_gather = plan_.float8 && cfg_.float8.enable_fsdp_float8_all_gather;
  const bool precompute_float8 = float8_all_gather && cfg_.float8.precompute_float8_dynamic_scale_for_fsdp;
  if (plan_.dims.world > 1)
    spdlog::info("fsdp: {} on {} ranks; units tok_embeddings, layers.0..{}, [norm, output]; all-gather in {}{}; "
                 "reshard_after_forward {}",
                 plan_.dims.describe(), plan_.dims.world, plan_.model.n_layers - 1, dtype_name(plan_.param_dtype),
                 float8_all_gather ? std::string(" (float8 weights as e4m3") + (precompute_float8 ? ", scales precomputed)" : ")")
                                   : "",
                 cfg_.parallelism.fsdp_reshard_after_forward);
  for (size_t i = 0; i < params_.size(); ++i) {
    param_names_.push_back(fsdp_->fqn_of(i));
    // A TP-replicated parameter's gradient is the same on every TP rank: counted once.
    in_grad_norm_.push_back(tp_.dim_of(param_names_[i]) >= 0 || tp_.rank == 0);
  }
  if (tp_.active())
    spdlog::info("tensor parallel: TP {} (world ranks {}..{} of this group), sequence parallel, loss parallel {}; "
                 "colwise wq/wk/wv/w1/w3/output, rowwise wo/w2/tok_embeddings",
                 tp_.size, world_.rank() - tp_.rank, world_.rank() - tp_.rank + tp_.size - 1, loss_parallel_ ? "on" : "off");
  if (tp_.active() && cfg_.parallelism.enable_async_tensor_parallel && tp_.fused_pairs == 0)
    spdlog::warn("tensor parallel: enable_async_tensor_parallel has no effect with per-op activation checkpointing "
                 "(selective_ac_option = \"op\"): its policy saves chosen matmul outputs, which the fused pairs would "
                 "bypass; the TP collectives run separately");
  if (tp_.active() && tp_.fused_pairs > 0)
    spdlog::info("tensor parallel: async TP: {} of {} collective/GEMM pairs fused, each in {} chunks per rank{}; on MPI "
                 "a chunk's collective moves while it is polled between the chunks' GEMMs, not during one",
                 tp_.fused_pairs, tp_.pairs, dist::async_tp_chunks(tp_.size),
                 tp_.fused_pairs < tp_.pairs ? " (float8 linears keep the separate collective)" : "");
}

void Trainer::build_optimizer_and_metrics() {
  optimizer_ = std::make_unique<optim::AdamW>(
      params_, optim::AdamWConfig{cfg_.optimizer.lr, cfg_.optimizer.beta1, cfg_.optimizer.beta2, cfg_.optimizer.eps,
                                  cfg_.optimizer.weight_decay});
  std::vector<std::string> warnings;
  const double* decay_ratio = cfg_.lr_scheduler.decay_ratio ? &*cfg_.lr_scheduler.decay_ratio : nullptr;
  schedule_ = optim::LrSchedule::build(cfg_.lr_scheduler.total_steps.value_or(cfg_.training.steps),
                                       cfg_.lr_scheduler.warmup_steps, decay_ratio, cfg_.lr_scheduler.decay_type,
                                       cfg_.lr_scheduler.min_lr_factor, &warnings);
  for (const auto& w : warnings) spdlog::warn("{}", w);

  loader_ = std::make_unique<data::DataLoader>(*windows_, plan_.batch.local_batch, mesh_->dp_rank(), plan_.dims.dp(),
                                               plan_.batch.grad_accum);
  std::error_code ec;
  std::filesystem::create_directories(cfg_.job.dump_folder, ec);
  const bool write_metrics = world_.rank() == 0 || cfg_.metrics.save_for_all_ranks;
  const std::string suffix = world_.rank() == 0 ? "" : "_rank" + std::to_string(world_.rank());
  // TensorBoard as TorchTitan lays it out: {dump_folder}/{save_tb_folder}/{YYYYmmdd-HHMM}, with a
  // rank_{R} folder per rank under save_for_all_ranks. Rank 0 picks the time and broadcasts it so
  // every rank of the run writes into the same folder.
  std::string tb_folder;
  tensorboard_ = cfg_.metrics.enable_tensorboard;
  if (tensorboard_) {
    Tensor stamp = Tensor::full({1}, double(std::time(nullptr)), DType::f64);
    if (world_.size() > 1) mesh_->world_group().broadcast(stamp, 0);
    const std::time_t t = static_cast<std::time_t>(stamp.item(0));
    std::tm local{};
    localtime_r(&t, &local);
    char name[32];
    std::strftime(name, sizeof name, "%Y%m%d-%H%M", &local);
    auto folder = std::filesystem::path(cfg_.job.dump_folder) / cfg_.metrics.save_tb_folder / name;
    if (cfg_.metrics.save_for_all_ranks) folder /= "rank_" + std::to_string(world_.rank());
    if (write_metrics) tb_folder = folder.string();
  }
  metrics_ = std::make_unique<MetricsLogger>(
      plan_.flops_per_token, peak_flops(device_, plan_),
      write_metrics ? (std::filesystem::path(cfg_.job.dump_folder) / ("metrics" + suffix + ".jsonl")).string() : "",
      tb_folder);
  show_eta_ = isatty(STDOUT_FILENO) || isatty(STDERR_FILENO);
  mem_total_ = physical_memory_bytes();
}

// Resume from the run's latest checkpoint (or initial_load_path), else import HF weights.
void Trainer::restore() {
  // Every rank must be ready before the first collective: a rank whose setup failed (say, a data
  // file missing on its node) is waiting in this same reduction in main, so nobody hangs.
  if (const int agreed = world_.agree_exit_code(kExitOk); agreed != kExitOk)
    throw PeerFailure("stopping: another rank failed while setting up (its error is reported above)", agreed);

  std::optional<checkpoint::Checkpointer::Loaded> loaded;
  checkpoint::TrainingState state;
  if (ckpt_) {
    optimizer_->init_state();  // zero moments, as the first step would make them, for the load to fill
    state = current_state(0, /*for_load=*/true);
    loaded = ckpt_->load(state);
    if (!loaded && hf_source_) {
      // Each rank reads only the rows it owns (ranged reads; q/k through whole heads).
      std::vector<checkpoint::ShardedTensor> owned;
      for (auto& t : state.model)
        owned.push_back({t.name.substr(6), t.global_shape, t.row_begin, t.row_end,  // "model." off
                         t.row_end > t.row_begin ? t.rows : Tensor()});
      checkpoint::import_hf(*hf_adapter_, hf_source_->first, hf_source_->second, owned);
    }
    if (loaded || hf_source_) apply_loaded_columns();
    else column_fixups_.clear();  // nothing was loaded: the initialised shards stay
    // The steps after the resumed one are trained again: their old metrics rows go (file I/O
    // only, so before the agreement: a failure here is this rank's own error line).
    const auto& excluded = cfg_.checkpoint.exclude_from_loading;
    if (loaded && !loaded->model_only && std::find(excluded.begin(), excluded.end(), "train_state") == excluded.end())
      metrics_->truncate_after(state.progress.step);
  }
  // A rank whose load failed (a corrupt shard only it reads) is in main's agreement with its own
  // error: the others meet it here, before any collective, and stop at once instead of waiting
  // for it in the first all-gather until the comm timeout.
  if (const int agreed = world_.agree_exit_code(kExitOk); agreed != kExitOk)
    throw PeerFailure("stopping: another rank failed while loading the checkpoint (its error is reported above)", agreed);
  if (!ckpt_) return;
  if (!loaded && hf_source_) shards_loaded();  // gathered copies follow the imported shards
  if (loaded) {
    const checkpoint::TrainProgress& pr = state.progress;
    start_step_ = pr.step + 1;
    lr_offset_ = pr.lr_scheduler_steps - pr.step;
    optimizer_->set_steps(pr.optimizer_steps);
    loader_->set_windows_consumed(pr.windows_consumed);
    if (state.extra.contains("float8_delayed")) float8::load_delayed_scaling_state(*model_, state.extra["float8_delayed"]);
    // The loss scaler continues where it was (a checkpoint without one, or from another
    // precision, keeps the configured initial scale).
    if (scaler_ && state.extra.contains("grad_scaler")) {
      const auto& g = state.extra["grad_scaler"];
      if (!g.contains("scale") || !g["scale"].is_number() || !(g["scale"].get<double>() > 0) || !g.contains("good_steps") ||
          !g["good_steps"].is_number_integer() || !g.contains("skipped") || !g["skipped"].is_number_integer())
        throw UserError("checkpoint: '" + loaded->path + "' metadata.json: extra.grad_scaler must be {scale > 0, good_steps, "
                        "skipped}; the checkpoint is damaged: load another step (checkpoint.load_step)");
      scaler_ = GradScalerState{g["scale"].get<double>(), g["good_steps"].get<std::int64_t>(), g["skipped"].get<std::int64_t>()};
    }
    shards_loaded();  // gathered copies and float8 scales follow the loaded shards
    if (start_step_ > cfg_.training.steps)
      spdlog::warn("checkpoint: the loaded step {} is not below training.steps = {}; nothing left to train", pr.step,
                   cfg_.training.steps);
  }
}

void Trainer::shards_loaded() {
  fsdp_->refresh_after_update();
  for (auto& c : converters_) c->weights_changed(*model_, parallel_);
}

void Trainer::after_optimizer_step() {
  fsdp_->refresh_after_update();
  for (auto& c : converters_) c->post_optimizer_hook(*model_, parallel_);
}

// FSDP's extension all-reduces (float8 gathers without precomputed scales) and the converters'
// scale all-reduces (precompute; delayed scaling's first step on several ranks): the step log's
// float8_amax_all_reduces.
std::int64_t Trainer::float8_amax_all_reduces() const {
  std::int64_t n = fsdp_->extension_all_reduces();
  for (const auto& c : converters_) n += c->amax_all_reduces();
  return n;
}

void Trainer::apply_loaded_columns() {
  for (const auto& f : column_fixups_) {
    const std::int64_t rows = f.local.size(0), c = f.local.size(1), C = f.full.size(1);
    for (std::int64_t r = 0; r < rows; ++r) f.local.view_range(r * c, {c}).copy_from(f.full.view_range(r * C + f.first_col, {c}));
  }
  column_fixups_.clear();
}

autograd::Variable Trainer::loss_of(const autograd::Variable& logits, const Tensor& labels) {
  if (loss_parallel_)
    return dist::vocab_parallel_cross_entropy(logits, labels, tp_.rank * logits.shape().back(), mesh_->tp_group());
  return autograd::cross_entropy(logits, labels);  // float32, as TorchTitan's .float()
}

void Trainer::reduce_tp_replicated_gradients() {
  if (!tp_.active()) return;
  // Each TP rank's gradient of a replicated parameter covers its sequence shard only: one SUM
  // all-reduce of all of them, packed.
  std::int64_t n = 0;
  for (size_t i = 0; i < params_.size(); ++i)
    if (tp_.dim_of(param_names_[i]) < 0 && params_[i]->grad().defined()) n += params_[i]->grad().numel();
  if (n == 0) return;
  Tensor buf = Tensor::empty({n}, DType::f32, fsdp_->shard_device());
  std::int64_t at = 0;
  auto each = [&](auto&& f) {
    at = 0;
    for (size_t i = 0; i < params_.size(); ++i) {
      const Tensor& g = params_[i]->grad();
      if (tp_.dim_of(param_names_[i]) >= 0 || !g.defined()) continue;
      f(g, buf.view_range(at, {g.numel()}));
      at += g.numel();
    }
  };
  each([](const Tensor& g, Tensor part) { part.copy_from(g.view({g.numel()})); });
  mesh_->tp_group().all_reduce(buf, dist::ReduceOp::sum);
  each([](const Tensor& g, Tensor part) { g.view({g.numel()}).copy_from(part); });
}

checkpoint::TrainingState Trainer::current_state(std::int64_t step, bool for_load) {
  checkpoint::TrainingState s = training_state(*fsdp_, params_, param_names_, *optimizer_, tp_, mesh_->tp_group(),
                                               for_load, &column_fixups_);
  const std::int64_t tokens_per_step = plan_.batch.global_batch * plan_.seq_len;
  s.progress = {step,          step * tokens_per_step, loader_->windows_consumed(), optimizer_->steps(),
                step + lr_offset_, seed_};
  s.extra["float8_delayed"] = float8::delayed_scaling_state(*model_);
  if (scaler_)
    s.extra["grad_scaler"] = {{"scale", scaler_->scale}, {"good_steps", scaler_->good_steps}, {"skipped", scaler_->skipped}};
  return s;
}

Tensor Trainer::forward_backward_step(const data::DataLoader::Batch& batch, double* saved_activation_bytes) {
  // (No memory counters inside a capture, where saved_activation_bytes is null: they query the
  // device's pool.)
  const DeviceBackend& backend = backend_for(device_);
  const std::size_t in_use_before = saved_activation_bytes ? backend.memory_stats(device_.index).in_use : 0;
  autograd::Variable logits;
  {
    TITAN_TRACE_SPAN("forward", "forward");
    logits = model_->forward_tokens(batch.inputs);  // bf16 under bf16 mixed precision: FSDP gathered bf16 weights
  }
  autograd::Variable loss = loss_of(logits, batch.labels);
  if (saved_activation_bytes)
    *saved_activation_bytes = double(backend.memory_stats(device_.index).in_use) - double(in_use_before);
  // Each micro-batch contributes 1/grad_accum of the step's mean loss (times the loss scale under
  // float16: small gradients stay above float16's underflow; the step unscales them).
  TITAN_TRACE_SPAN("backward", "backward");
  const double scale = scaler_ ? scaler_->scale : 1.0;
  loss.backward(Tensor::full({1}, scale / double(plan_.batch.grad_accum)));
  return loss.data();
}

bool Trainer::reads_values(std::int64_t step) const {
  return scaler_ || is_log_step(step) || (val_windows_ && step % cfg_.validation.freq == 0) ||
         (ckpt_ && ckpt_->due(step, cfg_.training.steps));
}

std::vector<Trainer::StepValues> Trainer::read_pending(std::optional<double>* loss_max) {
  const std::int64_t accum = plan_.batch.grad_accum, k = std::int64_t(pending_.size());
  std::vector<Tensor> parts;
  for (const PendingValues& p : pending_) {
    parts.push_back(p.losses);
    parts.push_back(p.grad_sq);
  }
  parts.push_back(ops::take_device_errors(device_));
  const std::vector<Tensor> host = read_together(parts, device_);  // the one host sync of a reading step on a GPU
  // The logged loss is the global mean: every data-parallel rank's mean over its slice, averaged.
  // The error flags ride along (element k): a rank that found one must not leave the others
  // waiting in this all-reduce, so every rank learns of it here and all of them stop.
  Tensor step_loss = Tensor::empty({k + 1}, DType::f64);
  for (std::int64_t i = 0; i < k; ++i) {
    double loss_sum = 0;
    for (std::int64_t m = 0; m < accum; ++m) loss_sum += host[size_t(2 * i)].item(m);
    step_loss.set(i, loss_sum / double(accum));
  }
  step_loss.set(k, host.back().item(0));
  // TensorBoard's loss_metrics/global_max_loss: one more scalar collective, on its log steps only.
  if (loss_max) {
    Tensor max_loss = step_loss.view_range(k - 1, {1}).clone();
    if (plan_.dims.dp() > 1) mesh_->dp_group().all_reduce(max_loss, dist::ReduceOp::max);
    *loss_max = max_loss.item(0);
  }
  // (TP ranks computed the same loss: averaged over the data-parallel ranks of their TP index.)
  if (plan_.dims.dp() > 1) mesh_->dp_group().all_reduce(step_loss, dist::ReduceOp::avg);
  // A flagged token or target (its embedding row was zeros, its loss NaN) stops the job, on this
  // read: before the loss is reported, this step's optimizer update and any checkpoint save (the
  // updates of the steps since the last read have run).
  ops::raise_device_errors(host.back());
  if (step_loss.item(k) != 0)
    throw UserError("another data-parallel rank met a token id or target outside the vocabulary (its error line says "
                    "which); the tokenizer and model.vocab_size disagree",
                    kExitRuntimeError);
  std::vector<StepValues> values;
  for (std::int64_t i = 0; i < k; ++i) {
    values.push_back({pending_[i].step, step_loss.item(i), std::sqrt(host[size_t(2 * i + 1)].item(0))});
    // Float16 decides on its own step (it reads every step): a non-finite value skips it.
    const StepValues& v = values.back();
    if (!scaler_ && (!std::isfinite(v.loss) || !std::isfinite(v.grad_norm)))
      throw UserError(fmt::format("step {}: loss is {} and grad norm {}; training diverged (lower optimizer.lr or "
                                  "lengthen lr_scheduler.warmup_steps)",
                                  v.step, v.loss, v.grad_norm),
                      kExitRuntimeError);
  }
  pending_.clear();
  return values;
}

Tensor Trainer::forward_backward_micro_batches(
    const std::function<data::DataLoader::Batch(std::int64_t)>& batch_of, StepOutput* out) {
  // The micro-batches' losses side by side where they were computed (read with the step's other
  // values, and only on a step that reads them).
  Tensor losses;
  for (std::int64_t micro = 0; micro < plan_.batch.grad_accum; ++micro) {
    const data::DataLoader::Batch batch = batch_of(micro);
    // Gradient accumulation: FSDP reduces gradients only after the last micro-batch.
    fsdp_->set_requires_gradient_sync(micro == plan_.batch.grad_accum - 1);
    double saved = 0;
    const Tensor loss = forward_backward_step(batch, out ? &saved : nullptr);
    if (!losses.defined()) losses = Tensor::empty({plan_.batch.grad_accum}, loss.dtype(), loss.device());
    losses.view_range(micro, {1}).copy_from(loss.view({1}));
    if (out) out->saved_activation_bytes = std::max(out->saved_activation_bytes, saved);
  }
  return losses;
}

std::function<void(Tensor&)> Trainer::grad_sum_over_ranks() {
  // The sum of squares over the shard group, then over the TP group (each TP rank holds other
  // elements); on the device, like the clipping.
  return [this](Tensor& t) {
    fsdp_->sum_over_shards(t);
    if (tp_.active()) mesh_->tp_group().all_reduce(t, dist::ReduceOp::sum);
  };
}

Trainer::StepOutput Trainer::train_step(std::int64_t step) {
  if (compile_ == Compile::graph || compile_ == Compile::emulated || (compile_ == Compile::pending && step >= capture_step_))
    return captured_train_step(step);
  StepOutput out;
  optimizer_->zero_grad();
  const Tensor losses = forward_backward_micro_batches(
      [&](std::int64_t micro) {
        const auto t0 = Clock::now();
        const double trace_t0 = trace::now_us();
        auto batch = loader_->micro_batch(micro, device_);
        out.data_seconds += seconds_since(t0);
        trace::complete("data", "data_loading", trace_t0);
        return batch;
      },
      &out);
  loader_->advance();
  saved_activation_bytes_ = out.saved_activation_bytes;
  reduce_tp_replicated_gradients();
  const double trace_opt_t0 = trace::now_us();
  // Float16: unscale before clipping (GradScaler.unscale_); an inf/NaN gradient shows as a
  // non-finite global norm, the same on every rank (it is one all-reduce), so the ranks agree on
  // skipping without another collective.
  if (scaler_)
    for (auto* p : params_)
      if (p->grad().defined()) ops::scale_(p->grad(), 1.0 / scaler_->scale);
  pending_.push_back({step, losses, optim::clip_grad_norm(params_, cfg_.training.max_norm, grad_sum_over_ranks(), &in_grad_norm_)});
  out.lr = cfg_.optimizer.lr * schedule_.factor(step - 1 + lr_offset_);
  if (reads_values(step)) out.values = read_pending(tensorboard_ && is_log_step(step) ? &out.loss_max : nullptr);
  if (scaler_) {
    const StepValues& now = out.values.back();
    out.loss_scale = scaler_->scale;
    if (!std::isfinite(now.grad_norm) || !std::isfinite(now.loss)) {
      out.skipped = true;
      ++scaler_->skipped;
      scaler_->good_steps = 0;
      scaler_->scale *= 0.5;
      spdlog::warn("step {}: inf/NaN gradients at loss scale {}; step skipped (weights unchanged), loss scale -> {}", step,
                   *out.loss_scale, scaler_->scale);
      trace::complete("optimizer", "optimizer_step", trace_opt_t0);
      return out;
    }
    if (++scaler_->good_steps == cfg_.training.loss_scale_growth_interval) {
      scaler_->good_steps = 0;
      scaler_->scale *= 2.0;
    }
  }
  optimizer_->step(out.lr);
  after_optimizer_step();
  trace::complete("optimizer", "optimizer_step", trace_opt_t0);
  return out;
}

std::string Trainer::compile_blocker() const {
  if (scaler_) return "float16's loss scaler decides on the host, every step, whether the step is skipped";
  if (cfg_.training.enable_cpu_offload) return "CPU offload moves the state through host memory every step";
  if (cfg_.profiling.enable_profiling && !device_.is_cpu())
    return "the profiler times the step's ops with device events, which a graph would not replay (profile without it)";
  if (world_.size() > 1 && !device_.is_cpu())
    return "several GPU ranks: their NCCL collectives inside a graph would run without the collective timeout's "
           "watchdog (and host-staged ones cannot be captured); one GPU rank only, for now";
  return "";
}

// What a capture records: the step's device work, reading the step's inputs from step_batches_
// and AdamW's prepared scalars, leaving its values in graph_losses_ and graph_grad_sq_.
void Trainer::captured_body() {
  graph_losses_ = forward_backward_micro_batches([&](std::int64_t micro) { return step_batches_[size_t(micro)]; }, nullptr);
  reduce_tp_replicated_gradients();
  graph_grad_sq_ = optim::clip_grad_norm(params_, cfg_.training.max_norm, grad_sum_over_ranks(), &in_grad_norm_);
  optimizer_->apply();
  after_optimizer_step();
}

// compile.enable's step. The first time (capture_step_) the step's device work is recorded and
// run once; every later step replays it. What changes from step to step reaches the replay
// through memory whose address stays: the micro-batches (step_batches_, written here) and
// AdamW's scalars (prepare); its values come back the same way (graph_losses_, graph_grad_sq_,
// copied into this step's pending values so the next replay can overwrite them).
Trainer::StepOutput Trainer::captured_train_step(std::int64_t step) {
  StepOutput out;
  out.lr = cfg_.optimizer.lr * schedule_.factor(step - 1 + lr_offset_);
  {
    const auto t0 = Clock::now();
    const double trace_t0 = trace::now_us();
    for (std::int64_t micro = 0; micro < plan_.batch.grad_accum; ++micro) {
      const data::DataLoader::Batch b = loader_->micro_batch(micro);  // built on the host, copied (queued) in place
      if (step_batches_.size() == size_t(micro))  // the first time: the fixed buffers
        step_batches_.push_back({Tensor::empty(b.inputs.shape(), b.inputs.dtype(), device_),
                                 Tensor::empty(b.labels.shape(), b.labels.dtype(), device_)});
      step_batches_[size_t(micro)].inputs.copy_from(b.inputs);
      step_batches_[size_t(micro)].labels.copy_from(b.labels);
    }
    loader_->advance();
    out.data_seconds = seconds_since(t0);
    trace::complete("data", "data_loading", trace_t0);
  }
  optimizer_->prepare(out.lr);
  if (compile_ == Compile::pending) {
    // The previous step's gradients go now: freed inside the capture they would be memory the
    // step did not allocate (StepCapture), and the graph's gradients are its own.
    optimizer_->zero_grad();
    StepCapture capture(device_.kind);
    try {
      graph_ = backend_for(device_).capture(device_.index, [this] { captured_body(); });
    } catch (const std::exception& e) {
      if (device_.is_cpu()) throw;  // the step itself failed: its own error
      throw UserError(fmt::format("compile.enable: step {} could not be captured as a CUDA graph ({}); run with "
                                  "compile.enable = false, or without CUDA_LAUNCH_BLOCKING=1 if it is set (and "
                                  "please report it with this config otherwise)",
                                  step, e.what()),
                      kExitRuntimeError);
    }
    if (graph_) graph_->replay();  // this step (the capture only recorded it)
    // Frees what the step replaced, queued after the replay that still read it.
    const StepCapture::FreedEarly early = capture.finish();
    graph_peak_bytes_ = memory_reading(device_, mem_total_).peak_bytes;
    if (early.count > 0) {
      spdlog::warn("compile.enable: step {} freed {} tensor(s) ({:.2f} MiB) allocated before it: it carries a value to the "
                   "next step in a new tensor instead of in place, which a replay could not follow; steps run eagerly "
                   "(a titan.cpp bug: please report it with this config)",
                   step, early.count, double(early.bytes) / double(1 << 20));
      graph_.reset();
      compile_ = Compile::eager;
    } else if (graph_) {
      spdlog::info("compile.enable: step {} captured as a CUDA graph; every later step replays it", step);
      compile_ = Compile::graph;
    } else {
      spdlog::info("compile.enable: the {} backend has no graphs; step {} ran eagerly under the capture's check (it "
                   "replaces no tensor from an earlier step, so a GPU could replay it); later steps run that body "
                   "eagerly, as a GPU would replay it",
                   kind_name(device_.kind), step);
      compile_ = Compile::emulated;
    }
  } else if (compile_ == Compile::graph) {
    graph_->replay();
  } else {  // emulated: the body again, on gradients made fresh as a replay's are
    optimizer_->zero_grad();
    captured_body();
  }
  out.saved_activation_bytes = saved_activation_bytes_;  // the last eager step's: the same work
  pending_.push_back({step, graph_losses_.clone(), graph_grad_sq_.clone()});
  if (reads_values(step)) out.values = read_pending(tensorboard_ && is_log_step(step) ? &out.loss_max : nullptr);
  return out;
}

void Trainer::save_checkpoint(std::int64_t step) {
  TITAN_TRACE_SPAN("checkpoint", "checkpoint_save");
  if (step == cfg_.training.steps && cfg_.checkpoint.last_save_in_hf) {
    // The last save as HF safetensors: the full model on rank 0, in export_dtype.
    ckpt_->wait();
    const auto t0 = Clock::now();
    const auto full = full_parameters(*fsdp_, *mesh_, param_names_, tp_);
    if (world_.rank() == 0)
      checkpoint::export_hf(*hf_adapter_, full, ckpt_->folder(), step, cfg_.checkpoint.export_dtype, t0);
    mesh_->world_group().barrier();
  } else {
    ckpt_->save(step, current_state(step), step == cfg_.training.steps);
  }
}

TrainResult Trainer::train() {
  if (ckpt_ && cfg_.checkpoint.create_seed_checkpoint) {
    ckpt_->save(0, current_state(0), false);
    spdlog::info("checkpoint: wrote the seed checkpoint step-0 (create_seed_checkpoint); not training");
    return {};
  }
  TrainResult result;
  ReportInput report;  // {dump_folder}/report.html, written by rank 0 at the end
  const auto t_train = Clock::now();
  // The steps since the last read of the device's values (their lr, the report's rows wait for
  // their losses) and since the last log line. On a GPU the host runs ahead of the device between
  // reads, so one step's host time means little: the log and the report show the average over the
  // steps the read or the log covers (TorchTitan averages over the log interval too).
  struct Unread {
    std::int64_t step;
    double lr;
  };
  std::vector<Unread> unread;
  double unread_seconds = 0;
  std::int64_t log_steps = 0;
  double log_seconds = 0, log_data_seconds = 0;
  std::int64_t log_syncs = 0;  // host syncs inside the train steps since the last log (not validation's or saves')
  bool have_loss = false;
  // This rank's share of a step's tokens: a TP group's ranks work on the same tokens, each on 1/tp
  // of every layer (TorchTitan divides by the non-data-parallel size), so tps and mfu are per rank.
  const std::int64_t step_tokens = plan_.batch.local_batch * plan_.batch.grad_accum * plan_.seq_len / plan_.dims.tp;
  for (std::int64_t step = start_step_; step <= cfg_.training.steps; ++step) {
    const auto t_step = Clock::now();
    profiler_->step_begin(step);
    memory_snapshot_->step_begin(step);
    if (ckpt_) ckpt_->poll();  // completes an async save every rank has finished writing
    reset_memory_peak(device_);
    dist::reset_comm_stats();
    const std::int64_t amax_reduces_before = float8_amax_all_reduces();
    const dist::FsdpGatherCounts gathers_before = fsdp_->gather_counts();
    fault_.at_step_start(world_.rank(), step);
    const std::int64_t syncs_before = backend_for(device_).host_syncs(device_.index);
    const StepOutput out = train_step(step);
    log_syncs += backend_for(device_).host_syncs(device_.index) - syncs_before;
    if (step == start_step_) {
      dist::set_collective_timeout(double(cfg_.comm.train_timeout_seconds), "comm.train_timeout_seconds");
      const StateBytes sb = state_bytes(*fsdp_, *optimizer_);
      spdlog::info("memory/rank: params {:.2f} MiB + grads {:.2f} MiB + AdamW state {:.2f} MiB = {:.2f} MiB (f32, "
                   "sharded over {}{})",
                   mib(sb.params), mib(sb.grads), mib(sb.optimizer), mib(sb.total()), plan_.dims.shard,
                   plan_.dims.tp > 1 ? fmt::format(" x TP {}", plan_.dims.tp) : std::string());
    }
    result.steps = step;
    const double step_seconds = seconds_since(t_step);
    unread.push_back({step, out.lr});
    unread_seconds += step_seconds;
    ++log_steps;
    log_seconds += step_seconds;
    log_data_seconds += out.data_seconds;
    if (!out.values.empty()) {
      if (!have_loss) result.first_loss = out.values.front().loss;
      have_loss = true;
      result.last_loss = out.values.back().loss;
      // Every step, not only the logged ones: the report's curves show the whole run.
      const double seconds = unread_seconds / double(unread.size());
      for (size_t i = 0; i < out.values.size(); ++i) {
        const StepValues& v = out.values[i];
        report.rows.push_back({v.step, v.loss, v.grad_norm, unread[i].lr, seconds > 0 ? double(step_tokens) / seconds : 0});
      }
      unread.clear();
      unread_seconds = 0;
    }

    if (is_log_step(step)) {
      const StepValues& now = out.values.back();
      StepMetrics m;
      m.step = step;
      m.loss = now.loss;
      m.grad_norm = now.grad_norm;
      m.lr = out.lr;
      m.step_seconds = log_seconds / double(log_steps);
      m.data_seconds = log_data_seconds / double(log_steps);
      m.tokens = step_tokens;
      MemoryReading mem = memory_reading(device_, mem_total_);
      // A replayed step allocates what its capture did, where the allocation counter does not see
      // it (the reserved bytes include the graph's memory).
      if (compile_ == Compile::graph) mem.peak_bytes = graph_peak_bytes_;
      m.memory_peak_gib = mem.peak_bytes / double(1ull << 30);
      m.memory_pct = 100.0 * mem.peak_bytes / mem.total_bytes;
      m.memory_reserved_gib = mem.peak_reserved_bytes / double(1ull << 30);
      m.memory_reserved_pct = 100.0 * mem.peak_reserved_bytes / mem.total_bytes;
      m.loss_max = out.loss_max;
      m.loss_scale = out.loss_scale;
      m.step_skipped = out.skipped;
      m.saved_activation_gib = out.saved_activation_bytes / double(1ull << 30);
      m.comm = dist::comm_stats();
      m.float8_amax_all_reduces = float8_amax_all_reduces() - amax_reduces_before;
      m.host_syncs = double(log_syncs) / double(log_steps);
      m.fsdp_gathers_shard = fsdp_->gather_counts().shard_group - gathers_before.shard_group;
      m.fsdp_gathers_hpz = fsdp_->gather_counts().hpz_group - gathers_before.hpz_group;
      m.state = state_bytes(*fsdp_, *optimizer_);
      if (show_eta_ && step < cfg_.training.steps)
        m.eta_seconds = eta_seconds(step, start_step_, cfg_.training.steps, seconds_since(t_train));
      metrics_->log(m);
      log_steps = 0;
      log_seconds = log_data_seconds = 0;
      log_syncs = 0;
    }
    if (val_windows_ && step % cfg_.validation.freq == 0) {
      TITAN_TRACE_SPAN("validation", "validate");
      std::int64_t used = 0;
      const double vloss = validate(*model_, *val_windows_, cfg_.validation.local_batch_size, cfg_.validation.steps,
                                    device_, mesh_->dp_rank(), plan_.dims.dp(), mesh_->dp_group(),
                                    [this](const autograd::Variable& l, const Tensor& t) { return loss_of(l, t); }, &used);
      metrics_->log_validation(step, vloss, used);
      report.validation.emplace_back(step, vloss);
      // Validation leaves host state that an eager step's end would reset: FSDP's last unit
      // gathered, float8 gather scales and the delayed recipe's scales marked current. A replay
      // runs no host code, so the next validation would reuse them (weights and delayed scales a
      // step or more old). shards_loaded() is that reset without the step's training effects
      // (no amax-history sync). The CPU's emulated replay runs it too, so the CPU tests cover it
      // (there it changes no value).
      if (compile_ == Compile::graph || compile_ == Compile::emulated) shards_loaded();
    }
    if (ckpt_ && ckpt_->due(step, cfg_.training.steps)) save_checkpoint(step);
    memory_snapshot_->step_end(step, step == cfg_.training.steps);
    profiler_->step_end(step);
    if (has_status_line())
      set_status_line(progress_line(step, start_step_, cfg_.training.steps, seconds_since(t_train), result.last_loss));
  }
  set_status_line("");
  profiler_->finish(cfg_.training.steps);
  if (ckpt_) ckpt_->wait();
  const double train_seconds = seconds_since(t_train);
  spdlog::info("training done: {} steps in {:.1f}s, loss {:.4f} -> {:.4f}", result.steps, train_seconds,
               result.first_loss, result.last_loss);
  if (world_.rank() == 0 && !report.rows.empty()) {
    report.title = cfg_.job.description;
    report.summary = fmt::format("steps {}-{} in {:.1f} s, loss {:.4f} -> {:.4f}; {} rank(s) on {}", start_step_,
                                 result.steps, train_seconds, result.first_loss, result.last_loss, world_.size(),
                                 plan_.device);
    report.plan = plan_text(plan_);
    write_report(report, (std::filesystem::path(cfg_.job.dump_folder) / "report.html").string());
  }
  return result;
}

TrainResult train(const config::JobConfig& cfg, const Plan& plan, const dist::World& world) {
  return Trainer::build(cfg, plan, world)->train();
}

}  // namespace titan::train
