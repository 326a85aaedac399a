#pragma once
// TorchTitan's keys that are not schema keys (DESIGN.md section 2): every spelling its TOML-era
// JobConfig ever had (torchtrain/config_manager.py, torchtitan/config_manager.py,
// torchtitan/config/job_config.py up to #2386) is either a schema key (schema.def) or a row of the
// one compatibility table here: renamed (loads under its new name with a deprecation warning),
// or ignored (one warning saying what it did in TorchTitan and why nothing here needs it; values
// that would change what titan.cpp computes are errors instead). Sections TorchTitan had for
// features titan.cpp lacks are ignored whole. Used by the TOML loader, the CLI and the docs.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/schema.hpp"

namespace titan::config {

// Lower-level spelling normalization shared by TOML and CLI: hyphens are underscores.
std::string normalize_key(std::string_view key);

enum class CompatHow {
  Rename,            // the same setting under a new name (`to`)
  Negate,            // a boolean that became its negation (`to`)
  EnablesConverter,  // a boolean (or TorchTitan's "" = off / any other string = on) that became the converter `to`
  Ignore,            // accepted with a warning; values outside `harmless` are errors
};

struct CompatKey {
  std::string_view from;  // the full key as TorchTitan spelled it (underscores)
  CompatHow how;
  std::string_view to;
  std::string_view since, until;  // first and last TorchTitan commit date (YYYY-MM) with this spelling
  // Ignore: what the key does in TorchTitan and why it has no effect here (one clause each).
  std::string_view note = {};
  // Ignore: the values that mean what titan.cpp does anyway, bar-separated ("steps|step"); any
  // other value is an error. "*" = every value only warns.
  std::string_view harmless = "*";
};

struct CompatSection {
  std::string_view from;
  std::string_view to;  // empty: the whole section is ignored with one warning
  std::string_view since, until;
  std::string_view note;
};

const std::vector<CompatKey>& compat_keys();
const std::vector<CompatSection>& compat_sections();
const CompatKey* find_compat_key(std::string_view full);

struct CanonicalKey {
  std::string key;                         // canonical full key (or section path)
  std::optional<std::string> deprecation;  // one-line warning when a legacy spelling was used
};

// Maps a normalized full key ("float8.filter_fqns", "training.batch_size") to its canonical
// spelling (Rename and Negate rows, renamed sections). Other keys come back unchanged.
CanonicalKey canonical_key(std::string_view full);
// Same for a section path ("float8" -> "quantize.linear.float8").
CanonicalKey canonical_section(std::string_view path);

// Value rewrites that go with legacy spellings: converter "float8" -> "quantize.linear.float8",
// model.tokenizer_path naming a file -> its folder, a negated boolean flipped. `original_key` is
// the key as the user wrote it.
void apply_value_aliases(const KeyInfo& key, std::string_view original_key, RawValue& raw,
                         std::vector<std::string>& warnings);

// An Ignore row given `value` (its text: a string's contents, true/false, a number) at `origin`:
// the warning to log, or a UserError when the value is not harmless.
std::string ignored_key_warning(const CompatKey& key, std::string_view value, const std::string& origin);
// An EnablesConverter row's value read as on/off (TorchTitan wrote both booleans and strings).
bool converter_flag_on(std::string_view value);
// Adds converters enabled by legacy flags to cfg.model.converters (once each, after the others).
void add_legacy_converters(JobConfig& cfg, const std::vector<std::string>& converters);

// TorchTitan sections for features titan.cpp does not have: the note for the warning, or nullptr.
const CompatSection* ignored_section(std::string_view path);
// A section path some compatibility row lives under ("experimental"), so the loader walks into it.
bool is_compat_section(std::string_view path);

}  // namespace titan::config
