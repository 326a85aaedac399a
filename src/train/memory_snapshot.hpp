#pragma once
// profiling.enable_memory_snapshot: what holds the training device's memory, as JSON (TorchTitan
// dumps torch.cuda.memory snapshots instead; those are pickles of PyTorch's caching allocator).
//
// With the key on, every Storage allocation and free is noted (core/memory_history.hpp) from the
// moment the model's shards are made. After every profiling.profile_freq-th step, and after the
// last step, each rank writes
//   {job.dump_folder}/{profiling.save_memory_snapshot_folder}/iteration_{step}/rank{r}_memory_snapshot.json
// holding
//   steps:  per step since the previous snapshot, the allocator's peak in-use and peak reserved bytes
//   blocks: every live block on the training device (bytes, the step that allocated it, 0 = set-up,
//           and its allocation order), largest first, with their total
// so a user sees what stays alive between steps (parameters, gradients, AdamW moments, cached
// gathers) and how high each step went.
#include <cstdint>
#include <string>
#include <vector>

#include "config/job_config.hpp"
#include "core/tensor.hpp"  // Device

namespace titan::train {

class MemorySnapshot {
 public:
  // Disabled (every call a no-op) unless cfg.profiling.enable_memory_snapshot. Construct it before
  // the first tensor the snapshot should see.
  MemorySnapshot(const config::JobConfig& cfg, int rank, Device device);
  ~MemorySnapshot();
  MemorySnapshot(const MemorySnapshot&) = delete;
  MemorySnapshot& operator=(const MemorySnapshot&) = delete;
  bool enabled() const { return enabled_; }

  void step_begin(std::int64_t step);
  // Reads this step's peaks (the trainer resets them at each step's start); writes a snapshot
  // when `step` is a multiple of profile_freq or `last`.
  void step_end(std::int64_t step, bool last);

 private:
  struct StepPeak {
    std::int64_t step;
    std::size_t peak, peak_reserved;
  };
  void write(std::int64_t step);

  bool enabled_ = false;
  int rank_ = 0;
  Device device_;
  std::int64_t freq_ = 1;
  std::string dir_;
  std::vector<StepPeak> peaks_;  // steps since the last snapshot
};

}  // namespace titan::train
