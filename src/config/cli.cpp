#include "config/cli.hpp"

#include <CLI/CLI.hpp>

#include <map>

#include "config/aliases.hpp"
#include "config/schema.hpp"
#include "config/toml_io.hpp"
#include "core/errors.hpp"

namespace titan::config {

namespace {

// Run options that are not config keys.
constexpr const char* kRunFlags[] = {"--dry-run", "--plan-json", "--world-size", "--config-reference", "--help"};

struct NormalizedArgs {
  std::vector<std::string> args;
  std::map<std::string, std::string> written_as;  // canonical key -> key as the user wrote it
  std::vector<std::string> converters;             // enabled by legacy flags (training.enable_float8_linear)
};

bool is_bool_key(const std::string& full) {
  const KeyInfo* k = find_key(canonical_key(full).key);
  return k && k->kind == Kind::Bool;
}

// Rewrites config-key arguments into the one spelling CLI11 is told about: `--section.key[=v]`
// with underscores and canonical names; negations become `--section.key=false`.
// The value that follows option `flag` (given without `=`) at in[i + 1]. A missing value, or one
// that looks like the next option, is an error: otherwise `--plan-json --dry-run` would write a
// file named "--dry-run" and train. A value that really starts with "--" goes after `=`.
const std::string& next_value(const std::vector<std::string>& in, size_t i, const std::string& flag) {
  if (i + 1 >= in.size())
    throw UserError("command line: " + printable(flag) + " needs a value (" + printable(flag) + " VALUE or " +
                    printable(flag) + "=VALUE)");
  const std::string& next = in[i + 1];
  if (next.rfind("--", 0) == 0)
    throw UserError("command line: " + printable(flag) + " needs a value but is followed by the option " +
                    printable(next) + "; give the value, or write " + printable(flag) + "=" + printable(next) +
                    " if the value really starts with --");
  return next;
}

// Pushes `--key=value` as CLI11 should see it; an empty value becomes its own argument, since
// CLI11 would read `--key=` as "take the next argument".
void push_with_value(std::vector<std::string>& out, const std::string& option, const std::string& value) {
  if (value.empty()) {
    out.push_back(option);
    out.push_back("");
  } else {
    out.push_back(option + "=" + value);
  }
}

NormalizedArgs normalize(const std::vector<std::string>& in, std::vector<std::string>& warnings) {
  NormalizedArgs out;
  // canonical key -> (spelling, value text) of its first occurrence, to catch a legacy name and its
  // new name given with different values.
  std::map<std::string, std::pair<std::string, std::string>> first_seen;
  for (size_t i = 0; i < in.size(); ++i) {
    const std::string& arg = in[i];
    const size_t eq = arg.find('=');
    const bool is_long = arg.rfind("--", 0) == 0;
    const std::string name = is_long ? arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2) : "";
    if (name.find('.') == std::string::npos) {  // not a config key: positional or a run flag
      if ((arg == "--plan-json" || arg == "--world-size")) {
        push_with_value(out.args, arg, next_value(in, i, arg));
        ++i;
        continue;
      }
      out.args.push_back(arg);
      continue;
    }
    std::string key = normalize_key(name);
    bool negated = false;
    const size_t last_dot = key.rfind('.');
    if (key.rfind("no_", 0) == 0 && is_bool_key(key.substr(3))) {
      negated = true;
      key = key.substr(3);
    } else if (key.compare(last_dot + 1, 3, "no_") == 0 &&
               is_bool_key(key.substr(0, last_dot + 1) + key.substr(last_dot + 4))) {
      negated = true;
      key = key.substr(0, last_dot + 1) + key.substr(last_dot + 4);
    }
    if (const CompatKey* compat = find_compat_key(key);
        compat && (compat->how == CompatHow::Ignore || compat->how == CompatHow::EnablesConverter)) {
      // These keys have no schema type: a value after `=`, or the next argument unless it is an
      // option, or none (a flag, as TorchTitan's store_true options were).
      std::string value = "true";
      if (eq != std::string::npos) value = arg.substr(eq + 1);
      else if (i + 1 < in.size() && in[i + 1].rfind("-", 0) != 0) value = in[++i];
      if (negated) value = "false";
      const std::string origin = "command line " + printable(arg);
      if (compat->how == CompatHow::Ignore) {
        warnings.push_back(ignored_key_warning(*compat, value, origin));
      } else {
        if (converter_flag_on(value)) out.converters.emplace_back(compat->to);
        warnings.push_back("'" + key + "' (" + origin + ") is deprecated (TorchTitan " + std::string(compat->since) +
                           " to " + std::string(compat->until) + "); list \"" + std::string(compat->to) +
                           "\" in model.converters");
      }
      continue;
    }
    CanonicalKey canon = canonical_key(key);
    if (canon.deprecation) warnings.push_back(*canon.deprecation + " (command line " + printable(arg) + ")");
    out.written_as[canon.key] = key;
    if (negated) {
      if (eq != std::string::npos)
        throw UserError("command line: " + arg + " takes no value (it sets " + canon.key +
                        " to false; use --" + canon.key + "=VALUE to give one)");
      out.args.push_back("--" + canon.key + "=false");
      continue;
    }
    const bool boolean = is_bool_key(canon.key);
    if (eq != std::string::npos && eq + 1 == arg.size() && boolean)
      throw UserError("command line: " + printable(arg) + " needs a value: --" + canon.key + "=true or --" + canon.key +
                      "=false");
    if (boolean || !find_key(canon.key)) {  // a flag, or an unknown key CLI11 reports below
      out.args.push_back("--" + canon.key + (eq == std::string::npos ? "" : arg.substr(eq)));
      continue;
    }
    std::string value;
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);  // `--key=` is an explicit empty value (e.g. an empty list)
    } else {
      value = next_value(in, i, arg);
      ++i;
    }
    auto [seen, first] = first_seen.try_emplace(canon.key, key, value);
    if (!first && seen->second.first != key && seen->second.second != value)
      throw UserError("command line: --" + seen->second.first + "=" + printable(seen->second.second) + " and --" + key +
                      "=" + printable(value) + " set the same key " + canon.key +
                      " to different values; give it once, as --" + canon.key);
    push_with_value(out.args, "--" + canon.key, value);
  }
  return out;
}

[[noreturn]] void unknown_argument(const std::string& arg) {
  if (arg.rfind("-", 0) != 0)
    throw UserError("command line: unexpected argument '" + printable(arg) +
                    "'; options look like --section.key VALUE, and the config file goes to --job.config_file");
  const size_t eq = arg.find('=');
  const std::string flag = arg.substr(0, eq);
  std::string msg = "command line: unknown option " + printable(flag);
  std::optional<std::string> near;
  if (flag.find('.') != std::string::npos) {
    if (auto k = suggest_key(normalize_key(flag.substr(2)))) near = "--" + *k;
  } else {
    near = closest_match(flag, {std::begin(kRunFlags), std::end(kRunFlags)});
  }
  if (near) msg += "; did you mean " + *near + "?";
  throw UserError(msg + " (run_train --help lists every option)");
}

}  // namespace

CommandLine parse_command_line(const std::vector<std::string>& args) {
  CommandLine result;
  std::vector<std::string> warnings;
  NormalizedArgs norm = normalize(args, warnings);

  CLI::App app{"titan.cpp: train Llama 3 models with FSDP/HSDP and float8 from a TorchTitan-style TOML config.\n"
               "Every config key is also a flag: --section.key VALUE (CLI > TOML > defaults).",
               "run_train"};
  app.allow_extras();
  app.get_formatter()->column_width(50);
  app.add_flag("--dry-run", result.dry_run,
               "Load and validate the config, print the plan (mesh, model, parameters) and exit");
  std::string plan_json;
  CLI::Option* plan_opt = app.add_option("--plan-json", plan_json, "With --dry-run or a run: write the plan as JSON to this path");
  int world_size = 0;
  CLI::Option* world_opt = app.add_option("--world-size", world_size,
                                          "With --dry-run: plan for this many ranks (memory per rank for a cluster you "
                                          "do not have yet) instead of the launched world");
  app.add_flag("--config-reference", result.config_reference,
               "Print the reference of every config key as Markdown (docs/config.md) and exit");

  const auto& keys = schema();
  std::vector<std::string> raw(keys.size());
  std::vector<CLI::Option*> opts(keys.size());
  static const JobConfig defaults{};
  for (size_t i = 0; i < keys.size(); ++i) {
    const KeyInfo& k = keys[i];
    std::string desc = k.help + " [" + std::string(kind_name(k.kind)) + ", default " + format_value(k, defaults) + "]";
    if (k.kind == Kind::Bool) {
      opts[i] = app.add_flag("--" + k.full + "{true}", raw[i], desc);
    } else {
      opts[i] = app.add_option("--" + k.full, raw[i], desc);
    }
    opts[i]->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)->group("[" + k.section + "]");
  }

  std::vector<std::string> reversed(norm.args.rbegin(), norm.args.rend());  // CLI11 parses a reversed vector
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    result.show_help = true;
    result.help_text = app.help();
    return result;
  } catch (const CLI::ParseError& e) {
    throw UserError("command line: " + printable(e.what(), 200) + " (run_train --help lists every option)");
  }
  if (!app.remaining().empty()) unknown_argument(app.remaining().front());
  if (plan_opt->count()) result.plan_json = plan_json;
  if (world_opt->count()) {
    if (world_size < 1) throw UserError("command line: --world-size must be at least 1, got " + std::to_string(world_size));
    if (!result.dry_run)
      throw UserError("command line: --world-size only plans (use it with --dry-run); to train on N ranks launch "
                      "them: mpirun -np N run_train ...");
    result.world_size = world_size;
  }

  // Defaults, then the TOML file, then every key given on the command line.
  JobConfig& cfg = result.config;
  const KeyInfo* config_file = find_key("job.config_file");
  for (size_t i = 0; i < keys.size(); ++i)
    if (&keys[i] == config_file && opts[i]->count()) assign(keys[i], cfg, CliText{raw[i]}, "--job.config_file");
  if (cfg.job.config_file) apply_toml_file(cfg, *cfg.job.config_file);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!opts[i]->count()) continue;
    const KeyInfo& k = keys[i];
    RawValue value = CliText{raw[i]};
    auto it = norm.written_as.find(k.full);
    apply_value_aliases(k, it == norm.written_as.end() ? k.full : it->second, value, warnings);
    assign(k, cfg, value, "--" + k.full);
  }
  add_legacy_converters(cfg, norm.converters);
  cfg.warnings.insert(cfg.warnings.end(), warnings.begin(), warnings.end());
  return result;
}

}  // namespace titan::config
