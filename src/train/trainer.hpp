#pragma once
// The trainer (DESIGN.md sections 6, 7, 9), in TorchTitan's shape: Trainer::build makes the
// tokenizer, data, checkpointer, model (meta device), model converters, FSDP (always: one process
// is a 1x1 mesh), optimizer, LR schedule, loader and metrics from the config, and restores a
// checkpoint or HF weights; forward_backward_step runs one micro-batch; train_step one optimizer
// step (grad_accum micro-batches, global loss, clipping, AdamW, post-optimizer hooks); train()
// the loop around it (checkpoints, logging, validation, profiler, fault injection).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/checkpointer.hpp"
#include "checkpoint/hf_adapter.hpp"
#include "config/job_config.hpp"
#include "core/backend.hpp"
#include "core/fault.hpp"
#include "data/dataset.hpp"
#include "data/tokenizer.hpp"
#include "dist/fsdp.hpp"
#include "dist/tensor_parallel.hpp"
#include "dist/world.hpp"
#include "models/llama3/model.hpp"
#include "optim/adamw.hpp"
#include "train/metrics.hpp"
#include "train/memory_snapshot.hpp"
#include "train/model_converter.hpp"
#include "train/plan.hpp"
#include "train/profiler.hpp"

namespace titan::train {

// A load of a tensor-parallel parameter split on its columns: the checkpoint holds whole rows, so
// the load fills `full` [n, C] and this rank's columns go back into `local` [n, C/T].
struct ColumnFixup {
  Tensor local, full;
  std::int64_t first_col = 0;
};

struct TrainResult {
  std::int64_t steps = 0;
  double first_loss = 0, last_loss = 0;
};

class Trainer {
 public:
  // Builds everything and restores the run's checkpoint (or HF weights). Throws UserError for
  // configuration problems found while building (dataset, tokenizer, vocab, checkpoint), and
  // PeerFailure when another rank failed to set up. `cfg`, `plan` and `world` must outlive it.
  static std::unique_ptr<Trainer> build(const config::JobConfig& cfg, const Plan& plan, const dist::World& world);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // One micro-batch: forward, loss, backward (the gradient scaled by 1/grad_accum). Returns the
  // micro-batch's mean loss as a one-element tensor where it was computed (on a GPU not read
  // back, so no host sync: train_step reads the step's losses together); `saved_activation_bytes`,
  // if given, gets the bytes the forward left alive for backward.
  Tensor forward_backward_step(const data::DataLoader::Batch& batch, double* saved_activation_bytes = nullptr);

  // The values a step computes on the device, once read back.
  struct StepValues {
    std::int64_t step = 0;
    double loss = 0;       // global mean over the step's batch
    double grad_norm = 0;  // global, before clipping
  };
  // What one optimizer step reports to the log.
  struct StepOutput {
    // The losses and gradient norms stay where they were computed until a step that needs them
    // (reads_values: a log, validation, checkpoint or last step, every step under float16): it
    // reads those of every step since the previous read in one copy, so on a GPU the steps
    // between make the host wait for nothing. Oldest first, this step last; empty otherwise.
    std::vector<StepValues> values;
    double lr = 0;
    double data_seconds = 0;
    // Bytes the forward left alive for backward (the graph's saved tensors, logits, gathered root
    // unit), the largest over the micro-batches: what activation checkpointing trades.
    double saved_activation_bytes = 0;
    // The largest data-parallel rank's loss, on log steps with TensorBoard on (its
    // loss_metrics/global_max_loss); empty otherwise.
    std::optional<double> loss_max;
    // Float16: the loss scale the step ran with, and whether inf/NaN gradients skipped it.
    std::optional<double> loss_scale;
    bool skipped = false;
  };
  // One optimizer step (`step` is 1-based): the micro-batches, the global loss, grad-norm
  // clipping, AdamW, then FSDP's refresh and the converters' post-optimizer hooks. When it reads
  // values, throws a UserError (exit code 1) naming the first step with a non-finite loss or
  // gradient norm, before this step's optimizer update (so no checkpoint holds a diverged model).
  StepOutput train_step(std::int64_t step);

  // The training loop from the restored step to training.steps (or the seed checkpoint only).
  TrainResult train();

 private:
  Trainer(const config::JobConfig& cfg, const Plan& plan, const dist::World& world);
  void build_data();
  void build_checkpointer();
  void build_model();
  void build_optimizer_and_metrics();
  void restore();

  // After FSDP's shards changed: its gathered copies are refreshed, then the converters follow.
  void shards_loaded();
  void after_optimizer_step();
  std::int64_t float8_amax_all_reduces() const;
  // The state a save writes (collective over the TP group when tensor parallel), or, `for_load`,
  // the buffers a load fills (then apply_loaded_columns()).
  checkpoint::TrainingState current_state(std::int64_t step, bool for_load = false);
  void apply_loaded_columns();
  // The loss of one micro-batch's logits: cross-entropy, or over vocabulary shards (loss parallel).
  autograd::Variable loss_of(const autograd::Variable& logits, const Tensor& labels);
  // Tensor parallel: the gradients of TP-replicated parameters (norms) summed over the TP group.
  void reduce_tp_replicated_gradients();
  // Steps that log: every metrics.log_freq, the first and the last.
  bool is_log_step(std::int64_t step) const {
    return step % cfg_.metrics.log_freq == 0 || step == 1 || step == cfg_.training.steps;
  }
  // Steps that read the device's values back: logging, validation and checkpoint steps, and every
  // step under float16 (its loss scaler decides on the step's own gradients). The same on every
  // rank (the read carries the loss all-reduce).
  bool reads_values(std::int64_t step) const;
  // A step's values while still on the device: the micro-batches' losses [grad_accum] and the
  // global sum of squares of the gradients (f64 [1]).
  struct PendingValues {
    std::int64_t step = 0;
    Tensor losses, grad_sq;
  };
  // Reads every pending step's values and the device's error flags in one copy, averages the
  // losses over the data-parallel ranks (one all-reduce for all of them) and throws for a flagged
  // error or (unless float16 handles it) a non-finite value; `loss_max` gets the newest step's
  // largest rank loss.
  std::vector<StepValues> read_pending(std::optional<double>* loss_max);
  void save_checkpoint(std::int64_t step);

  const config::JobConfig& cfg_;
  const Plan& plan_;
  const dist::World& world_;
  std::unique_ptr<dist::DeviceMesh> mesh_;  // built after the set-up timeout is set
  FaultInjection fault_;
  // Float16's dynamic loss scaling (GradScaler's state; checkpointed in extra.grad_scaler).
  struct GradScalerState {
    double scale = 65536;
    std::int64_t good_steps = 0;  // steps since the scale last changed without inf/NaN gradients
    std::int64_t skipped = 0;     // steps skipped so far
  };
  std::optional<GradScalerState> scaler_;
  std::uint64_t seed_ = 0;
  Device device_ = Device::cpu();

  std::unique_ptr<data::Tokenizer> tokenizer_;
  std::unique_ptr<data::TokenWindows> windows_, val_windows_;
  std::unique_ptr<checkpoint::StateDictAdapter> hf_adapter_;
  std::unique_ptr<checkpoint::Checkpointer> ckpt_;
  // Where HF weights come from when there is no checkpoint to resume, as TorchTitan: the key
  // naming the folder, and the folder (initial_load_path, else model.hf_assets_path).
  std::optional<std::pair<std::string, std::string>> hf_source_;

  std::unique_ptr<llama3::Transformer> model_;
  ModelConverters converters_;
  std::unique_ptr<Profiler> profiler_;
  std::unique_ptr<MemorySnapshot> memory_snapshot_;
  std::unique_ptr<dist::Fsdp> fsdp_;
  dist::TpLayout tp_;           // how the TP plan split the parameters (size 1: no TP)
  bool loss_parallel_ = false;  // TP with parallelism.disable_loss_parallel = false
  std::vector<ColumnFixup> column_fixups_;  // a TP load's whole-row buffers
  std::vector<bool> in_grad_norm_;  // per params_: counted by this rank (TP replicas: rank 0 only)
  ParallelAccess parallel_;
  std::vector<autograd::Variable*> params_;
  std::vector<std::string> param_names_;  // FQNs, in the order of params_

  std::unique_ptr<optim::AdamW> optimizer_;
  optim::LrSchedule schedule_;
  std::unique_ptr<data::DataLoader> loader_;
  std::unique_ptr<MetricsLogger> metrics_;
  bool show_eta_ = false;
  bool tensorboard_ = false;  // metrics.enable_tensorboard
  double mem_total_ = 0;

  std::int64_t start_step_ = 1, lr_offset_ = 0;
  std::vector<PendingValues> pending_;

  // compile.enable (docs/cuda.md, "CUDA graphs"): after two eager steps the step's device work is
  // captured once and replayed every step after. The host then only stages the step's inputs
  // (the micro-batches into fixed device buffers, AdamW's scalars) and queues the replay. On a
  // backend without graphs (the CPU) the captured body runs again each step instead (emulated),
  // through the same inputs and outputs; eager: the capture was refused.
  enum class Compile { off, pending, graph, emulated, eager };
  Compile compile_ = Compile::off;
  std::int64_t capture_step_ = 0;
  std::unique_ptr<CapturedStep> graph_;
  std::vector<data::DataLoader::Batch> step_batches_;  // where every replay reads its micro-batches
  Tensor graph_losses_, graph_grad_sq_;                // where every replay leaves its values
  double graph_peak_bytes_ = 0;  // the captured step's peak allocation
  double saved_activation_bytes_ = 0;  // the last eager step's (a replay cannot measure its own)
  bool device_collectives_ = false;  // collectives on device tensors go to NCCL
  // Why this run's step cannot be captured ("" if it can).
  std::string compile_blocker() const;
  // The micro-batches' forward and backward; `batch_of(m)` gives micro-batch m. Returns the
  // losses [grad_accum] on the device; `out` (eager steps) gets the data time and activation bytes.
  Tensor forward_backward_micro_batches(const std::function<data::DataLoader::Batch(std::int64_t)>& batch_of,
                                        StepOutput* out);
  // The sum of squares of the gradients over the ranks that hold other elements (clipping's norm).
  std::function<void(Tensor&)> grad_sum_over_ranks();
  StepOutput captured_train_step(std::int64_t step);
  void captured_body();
};

// Builds a Trainer and runs it (apps/run_train.cpp's entry).
TrainResult train(const config::JobConfig& cfg, const Plan& plan, const dist::World& world);

}  // namespace titan::train
