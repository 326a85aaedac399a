// bench_checkpoint: the cost of saving one rank's training state (f32 weights + AdamW moments)
// for a model too large to train here: the shapes of a flavor with fewer layers, as rank 0 of an
// FSDP shard group of --shards ranks holds them. Saves it synchronously and async (into a
// scratch folder that is removed) and prints bytes, write time, MiB/s and the training stall.
//   bench_checkpoint --flavor 8B --layers 2 --shards 4 [--dir /tmp/x] [--repeat 2]
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "checkpoint/checkpointer.hpp"
#include "core/errors.hpp"
#include "dist/world.hpp"
#include "models/llama3/model.hpp"

using namespace titan;

int main(int argc, char** argv) {
  dist::World world(&argc, &argv);
  CLI::App app{"bench_checkpoint: time one rank's checkpoint save (sync and async)"};
  std::string flavor = "8B", dir = (std::filesystem::temp_directory_path() / "titan_bench_checkpoint").string();
  std::int64_t layers = 2, shards = 4, repeat = 2;
  app.add_option("--flavor", flavor, "model flavor whose shapes to use");
  app.add_option("--layers", layers, "number of transformer blocks (fewer than the flavor's)");
  app.add_option("--shards", shards, "FSDP shard degree: the rank holds ceil(rows / shards) rows of each tensor");
  app.add_option("--dir", dir, "scratch folder (removed afterwards)");
  app.add_option("--repeat", repeat, "saves per mode");
  CLI11_PARSE(app, argc, argv);
  try {
    const llama3::ModelArgs* base = llama3::find_flavor("llama3", flavor);
    if (!base) throw UserError("bench_checkpoint: unknown flavor '" + flavor + "'");
    llama3::ModelArgs args = *base;
    args.n_layers = layers;
    std::unique_ptr<llama3::Transformer> meta;
    {
      nn::MetaGuard guard;
      meta = std::make_unique<llama3::Transformer>(args);
    }
    checkpoint::TrainingState state;
    std::int64_t bytes = 0;
    for (auto& [fqn, p] : meta->named_parameters()) {
      const Shape& global = p->shape();
      Shape local = global;
      local[0] = (global[0] + shards - 1) / shards;
      for (const char* kind : {"model.", "optimizer.exp_avg.", "optimizer.exp_avg_sq."}) {
        Tensor t = Tensor::full(local, 0.5);  // touched memory, like real state
        bytes += static_cast<std::int64_t>(t.nbytes());
        auto& list = std::string(kind) == "model." ? state.model : state.optimizer;
        list.push_back({kind + fqn, global, 0, local[0], t});
      }
    }
    std::printf("state of rank 0 of %lld: %s with %lld layers, %.2f GiB (weights + AdamW moments, f32)\n",
                (long long)shards, flavor.c_str(), (long long)layers, double(bytes) / double(1ull << 30));
    std::printf("%-6s %10s %10s %10s %10s\n", "mode", "GiB", "write_s", "MiB/s", "stall_s");
    dist::DeviceMesh mesh(world, 1, 1);
    for (const char* mode : {"disabled", "async"}) {
      checkpoint::CheckpointOptions opts;
      opts.folder = dir + "/" + mode + "/checkpoint";  // each mode starts from an empty folder
      opts.enable = true;
      opts.async = std::string(mode) != "disabled";
      opts.keep_latest_k = 2;
      spdlog::set_level(spdlog::level::warn);
      for (std::int64_t r = 1; r <= repeat; ++r) {
        checkpoint::Checkpointer ckpt(opts, mesh, nlohmann::json{{"flavor", flavor}}, "");
        const auto t0 = std::chrono::steady_clock::now();
        ckpt.save(r, state, false);
        const double stall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        ckpt.wait();
        const auto& t = ckpt.last_timing();
        std::printf("%-6s %10.2f %10.2f %10.1f %10.3f\n", std::string(mode) == "disabled" ? "sync" : "async",
                    double(t.bytes) / double(1ull << 30), t.write_seconds,
                    t.write_seconds > 0 ? double(t.bytes) / double(1 << 20) / t.write_seconds : 0.0, stall);
      }
      std::filesystem::remove_all(dir + "/" + mode);
    }
    std::filesystem::remove_all(dir);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    std::filesystem::remove_all(dir);
    return 2;
  }
}
