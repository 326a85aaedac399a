#pragma once
// Legacy spellings from older TorchTitan configs (DESIGN.md section 2) and sections that name
// TorchTitan features titan.cpp does not have. One table each, used by both the TOML loader and the CLI.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/schema.hpp"

namespace titan::config {

// Lower-level spelling normalization shared by TOML and CLI: hyphens are underscores.
std::string normalize_key(std::string_view key);

struct CanonicalKey {
  std::string key;                         // canonical full key (or section path)
  std::optional<std::string> deprecation;  // one-line warning when a legacy spelling was used
};

// Maps a normalized full key ("float8.filter_fqns", "training.batch_size") to its canonical
// spelling. Unknown keys come back unchanged.
CanonicalKey canonical_key(std::string_view full);
// Same for a section path ("float8" -> "quantize.linear.float8").
CanonicalKey canonical_section(std::string_view path);

// Value rewrites that go with legacy spellings: converter "float8" -> "quantize.linear.float8",
// model.tokenizer_path naming a file -> its folder. `original_key` is the key as the user wrote it.
void apply_value_aliases(const KeyInfo& key, std::string_view original_key, RawValue& raw,
                         std::vector<std::string>& warnings);

// TorchTitan sections for features titan.cpp does not have; they are read and ignored with a warning.
bool is_ignored_section(std::string_view path);

}  // namespace titan::config
