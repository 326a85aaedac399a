// The config system: schema, TOML, CLI spellings and precedence, legacy aliases, errors,
// cross-key validation and the print_config round trip.
#include <catch2/catch.hpp>

#include <set>

#include "config/cli.hpp"
#include "config/reference.hpp"
#include "config/schema.hpp"
#include "config/toml_io.hpp"
#include "config/validate.hpp"
#include "core/errors.hpp"
#include "core/trace.hpp"
#include "test_helpers.hpp"
#include "train/profiler.hpp"

using namespace titan::config;
using Catch::Matchers::Contains;
using titan::UserError;
using titan::test::TempFile;

namespace {

JobConfig parse(std::vector<std::string> args) { return parse_command_line(args).config; }

JobConfig from_toml(const std::string& text) {
  JobConfig cfg;
  apply_toml_text(cfg, text, "test.toml");
  return cfg;
}

bool has_warning(const JobConfig& cfg, const std::string& needle) {
  for (const auto& w : cfg.warnings)
    if (w.find(needle) != std::string::npos) return true;
  return false;
}

// The message of the UserError `f` throws ("" if it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("schema: every key is declared once, documented, and its default is valid") {
  std::set<std::string> seen;
  static const JobConfig defaults{};
  for (const auto& k : schema()) {
    INFO(k.full);
    CHECK(seen.insert(k.full).second);
    CHECK(!k.help.empty());
    CHECK(find_key(k.full) == &k);
    if (k.kind == Kind::Enum) {
      const std::string v = format_value(k, defaults);
      bool found = false;
      for (const auto& c : k.check.choices) found |= ("\"" + c + "\"") == v;
      CHECK(found);
    }
  }
  CHECK(find_key("training.no_such_key") == nullptr);
  const std::vector<std::string> expected_sections = {
      "job", "profiling", "metrics", "model", "optimizer", "lr_scheduler", "training", "parallelism",
      "checkpoint", "activation_checkpoint", "compile", "quantize.linear.float8", "validation", "comm", "debug"};
  CHECK(section_paths() == expected_sections);
}

TEST_CASE("defaults follow TorchTitan's JobConfig") {
  const JobConfig c;
  CHECK(c.job.dump_folder == "./outputs");
  CHECK(c.metrics.log_freq == 10);
  CHECK(c.model.name == "llama3");
  CHECK(c.model.flavor == "debugmodel");
  CHECK(c.optimizer.lr == Approx(8e-4));
  CHECK(c.optimizer.beta2 == Approx(0.95));
  CHECK(c.optimizer.weight_decay == Approx(0.1));
  CHECK(c.lr_scheduler.warmup_steps == 200);
  CHECK(!c.lr_scheduler.decay_ratio.has_value());
  CHECK(c.lr_scheduler.decay_type == "linear");
  CHECK(c.training.local_batch_size == 8);
  CHECK(c.training.global_batch_size == -1);
  CHECK(c.training.seq_len == 2048);
  CHECK(c.training.steps == 10000);
  CHECK(c.training.mixed_precision_param == "bfloat16");
  CHECK(c.parallelism.data_parallel_replicate_degree == 1);
  CHECK(c.parallelism.data_parallel_shard_degree == -1);
  CHECK(c.checkpoint.interval == 500);
  CHECK(c.checkpoint.keep_latest_k == 10);
  CHECK(c.checkpoint.initial_load_model_only);
  CHECK(c.activation_checkpoint.mode == "selective");
  CHECK(c.activation_checkpoint.selective_ac_option == "2");
  CHECK(c.compile.components == std::vector<std::string>{"model", "loss"});
  CHECK(!c.float8.recipe_name.has_value());
  CHECK(c.comm.init_timeout_seconds == 300);
  CHECK(c.comm.train_timeout_seconds == 100);
  CHECK(!c.debug.seed.has_value());
}

TEST_CASE("TOML: nested sections, typed values, and where each value came from") {
  JobConfig c = from_toml(R"(
[training]
steps = 42
max_norm = 2          # an integer is fine for a float key
seq_len = 128

[quantize.linear.float8]
filter_fqns = ["output", "attention.wk"]
recipe_name = "rowwise"

[lr_scheduler]
decay_ratio = 0.8
)");
  CHECK(c.training.steps == 42);
  CHECK(c.training.max_norm == Approx(2.0));
  CHECK(c.float8.filter_fqns == std::vector<std::string>{"output", "attention.wk"});
  CHECK(c.float8.recipe_name == std::optional<std::string>("rowwise"));
  CHECK(c.lr_scheduler.decay_ratio == std::optional<double>(0.8));
  CHECK(source_of(c, "training.steps") == "test.toml:3");
  CHECK(source_of(c, "quantize.linear.float8.recipe_name") == "test.toml:9");
  CHECK(source_of(c, "training.local_batch_size") == "default");
  CHECK(c.warnings.empty());
}

TEST_CASE("CLI: every accepted spelling of values and booleans") {
  SECTION("space and equals forms") {
    JobConfig c = parse({"--training.steps", "7", "--training.seq_len=99"});
    CHECK(c.training.steps == 7);
    CHECK(c.training.seq_len == 99);
    CHECK(source_of(c, "training.steps") == "--training.steps");
  }
  SECTION("hyphens and underscores are the same") {
    JobConfig c = parse({"--lr-scheduler.warmup-steps", "3", "--lr_scheduler.decay-type=cosine",
                         "--job.config-file=none"});
    CHECK(c.lr_scheduler.warmup_steps == 3);
    CHECK(c.lr_scheduler.decay_type == "cosine");
  }
  SECTION("booleans: flag, =false, --no-x, --section.no_x") {
    CHECK(parse({"--checkpoint.enable"}).checkpoint.enable);
    CHECK(!parse({"--checkpoint.enable=false"}).checkpoint.enable);
    CHECK(!parse({"--checkpoint.enable", "--no-checkpoint.enable"}).checkpoint.enable);
    CHECK(!parse({"--checkpoint.no_initial_load_model_only"}).checkpoint.initial_load_model_only);
    CHECK(!parse({"--no_checkpoint.initial-load-model-only"}).checkpoint.initial_load_model_only);
    CHECK(parse({"--debug.deterministic=true"}).debug.deterministic);
  }
  SECTION("lists are one comma-separated argument") {
    JobConfig c = parse({"--quantize.linear.float8.filter_fqns=attention.wk, attention.wv,output",
                         "--model.converters", "quantize.linear.float8"});
    CHECK(c.float8.filter_fqns == std::vector<std::string>{"attention.wk", "attention.wv", "output"});
    CHECK(c.model.converters == std::vector<std::string>{"quantize.linear.float8"});
  }
  SECTION("an empty value is an empty list, not the next argument") {
    JobConfig c = parse({"--model.converters=", "--training.steps", "4"});
    CHECK(c.model.converters.empty());
    CHECK(c.training.steps == 4);
    CHECK(parse({"--model.converters=float8", "--model.converters="}).model.converters.empty());
  }
  SECTION("negative numbers are values, and the last repetition wins") {
    JobConfig c = parse({"--parallelism.data_parallel_shard_degree", "-1", "--training.steps", "5",
                         "--training.steps", "6"});
    CHECK(c.parallelism.data_parallel_shard_degree == -1);
    CHECK(c.training.steps == 6);
  }
  SECTION("optional keys: set, then unset with none") {
    CHECK(parse({"--debug.seed", "3"}).debug.seed == std::optional<std::int64_t>(3));
    CHECK(!parse({"--lr_scheduler.decay_ratio=none"}).lr_scheduler.decay_ratio.has_value());
  }
  SECTION("run flags") {
    CommandLine cl = parse_command_line({"--dry-run", "--plan-json", "plan.json"});
    CHECK(cl.dry_run);
    CHECK(cl.plan_json == std::optional<std::string>("plan.json"));
    CommandLine help = parse_command_line({"--help"});
    CHECK(help.show_help);
    CHECK_THAT(help.help_text, Contains("--training.seq_len"));
    CHECK_THAT(help.help_text, Contains("[quantize.linear.float8]"));
  }
}

TEST_CASE("precedence: CLI over TOML over defaults") {
  TempFile f("job.toml", "[training]\nsteps = 20\nseq_len = 64\n[checkpoint]\nenable = true\n");
  JobConfig c = parse({"--job.config_file", f.path(), "--training.steps=30", "--no-checkpoint.enable"});
  CHECK(c.training.steps == 30);                    // CLI
  CHECK(c.training.seq_len == 64);                  // TOML
  CHECK(c.training.local_batch_size == 8);          // default
  CHECK(!c.checkpoint.enable);                      // CLI false beats TOML true
  CHECK(source_of(c, "training.seq_len") == f.path() + ":3");
  // The CLI flag wins even when it comes before the config file on the command line.
  CHECK(parse({"--training.steps=31", "--job.config-file", f.path()}).training.steps == 31);
}

TEST_CASE("legacy spellings load with a deprecation warning") {
  JobConfig c = from_toml(R"(
[model]
tokenizer_path = "./assets/tokenizer/original/tokenizer.model"
converters = "float8"
[training]
batch_size = 2
compile = true
seed = 7
deterministic = true
[checkpoint]
enable_checkpoint = true
model_weights_only = false
[lr_scheduler]
lr_min = 0.1
[job]
print_args = true
[validation]
enabled = true
[float8]
filter_fqns = "output"
enable_fsdp_float8_all_gather = true
)");
  CHECK(c.model.hf_assets_path == "./assets/tokenizer/original");
  CHECK(c.model.converters == std::vector<std::string>{"quantize.linear.float8"});
  CHECK(c.training.local_batch_size == 2);
  CHECK(c.compile.enable);
  CHECK(c.debug.seed == std::optional<std::int64_t>(7));
  CHECK(c.debug.deterministic);
  CHECK(c.checkpoint.enable);
  CHECK(!c.checkpoint.last_save_model_only);
  CHECK(c.lr_scheduler.min_lr_factor == Approx(0.1));
  CHECK(c.job.print_config);
  CHECK(c.validation.enable);
  CHECK(c.float8.filter_fqns == std::vector<std::string>{"output"});
  CHECK(c.float8.enable_fsdp_float8_all_gather);
  for (const char* old : {"training.batch_size", "training.compile", "training.seed", "training.deterministic",
                          "checkpoint.enable_checkpoint", "checkpoint.model_weights_only", "lr_scheduler.lr_min",
                          "model.tokenizer_path", "job.print_args", "validation.enabled", "[float8]",
                          "converter \"float8\""}) {
    INFO(old);
    CHECK(has_warning(c, old));
  }
  // The same on the command line.
  JobConfig cli = parse({"--training.batch_size=3", "--float8.recipe_name", "rowwise", "--model.converters=float8"});
  CHECK(cli.training.local_batch_size == 3);
  CHECK(cli.float8.recipe_name == std::optional<std::string>("rowwise"));
  CHECK(cli.model.converters == std::vector<std::string>{"quantize.linear.float8"});
  CHECK(has_warning(cli, "training.batch_size"));
  CHECK(has_warning(cli, "float8.recipe_name"));
}

TEST_CASE("sections of TorchTitan features titan.cpp lacks are ignored with a warning") {
  JobConfig c = from_toml("[experimental]\ncustom_import = \"x\"\n[fault_tolerance]\nenable = true\n");
  CHECK(has_warning(c, "experimental.custom_import = x"));
  CHECK(has_warning(c, "[fault_tolerance]"));
}

TEST_CASE("keys accepted for compatibility: no-effect warns, unsupported errors") {
  CHECK(has_warning(parse({"--metrics.enable_wandb"}), "metrics.enable_wandb"));
  CHECK(parse({"--metrics.enable_tensorboard"}).warnings.empty());
  CHECK(parse({"--parallelism.tensor_parallel_degree=2"}).warnings.empty());  // supported
  // Async TP is supported; without TP it only warns that it has no effect.
  JobConfig async_alone = parse({"--parallelism.enable_async_tensor_parallel"});
  validate(async_alone);
  CHECK(has_warning(async_alone, "enable_async_tensor_parallel has no effect without tensor parallelism"));
  JobConfig async_tp = parse({"--parallelism.enable_async_tensor_parallel", "--parallelism.tensor_parallel_degree=2"});
  validate(async_tp);
  CHECK(async_tp.warnings.empty());
  for (const char* key : {"--parallelism.pipeline_parallel_degree=2",
                          "--parallelism.context_parallel_degree=4", "--parallelism.expert_parallel_degree=2"}) {
    INFO(key);
    CHECK_THAT(error_of([&] { parse({key}); }), Contains("is not supported by titan.cpp") && Contains("set it to 1"));
  }
}

TEST_CASE("errors: one line naming the key, where it came from, and the fix") {
  CHECK_THAT(error_of([] { from_toml("[training]\nsq_len = 3\n"); }),
             Contains("unknown key 'training.sq_len' (test.toml:2)") && Contains("did you mean 'training.seq_len'?"));
  CHECK_THAT(error_of([] { from_toml("[training]\nmin_lr_factor = 0.1\n"); }),
             Contains("did you mean 'lr_scheduler.min_lr_factor'?"));
  CHECK_THAT(error_of([] { from_toml("[trainig]\nsteps = 3\n"); }),
             Contains("unknown section [trainig] (test.toml:1)") && Contains("did you mean [training]?"));
  CHECK_THAT(error_of([] { from_toml("[training]\nsteps = \"ten\"\n"); }),
             Contains("training.steps (test.toml:2) must be an integer >= 1, got string \"ten\""));
  CHECK_THAT(error_of([] { from_toml("[training]\nsteps = 1.5\n"); }), Contains("must be an integer"));
  CHECK_THAT(error_of([] { from_toml("[model]\nconverters = [1, 2]\n"); }), Contains("array holding a integer"));
  CHECK_THAT(error_of([] { from_toml("[checkpoint]\nenable = \"yes\"\n"); }), Contains("must be a boolean"));
  CHECK_THAT(error_of([] { from_toml("[lr_scheduler]\ndecay_type = \"cosin\"\n"); }),
             Contains("not one of linear, sqrt, cosine") && Contains("did you mean \"cosine\"?"));
  CHECK_THAT(error_of([] { from_toml("[lr_scheduler]\ndecay_ratio = 1.5\n"); }),
             Contains("out of range: expected a number in [0.0, 1.0]"));
  CHECK_THAT(error_of([] { from_toml("[training]\nsteps = \n"); }),
             Contains("TOML syntax error in test.toml:2:"));
  CHECK_THAT(error_of([] { parse({"--job.config_file", "/no/such/dir/x.toml"}); }),
             Contains("cannot read config file '/no/such/dir/x.toml'") && Contains("--job.config_file"));
  CHECK_THAT(error_of([] { parse({"--training.sq_len", "4"}); }),
             Contains("unknown option --training.sq_len; did you mean --training.seq_len?"));
  CHECK_THAT(error_of([] { parse({"--dryrun"}); }), Contains("did you mean --dry-run?"));
  CHECK_THAT(error_of([] { parse({"stray"}); }), Contains("unexpected argument 'stray'"));
  CHECK_THAT(error_of([] { parse({"--training.steps"}); }), Contains("--training.steps"));
  CHECK_THAT(error_of([] { parse({"--no-checkpoint.enable=true"}); }), Contains("takes no value"));
  CHECK_THAT(error_of([] { parse({"--checkpoint.enable="}); }), Contains("needs a value"));
  CHECK_THAT(error_of([] { parse({"--job.config_file", "/tmp"}); }), Contains("is not a file"));
  CHECK_THAT(error_of([] { parse({"--training.steps=0"}); }),
             Contains("training.steps (--training.steps) = 0 is out of range: expected an integer >= 1"));
  // Every message is a single line.
  CHECK(error_of([] { from_toml("[training]\nsteps = \n"); }).find('\n') == std::string::npos);
}

TEST_CASE("cross-key validation (TorchTitan's rules)") {
  auto invalid = [](std::vector<std::string> args) {
    return error_of([&] {
      JobConfig c = parse(args);
      validate(c);
    });
  };
  CHECK(invalid({}).empty());
  CHECK_THAT(invalid({"--checkpoint.keep_latest_k=1"}), Contains("keep_latest_k") && Contains("not allowed"));
  CHECK(invalid({"--checkpoint.keep_latest_k=0"}).empty());
  CHECK_THAT(invalid({"--model.converters=quantize.linear.float8", "--quantize.linear.float8.recipe_name=rowwise",
                      "--quantize.linear.float8.enable_fsdp_float8_all_gather"}),
             Contains("cannot be combined with quantize.linear.float8.recipe_name"));
  CHECK_THAT(invalid({"--model.converters=quantize.linear.mx"}),
             Contains("\"quantize.linear.mx\", which is not one of: quantize.linear.float8"));
  CHECK(invalid({"--activation_checkpoint.selective_ac_option=op"}).empty());  // per-op selective AC
  CHECK_THAT(invalid({"--activation_checkpoint.selective_ac_option=zero"}), Contains("positive integer") && Contains("\"op\""));
  CHECK(invalid({"--activation_checkpoint.mode=full", "--activation_checkpoint.selective_ac_option=op"}).empty());
  CHECK_THAT(invalid({"--checkpoint.last_save_in_hf", "--no-checkpoint.last_save_model_only"}),
             Contains("needs checkpoint.last_save_model_only = true"));
  CHECK_THAT(invalid({"--compile.components=model,los"}), Contains("did you mean \"loss\"?"));
  CHECK_THAT(invalid({"--checkpoint.exclude_from_loading=optimizer,dataloadr"}), Contains("did you mean \"dataloader\"?"));

  JobConfig c = parse({"--quantize.linear.float8.precompute_float8_dynamic_scale_for_fsdp", "--training.steps=10",
                       "--lr_scheduler.warmup_steps=20"});
  validate(c);
  CHECK(has_warning(c, "has no effect without"));
  CHECK(has_warning(c, "settings are ignored"));
  CHECK(has_warning(c, "never leaves warmup"));
}

TEST_CASE("print_config writes TOML that loads back to the same config") {
  JobConfig c = parse({"--training.steps=77", "--lr_scheduler.decay_ratio=0.25", "--debug.seed=5",
                       "--quantize.linear.float8.filter_fqns=output,attention.wk", "--job.description=say \"hi\"",
                       "--optimizer.lr=3e-4", "--optimizer.eps=1e-12", "--checkpoint.enable",
                       "--quantize.linear.float8.recipe_name=rowwise", "--model.converters=quantize.linear.float8"});
  const std::string text = to_toml(c);
  CHECK_THAT(text, Contains("[quantize.linear.float8]"));
  JobConfig back = from_toml(text);
  for (const auto& k : schema()) {
    if (k.full == "job.config_file") continue;
    INFO(k.full);
    CHECK(format_value(k, back) == format_value(k, c));
  }
  CHECK(back.warnings.empty());
  // Defaults round-trip too.
  JobConfig d;
  JobConfig d_back = from_toml(to_toml(d));
  for (const auto& k : schema()) CHECK(format_value(k, d_back) == format_value(k, d));
}

TEST_CASE("the config reference documents every key") {
  const std::string md = config_reference_markdown();
  for (const auto& k : schema()) {
    INFO(k.full);
    CHECK_THAT(md, Contains("| `" + k.name + "` |"));
  }
  for (const auto& s : section_paths()) CHECK_THAT(md, Contains("## [" + s + "]"));
}

TEST_CASE("CLI: an option's missing value never swallows the next option") {
  // `--plan-json --dry-run` used to write a file named "--dry-run" and then train.
  CHECK_THAT(error_of([] { parse_command_line({"--plan-json", "--dry-run"}); }),
             Contains("--plan-json needs a value but is followed by the option --dry-run") &&
                 Contains("--plan-json=--dry-run"));
  CHECK_THAT(error_of([] { parse_command_line({"--dry-run", "--plan-json"}); }),
             Contains("--plan-json needs a value"));
  CHECK_THAT(error_of([] { parse_command_line({"--world-size", "--dry-run"}); }), Contains("--world-size needs a value"));
  CHECK_THAT(error_of([] { parse({"--optimizer.lr", "--training.steps", "3"}); }),
             Contains("--optimizer.lr needs a value but is followed by the option --training.steps"));
  CHECK_THAT(error_of([] { parse({"--training.steps"}); }), Contains("--training.steps needs a value"));
  // A value that starts with "--" is given after '='; negative numbers are values.
  CHECK(parse({"--job.description=--odd"}).job.description == "--odd");
  CHECK(parse({"--parallelism.data_parallel_shard_degree", "-1"}).parallelism.data_parallel_shard_degree == -1);
  CommandLine cl = parse_command_line({"--plan-json", "p.json", "--dry-run"});
  CHECK(cl.dry_run);
  CHECK(cl.plan_json == "p.json");
}

TEST_CASE("a legacy key and its new name both given with different values is an error") {
  CHECK_THAT(error_of([] { from_toml("[training]\nbatch_size = 4\nlocal_batch_size = 8\n"); }),
             Contains("'training.batch_size' (test.toml:2) and 'training.local_batch_size' (test.toml:3) both set "
                      "training.local_batch_size, to 4 and 8"));
  CHECK_THAT(error_of([] { from_toml("[float8]\nrecipe_name = \"rowwise\"\n[quantize.linear.float8]\nrecipe_name = \"tensorwise\"\n"); }),
             Contains("both set quantize.linear.float8.recipe_name"));
  CHECK_THAT(error_of([] { parse({"--training.batch_size", "4", "--training.local_batch_size=8"}); }),
             Contains("--training.batch_size=4 and --training.local_batch_size=8 set the same key"));
  // The same value twice is only the deprecation warning; the CLI still overrides the TOML.
  CHECK(from_toml("[training]\nbatch_size = 4\nlocal_batch_size = 4\n").training.local_batch_size == 4);
  CHECK(parse({"--training.batch_size", "4", "--training.local_batch_size", "4"}).training.local_batch_size == 4);
}

TEST_CASE("float keys reject TOML's inf and nan") {
  CHECK_THAT(error_of([] { from_toml("[optimizer]\nlr = inf\n"); }),
             Contains("optimizer.lr (test.toml:2) must be a finite number, got inf"));
  CHECK_THAT(error_of([] { from_toml("[optimizer]\nlr = -inf\n"); }), Contains("must be a finite number"));
  CHECK_THAT(error_of([] { from_toml("[training]\nmax_norm = nan\n"); }), Contains("training.max_norm (test.toml:2) must be a finite number"));
  CHECK_THAT(error_of([] { parse({"--optimizer.lr", "inf"}); }), Contains("optimizer.lr"));
}

TEST_CASE("error lines cut huge values and escape raw bytes") {
  CHECK(titan::printable("plain") == "plain");
  CHECK(titan::printable(std::string("a\x01\xff", 3)) == "a\\x01\\xff");
  const std::string huge(100000, 'x');
  const std::string shown = titan::printable(huge);
  CHECK(shown.size() < 100);
  CHECK_THAT(shown, Contains("(100000 bytes)"));
  const std::string e = error_of([&] { parse({"--lr_scheduler.decay_type", huge + "\x02"}); });
  CHECK_THAT(e, Contains("(100001 bytes)"));
  CHECK(e.size() < 400);
  const std::string e2 = error_of([] { from_toml(std::string("[training]\n\"st\\u0001eps\" = 3\n")); });
  CHECK_THAT(e2, Contains("st\\x01eps"));
  CHECK(e2.find('\x01') == std::string::npos);
}

// --- issue 12: every key does what it says ---

TEST_CASE("keys with no effect in titan.cpp warn exactly once, saying what they do in TorchTitan") {
  struct Case {
    std::vector<std::string> args;
    const char* key;
    const char* says;
  };
  const Case cases[] = {
      {{"--compile.backend=aot_eager"}, "compile.backend", "no torch here"},
      {{"--compile.components=model"}, "compile.components", "What TorchTitan compiles"},
      {{"--metrics.enable_wandb"}, "metrics.enable_wandb", "Weights & Biases"},
  };
  for (const auto& c : cases) {
    INFO(c.key);
    JobConfig cfg = parse(c.args);
    validate(cfg);
    int mentions = 0;
    for (const auto& w : cfg.warnings)
      if (w.find(c.key) != std::string::npos) {
        ++mentions;
        CHECK_THAT(w, Contains("has no effect in titan.cpp") && Contains(c.says));
      }
    CHECK(mentions == 1);
    CHECK(find_key(c.key)->support == Support::NoEffect);
  }
  // compile.enable does something (a CUDA graph; the CPU's check): no warning, also under its
  // legacy spelling training.compile, which keeps only its deprecation line.
  CHECK(find_key("compile.enable")->support == Support::Supported);
  JobConfig enabled = parse({"--compile.enable"});
  validate(enabled);
  CHECK(enabled.warnings.empty());
  JobConfig legacy = from_toml("[training]\ncompile = true\n");
  CHECK(legacy.compile.enable);
  int no_effect = 0;
  for (const auto& w : legacy.warnings) no_effect += w.find("has no effect") != std::string::npos;
  CHECK(no_effect == 0);
  // Defaults never warn.
  CHECK(parse({}).warnings.empty());
}

TEST_CASE("the implemented profiling, TensorBoard, printing and determinism keys are Supported and documented") {
  for (const char* key : {"profiling.enable_profiling", "profiling.save_traces_folder", "profiling.profile_freq",
                          "profiling.profiler_active", "profiling.profiler_warmup", "profiling.enable_memory_snapshot",
                          "profiling.save_memory_snapshot_folder", "metrics.enable_tensorboard", "metrics.save_tb_folder",
                          "model.print_after_conversion", "debug.deterministic"}) {
    INFO(key);
    REQUIRE(find_key(key));
    CHECK(find_key(key)->support == Support::Supported);
    CHECK_THAT(config_reference_markdown(), Contains("| `" + std::string(find_key(key)->name) + "` |"));
  }
  JobConfig on = parse({"--profiling.enable_profiling", "--profiling.enable_memory_snapshot", "--metrics.enable_tensorboard",
                        "--debug.deterministic", "--model.print_after_conversion"});
  validate(on);
  CHECK(on.warnings.empty());  // they do what they say: nothing to warn about
  // The reference marks no-effect keys as such.
  CHECK_THAT(config_reference_markdown(), Contains("| `backend` | string | `\"inductor\"` | no effect | torch.compile backend"));
}

TEST_CASE("profiling: the schedule needs profile_freq >= warmup + active, as TorchTitan") {
  auto invalid = [](std::vector<std::string> args) {
    return error_of([&] {
      JobConfig c = parse(args);
      validate(c);
    });
  };
  CHECK_THAT(invalid({"--profiling.enable_profiling", "--profiling.profile_freq=3"}),
             Contains("profiling.profile_freq (--profiling.profile_freq) = 3 is shorter than profiling.profiler_warmup (3) + "
                      "profiling.profiler_active (1)"));
  CHECK(invalid({"--profiling.enable_profiling", "--profiling.profile_freq=4"}).empty());
  CHECK(invalid({"--profiling.profile_freq=3"}).empty());  // profiling off: nothing is scheduled
}

TEST_CASE("profiling: which steps profile_freq, profiler_warmup and profiler_active record (torch.profiler.schedule)") {
  using titan::train::Profiler;
  auto recorded = [](std::int64_t freq, std::int64_t warmup, std::int64_t active, std::int64_t steps) {
    std::vector<std::int64_t> rec, warm;
    for (std::int64_t s = 1; s <= steps; ++s) {
      const auto a = Profiler::action(s, freq, warmup, active);
      if (a == Profiler::Action::record) rec.push_back(s);
      if (a == Profiler::Action::warmup) warm.push_back(s);
    }
    return std::make_pair(rec, warm);
  };
  // TorchTitan's defaults: wait 6, warmup 3, active 1: step 10 (then 20) recorded, 7-9 warm up.
  CHECK(recorded(10, 3, 1, 20) == std::make_pair(std::vector<std::int64_t>{10, 20}, std::vector<std::int64_t>{7, 8, 9, 17, 18, 19}));
  CHECK(recorded(3, 1, 2, 6) == std::make_pair(std::vector<std::int64_t>{2, 3, 5, 6}, std::vector<std::int64_t>{1, 4}));
  CHECK(recorded(1, 0, 1, 3).first == std::vector<std::int64_t>{1, 2, 3});
  CHECK(recorded(4, 0, 4, 4).first == std::vector<std::int64_t>{1, 2, 3, 4});
}

TEST_CASE("trace: spans record complete events only while enabled") {
  namespace trace = titan::trace;
  trace::set_enabled(false);
  (void)trace::take();
  { TITAN_TRACE_SPAN("gemm", "off"); }
  CHECK(trace::take().empty());
  trace::set_enabled(true);
  {
    trace::Span outer("step", std::string("outer"));
    outer.set_args("\"step\":7");
    TITAN_TRACE_SPAN("gemm", "inner");
  }
  trace::set_enabled(false);
  const auto events = trace::take();
  REQUIRE(events.size() == 2);
  CHECK(events[0].name == "inner");  // recorded when it ends: the inner span first
  CHECK(std::string(events[0].category) == "gemm");
  CHECK(events[1].name == "outer");
  CHECK(events[1].args == "\"step\":7");
  CHECK(events[1].ts_us <= events[0].ts_us);
  CHECK(events[1].ts_us + events[1].dur_us >= events[0].ts_us + events[0].dur_us);
  CHECK(events[0].dur_us >= 0);
  CHECK(trace::take().empty());
}
