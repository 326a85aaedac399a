#include "config/schema.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <unordered_map>

#include "core/errors.hpp"

namespace titan::config {

namespace chk {
Check none() { return {}; }
Check min(double lo) { return {Check::Type::Min, lo, 0, {}}; }
Check greater(double lo) { return {Check::Type::Greater, lo, 0, {}}; }
Check range(double lo, double hi) { return {Check::Type::Range, lo, hi, {}}; }
Check min_or(double lo, double exactly) { return {Check::Type::MinOr, lo, exactly, {}}; }
Check one_of(std::string_view bar_separated) {
  Check c{Check::Type::OneOf, 0, 0, {}};
  size_t start = 0;
  while (start <= bar_separated.size()) {
    size_t bar = bar_separated.find('|', start);
    if (bar == std::string_view::npos) bar = bar_separated.size();
    c.choices.emplace_back(bar_separated.substr(start, bar - start));
    start = bar + 1;
  }
  return c;
}
}  // namespace chk

namespace {

std::vector<KeyInfo> build_schema() {
  std::vector<KeyInfo> table;
  // A captureless accessor per key: the section's member pointer is a static local, which a lambda
  // may use without capturing it.
#define TITAN_KEY_INFO(kind, name_, def, support_, check_, help_)                                 \
  table.push_back(KeyInfo{std::string(sec_path), #name_, std::string(sec_path) + "." #name_,      \
                          Kind::kind, Support::support_, check_, help_,                          \
                          [](JobConfig& c) -> FieldRef { return &(c.*sec_member).name_; }});
#define TITAN_SECTION_KEYS(member, path, KEYS)                 \
  {                                                            \
    static constexpr auto sec_member = &JobConfig::member;     \
    const char* sec_path = path;                               \
    KEYS(TITAN_KEY_INFO)                                       \
  }
  TITAN_SECTIONS(TITAN_SECTION_KEYS)
#undef TITAN_SECTION_KEYS
#undef TITAN_KEY_INFO
  return table;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string format_double(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, res.ptr);
  if (std::isfinite(v) && s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

std::string quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  out.append(s);
  out.push_back('"');
  return out;
}

std::string describe_raw(const RawValue& raw) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) return v ? "boolean true" : "boolean false";
        else if constexpr (std::is_same_v<T, std::int64_t>) return "integer " + std::to_string(v);
        else if constexpr (std::is_same_v<T, double>) return "float " + format_double(v);
        else if constexpr (std::is_same_v<T, std::string>) return "string " + quote(printable(v));
        else if constexpr (std::is_same_v<T, CliText>) return quote(printable(v.text));
        else return "an array";
      },
      raw);
}

[[noreturn]] void fail(const KeyInfo& key, const std::string& origin, const std::string& what) {
  throw UserError("config: " + key.full + " (" + origin + ") " + what);
}

[[noreturn]] void type_error(const KeyInfo& key, const std::string& origin, const RawValue& raw) {
  fail(key, origin, "must be " + describe_expected(key) + ", got " + describe_raw(raw));
}

std::optional<bool> parse_bool(std::string_view s) {
  const std::string l = lower(s);
  if (l == "true" || l == "1" || l == "yes" || l == "on") return true;
  if (l == "false" || l == "0" || l == "no" || l == "off") return false;
  return std::nullopt;
}

std::optional<std::int64_t> parse_int(std::string_view s) {
  std::int64_t v = 0;
  const char* end = s.data() + s.size();
  auto res = std::from_chars(s.data(), end, v);
  if (s.empty() || res.ec != std::errc() || res.ptr != end) return std::nullopt;
  return v;
}

std::optional<double> parse_double(std::string_view s) {
  std::string str(s);
  if (str.empty()) return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(str.c_str(), &end);
  if (end != str.c_str() + str.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::vector<std::string> split_list(std::string_view s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string_view::npos) comma = s.size();
    std::string_view item = s.substr(start, comma - start);
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.front()))) item.remove_prefix(1);
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.back()))) item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
    start = comma + 1;
  }
  return out;
}

bool is_optional_kind(Kind k) {
  return k == Kind::OptInt || k == Kind::OptFloat || k == Kind::OptString || k == Kind::OptEnum;
}

void check_number(const KeyInfo& key, const std::string& origin, double v, const std::string& shown) {
  const Check& c = key.check;
  bool ok = true;
  switch (c.type) {
    case Check::Type::Min: ok = v >= c.lo; break;
    case Check::Type::Greater: ok = v > c.lo; break;
    case Check::Type::Range: ok = v >= c.lo && v <= c.hi; break;
    case Check::Type::MinOr: ok = v >= c.lo || v == c.hi; break;
    default: break;
  }
  if (!ok) fail(key, origin, "= " + shown + " is out of range: expected " + describe_expected(key));
}

void check_choice(const KeyInfo& key, const std::string& origin, const std::string& v) {
  const auto& ch = key.check.choices;
  if (key.check.type != Check::Type::OneOf || std::find(ch.begin(), ch.end(), v) != ch.end()) return;
  // The choice "<N>": any positive integer, written plainly (no sign, no leading zero).
  const bool plain_int = !v.empty() && v.size() < 10 && v[0] >= '1' && v[0] <= '9' &&
                         std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (plain_int && std::find(ch.begin(), ch.end(), kPositiveIntChoice) != ch.end()) return;
  std::vector<std::string> words;
  for (const auto& c : ch)
    if (c != kPositiveIntChoice) words.push_back(c);
  std::string msg = "= " + quote(printable(v)) + " is not " + describe_expected(key);
  if (auto near = closest_match(v, words)) msg += "; did you mean " + quote(*near) + "?";
  fail(key, origin, msg);
}

}  // namespace

const std::vector<KeyInfo>& schema() {
  static const std::vector<KeyInfo> table = build_schema();
  return table;
}

const std::vector<std::string>& section_paths() {
  static const std::vector<std::string> paths = [] {
    std::vector<std::string> out;
    for (const auto& k : schema())
      if (out.empty() || out.back() != k.section) out.push_back(k.section);
    return out;
  }();
  return paths;
}

const KeyInfo* find_key(std::string_view full) {
  static const std::unordered_map<std::string, const KeyInfo*> index = [] {
    std::unordered_map<std::string, const KeyInfo*> m;
    for (const auto& k : schema()) m.emplace(k.full, &k);
    return m;
  }();
  auto it = index.find(std::string(full));
  return it == index.end() ? nullptr : it->second;
}

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "string";
    case Kind::Enum: return "enum";
    case Kind::List: return "list of strings";
    case Kind::OptInt: return "int (optional)";
    case Kind::OptFloat: return "float (optional)";
    case Kind::OptString: return "string (optional)";
    case Kind::OptEnum: return "enum (optional)";
  }
  return "?";
}

std::string describe_expected(const KeyInfo& key) {
  const Check& c = key.check;
  auto num = [&](double v) {
    return (key.kind == Kind::Int || key.kind == Kind::OptInt) ? std::to_string(static_cast<long long>(v))
                                                               : format_double(v);
  };
  std::string base;
  switch (key.kind) {
    case Kind::Bool: return "a boolean (true or false)";
    case Kind::Int: case Kind::OptInt: base = "an integer"; break;
    case Kind::Float: case Kind::OptFloat: base = "a number"; break;
    case Kind::String: case Kind::OptString: return "a string";
    case Kind::List: return "a list of strings (TOML array or comma-separated string)";
    case Kind::Enum: case Kind::OptEnum: {
      std::string s = "one of ";
      for (size_t i = 0; i < c.choices.size(); ++i)
        s += (i ? ", " : "") + (c.choices[i] == kPositiveIntChoice ? std::string("a positive integer N") : c.choices[i]);
      return s;
    }
  }
  switch (c.type) {
    case Check::Type::Min: return base + " >= " + num(c.lo);
    case Check::Type::Greater: return base + " > " + num(c.lo);
    case Check::Type::Range: return base + " in [" + num(c.lo) + ", " + num(c.hi) + "]";
    case Check::Type::MinOr: return base + " >= " + num(c.lo) + " or " + num(c.hi);
    default: return base;
  }
}

void assign(const KeyInfo& key, JobConfig& cfg, const RawValue& raw, const std::string& origin) {
  const CliText* cli = std::get_if<CliText>(&raw);
  const std::string* text = cli ? &cli->text : nullptr;        // command-line text, parsed per kind
  const std::string* toml_string = std::get_if<std::string>(&raw);
  // An optional key given "none" (any case) on the command line is unset, TorchTitan's None.
  const bool unset = is_optional_kind(key.kind) && text && lower(*text) == "none";
  FieldRef ref = key.field(cfg);

  switch (key.kind) {
    case Kind::Bool: {
      std::optional<bool> v;
      if (auto b = std::get_if<bool>(&raw)) v = *b;
      else if (text) v = parse_bool(*text);
      if (!v) type_error(key, origin, raw);
      *std::get<bool*>(ref) = *v;
      break;
    }
    case Kind::Int: case Kind::OptInt: {
      std::optional<std::int64_t> v;
      if (auto i = std::get_if<std::int64_t>(&raw)) v = *i;
      else if (text && !unset) v = parse_int(*text);
      if (!v && !unset) type_error(key, origin, raw);
      if (v) check_number(key, origin, static_cast<double>(*v), std::to_string(*v));
      if (key.kind == Kind::Int) *std::get<std::int64_t*>(ref) = *v;
      else *std::get<std::optional<std::int64_t>*>(ref) = v;
      break;
    }
    case Kind::Float: case Kind::OptFloat: {
      std::optional<double> v;
      if (auto d = std::get_if<double>(&raw)) v = *d;
      else if (auto i = std::get_if<std::int64_t>(&raw)) v = static_cast<double>(*i);
      else if (text && !unset) v = parse_double(*text);
      if (!v && !unset) type_error(key, origin, raw);
      // TOML has inf and nan literals; no key means them (lr = inf trains straight to NaN).
      if (v && !std::isfinite(*v)) fail(key, origin, "must be a finite number, got " + format_double(*v));
      if (v) check_number(key, origin, *v, format_double(*v));
      if (key.kind == Kind::Float) *std::get<double*>(ref) = *v;
      else *std::get<std::optional<double>*>(ref) = v;
      break;
    }
    case Kind::String: case Kind::Enum: case Kind::OptString: case Kind::OptEnum: {
      if (!text) text = toml_string;
      if (!text) type_error(key, origin, raw);
      if (!unset) check_choice(key, origin, *text);
      if (key.kind == Kind::String || key.kind == Kind::Enum) *std::get<std::string*>(ref) = *text;
      else if (unset) *std::get<std::optional<std::string>*>(ref) = std::nullopt;
      else *std::get<std::optional<std::string>*>(ref) = *text;
      break;
    }
    case Kind::List: {
      std::vector<std::string> v;
      if (auto l = std::get_if<std::vector<std::string>>(&raw)) v = *l;
      else if (text) v = split_list(*text);
      else if (toml_string) v = split_list(*toml_string);
      else type_error(key, origin, raw);
      *std::get<std::vector<std::string>*>(ref) = v;
      break;
    }
  }
  cfg.sources[key.full] = origin;

  if (key.support != Support::Supported && !equals_default(key, cfg)) {
    if (key.support == Support::Unsupported)
      fail(key, origin, "= " + format_value(key, cfg) + " is not supported by titan.cpp (only " +
                            format_value(key, JobConfig{}) + " is); remove the key or set it to " +
                            format_value(key, JobConfig{}));
    cfg.warnings.push_back(key.full + " = " + format_value(key, cfg) + " (" + origin +
                           ") has no effect in titan.cpp: " + key.help);
  }
}

std::string format_value(const KeyInfo& key, const JobConfig& cfg) {
  FieldRef ref = key.field(const_cast<JobConfig&>(cfg));
  return std::visit(
      [](auto* p) -> std::string {
        using T = std::decay_t<decltype(*p)>;
        if constexpr (std::is_same_v<T, bool>) return *p ? "true" : "false";
        else if constexpr (std::is_same_v<T, std::int64_t>) return std::to_string(*p);
        else if constexpr (std::is_same_v<T, double>) return format_double(*p);
        else if constexpr (std::is_same_v<T, std::string>) return quote(*p);
        else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          std::string s = "[";
          for (size_t i = 0; i < p->size(); ++i) s += (i ? ", " : "") + quote((*p)[i]);
          return s + "]";
        } else if constexpr (std::is_same_v<T, std::optional<std::int64_t>>) {
          return *p ? std::to_string(**p) : "(unset)";
        } else if constexpr (std::is_same_v<T, std::optional<double>>) {
          return *p ? format_double(**p) : "(unset)";
        } else {
          return *p ? quote(**p) : "(unset)";
        }
      },
      ref);
}

bool is_unset(const KeyInfo& key, const JobConfig& cfg) {
  return is_optional_kind(key.kind) && format_value(key, cfg) == "(unset)";
}

bool equals_default(const KeyInfo& key, const JobConfig& cfg) {
  static const JobConfig defaults{};
  return format_value(key, cfg) == format_value(key, defaults);
}

std::optional<std::string> closest_match(std::string_view word, const std::vector<std::string>& candidates) {
  const std::string w = lower(word);
  std::optional<std::string> best;
  size_t best_dist = std::max<size_t>(2, w.size() / 3) + 1;  // accept at most max(2, len/3) edits
  for (const auto& cand : candidates) {
    const std::string c = lower(cand);
    // Levenshtein distance, one row at a time.
    std::vector<size_t> row(c.size() + 1);
    for (size_t j = 0; j <= c.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= w.size(); ++i) {
      size_t diag = row[0];
      row[0] = i;
      for (size_t j = 1; j <= c.size(); ++j) {
        size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (w[i - 1] == c[j - 1] ? 0 : 1)});
        diag = up;
      }
    }
    if (row[c.size()] < best_dist) {
      best_dist = row[c.size()];
      best = cand;
    }
  }
  return best;
}

std::optional<std::string> suggest_key(std::string_view unknown_full) {
  const size_t dot = unknown_full.rfind('.');
  const std::string_view name = dot == std::string_view::npos ? unknown_full : unknown_full.substr(dot + 1);
  std::vector<std::string> all;
  for (const auto& k : schema()) {
    if (k.name == name) return k.full;
    all.push_back(k.full);
  }
  return closest_match(unknown_full, all);
}

}  // namespace titan::config
