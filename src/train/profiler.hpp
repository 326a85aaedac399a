#pragma once
// profiling.enable_profiling: TorchTitan's profiler schedule and trace layout on top of the core
// tracer (core/trace.hpp).
//
// Schedule (torch.profiler.schedule(wait = profile_freq - warmup - active, warmup, active), as
// TorchTitan builds it): training steps come in cycles of profile_freq; in each cycle the last
// `profiler_active` steps are recorded, after `profiler_warmup` warm-up steps (not recorded) and
// the wait steps before them. The cycle ending at step s (s a multiple of profile_freq) is written
// after step s, per rank, to
//   {job.dump_folder}/{profiling.save_traces_folder}/iteration_{s}/rank{r}_trace.json
// A cycle cut short by the end of training is written after the last step, as torch's profiler
// does when it exits, named after that step; a cycle that recorded nothing writes nothing.
// Cycles follow the absolute step number, so a resumed run records the same steps a fresh one would.
//
// Spans (category: name): step: train_step (args.step), data: data_loading, forward/backward: one
// per micro-batch, module: "<Type> <fqn>" for every module forward (forward pre/post hooks),
// module_backward: the same modules' backward (backward pre/post hooks), attention: the attention
// op and its backward, gemm: the op API's GEMMs, comm: every collective (args.bytes) and its wait,
// optimizer: clip + AdamW step, and on a GPU run every span again on thread "device" (tid
// 1000000) as the GPU ran it (CUDA events on the compute stream),
// checkpoint: checkpoint_save, validation: validate.
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/job_config.hpp"
#include "core/tensor.hpp"

namespace titan::nn {
class Module;
}

namespace titan::train {

class Profiler {
 public:
  enum class Action { none, warmup, record };
  // Where step `step` (1-based) falls in the schedule.
  static Action action(std::int64_t step, std::int64_t freq, std::int64_t warmup, std::int64_t active);

  // Disabled (every call a no-op) unless cfg.profiling.enable_profiling. On a `device` whose
  // backend has timing markers (CUDA), every span also gets a GPU twin (core/trace.hpp).
  Profiler(const config::JobConfig& cfg, int rank, Device device = Device::cpu());
  ~Profiler();
  bool enabled() const { return enabled_; }

  // Module forward spans for every module under `root` (forward pre/post hooks). Register before
  // FSDP's hooks so that a unit's span holds its all-gather.
  void attach(nn::Module& root);

  // Around each training step: the recorded steps turn the tracer on; after the last step of a
  // cycle the cycle's trace is written.
  void step_begin(std::int64_t step);
  void step_end(std::int64_t step);
  // After the loop: writes a cycle cut short by the end of training.
  void finish(std::int64_t last_step);

  // The folder traces go to ({dump_folder}/{save_traces_folder}).
  const std::string& trace_dir() const { return trace_dir_; }

 private:
  void write(std::int64_t step);

  bool enabled_ = false;
  bool device_timer_ = false;  // GPU spans are on (trace::set_device_timer)
  int rank_ = 0;
  std::int64_t freq_ = 1, warmup_ = 0, active_ = 1;
  std::string trace_dir_;
  std::vector<std::int64_t> recorded_;  // steps recorded in the current cycle
  double step_start_us_ = 0;
  // Module forward spans in flight: start times (negative: started while not recording).
  std::unordered_map<const nn::Module*, std::vector<double>> open_;
  std::unordered_map<const nn::Module*, std::vector<double>> open_backward_;  // the same for backward
};

}  // namespace titan::train
