#pragma once
// Which memory a captured step may free (compile.enable; docs/cuda.md, "CUDA graphs").
//
// A CUDA graph replays a step's kernels with the pointers they had when it was captured. Memory
// the step allocates and frees itself becomes the graph's own (same addresses on every replay),
// and so does memory it allocates and keeps (a gradient, an output). Memory allocated *before*
// the capture and freed *during* it is different: it means the step replaced a tensor carried
// over from the previous step (a value kept by swapping in a new tensor instead of writing in
// place). The captured kernels would go on reading the old, freed buffer on every replay, and
// CUDA refuses to free a non-graph allocation inside a capture anyway.
//
// A StepCapture scope on the capturing thread numbers allocations (every Storage allocation gets
// a serial): while it is open, a storage of `device_kind` allocated before it and freed on this
// thread is not freed but set aside, and counted. finish() ends the scope, frees what was set
// aside (the caller has by then run the step once, so nothing reads those buffers any more) and
// returns what the step freed early: empty means the step can be replayed. On the CPU, where
// there is nothing to capture, the same scope checks a step that runs eagerly, which is how the
// CPU tests keep the trainer's step capturable.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/tensor.hpp"

namespace titan {

class StepCapture {
 public:
  explicit StepCapture(Device::Kind device_kind);
  ~StepCapture();  // finishes if finish() was not called (the set-aside memory is freed)
  StepCapture(const StepCapture&) = delete;
  StepCapture& operator=(const StepCapture&) = delete;

  struct FreedEarly {
    std::size_t count = 0;  // storages allocated before the scope and freed in it
    std::size_t bytes = 0;
  };
  FreedEarly finish();

  // Storage's side: the serial of an allocation made now, and whether the free of one (with that
  // serial) must wait for finish(); if so the scope has taken the pointer.
  static std::uint64_t next_serial();
  static bool defer_free(std::uint64_t serial, void* ptr, std::size_t bytes, Allocator& alloc);

 private:
  struct Deferred {
    void* ptr;
    std::size_t bytes;
    Allocator* alloc;
  };
  Device::Kind kind_;
  std::uint64_t first_serial_;
  std::vector<Deferred> deferred_;
  bool open_ = true;
};

}  // namespace titan
