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
// them, so a checkpoint from any (replicate x shard x tp) mesh loads into any other. Every piece is
// a range of whole rows of the global tensor: the trainer hands a tensor-parallel parameter split
// on its columns over as whole rows (gathered over the TP group, written by TP rank 0).
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

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

// metadata.json, validated: parse_metadata checks every field against the schema below (type
// and range) before anything uses it; a wrong one is a UserError naming the file, the field, the
// value (cut, escaped) and the fix. docs/checkpoint.md lists the rules.
struct FileInfo {
  std::string xxh3;  // 16 hex digits, the whole file's XXH3-64
  std::int64_t bytes = 0;
};
struct PieceInfo {
  std::string file;  // a key of Metadata::files
  std::int64_t row_begin = 0, row_end = 0;
};
struct TensorInfo {
  Shape shape;        // global
  std::string dtype;  // "F32", "BF16" or "F16": the checkpoint's dtype
  std::vector<PieceInfo> pieces;  // sorted by row_begin, not overlapping
};
struct Metadata {
  std::int64_t version = 1;
  TrainProgress progress;
  bool model_only = false;
  std::string dtype = "float32";  // float32, or export_dtype for a model-only save
  std::int64_t mesh_world = 1, mesh_replicate = 1, mesh_shard = 1, mesh_tp = 1;
  nlohmann::json model = nlohmann::json::object();  // flavor and shape
  nlohmann::json data = nlohmann::json::object();   // seq_len, tokenizer, dataset, num_tokens (empty: older saves)
  nlohmann::json extra = nlohmann::json::object();  // float8 delayed-scaling histories
  std::string config;                               // the resolved config, TOML
  std::map<std::string, FileInfo> files;
  std::map<std::string, TensorInfo> tensors;
};
// Parses and validates metadata.json text; `path` names it in messages. The fuzz target's entry.
Metadata parse_metadata(std::string_view text, const std::string& path);
// `dir`/metadata.json, read and validated.
Metadata read_metadata(const std::string& dir);
// The chunk checksums a rank file keeps for one tensor piece of `piece_rows` rows
// ("<rows per chunk>:<hash>,<hash>,..."): rows per chunk (>= 1, at most piece_rows) and one
// 16-hex-digit hash per chunk. UserError naming `file` and `tensor` for a malformed list.
std::pair<std::int64_t, std::vector<std::string>> parse_chunk_checksums(const std::string& spec, std::int64_t piece_rows,
                                                                        const std::string& file, const std::string& tensor);

// What the Checkpointer is told of the run: the [checkpoint] keys it acts on (same names and
// defaults as the config's), resolved by its user (train/checkpoint_options.hpp builds them from a
// JobConfig), so that checkpoint/ does not depend on config/.
struct CheckpointOptions {
  std::string folder = "./outputs/checkpoint";  // {job.dump_folder}/{checkpoint.folder}
  bool enable = false;
  bool load_only = false;
  std::int64_t interval = 500;
  bool enable_first_step_checkpoint = false;
  bool async = false;  // async_mode other than "disabled"
  std::int64_t keep_latest_k = 10;
  std::int64_t load_step = -1;
  std::optional<std::string> initial_load_path;
  bool initial_load_model_only = true;
  bool initial_load_in_hf = false;
  bool last_save_model_only = true;
  std::string export_dtype = "float32";  // float16 | bfloat16 | float32
  std::vector<std::string> exclude_from_loading;
  FaultInjection fault;  // debug.fault's kill_in_save, for the crash-safety tests
};

class Checkpointer {
 public:
  // `model_desc` (flavor and shape) is recorded and checked on load; `config_toml` is the
  // resolved config, recorded for reference. A training run's Checkpointer (`owns_folder`) has
  // rank 0 remove step-*.tmp folders left by a crash; a reader (a converter) leaves them alone.
  Checkpointer(CheckpointOptions options, dist::DeviceMesh& mesh, nlohmann::json model_desc, std::string config_toml,
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

  // What load() will load, decided and checked without touching the model: the newest complete
  // *full* checkpoint of the run's folder (or load_step), newer model-only ones (a starting point
  // for a new run, not a resume) and malformed folders skipped with a log line; else
  // initial_load_path. Its metadata.json is validated, and the model (flavor, shape), the seed
  // and the data (seq_len, tokenizer, dataset) are compared with this run's, so a mismatch is
  // one line before anything is allocated. load() calls it when the trainer has not. No
  // collectives (one rank's failure must reach the agreement step, see train/trainer.cpp).
  struct Selection {
    std::string dir;
    Metadata meta;
    bool model_only = false;  // only the model is taken (a model-only save, or initial_load_model_only)
    bool own = false;         // from the run's own folder (not initial_load_path)
  };
  const std::optional<Selection>& select();
  // The run's data (seq_len, tokenizer fingerprint, dataset, num_tokens): recorded in every
  // save's metadata.json and compared on load when the data position is restored.
  void set_data_description(nlohmann::json data) { data_desc_ = std::move(data); }

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
  std::optional<Loaded> load_from(const Selection& sel, TrainingState& state);
  std::optional<Selection> choose();
  void check_compatible(const std::string& dir, const Metadata& meta, bool model_only) const;

  const CheckpointOptions opts_;
  dist::DeviceMesh& mesh_;
  nlohmann::json model_desc_;
  nlohmann::json data_desc_ = nlohmann::json::object();
  std::string config_toml_;
  bool owns_folder_ = true;
  bool selected_ = false;
  std::optional<Selection> selection_;
  std::string folder_;
  bool async_;
  FaultInjection fault_;  // kill_in_save, for the crash-safety tests
  std::unique_ptr<Pending> pending_;
  SaveTiming timing_;
};

// Complete checkpoints (folders step-N holding metadata.json) under `folder`, by step. A folder
// whose name is not a canonical step number (step-007, step-99999999999999999999) is left out;
// `ignored`, when given, receives one line per such folder.
std::map<std::int64_t, std::string> complete_checkpoints(const std::string& folder,
                                                         std::vector<std::string>* ignored = nullptr);

}  // namespace titan::checkpoint
