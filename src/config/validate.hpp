#pragma once
// Rules that involve more than one key (single-key types and ranges are checked on assignment).
#include "config/job_config.hpp"

namespace titan::config {

// Throws UserError for an impossible combination; appends soft problems to cfg.warnings.
// Rules that need the world size (parallel degrees, batch division) live in dist/parallel_dims.
void validate(JobConfig& cfg);

// Where a key's value came from: "file.toml:12", "--training.steps", or "default".
std::string source_of(const JobConfig& cfg, const std::string& full_key);

}  // namespace titan::config
