#include "train/metrics.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>
#include <unistd.h>

#include "checkpoint/safetensors.hpp"
#include "core/errors.hpp"
#include "core/tensor.hpp"
#include "ops/ops.hpp"
#include "train/tensorboard.hpp"

namespace titan::train {

namespace {
// "1:02:03": whole seconds as hours, minutes, seconds.
std::string hms(double seconds) {
  const auto s = static_cast<long long>(seconds);
  return fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60);
}
}  // namespace

MetricsLogger::MetricsLogger(double flops_per_token, double peak_flops, const std::string& jsonl_path,
                             const std::string& tensorboard_folder)
    : flops_per_token_(flops_per_token), peak_flops_(peak_flops), jsonl_path_(jsonl_path) {
  if (!jsonl_path.empty()) {
    jsonl_.open(jsonl_path, std::ios::app);
    if (!jsonl_) throw UserError("metrics: cannot write '" + jsonl_path + "'; check job.dump_folder");
  }
  if (!tensorboard_folder.empty()) {
    tensorboard_ = std::make_unique<TensorBoardWriter>(tensorboard_folder);
    spdlog::info("metrics: TensorBoard event file {}", tensorboard_->path());
  }
}

MetricsLogger::~MetricsLogger() = default;

void MetricsLogger::log(const StepMetrics& m) {
  const double tps = m.step_seconds > 0 ? double(m.tokens) / m.step_seconds : 0;
  const double tflops = flops_per_token_ * tps / 1e12;
  // A peak below what this step achieved was measured on a busy machine (or the cache is stale):
  // the achieved rate is a better lower bound of the true peak, so mfu never reads above 100%.
  if (peak_flops_ > 0 && flops_per_token_ * tps > peak_flops_) {
    spdlog::debug("mfu: step {} ran at {:.3g} FLOP/s, above the peak {:.3g}; the peak is raised to it", m.step,
                  flops_per_token_ * tps, peak_flops_);
    peak_flops_ = flops_per_token_ * tps;
  }
  const double mfu = peak_flops_ > 0 ? 100.0 * flops_per_token_ * tps / peak_flops_ : 0;
  const double data_pct = m.step_seconds > 0 ? 100.0 * m.data_seconds / m.step_seconds : 0;
  const std::string eta = (m.loss_scale ? fmt::format("  scale {:g}{}", *m.loss_scale, m.step_skipped ? " skipped" : "") : "") +
                          (m.eta_seconds ? "  eta " + hms(*m.eta_seconds) : "");
  const double comm_mib = double(m.comm.total_bytes()) / double(1 << 20);
  spdlog::info("step {:5d}  loss {:8.4f}  grad_norm {:8.4f}  lr {:.4e}  memory {:6.2f}GiB({:.1f}%) act {:.1f}MiB  "
               "tps {:.0f}  tflops {:.3f}  mfu {:.2f}%  data {:.1f}%  comm {:.2f}MiB wait {:.3f}s of {:.3f}s  syncs {:.3g}{}",
               m.step, m.loss, m.grad_norm, m.lr, m.memory_peak_gib, m.memory_pct, m.saved_activation_gib * 1024.0, tps,
               tflops, mfu, data_pct, comm_mib, m.comm.wait_seconds, m.comm.in_flight_seconds, m.host_syncs, eta);
  if (jsonl_.is_open()) {
    nlohmann::json j = {{"step", m.step},          {"loss", m.loss},         {"grad_norm", m.grad_norm},
                        {"lr", m.lr},              {"tps", tps},             {"tflops", tflops},
                        {"mfu", mfu},              {"data_pct", data_pct},   {"memory_gib", m.memory_peak_gib},
                        {"memory_pct", m.memory_pct}, {"step_seconds", m.step_seconds}, {"tokens", m.tokens},
                        {"saved_activation_gib", m.saved_activation_gib}, {"host_syncs", m.host_syncs}};
    if (m.loss_scale) {
      j["loss_scale"] = *m.loss_scale;
      j["step_skipped"] = m.step_skipped;
    }
    nlohmann::json comm = {{"wait_seconds", m.comm.wait_seconds}, {"in_flight_seconds", m.comm.in_flight_seconds}};
    for (int op = 0; op < dist::CommStats::kNumOps; ++op) {
      const char* name = dist::CommStats::name(static_cast<dist::CommStats::Op>(op));
      comm[std::string(name) + "_bytes"] = m.comm.bytes[size_t(op)];
      comm[std::string(name) + "_calls"] = m.comm.calls[size_t(op)];
    }
    comm["float8_amax_all_reduces"] = m.float8_amax_all_reduces;
    comm["fsdp_all_gathers_shard_group"] = m.fsdp_gathers_shard;
    comm["fsdp_all_gathers_hpz_group"] = m.fsdp_gathers_hpz;
    j["comm"] = comm;
    j["state_bytes"] = {{"params", m.state.params}, {"grads", m.state.grads}, {"optimizer", m.state.optimizer}};
    jsonl_ << j.dump() << "\n";
    flush_row();
  }
  if (tensorboard_) {
    // TorchTitan's tags (torchtitan/components/metrics.py), and the lr it logs beside them.
    std::vector<std::pair<std::string, double>> s = {
        {"loss_metrics/global_avg_loss", m.loss},
        {"grad_norm", m.grad_norm},
        {"throughput(tps)", tps},
        {"tflops", tflops},
        {"mfu(%)", mfu},
        {"time_metrics/end_to_end(s)", m.step_seconds},
        {"time_metrics/data_loading(s)", m.data_seconds},
        {"time_metrics/data_loading(%)", data_pct},
        {"memory/max_active(GiB)", m.memory_peak_gib},
        {"memory/max_active(%)", m.memory_pct},
        {"memory/max_reserved(GiB)", m.memory_reserved_gib},
        {"memory/max_reserved(%)", m.memory_reserved_pct},
        {"lr", m.lr},
    };
    if (m.loss_max) s.insert(s.begin() + 1, {"loss_metrics/global_max_loss", *m.loss_max});
    tensorboard_->add_scalars(m.step, s);
  }
}

void MetricsLogger::log_validation(std::int64_t step, double loss, std::int64_t batches) {
  spdlog::info("validate step {:5d}  loss {:8.4f}  ({} batches)", step, loss, batches);
  if (jsonl_.is_open()) {
    jsonl_ << nlohmann::json{{"step", step}, {"validation_loss", loss}, {"validation_batches", batches}}.dump() << "\n";
    flush_row();
  }
  if (tensorboard_) tensorboard_->add_scalars(step, {{"validation_metrics/loss", loss}});
}

void MetricsLogger::flush_row() { flush_or_throw(jsonl_, jsonl_path_); }

std::string progress_line(std::int64_t step, std::int64_t first, std::int64_t total, double elapsed, double loss,
                          int width) {
  const double frac = total > 0 ? std::clamp(double(step) / double(total), 0.0, 1.0) : 1.0;
  const int filled = static_cast<int>(frac * width + 1e-9);
  const std::int64_t done_here = step - first + 1;
  std::string line = "[" + std::string(filled, '#') + std::string(width - filled, '-') + "] ";
  line += fmt::format("{}/{}  {:3.0f}%  loss {:.4f}", step, total, 100.0 * frac, loss);
  if (done_here > 0 && elapsed > 0) {
    const double per_step = elapsed / double(done_here);
    line += per_step < 1 ? fmt::format("  {:.1f} steps/s", 1.0 / per_step) : fmt::format("  {:.1f} s/step", per_step);
    line += "  ETA " + hms(eta_seconds(step, first, total, elapsed) + 0.5);
  }
  return line;
}

double eta_seconds(std::int64_t step, std::int64_t first, std::int64_t total, double elapsed) {
  return elapsed / double(step - first + 1) * double(total - step);
}

void flush_or_throw(std::ostream& out, const std::string& path) {
  errno = 0;
  out.flush();
  if (!out)
    throw UserError("metrics: cannot write '" + path + "': " + (errno ? checkpoint::errno_text(errno) : "write failed") +
                        "; free some space or point job.dump_folder elsewhere",
                    kExitRuntimeError);
}

void MetricsLogger::truncate_after(std::int64_t step) {
  if (!jsonl_.is_open()) return;
  jsonl_.close();
  std::vector<std::string> kept;
  std::int64_t dropped = 0;
  {
    std::ifstream in(jsonl_path_);
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<std::int64_t>() > step) {
        ++dropped;
        continue;
      }
      kept.push_back(std::move(line));
    }
  }
  if (dropped > 0) {
    const std::string tmp = jsonl_path_ + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      for (const auto& line : kept) out << line << "\n";
      out.flush();
      if (!out) throw UserError("metrics: cannot write '" + tmp + "'; check job.dump_folder", kExitRuntimeError);
    }
    std::error_code ec;
    std::filesystem::rename(tmp, jsonl_path_, ec);
    if (ec) throw UserError("metrics: cannot replace '" + jsonl_path_ + "'; check job.dump_folder", kExitRuntimeError);
    spdlog::info("metrics: dropped {} row(s) of steps after {} from {} (they are trained again)", dropped, step, jsonl_path_);
  }
  jsonl_.open(jsonl_path_, std::ios::app);
  if (!jsonl_) throw UserError("metrics: cannot write '" + jsonl_path_ + "'; check job.dump_folder");
}

double physical_memory_bytes() {
  return double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGE_SIZE));
}

}  // namespace titan::train
