#include "core/step_capture.hpp"

#include <atomic>
#include <stdexcept>

namespace titan {

namespace {
std::atomic<std::uint64_t> g_serial{1};
// The scope open on this thread (frees on other threads are not the step's: a checkpoint writer
// dropping host buffers, say).
thread_local StepCapture* t_open = nullptr;
}  // namespace

StepCapture::StepCapture(Device::Kind device_kind) : kind_(device_kind), first_serial_(g_serial.load()) {
  if (t_open) throw std::logic_error("StepCapture: a capture is already open on this thread");
  t_open = this;
}

StepCapture::~StepCapture() { finish(); }

std::uint64_t StepCapture::next_serial() { return g_serial.fetch_add(1); }

bool StepCapture::defer_free(std::uint64_t serial, void* ptr, std::size_t bytes, Allocator& alloc) {
  StepCapture* open = t_open;
  if (!open || serial >= open->first_serial_ || alloc.device().kind != open->kind_) return false;
  open->deferred_.push_back({ptr, bytes, &alloc});
  return true;
}

StepCapture::FreedEarly StepCapture::finish() {
  FreedEarly early;
  if (!open_) return early;
  open_ = false;
  t_open = nullptr;
  for (const Deferred& d : deferred_) {
    ++early.count;
    early.bytes += d.bytes;
    d.alloc->deallocate(d.ptr, d.bytes);
  }
  deferred_.clear();
  return early;
}

}  // namespace titan
