#pragma once
// Per-step metrics (DESIGN.md section 9): the console line and {dump_folder}/metrics.jsonl.
//   tps    tokens per second per rank (global tokens of the step / ranks / step time)
//   tflops flops_per_token * tps / 1e12, flops_per_token = 6 (params - embedding) + 12 L H D S
//   mfu    100 * flops_per_token * tps / peak, peak = the device's peak (CPU: calibrated GEMM peak,
//          train/cpu_gemm.hpp); never above 100%: a step faster than the peak raises it
//   data%  share of the step spent building batches
// With metrics.enable_tensorboard the same figures also go to TensorBoard event files
// (train/tensorboard.hpp) under TorchTitan's tags.
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "dist/process_group.hpp"

namespace titan::train {

class TensorBoardWriter;

// Bytes of training state one rank holds (f32 parameters or their shards, gradients, AdamW moments).
struct StateBytes {
  std::int64_t params = 0, grads = 0, optimizer = 0;
  std::int64_t total() const { return params + grads + optimizer; }
};

struct StepMetrics {
  std::int64_t step = 0;
  double loss = 0, grad_norm = 0, lr = 0;
  std::optional<double> loss_max;   // the largest data-parallel rank's loss (TensorBoard only)
  std::optional<double> loss_scale;  // float16's dynamic loss scale this step ran with
  bool step_skipped = false;         // inf/NaN gradients: the optimizer step was skipped
  double step_seconds = 0, data_seconds = 0;
  std::int64_t tokens = 0;          // tokens this rank processed in the step
  double memory_peak_gib = 0, memory_pct = 0;
  double memory_reserved_gib = 0, memory_reserved_pct = 0;  // the allocator's reserved bytes after the step
  double saved_activation_gib = 0;  // what the forward left alive for backward (largest micro-batch)
  std::optional<double> eta_seconds;  // shown when stdout is a terminal
  dist::CommStats comm;               // this rank's collectives in the step
  std::int64_t float8_amax_all_reduces = 0;  // FSDP float8 all-gather scale reductions in the step
  double host_syncs = 0;  // times the host waited for the device per step, averaged since the last log (0 on the CPU)
  // FSDP unit all-gathers in the step on the shard group, and on the hpZ group (reshard_after_forward = N).
  std::int64_t fsdp_gathers_shard = 0, fsdp_gathers_hpz = 0;
  StateBytes state;
};

class MetricsLogger {
 public:
  // `peak_flops`: per-rank peak FLOP/s; `jsonl_path` empty disables the file; `tensorboard_folder`
  // non-empty writes TensorBoard event files there.
  MetricsLogger(double flops_per_token, double peak_flops, const std::string& jsonl_path,
                const std::string& tensorboard_folder = {});
  ~MetricsLogger();
  // Logs one step through spdlog and appends it to metrics.jsonl.
  void log(const StepMetrics& m);
  void log_validation(std::int64_t step, double loss, std::int64_t batches);
  // A resume from step `step`: drops the rows of later steps (they are trained again, and a
  // plot must not show two runs of one step). Rows that are not JSON objects with a step stay.
  void truncate_after(std::int64_t step);

 private:
  // Flushes a row; a failed write (a full disk) is one line naming the file and the reason.
  void flush_row();
  double flops_per_token_, peak_flops_;
  std::string jsonl_path_;
  std::ofstream jsonl_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
};

// The terminal progress bar under the log (rank 0, stderr a terminal), e.g.
//   "[##########----------]  50/100  50%  loss 5.2314  1.2 steps/s  ETA 0:00:41"
// `step` of `total` done; this run started at step `first` and has run `elapsed` seconds (a
// resumed run's rate counts only its own steps).
// Seconds left at `step` of `total` for a run that started at step `first` `elapsed` seconds ago.
double eta_seconds(std::int64_t step, std::int64_t first, std::int64_t total, double elapsed);
std::string progress_line(std::int64_t step, std::int64_t first, std::int64_t total, double elapsed, double loss,
                          int width = 30);

// Flushes `out`; a failed write (a full disk) is a UserError naming `path` and the reason.
void flush_or_throw(std::ostream& out, const std::string& path);

// Physical memory of this machine in bytes.
double physical_memory_bytes();

}  // namespace titan::train
