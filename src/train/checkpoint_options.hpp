#pragma once
// The Checkpointer's options from a JobConfig: checkpoint/ knows tensors and files, not the
// config (DESIGN.md section 1), so its users translate the [checkpoint] keys here.
#include "checkpoint/checkpointer.hpp"
#include "config/job_config.hpp"

namespace titan::train {

checkpoint::CheckpointOptions checkpoint_options(const config::JobConfig& cfg);

}  // namespace titan::train
