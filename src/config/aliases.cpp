#include "config/aliases.hpp"

#include <algorithm>
#include <filesystem>

namespace titan::config {

namespace {

struct Rename {
  std::string_view from, to;
};

// Whole sections renamed by TorchTitan.
constexpr Rename kSectionRenames[] = {
    {"float8", "quantize.linear.float8"},
};

// Individual keys renamed or moved by TorchTitan.
constexpr Rename kKeyRenames[] = {
    {"training.batch_size", "training.local_batch_size"},
    {"training.compile", "compile.enable"},
    {"training.seed", "debug.seed"},
    {"training.deterministic", "debug.deterministic"},
    {"checkpoint.enable_checkpoint", "checkpoint.enable"},
    {"checkpoint.model_weights_only", "checkpoint.last_save_model_only"},
    {"lr_scheduler.lr_min", "lr_scheduler.min_lr_factor"},
    {"model.tokenizer_path", "model.hf_assets_path"},
    {"job.print_args", "job.print_config"},
    {"validation.enabled", "validation.enable"},
};

constexpr std::string_view kIgnoredSections[] = {
    "experimental", "fault_tolerance", "memory_estimation", "mx", "liger_kernel",
    "quantize.linear.mx", "quantize.grouped_mm",
};

bool has_prefix(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix &&
         (s.size() == prefix.size() || s[prefix.size()] == '.');
}

}  // namespace

std::string normalize_key(std::string_view key) {
  std::string out(key);
  std::replace(out.begin(), out.end(), '-', '_');
  return out;
}

CanonicalKey canonical_section(std::string_view path) {
  for (const auto& r : kSectionRenames) {
    if (has_prefix(path, r.from)) {
      std::string to = std::string(r.to) + std::string(path.substr(r.from.size()));
      return {to, "[" + std::string(r.from) + "] is deprecated; use [" + std::string(r.to) + "]"};
    }
  }
  return {std::string(path), std::nullopt};
}

CanonicalKey canonical_key(std::string_view full) {
  CanonicalKey out = canonical_section(full);
  if (out.deprecation) {
    out.deprecation = "'" + std::string(full) + "' is deprecated; use '" + out.key + "'";
    return out;
  }
  for (const auto& r : kKeyRenames) {
    if (full == r.from)
      return {std::string(r.to), "'" + std::string(r.from) + "' is deprecated; use '" + std::string(r.to) + "'"};
  }
  return out;
}

void apply_value_aliases(const KeyInfo& key, std::string_view original_key, RawValue& raw,
                         std::vector<std::string>& warnings) {
  if (key.full == "model.converters") {
    auto rename = [&](std::string& item) {
      if (item == "float8") {
        warnings.push_back("converter \"float8\" is deprecated; use \"quantize.linear.float8\"");
        item = "quantize.linear.float8";
      }
    };
    if (auto* list = std::get_if<std::vector<std::string>>(&raw)) {
      for (auto& item : *list) rename(item);
    } else if (std::string* text = std::holds_alternative<CliText>(raw) ? &std::get<CliText>(raw).text
                                                                         : std::get_if<std::string>(&raw)) {
      // A comma-separated string: rewrite item by item.
      std::string out, item;
      for (size_t i = 0; i <= text->size(); ++i) {
        if (i == text->size() || (*text)[i] == ',') {
          rename(item);
          out += (out.empty() ? "" : ",") + item;
          item.clear();
        } else if (!std::isspace(static_cast<unsigned char>((*text)[i]))) {
          item += (*text)[i];
        }
      }
      *text = out;
    }
  }
  if (key.full == "model.hf_assets_path" && original_key == "model.tokenizer_path") {
    // tokenizer_path named the tokenizer file itself; hf_assets_path names the folder holding it.
    std::string* text = std::holds_alternative<CliText>(raw) ? &std::get<CliText>(raw).text : std::get_if<std::string>(&raw);
    if (text) {
      std::filesystem::path p(*text);
      if (p.has_extension()) *text = p.parent_path().empty() ? "." : p.parent_path().string();
    }
  }
}

bool is_ignored_section(std::string_view path) {
  return std::any_of(std::begin(kIgnoredSections), std::end(kIgnoredSections),
                     [&](std::string_view s) { return has_prefix(path, s); });
}

}  // namespace titan::config
