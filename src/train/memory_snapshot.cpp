#include "train/memory_snapshot.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/backend.hpp"
#include "core/errors.hpp"
#include "core/memory_history.hpp"

namespace titan::train {

MemorySnapshot::MemorySnapshot(const config::JobConfig& cfg, int rank, Device device)
    : enabled_(cfg.profiling.enable_memory_snapshot), rank_(rank), device_(device), freq_(cfg.profiling.profile_freq) {
  if (!enabled_) return;
  dir_ = (std::filesystem::path(cfg.job.dump_folder) / cfg.profiling.save_memory_snapshot_folder).string();
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) throw UserError("profiling: cannot create '" + dir_ + "': " + ec.message() + "; check job.dump_folder");
  memory_history::set_step(0);
  memory_history::set_enabled(true);
  spdlog::info("profiling: memory snapshots every {} steps and after the last, to {}/iteration_{{step}}/rank{}_memory_snapshot.json",
               freq_, dir_, rank_);
}

MemorySnapshot::~MemorySnapshot() {
  if (enabled_) memory_history::set_enabled(false);
}

void MemorySnapshot::step_begin(std::int64_t step) {
  if (enabled_) memory_history::set_step(step);
}

void MemorySnapshot::step_end(std::int64_t step, bool last) {
  if (!enabled_) return;
  const MemoryStats s = backend_for(device_).memory_stats(device_.index);
  peaks_.push_back({step, s.peak, s.peak_reserved});
  if (step % freq_ == 0 || last) write(step);
}

void MemorySnapshot::write(std::int64_t step) {
  std::vector<memory_history::Block> blocks = memory_history::live_blocks();
  blocks.erase(std::remove_if(blocks.begin(), blocks.end(), [&](const auto& b) { return b.device != device_; }),
               blocks.end());
  std::stable_sort(blocks.begin(), blocks.end(), [](const auto& a, const auto& b) { return a.bytes > b.bytes; });
  std::size_t total = 0;
  nlohmann::json jb = nlohmann::json::array();
  for (const auto& b : blocks) {
    total += b.bytes;
    jb.push_back({{"bytes", b.bytes}, {"allocated_at_step", b.step}, {"seq", b.seq}});
  }
  nlohmann::json js = nlohmann::json::array();
  for (const auto& p : peaks_) js.push_back({{"step", p.step}, {"peak_bytes", p.peak}, {"peak_reserved_bytes", p.peak_reserved}});
  const MemoryStats s = backend_for(device_).memory_stats(device_.index);
  nlohmann::json j = {{"generator", "titan.cpp"},
                      {"rank", rank_},
                      {"device", device_.str()},
                      {"iteration", step},
                      {"in_use_bytes", s.in_use},
                      {"reserved_bytes", s.reserved},
                      {"capacity_bytes", s.capacity},
                      {"steps", js},
                      {"live_blocks", blocks.size()},
                      {"live_bytes", total},
                      {"blocks", jb}};
  const auto folder = std::filesystem::path(dir_) / ("iteration_" + std::to_string(step));
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  const auto file = folder / ("rank" + std::to_string(rank_) + "_memory_snapshot.json");
  std::ofstream f(file, std::ios::binary);
  f << j.dump(1) << "\n";
  f.close();
  if (!f)
    throw UserError("profiling: cannot write '" + file.string() + "'; check the path and free space", kExitRuntimeError);
  spdlog::info("profiling: memory snapshot of step {}: {} live blocks, {:.2f} MiB, to {}", step, blocks.size(),
               double(total) / (1 << 20), file.string());
  peaks_.clear();
}

}  // namespace titan::train
