#pragma once
// Which storages are alive, for profiling.enable_memory_snapshot (DESIGN.md section 9): while
// recording is on, every Storage allocation and free on any device is noted here, so a snapshot
// can list the live blocks with their size, device and the training step that allocated them.
// The trainer's profiler (src/train/profiler.hpp) decides when to record and writes the files;
// this layer only keeps the table, and names no backend.
//
// Cost when off: one relaxed atomic load per allocation and free. When on: one short
// mutex-protected map update each.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/tensor.hpp"  // Device

namespace titan::memory_history {

struct Block {
  std::size_t bytes = 0;
  Device device;
  std::int64_t step = 0;  // the training step current when it was allocated (0: before training)
  std::uint64_t seq = 0;  // allocation order since recording began
};

namespace detail {
extern std::atomic<bool> g_enabled;
void note_allocate(const void* ptr, std::size_t bytes, Device device);
void note_free(const void* ptr);
}  // namespace detail

inline bool enabled() { return detail::g_enabled.load(std::memory_order_relaxed); }
// Turning recording off forgets the table.
void set_enabled(bool on);
// The step new allocations are tagged with.
void set_step(std::int64_t step);

// Called by Storage for every allocation and free.
inline void on_allocate(const void* ptr, std::size_t bytes, Device device) {
  if (enabled() && ptr) detail::note_allocate(ptr, bytes, device);
}
inline void on_free(const void* ptr) {
  if (enabled() && ptr) detail::note_free(ptr);
}

// The blocks alive now, oldest first (only those allocated while recording).
std::vector<Block> live_blocks();

}  // namespace titan::memory_history
