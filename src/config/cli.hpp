#pragma once
// The run_train command line (CLI11): every schema key as --section.key, plus the run options.
// Precedence is CLI > TOML (--job.config_file) > defaults.
#include <optional>
#include <string>
#include <vector>

#include "config/job_config.hpp"

namespace titan::config {

struct CommandLine {
  JobConfig config;
  bool dry_run = false;                   // validate, print the plan, exit 0
  std::optional<std::string> plan_json;   // also write the plan as JSON here
  std::optional<int> world_size;          // --world-size: plan (--dry-run) for N ranks without launching them
  bool show_help = false;                 // --help: `help_text` holds the usage
  bool config_reference = false;          // --config-reference: print docs/config.md
  std::string help_text;
};

// Parses arguments (without argv[0]). Accepted spellings: `--a.b v`, `--a.b=v`, hyphen or
// underscore anywhere in the key, `--flag` (true), `--no-a.b` / `--a.no_b` / `--a.b=false` (false),
// lists as one comma-separated value, legacy key names (with a warning in config.warnings).
// Throws UserError for anything it cannot accept.
CommandLine parse_command_line(const std::vector<std::string>& args);

}  // namespace titan::config
