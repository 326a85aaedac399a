#pragma once
// Sharded checkpoints (DESIGN.md section 8): save, resume on any mesh, async writes, crash safety.
//
// Layout of one checkpoint, {dump_folder}/{checkpoint.folder}/step-{N}/:
//   rank-{r}.safetensors   the rows this rank owns of every tensor of the state (f32), one file
//                          per rank of replicate index 0 (replicas hold the same rows); each
//                          tensor's global shape and row range are in the file's __metadata__
//   metadata.json          step, tokens seen, data cursor, optimizer step, seed, mesh, model
//                          shape, resolved config, float8 state, every tensor's global shape and
//                          the files/rows that hold it, and each file's size and xxHash (XXH3-64)
// A save is written into step-{N}.tmp/, every file fsynced; rank 0 writes metadata.json last and
// renames the folder once all ranks have finished. A folder without metadata.json (a crash in the
// middle of a save) is never loaded, and is removed when the next run starts.
//
// Loading reads, on each rank, exactly the rows it owns of every tensor from whichever files hold
// them, so a checkpoint from any (replicate x shard) mesh loads into any other.
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config/job_config.hpp"
#include "core/fault.hpp"
#include "dist/process_group.hpp"

namespace titan::checkpoint {

// One tensor of the training state as this rank holds it: rows [row_begin, row_end) along dim 0
// of a tensor whose global shape is `global_shape` (all rows when it is not sharded).
struct ShardedTensor {
  std::string name;  // "model.layers.0.attention.wq.weight", "optimizer.exp_avg.<fqn>"
  Shape global_shape;
  std::int64_t row_begin = 0, row_end = 0;
  Tensor rows;  // f32 view of the local rows, [row_end - row_begin, ...]
};

struct TrainProgress {
  std::int64_t step = 0;              // optimizer steps taken
  std::int64_t tokens_seen = 0;
  std::int64_t windows_consumed = 0;  // the data cursor (token windows consumed globally)
  std::int64_t optimizer_steps = 0;   // AdamW's step count (bias correction)
  std::int64_t lr_scheduler_steps = 0;  // steps the LR schedule has advanced
  std::uint64_t seed = 0;             // the data order and init seed
};

// What a save writes and a load fills.
struct TrainingState {
  std::vector<ShardedTensor> model, optimizer;
  TrainProgress progress;
  nlohmann::json extra = nlohmann::json::object();  // float8 delayed-scaling histories, ...
};

// How long the last save took (logged and measured for docs/performance.md).
struct SaveTiming {
  double stall_seconds = 0;  // training was blocked (sync: the whole save; async: the snapshot)
  double write_seconds = 0;  // this rank's file write + fsync
  std::int64_t bytes = 0;    // this rank's file
};

class Checkpointer {
 public:
  // `model_desc` (flavor and shape) is recorded and checked on load; `config_toml` is the
  // resolved config, recorded for reference. A training run's Checkpointer (`owns_folder`) has
  // rank 0 remove step-*.tmp folders left by a crash; a reader (a converter) leaves them alone.
  Checkpointer(const config::JobConfig& cfg, dist::DeviceMesh& mesh, nlohmann::json model_desc, std::string config_toml,
               bool owns_folder = true);
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // The run's own latest complete checkpoint (or checkpoint.load_step), else
  // checkpoint.initial_load_path (unless it is HF safetensors: initial_load_in_hf); fills `state` (minus exclude_from_loading) and returns what was
  // loaded, or nullopt to start fresh. Throws UserError naming the folder, file and tensor for a
  // corrupt, truncated, incomplete or mismatched checkpoint.
  struct Loaded {
    std::string path;
    TrainProgress progress;
    bool model_only = false;
    std::vector<std::string> skipped;  // state not loaded (excluded, or not in a model-only checkpoint)
  };
  std::optional<Loaded> load(TrainingState& state);

  // Whether step `step` saves (interval, first step, the last step).
  bool due(std::int64_t step, std::int64_t last_step) const;
  // Saves `state` as step `step` (model only, in export_dtype, when `last` and
  // last_save_model_only). Async: snapshots the local tensors and writes in the background;
  // a save still in flight is finished first (never two at once).
  void save(std::int64_t step, const TrainingState& state, bool last);
  // Async: completes a save every rank has finished writing (one tiny all-reduce while one is
  // pending). Call at the same point of every step on every rank.
  void poll();
  // Finishes the save in flight, if any.
  void wait();

  const SaveTiming& last_timing() const { return timing_; }
  std::string folder() const { return folder_; }

 private:
  struct Pending;
  void finalize(Pending& p);
  std::optional<Loaded> load_from(const std::string& dir, TrainingState& state, bool model_only_requested);

  const config::JobConfig& cfg_;
  dist::DeviceMesh& mesh_;
  nlohmann::json model_desc_;
  std::string config_toml_;
  std::string folder_;
  bool async_;
  FaultInjection fault_;  // kill_in_save, for the crash-safety tests
  std::unique_ptr<Pending> pending_;
  SaveTiming timing_;
};

// Complete checkpoints (folders step-N holding metadata.json) under `folder`, by step.
std::map<std::int64_t, std::string> complete_checkpoints(const std::string& folder);

}  // namespace titan::checkpoint
