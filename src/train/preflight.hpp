#pragma once
// Checks made before anything large is allocated or read, shared by a run and `--dry-run`: the
// tokenizer and dataset the config names, and the plan's memory against what the machine has.
#include <memory>
#include <string>
#include <vector>

#include "config/job_config.hpp"
#include "core/device.hpp"
#include "data/tokenizer.hpp"
#include "train/plan.hpp"

namespace titan::train {

// Loads model.tokenizer from model.hf_assets_path and checks that the model's vocabulary holds it.
// Throws UserError naming the path or the two sizes.
std::unique_ptr<data::Tokenizer> load_training_tokenizer(const config::JobConfig& cfg, const Plan& plan);

// What `--dry-run` verifies of the inputs a run would open first: the tokenizer (loaded) and the
// training and validation datasets (resolved). One line per problem, empty when all are there.
std::vector<std::string> input_problems(const config::JobConfig& cfg, const Plan& plan);

// The plan's per-rank memory against the memory this node has: host memory (MemAvailable, or the
// cgroup's limit when lower) shared by the node's `ranks_on_node` ranks, or the GPU's memory when
// the run trains on one. `fits` is false when the estimate exceeds it; `text` says both figures.
struct MemoryFit {
  bool fits = true;
  std::string text;
};
MemoryFit check_memory(const Plan& plan, const DeviceInfo& devices, int ranks_on_node);

}  // namespace titan::train
