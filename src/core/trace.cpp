#include "core/trace.hpp"

#include <chrono>
#include <mutex>

namespace titan::trace {

namespace detail {
std::atomic<bool> g_enabled{false};
}

namespace {

using Clock = std::chrono::steady_clock;
const Clock::time_point g_epoch = Clock::now();

std::mutex g_mutex;
std::vector<Event> g_events;
std::int64_t g_dropped = 0;
std::atomic<int> g_next_tid{1};

// Device spans waiting for take(): markers are resolved there, off the hot path.
struct DeviceSpan {
  std::string name;
  const char* category;
  std::uint64_t start, stop;
};
DeviceTimer g_timer;  // guarded by g_mutex
std::vector<DeviceSpan> g_device_spans;
std::uint64_t g_reference = 0;  // the marker taken at host time g_reference_us
double g_reference_us = 0;

int thread_number() {
  thread_local const int tid = g_next_tid.fetch_add(1);
  return tid;
}

}  // namespace

void set_enabled(bool on) { detail::g_enabled.store(on, std::memory_order_relaxed); }

double now_us() { return std::chrono::duration<double, std::micro>(Clock::now() - g_epoch).count(); }

void record(const char* category, std::string name, double ts_us, double dur_us, std::string args) {
  const int tid = thread_number();
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_events.size() >= kMaxEvents) {
    ++g_dropped;
    return;
  }
  g_events.push_back(Event{std::move(name), category, ts_us, dur_us, tid, std::move(args)});
}

void set_device_timer(DeviceTimer timer) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_timer.release) {
    for (const auto& d : g_device_spans) {
      g_timer.release(d.start);
      g_timer.release(d.stop);
    }
    if (g_reference) g_timer.release(g_reference);
  }
  g_device_spans.clear();
  g_timer = std::move(timer);
  g_reference = g_timer.record ? g_timer.record() : 0;
  g_reference_us = now_us();
}

std::vector<Event> take() {
  std::lock_guard<std::mutex> lock(g_mutex);
  std::vector<Event> out;
  out.swap(g_events);
  for (const auto& d : g_device_spans) {
    const double ts = g_reference_us + g_timer.elapsed_us(g_reference, d.start);
    out.push_back(Event{d.name, d.category, ts, g_timer.elapsed_us(d.start, d.stop), kDeviceTid, {}});
    g_timer.release(d.start);
    g_timer.release(d.stop);
  }
  g_device_spans.clear();
  g_dropped = 0;
  return out;
}

std::int64_t dropped() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_dropped;
}

std::uint64_t device_marker() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_timer.record && g_reference ? g_timer.record() : 0;
}

void Span::begin(const char* category, std::string name) {
  active_ = true;
  category_ = category;
  name_ = std::move(name);
  device_start_ = device_marker();
  start_us_ = now_us();
}

void Span::end() {
  const double stop = now_us();
  if (device_start_) {
    const std::uint64_t device_stop = device_marker();
    std::lock_guard<std::mutex> lock(g_mutex);
    if (device_stop) g_device_spans.push_back(DeviceSpan{name_, category_, device_start_, device_stop});
    else if (g_timer.release) g_timer.release(device_start_);
  }
  record(category_, std::move(name_), start_us_, stop - start_us_, std::move(args_));
}

}  // namespace titan::trace
