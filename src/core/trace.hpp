#pragma once
// A tiny in-process tracer for profiling.enable_profiling (DESIGN.md section 9): RAII spans that
// become Chrome trace-event "complete" events (ph "X", ts/dur in microseconds), which Perfetto and
// chrome://tracing open. The schedule (which steps are recorded) and the files are the trainer's
// (src/train/profiler.hpp); this layer only records.
//
// Cost when off: a Span checks one relaxed atomic flag and stores nothing else, so spans may sit
// at the top of hot functions (GEMMs, collectives). When on, a span takes two clock reads and one
// short mutex-protected push at its end (any thread may record).
//
//   TITAN_TRACE_SPAN("gemm", "linear");          // until the end of the enclosing scope
//   trace::Span s("module", fqn);                 // a name built at run time
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace titan::trace {

struct Event {
  std::string name;
  const char* category;   // a string literal: "step", "gemm", "comm", ...
  double ts_us, dur_us;   // start, since the tracer's epoch (process start), and duration
  int tid;                // small per-thread number (1 = the first thread that recorded)
  std::string args;       // optional: the JSON members of "args" without braces, e.g. "\"step\":3"
};

namespace detail {
extern std::atomic<bool> g_enabled;
}

// Whether spans record now. Cheap: one relaxed load.
inline bool enabled() { return detail::g_enabled.load(std::memory_order_relaxed); }
void set_enabled(bool on);

// Microseconds since the tracer's epoch (a steady clock).
double now_us();

// GPU spans: with a device timer set (the profiler sets the training device backend's on a GPU
// run), every span also enqueues a marker on the device's work queue at its start and end, and
// take() turns each pair into a second event on thread kDeviceTid, timed on the device: when the
// span's work ran there, not when the host issued it. Markers are resolved against one reference
// marker taken with the host clock when the timer is set, so host and device events share a time
// axis (to the host-device clock offset at that moment). record: a new marker (0: none);
// elapsed_us(from, to): device time between two markers, waiting for `to`; release: recycle one.
struct DeviceTimer {
  std::function<std::uint64_t()> record;
  std::function<double(std::uint64_t from, std::uint64_t to)> elapsed_us;
  std::function<void(std::uint64_t)> release;
};
// Installs `timer` (an empty one turns GPU spans off).
void set_device_timer(DeviceTimer timer);
constexpr int kDeviceTid = 1000000;  // the thread the GPU spans show on ("device" in the trace)

// Records one complete event (dropped when the buffer holds kMaxEvents already; dropped() counts them).
void record(const char* category, std::string name, double ts_us, double dur_us, std::string args = {});

// Records an event from `start_us` (a now_us() reading) to now, if recording.
inline void complete(const char* category, const char* name, double start_us, std::string args = {}) {
  if (enabled()) record(category, name, start_us, now_us() - start_us, std::move(args));
}

// Moves every recorded event out (oldest first) and empties the buffer.
std::vector<Event> take();
// Events dropped because the buffer was full, since the last take().
std::int64_t dropped();
constexpr std::size_t kMaxEvents = 4'000'000;

class Span {
 public:
  Span(const char* category, const char* name) {
    if (enabled()) begin(category, name);
  }
  Span(const char* category, std::string name) {
    if (enabled()) begin(category, std::move(name));
  }
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;
  ~Span() {
    if (active_) end();
  }
  // Extra "args" members (JSON text without braces); ignored when the span is not recording.
  void set_args(std::string args) {
    if (active_) args_ = std::move(args);
  }
  bool active() const { return active_; }

 private:
  void begin(const char* category, std::string name);
  void end();
  bool active_ = false;
  const char* category_ = nullptr;
  double start_us_ = 0;
  std::uint64_t device_start_ = 0;  // the device marker at the start (0: no device timer)
  std::string name_, args_;
};

}  // namespace titan::trace

#define TITAN_TRACE_CAT2(a, b) a##b
#define TITAN_TRACE_CAT(a, b) TITAN_TRACE_CAT2(a, b)
// A span over the rest of the enclosing scope.
#define TITAN_TRACE_SPAN(category, name) ::titan::trace::Span TITAN_TRACE_CAT(titan_trace_span_, __LINE__)(category, name)
