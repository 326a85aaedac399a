#include "config/toml_io.hpp"

#include <toml++/toml.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "config/aliases.hpp"
#include "config/schema.hpp"
#include "core/errors.hpp"

namespace titan::config {

namespace {

bool is_known_section_or_parent(const std::string& path) {
  for (const auto& s : section_paths())
    if (s == path || (s.size() > path.size() && s.compare(0, path.size(), path) == 0 && s[path.size()] == '.'))
      return true;
  return false;
}

std::string node_origin(const std::string& source, const toml::node& node) {
  const auto& where = node.source().begin;
  return source + ":" + std::to_string(where.line);
}

std::string toml_type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    default: return "value";
  }
}

// Converts a TOML value node to a RawValue; arrays must hold strings only.
RawValue raw_from_node(const toml::node& node, const KeyInfo& key, const std::string& origin) {
  if (auto v = node.value_exact<bool>()) return *v;
  if (auto v = node.value_exact<std::int64_t>()) return *v;
  if (auto v = node.value_exact<double>()) return *v;
  if (auto v = node.value_exact<std::string>()) return *v;
  if (const toml::array* arr = node.as_array()) {
    std::vector<std::string> items;
    for (const auto& el : *arr) {
      auto s = el.value_exact<std::string>();
      if (!s)
        throw UserError("config: " + key.full + " (" + origin + ") must be " + describe_expected(key) +
                        ", got an array holding a " + toml_type_name(el.type()));
      items.push_back(*s);
    }
    return items;
  }
  throw UserError("config: " + key.full + " (" + origin + ") must be " + describe_expected(key) +
                  ", got a TOML " + toml_type_name(node.type()));
}

// A scalar's text for the compatibility table's checks: a string's contents, true/false, a number;
// anything else as TOML writes it.
std::string node_text(const toml::node& node) {
  if (auto s = node.value<std::string>(); s && node.is_string()) return *s;
  if (auto b = node.as_boolean()) return b->get() ? "true" : "false";
  if (auto i = node.as_integer()) return std::to_string(i->get());
  std::ostringstream out;
  if (auto f = node.as_floating_point()) out << f->get();
  else if (auto a = node.as_array()) out << *a;
  else if (auto t = node.as_table()) out << *t;
  return printable(out.str(), 80);
}

// What one file set, per canonical key: the spelling and place, and the value, to catch a legacy
// name and its new name both given with different values.
struct SetBy {
  std::string written, origin, value;
};

void walk_table(JobConfig& cfg, const toml::table& table, const std::string& prefix, const std::string& source,
                std::set<std::string>& warned_sections, std::map<std::string, SetBy>& set_by,
                std::vector<std::string>& converters) {
  for (const auto& [k, node] : table) {
    const std::string written = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    const std::string path = normalize_key(written);
    const std::string origin = node_origin(source, node);

    if (const toml::table* sub = node.as_table()) {
      CanonicalKey sec = canonical_section(path);
      if (const CompatSection* ignored = ignored_section(sec.key)) {
        if (warned_sections.insert(std::string(ignored->from)).second)
          cfg.warnings.push_back("[" + written + "] (" + origin + ") is a TorchTitan section (" +
                                 std::string(ignored->since) + " to " + std::string(ignored->until) + ") for " +
                                 std::string(ignored->note) + "; ignored");
        continue;
      }
      if (!is_known_section_or_parent(sec.key) && !is_compat_section(sec.key)) {
        std::string msg = "config: unknown section [" + printable(written) + "] (" + origin + ")";
        if (auto near = closest_match(sec.key, section_paths())) msg += "; did you mean [" + *near + "]?";
        throw UserError(msg);
      }
      if (sec.deprecation && warned_sections.insert(path).second)
        cfg.warnings.push_back(*sec.deprecation + " (" + origin + ")");
      walk_table(cfg, *sub, written, source, warned_sections, set_by, converters);
      continue;
    }

    if (const CompatKey* compat = find_compat_key(path)) {
      if (compat->how == CompatHow::Ignore) {
        cfg.warnings.push_back(ignored_key_warning(*compat, node_text(node), origin));
        continue;
      }
      if (compat->how == CompatHow::EnablesConverter) {
        if (converter_flag_on(node_text(node))) converters.emplace_back(compat->to);
        cfg.warnings.push_back("'" + written + "' (" + origin + ") is deprecated (TorchTitan " + std::string(compat->since) +
                               " to " + std::string(compat->until) + "); list \"" + std::string(compat->to) +
                               "\" in model.converters");
        continue;
      }
    }
    CanonicalKey canon = canonical_key(path);
    const KeyInfo* key = find_key(canon.key);
    if (!key) {
      std::string msg = "config: unknown key '" + printable(written) + "' (" + origin + ")";
      if (auto near = suggest_key(canon.key)) msg += "; did you mean '" + *near + "'?";
      throw UserError(msg + " (run_train --help lists every key)");
    }
    // Legacy section renames were warned about once at the section header.
    if (canon.deprecation && canonical_section(path).key == path)
      cfg.warnings.push_back(*canon.deprecation + " (" + origin + ")");
    RawValue raw = raw_from_node(node, *key, origin);
    apply_value_aliases(*key, path, raw, cfg.warnings);
    assign(*key, cfg, raw, origin);
    const SetBy now{written, origin, format_value(*key, cfg)};
    auto [it, first] = set_by.try_emplace(key->full, now);
    if (!first && it->second.value != now.value)
      throw UserError("config: '" + it->second.written + "' (" + it->second.origin + ") and '" + written + "' (" +
                      origin + ") both set " + key->full + ", to " + printable(it->second.value) + " and " +
                      printable(now.value) + "; keep only '" + key->full + "'");
  }
}

}  // namespace

void apply_toml_text(JobConfig& cfg, std::string_view text, const std::string& source_name) {
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    throw UserError("config: TOML syntax error in " + source_name + ":" + std::to_string(where.line) + ":" +
                    std::to_string(where.column) + ": " + printable(e.description(), 200));
  }
  std::set<std::string> warned_sections;
  std::map<std::string, SetBy> set_by;
  std::vector<std::string> converters;  // enabled by legacy flags such as training.enable_float8_linear
  walk_table(cfg, root, "", source_name, warned_sections, set_by, converters);
  add_legacy_converters(cfg, converters);
}

void apply_toml_file(JobConfig& cfg, const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec))
    throw UserError("config: '" + printable(path, 200) + "' is not a file; pass a TOML file to --job.config_file");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const std::string why = std::strerror(errno);
    throw UserError("config: cannot read config file '" + printable(path, 200) + "' (" + why +
                    "); pass an existing TOML file to --job.config_file");
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  apply_toml_text(cfg, buf.str(), path);
}

std::string to_toml(const JobConfig& cfg) {
  toml::table root;
  for (const auto& key : schema()) {
    if (key.full == "job.config_file" || is_unset(key, cfg)) continue;
    // Find or create the nested table for the section path.
    toml::table* table = &root;
    std::string_view rest = key.section;
    while (!rest.empty()) {
      size_t dot = rest.find('.');
      std::string part(rest.substr(0, dot));
      rest = dot == std::string_view::npos ? std::string_view{} : rest.substr(dot + 1);
      auto [it, inserted] = table->insert(part, toml::table{});
      table = it->second.as_table();
    }
    FieldRef ref = key.field(const_cast<JobConfig&>(cfg));
    std::visit(
        [&](auto* p) {
          using T = std::decay_t<decltype(*p)>;
          if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            toml::array arr;
            for (const auto& s : *p) arr.push_back(s);
            table->insert(key.name, std::move(arr));
          } else if constexpr (std::is_same_v<T, std::optional<std::int64_t>> ||
                               std::is_same_v<T, std::optional<double>> ||
                               std::is_same_v<T, std::optional<std::string>>) {
            table->insert(key.name, **p);
          } else {
            table->insert(key.name, *p);
          }
        },
        ref);
  }
  std::ostringstream out;
  out << "# titan.cpp resolved job config (load it back with --job.config_file)\n" << root << "\n";
  return out.str();
}

}  // namespace titan::config
