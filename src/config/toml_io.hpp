#pragma once
// TOML in and out for JobConfig, through toml++.
#include <string>
#include <string_view>

#include "config/job_config.hpp"

namespace titan::config {

// Reads a TOML config file and assigns every key it sets (legacy spellings accepted with a
// warning, ignored sections warned about). Throws UserError on an unreadable file, a syntax
// error (file:line:column), an unknown key (with a suggestion) or a bad value.
void apply_toml_file(JobConfig& cfg, const std::string& path);
// Same for TOML text; `source_name` stands in for the file name in messages.
void apply_toml_text(JobConfig& cfg, std::string_view text, const std::string& source_name);

// The whole resolved config as TOML that apply_toml_text reads back to the same config.
// Unset optional keys are left out (unset is their default); job.config_file is left out.
std::string to_toml(const JobConfig& cfg);

}  // namespace titan::config
