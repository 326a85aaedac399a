#pragma once
// The runtime view of schema.def: one KeyInfo per configuration key, with typed access to the
// JobConfig field it describes. The TOML loader, CLI, --help, --job.print_config, docs/config.md
// and validation all iterate this one table.
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/job_config.hpp"

namespace titan::config {

enum class Kind { Bool, Int, Float, String, Enum, List, OptInt, OptFloat, OptString, OptEnum };
enum class Support { Supported, NoEffect, Unsupported };

// A per-key constraint on the value, checked when the value is assigned (so errors can name where
// the value came from).
struct Check {
  enum class Type { None, Min, Greater, Range, OneOf, MinOr } type = Type::None;
  double lo = 0, hi = 0;              // Min: >= lo; Greater: > lo; Range: [lo, hi]; MinOr: >= lo or == hi
  std::vector<std::string> choices;   // OneOf
};

namespace chk {
Check none();
Check min(double lo);
Check greater(double lo);
Check range(double lo, double hi);
Check min_or(double lo, double exactly);
// A choice spelled "<N>" stands for any positive integer (one_of("default|always|never|<N>")).
Check one_of(std::string_view bar_separated);
}  // namespace chk
inline constexpr const char* kPositiveIntChoice = "<N>";

// Pointer to one typed field of a JobConfig.
using FieldRef = std::variant<bool*, std::int64_t*, double*, std::string*, std::vector<std::string>*,
                              std::optional<std::int64_t>*, std::optional<double>*,
                              std::optional<std::string>*>;

struct KeyInfo {
  std::string section;  // TOML table path, e.g. "quantize.linear.float8"
  std::string name;     // key inside the section, e.g. "filter_fqns"
  std::string full;     // section + "." + name: the CLI flag without "--"
  Kind kind;
  Support support;
  Check check;
  std::string help;
  FieldRef (*field)(JobConfig&);
};

// Every key, in schema order (sections in TorchTitan's order).
const std::vector<KeyInfo>& schema();
// Section paths in schema order.
const std::vector<std::string>& section_paths();
// Exact lookup of a canonical full key ("training.seq_len"); nullptr if there is none.
const KeyInfo* find_key(std::string_view full);

// Text from the command line, parsed according to the key's kind ("5", "true", "a,b", "none").
struct CliText {
  std::string text;
};
// A value as it arrives: typed from TOML, or CliText from the command line. A TOML value must
// have the key's type (a TOML string is not a number), except that a list key also takes one
// comma-separated string, as older TorchTitan configs wrote them.
using RawValue = std::variant<bool, std::int64_t, double, std::string, std::vector<std::string>, CliText>;

// Type-check, convert, range-check and store `raw` into `key`'s field; records `origin` in
// cfg.sources. Throws UserError naming the key, the origin, the expected type/values.
void assign(const KeyInfo& key, JobConfig& cfg, const RawValue& raw, const std::string& origin);

// Human/TOML-ish rendering of a field's current value: 8, 0.0008, "text", ["a", "b"], true,
// or "(unset)" for an unset optional.
std::string format_value(const KeyInfo& key, const JobConfig& cfg);
bool is_unset(const KeyInfo& key, const JobConfig& cfg);
bool equals_default(const KeyInfo& key, const JobConfig& cfg);

std::string_view kind_name(Kind kind);
// "an integer >= 1", "one of linear, sqrt, cosine", ... for errors and docs.
std::string describe_expected(const KeyInfo& key);

// The known full key an unknown one most likely meant: the same key name in another section
// ("training.warmup_steps" -> "lr_scheduler.warmup_steps"), else the closest spelling.
std::optional<std::string> suggest_key(std::string_view unknown_full);

// "did you mean" support: the candidate closest to `word` by edit distance, if close enough.
std::optional<std::string> closest_match(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace titan::config
