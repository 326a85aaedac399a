#include "core/memory_history.hpp"

#include <algorithm>
#include <mutex>
#include <unordered_map>

namespace titan::memory_history {

namespace detail {
std::atomic<bool> g_enabled{false};
}

namespace {

struct Table {
  std::mutex mutex;
  std::unordered_map<const void*, Block> live;
  std::int64_t step = 0;
  std::uint64_t next_seq = 0;
};

Table& table() {
  static Table* t = new Table;  // never destroyed: storages may be freed during static destruction
  return *t;
}

}  // namespace

void set_enabled(bool on) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  detail::g_enabled.store(on, std::memory_order_relaxed);
  if (!on) t.live.clear();
}

void set_step(std::int64_t step) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  t.step = step;
}

void detail::note_allocate(const void* ptr, std::size_t bytes, Device device) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  t.live[ptr] = Block{bytes, device, t.step, t.next_seq++};
}

void detail::note_free(const void* ptr) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  t.live.erase(ptr);
}

std::vector<Block> live_blocks() {
  Table& t = table();
  std::vector<Block> out;
  {
    std::lock_guard<std::mutex> lock(t.mutex);
    out.reserve(t.live.size());
    for (const auto& [ptr, b] : t.live) out.push_back(b);
  }
  std::sort(out.begin(), out.end(), [](const Block& a, const Block& b) { return a.seq < b.seq; });
  return out;
}

}  // namespace titan::memory_history
