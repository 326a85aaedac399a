// TorchTitan compatibility: every key TorchTitan's TOML-era JobConfig ever had
// (tests/assets/torchtitan/job_config_keys.tsv, mined from its history by
// scripts/reference/mine_torchtitan_keys.py) loads here, as a schema key, a renamed key, or an
// ignored one; and the compatibility table names no key TorchTitan never had.
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <sstream>

#include "config/aliases.hpp"
#include "config/cli.hpp"
#include "config/schema.hpp"
#include "config/toml_io.hpp"
#include "core/errors.hpp"

using namespace titan::config;
using Catch::Matchers::Contains;

namespace {

struct MinedKey {
  std::string first, last;  // YYYY-MM-DD
};

std::map<std::string, MinedKey> mined_keys() {
  std::ifstream in(std::string(TITAN_SOURCE_DIR) + "/tests/assets/torchtitan/job_config_keys.tsv");
  REQUIRE(in);
  std::map<std::string, MinedKey> keys;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream row(line);
    std::string key, first, last;
    std::getline(row, key, '\t');
    std::getline(row, first, '\t');
    std::getline(row, last, '\t');
    keys[key] = {first, last};
  }
  return keys;
}

std::string parent(const std::string& full) { return full.substr(0, full.rfind('.')); }

JobConfig from_toml(const std::string& text) {
  JobConfig cfg;
  apply_toml_text(cfg, text, "old.toml");
  return cfg;
}

bool has_warning(const JobConfig& cfg, const std::string& needle) {
  for (const auto& w : cfg.warnings)
    if (w.find(needle) != std::string::npos) return true;
  return false;
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const titan::UserError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("compat: every TorchTitan TOML-era key is a schema key, a renamed key, or ignored with a reason") {
  const auto keys = mined_keys();
  REQUIRE(keys.size() > 200);
  for (const auto& [key, dates] : keys) {
    INFO(key << " (TorchTitan " << dates.first << " to " << dates.last << ")");
    const CanonicalKey canon = canonical_key(key);
    const CompatKey* compat = find_compat_key(key);
    const bool known = find_key(canon.key) != nullptr ||
                       (compat && (compat->how == CompatHow::Ignore || compat->how == CompatHow::EnablesConverter)) ||
                       ignored_section(parent(canon.key)) != nullptr;
    CHECK(known);
  }
}

TEST_CASE("compat: the table names only keys TorchTitan had, with the dates they existed") {
  const auto keys = mined_keys();
  for (const auto& row : compat_keys()) {
    const std::string from(row.from);
    INFO(from);
    auto it = keys.find(from);
    REQUIRE(it != keys.end());
    CHECK(it->second.first.substr(0, 7) == row.since);
    CHECK(it->second.last.substr(0, 7) == row.until);
    CHECK(find_key(from) == nullptr);  // a schema key needs no row
    if (row.how == CompatHow::Rename || row.how == CompatHow::Negate) CHECK(find_key(std::string(row.to)) != nullptr);
    if (row.how == CompatHow::Ignore) CHECK(!row.note.empty());
  }
  for (const auto& s : compat_sections()) {
    INFO(s.from);
    const std::string prefix = std::string(s.from) + ".";
    bool any = false;
    for (const auto& [key, dates] : keys) any = any || key.rfind(prefix, 0) == 0;
    CHECK(any);
    CHECK((s.to.empty() ? !s.note.empty() : true));
  }
}

TEST_CASE("compat: renamed keys load under their new names, negations flip, old float8 flags add the converter") {
  JobConfig c = from_toml(
      "[training]\ndata_parallel_degree = 4\nwarmup_steps = 7\nenable_loss_parallel = true\nfp8_linear = \"\"\n"
      "[metrics]\nenable_color_printing = true\nrank_0_only = false\n"
      "[experimental]\npipeline_parallel_degree = 1\n");
  CHECK(c.parallelism.data_parallel_shard_degree == 4);
  CHECK(c.lr_scheduler.warmup_steps == 7);
  CHECK(c.parallelism.disable_loss_parallel == false);
  CHECK(c.metrics.disable_color_printing == false);
  CHECK(c.metrics.save_for_all_ranks == true);
  CHECK(c.model.converters.empty());  // fp8_linear = "" was TorchTitan's off
  CHECK(has_warning(c, "'training.data_parallel_degree' is deprecated (TorchTitan 2024-02 to 2024-09)"));
  CHECK(has_warning(c, "(negated: true there is false here)"));

  JobConfig f = from_toml("[model]\nconverters = []\n[float8]\nenable_float8_linear = true\nscaling_type_input = \"dynamic\"\n");
  CHECK(f.model.converters == std::vector<std::string>{"quantize.linear.float8"});
  CHECK(has_warning(f, "float8.scaling_type_input = dynamic"));

  // The same on the command line, flags with and without values.
  JobConfig cli = parse_command_line({"--metrics.rank_0_only", "--training.enable_float8_linear", "true",
                                      "--checkpoint.interval_type=steps", "--job.use_for_integration_test"})
                      .config;
  CHECK(cli.metrics.save_for_all_ranks == false);
  CHECK(cli.model.converters == std::vector<std::string>{"quantize.linear.float8"});
  CHECK(has_warning(cli, "checkpoint.interval_type = steps (command line"));
  CHECK(has_warning(cli, "job.use_for_integration_test = true"));
}

TEST_CASE("compat: ignored keys warn with what they did; values that would change the run are errors") {
  JobConfig c = from_toml("[checkpoint]\ninterval_type = \"steps\"\n[model]\nnorm_type = \"fused_rmsnorm\"\n"
                          "[job]\nuse_for_integration_test = true\n[fault_tolerance]\nenable = true\n"
                          "[training.dataloader]\nnum_workers = 4\n[experimental]\ncustom_import = \"x\"\n");
  CHECK(has_warning(c, "checkpoint.interval_type = steps (old.toml:2) is a TorchTitan key (2024-04 to 2025-02) that chose steps or seconds"));
  CHECK(has_warning(c, "model.norm_type = fused_rmsnorm"));
  CHECK(has_warning(c, "[fault_tolerance] (old.toml:7) is a TorchTitan section (2025-02 to 2026-02) for TorchFT"));
  CHECK(has_warning(c, "[training.dataloader]"));
  CHECK(has_warning(c, "experimental.custom_import = x"));
  CHECK_THAT(error_of([] { from_toml("[checkpoint]\ninterval_type = \"seconds\"\n"); }),
             Contains("checkpoint.interval_type = seconds (old.toml:2)") && Contains("only \"steps\" or \"step\"") &&
                 Contains("remove the key"));
  CHECK_THAT(error_of([] { from_toml("[model]\nnorm_type = \"layernorm\"\n"); }), Contains("model.norm_type = layernorm"));
  CHECK_THAT(error_of([] { from_toml("[float8]\nscaling_type_weight = \"delayed\"\n"); }),
             Contains("recipe_name = \\\"delayed\\\"") || Contains("recipe_name = \"delayed\""));
  CHECK_THAT(error_of([] { parse_command_line({"--training.data_parallel_type=ddp"}); }),
             Contains("data_parallel_replicate_degree"));
  // A key TorchTitan never had is still an error.
  CHECK_THAT(error_of([] { from_toml("[experimental]\nwarp_drive = true\n"); }), Contains("unknown key 'experimental.warp_drive'"));
  CHECK_THAT(error_of([] { from_toml("[checkpoint]\ninterval_typo = 1\n"); }), Contains("unknown key"));
}

TEST_CASE("compat: model.name \"llama\" (TorchTitan's first name) is llama2") {
  JobConfig c = from_toml("[model]\nname = \"llama\"\nflavor = \"7B\"\n");
  CHECK(c.model.name == "llama2");
  CHECK(has_warning(c, "model.name = \"llama\" is deprecated"));
}
