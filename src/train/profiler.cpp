#include "train/profiler.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/backend.hpp"
#include "core/errors.hpp"
#include "core/trace.hpp"
#include "nn/module.hpp"

namespace titan::train {

namespace {

// JSON string body (no quotes) of `s`.
void append_escaped(std::string& out, const std::string& s) {
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
}

void append_us(std::string& out, double us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", us);
  out += buf;
}

}  // namespace

Profiler::Action Profiler::action(std::int64_t step, std::int64_t freq, std::int64_t warmup, std::int64_t active) {
  // torch.profiler.schedule(wait, warmup, active) sees step - 1 (its counter starts at 0 for the
  // first training step); with wait = freq - warmup - active a cycle ends at each multiple of freq.
  const std::int64_t in_cycle = (step - 1) % freq;
  if (in_cycle >= freq - active) return Action::record;
  if (in_cycle >= freq - active - warmup) return Action::warmup;
  return Action::none;
}

Profiler::Profiler(const config::JobConfig& cfg, int rank, Device device) : rank_(rank) {
  const auto& p = cfg.profiling;
  enabled_ = p.enable_profiling;
  if (!enabled_) return;
  freq_ = p.profile_freq;
  warmup_ = p.profiler_warmup;
  active_ = p.profiler_active;
  if (freq_ < warmup_ + active_)  // validate() rejects this; a library caller gets the same line
    throw UserError("profiling.profile_freq (" + std::to_string(freq_) +
                    ") must be >= profiling.profiler_warmup + profiling.profiler_active (" +
                    std::to_string(warmup_ + active_) + ")");
  trace_dir_ = (std::filesystem::path(cfg.job.dump_folder) / p.save_traces_folder).string();
  std::error_code ec;
  std::filesystem::create_directories(trace_dir_, ec);
  if (ec) throw UserError("profiling: cannot create '" + trace_dir_ + "': " + ec.message());
  spdlog::info("profiling: every {} steps, {} warm-up + {} recorded step(s); traces go to {}/iteration_{{step}}/rank{}_trace.json",
               freq_, warmup_, active_, trace_dir_, rank_);
  DeviceBackend& backend = backend_for(device);
  const std::uint64_t probe = backend.timing_marker(device.index);
  if (probe) {  // the device has timing markers: GPU spans
    backend.timing_release(probe);
    const int index = device.index;
    trace::set_device_timer({[&backend, index] { return backend.timing_marker(index); },
                             [&backend](std::uint64_t a, std::uint64_t b) { return backend.timing_elapsed_us(a, b); },
                             [&backend](std::uint64_t m) { backend.timing_release(m); }});
    device_timer_ = true;
  }
}

Profiler::~Profiler() {
  if (enabled_) trace::set_enabled(false);
  if (device_timer_) trace::set_device_timer({});
}

namespace {

using OpenSpans = std::unordered_map<const nn::Module*, std::vector<double>>;

// A module span starts (its start time, or -1 when not recording, so the close still pairs up).
void open_span(OpenSpans& open, const nn::Module& mod) {
  open[&mod].push_back(trace::enabled() ? trace::now_us() : -1.0);
}

// The module's latest open span ends: recorded as "Type fqn" under `category` if it was recording.
void close_span(OpenSpans& open, const nn::Module& mod, const char* category) {
  auto it = open.find(&mod);
  if (it == open.end() || it->second.empty()) return;
  const double start = it->second.back();
  it->second.pop_back();
  if (start < 0 || !trace::enabled()) return;
  const std::string& name = mod.fqn();
  trace::record(category, mod.type_name() + (name.empty() ? "" : " " + name), start, trace::now_us() - start);
}

}  // namespace

void Profiler::attach(nn::Module& root) {
  if (!enabled_) return;
  for (auto& [fqn, m] : root.named_modules()) {
    m->add_forward_pre_hook([this](nn::Module& mod) { open_span(open_, mod); });
    m->add_forward_hook([this](nn::Module& mod, std::vector<autograd::Variable>&) { close_span(open_, mod, "module"); });
    // Backward: from the gradient reaching the module's outputs to its leaving through the
    // inputs. A module whose inputs need no gradient (the embedding's token ids) never closes
    // its span; step_end drops such leftovers.
    m->add_backward_pre_hook([this](nn::Module& mod) { open_span(open_backward_, mod); });
    m->add_backward_hook([this](nn::Module& mod) { close_span(open_backward_, mod, "module_backward"); });
  }
}

void Profiler::step_begin(std::int64_t step) {
  if (!enabled_) return;
  const bool rec = action(step, freq_, warmup_, active_) == Action::record;
  if (rec) recorded_.push_back(step);
  trace::set_enabled(rec);
  step_start_us_ = trace::now_us();
}

void Profiler::step_end(std::int64_t step) {
  if (!enabled_) return;
  if (trace::enabled()) trace::record("step", "train_step", step_start_us_, trace::now_us() - step_start_us_,
                                      "\"step\":" + std::to_string(step));
  trace::set_enabled(false);
  open_backward_.clear();
  if (step % freq_ == 0 && !recorded_.empty()) write(step);
}

void Profiler::finish(std::int64_t last_step) {
  if (!enabled_) return;
  trace::set_enabled(false);
  if (!recorded_.empty()) write(last_step);
}

void Profiler::write(std::int64_t step) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::int64_t lost = trace::dropped();
  std::vector<trace::Event> events = trace::take();
  const std::filesystem::path dir = std::filesystem::path(trace_dir_) / ("iteration_" + std::to_string(step));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::filesystem::path file = dir / ("rank" + std::to_string(rank_) + "_trace.json");
  std::string steps;
  for (auto s : recorded_) steps += (steps.empty() ? "" : ",") + std::to_string(s);
  const std::string pid = std::to_string(rank_);
  std::string out;
  out.reserve(events.size() * 120 + 512);
  out += "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"generator\":\"titan.cpp\",\"rank\":" + pid +
         ",\"iteration\":" + std::to_string(step) + ",\"recorded_steps\":[" + steps +
         "],\"dropped_events\":" + std::to_string(lost) + "},\"traceEvents\":[\n";
  out += "{\"ph\":\"M\",\"pid\":" + pid + ",\"tid\":0,\"name\":\"process_name\",\"args\":{\"name\":\"rank " + pid + "\"}},\n";
  out += "{\"ph\":\"M\",\"pid\":" + pid + ",\"tid\":0,\"name\":\"process_sort_index\",\"args\":{\"sort_index\":" + pid + "}}";
  if (device_timer_)
    out += ",\n{\"ph\":\"M\",\"pid\":" + pid + ",\"tid\":" + std::to_string(trace::kDeviceTid) +
           ",\"name\":\"thread_name\",\"args\":{\"name\":\"device (GPU compute stream)\"}}";
  for (const auto& e : events) {
    out += ",\n{\"ph\":\"X\",\"cat\":\"";
    out += e.category;
    out += "\",\"name\":\"";
    append_escaped(out, e.name);
    out += "\",\"pid\":" + pid + ",\"tid\":" + std::to_string(e.tid) + ",\"ts\":";
    append_us(out, e.ts_us);
    out += ",\"dur\":";
    append_us(out, e.dur_us);
    if (!e.args.empty()) out += ",\"args\":{" + e.args + "}";
    out += "}";
  }
  out += "\n]}\n";
  std::ofstream f(file, std::ios::binary);
  f << out;
  f.close();
  if (!f) throw UserError("profiling: cannot write '" + file.string() + "'; check the path and free space", kExitRuntimeError);
  spdlog::info("profiling: wrote {} events of step(s) {} to {} in {:.2f}s{}", events.size(), steps, file.string(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
               lost ? fmt::format(" ({} events dropped: the buffer was full)", lost) : "");
  recorded_.clear();
}

}  // namespace titan::train
