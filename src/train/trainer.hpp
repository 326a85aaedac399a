#pragma once
// The training loop (DESIGN.md sections 6, 7, 9) for one process: build tokenizer, data, model,
// optimizer and schedule from the config; then per step run grad_accum micro-batches of
// forward + backward, clip the global gradient norm, step AdamW with the scheduled LR, and log.
#include <memory>

#include "config/job_config.hpp"
#include "dist/world.hpp"
#include "train/plan.hpp"

namespace titan::train {

struct TrainResult {
  std::int64_t steps = 0;
  double first_loss = 0, last_loss = 0;
};

// Throws UserError for configuration problems found while building (dataset, tokenizer, vocab),
// and a UserError with exit code 1 naming the step for a non-finite loss or gradient norm.
TrainResult train(const config::JobConfig& cfg, const Plan& plan, const dist::World& world);

}  // namespace titan::train
