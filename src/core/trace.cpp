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

std::vector<Event> take() {
  std::lock_guard<std::mutex> lock(g_mutex);
  std::vector<Event> out;
  out.swap(g_events);
  g_dropped = 0;
  return out;
}

std::int64_t dropped() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_dropped;
}

void Span::begin(const char* category, std::string name) {
  active_ = true;
  category_ = category;
  name_ = std::move(name);
  start_us_ = now_us();
}

void Span::end() {
  const double stop = now_us();
  record(category_, std::move(name_), start_us_, stop - start_us_, std::move(args_));
}

}  // namespace titan::trace
