// run_train: the titan.cpp trainer entry point. Thin by design: parse the config, build the plan,
// run, and map every failure to one line and an exit code (core/errors.hpp).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <new>
#include <string>
#include <vector>

#include "config/cli.hpp"
#include "config/reference.hpp"
#include "config/schema.hpp"
#include "config/toml_io.hpp"
#include "config/validate.hpp"
#include "core/device.hpp"
#include "core/errors.hpp"
#include "core/logging.hpp"
#include "dist/world.hpp"
#include "train/plan.hpp"
#include "train/preflight.hpp"
#include "train/trainer.hpp"
#include "cpu_gemm_env.hpp"

namespace {

using titan::UserError;

// What to change when the model does not fit (the planned check and a real bad_alloc say it).
constexpr const char* kMemoryFixes =
    "shard over more ranks (parallelism.data_parallel_shard_degree), enable activation checkpointing, or lower "
    "training.local_batch_size, training.seq_len or the model flavor";

void write_file(const std::filesystem::path& path, const std::string& text, const char* what) {
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  std::ofstream out(path);
  out << text;
  if (!out) throw UserError(std::string("cannot write ") + what + " to '" + path.string() + "'; check the path");
}

// Environment variables of earlier versions, now config keys: each still works, below the config
// file and the command line, with a deprecation warning.
void apply_deprecated_environment(titan::config::JobConfig& cfg) {
  struct Alias {
    const char* variable;
    const char* key;
  };
  for (const Alias& a : {Alias{"TITAN_DEVICE", "training.device"}, Alias{"TITAN_FAULT", "debug.fault"}}) {
    const char* value = std::getenv(a.variable);
    if (!value || !*value) continue;
    if (cfg.sources.count(a.key)) {
      cfg.warnings.push_back(std::string(a.variable) + " is deprecated and ignored: " + a.key + " is set (" +
                             cfg.sources.at(a.key) + ")");
      continue;
    }
    titan::config::assign(*titan::config::find_key(a.key), cfg, titan::config::CliText{value}, a.variable);
    cfg.warnings.push_back(std::string(a.variable) + " is deprecated; use --" + a.key + " " + titan::printable(value));
  }
}

// Everything a rank does; returns its exit code, with `error` holding the line to report.
// `agreed` is set when the ranks already agreed on the exit code (see PeerFailure).
int run(const titan::dist::World& world, const std::vector<std::string>& args, const std::string& openblas_note,
        std::string& error, bool& agreed) {
  try {
    titan::config::CommandLine cl = titan::config::parse_command_line(args);
    if (cl.show_help) {
      if (world.rank() == 0) std::fputs(cl.help_text.c_str(), stdout);
      return titan::kExitOk;
    }
    if (cl.config_reference) {
      if (world.rank() == 0) std::fputs(titan::config::config_reference_markdown().c_str(), stdout);
      return titan::kExitOk;
    }
    titan::config::JobConfig& cfg = cl.config;
    apply_deprecated_environment(cfg);
    titan::config::validate(cfg);
    titan::init_logging(world.rank(), cfg.metrics.save_for_all_ranks, !cfg.metrics.disable_color_printing);
    titan::apps::report_openblas_kernel(openblas_note);
    const titan::DeviceInfo devices = titan::probe_devices(world.local_rank());
    spdlog::info("{}", titan::apps::apply_cpu_threads(cfg.training.cpu_threads, world.local_size()));
    const titan::train::Plan plan = titan::train::make_plan(cfg, cl.world_size.value_or(world.size()), devices);

    for (const auto& w : cfg.warnings) spdlog::warn("{}", w);
    if (cfg.job.print_config && world.rank() == 0) std::fputs(titan::config::to_toml(cfg).c_str(), stdout);
    if (cfg.job.save_config_file && world.rank() == 0)
      write_file(std::filesystem::path(cfg.job.dump_folder) / *cfg.job.save_config_file, titan::config::to_toml(cfg),
                 "the config");
    if (cl.plan_json && world.rank() == 0) write_file(*cl.plan_json, titan::train::plan_json(plan).dump(2) + "\n", "the plan");
    spdlog::info("{}: {}", cfg.job.description, titan::train::plan_text(plan));
    // Memory is compared with this node before anything is allocated (an 8B model on a laptop
    // would end in bad_alloc or the OOM killer). A dry run for another world size has no node to
    // compare with.
    const titan::train::MemoryFit fit = titan::train::check_memory(plan, devices, world.local_size());
    if (cl.dry_run) {
      if (!cl.world_size && !fit.text.empty())
        (fit.fits ? spdlog::info("memory: the plan {}", fit.text)
                  : spdlog::warn("memory: the plan {}: a run would stop here", fit.text));
      for (const auto& problem : titan::train::input_problems(cfg, plan))
        spdlog::warn("{} (a run would stop here)", problem);
      return titan::kExitOk;
    }
    if (!fit.fits)
      throw UserError("memory: the plan " + fit.text + "; " + kMemoryFixes);
    titan::train::Trainer::build(cfg, plan, world)->train();
    return titan::kExitOk;
  } catch (const titan::PeerFailure& e) {
    error = e.what();
    agreed = true;
    return e.exit_code();
  } catch (const UserError& e) {
    error = e.what();
    return e.exit_code();
  } catch (const std::bad_alloc&) {
    error = std::string("memory: out of host memory; ") + kMemoryFixes + " (run_train --dry-run shows the estimate)";
    return titan::kExitRuntimeError;
  } catch (const std::exception& e) {
    error = std::string("internal error: ") + titan::printable(e.what(), 200);
    return titan::kExitRuntimeError;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string openblas_note = titan::apps::ensure_openblas_kernel(argv);  // before MPI_Init
  titan::apps::set_cpu_gemm_cache_from_environment();
  titan::dist::World world(&argc, &argv);
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string error;
  bool agreed = false;
  const int mine = run(world, args, openblas_note, error, agreed);
  // Agree on the outcome before anyone leaves: a rank that failed alone still stops the job.
  // Rank 0 reports; another rank reports only an error that rank 0 did not have.
  const int code = agreed ? mine : world.agree_exit_code(mine, error);
  // Whether rank 0 has an error of its own (not just "another rank failed").
  const int rank0_own = world.rank0_code(agreed ? titan::kExitOk : mine);
  // A rank stopped by another's failure stays quiet: the failing rank prints the one error line.
  if (mine != titan::kExitOk && !agreed && (world.rank() == 0 || rank0_own == titan::kExitOk)) {
    if (world.rank() == 0) std::fprintf(stderr, "error: %s\n", error.c_str());
    else std::fprintf(stderr, "error: [rank %d] %s\n", world.rank(), error.c_str());
  }
  return code;
}
