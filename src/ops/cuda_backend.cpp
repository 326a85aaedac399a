// The CUDA DeviceBackend (core/backend.hpp): core's allocate / copy / fill / convert /
// synchronize / memory counters / device queries for CUDA memory, on the runtime wrapper and the
// elementwise launchers of kernels/. Compiled only in builds with nvcc, and linked into every
// program as an object file (src/CMakeLists.txt), never from the static library: nothing calls
// into this file by name, so an archive member would be dropped by the linker and the build
// would silently behave as if it had no CUDA backend. tests/unit/test_backend.cpp checks that it
// registered.
#include <iterator>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

#include "core/backend.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/runtime.hpp"

namespace titan {
namespace {

// A CUDA graph of one train step (compile.enable; kernels/runtime.hpp).
class CudaGraphStep final : public CapturedStep {
 public:
  explicit CudaGraphStep(void* graph) : graph_(graph) {}
  ~CudaGraphStep() override { cuda::graph_destroy(graph_); }
  void replay() override { cuda::graph_launch(graph_); }

 private:
  void* graph_;
};

// Device memory from the CUDA runtime's stream-ordered pool (kernels/runtime.hpp). A process
// drives one GPU (the rank's local one), chosen by the first allocation on it.
class CudaAllocator final : public Allocator {
 public:
  explicit CudaAllocator(int index) : index_(index) {}
  void* allocate(std::size_t bytes) override {
    cuda::set_device(index_);
    return cuda::allocate(bytes);
  }
  void deallocate(void* ptr, std::size_t bytes) override { cuda::deallocate(ptr, bytes); }
  Device device() const override { return Device::cuda(index_); }

 private:
  int index_;
};

// Page-locked host memory for the host tensors that cross every step (CPU offload's shards and
// gradients). cudaHostAlloc is slow (it maps pages), so freed blocks are kept by size and reused;
// the sizes repeat every step. A kept block is handed out again only after the stream has passed
// every copy queued from it (host_free_pinned's rule, kept by waiting here when one might not have).
class PinnedHostAllocator final : public Allocator {
 public:
  void* allocate(std::size_t bytes) override {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(bytes);
    void* p = nullptr;
    if (it != free_.end()) {
      p = it->second;
      free_.erase(it);
      if (copies_queued_) {
        cuda::synchronize();
        copies_queued_ = false;
      }
    } else {
      p = cuda::host_allocate_pinned(bytes);
    }
    live_[static_cast<const char*>(p)] = bytes;
    return p;
  }
  void deallocate(void* ptr, std::size_t bytes) override {
    std::lock_guard<std::mutex> lock(mutex_);
    live_.erase(static_cast<const char*>(ptr));
    free_.emplace(bytes, ptr);
  }
  Device device() const override { return Device::cpu(); }
  // A copy from `src` was queued on the compute stream without the host waiting for it: noted
  // when src lies in a live pinned block (pageable sources are staged before the call returns).
  // (Copies on other streams go through NcclProcessGroup::copy_in, which returns its staging
  // blocks only once their copies have run.) And: the host waited for the whole compute stream.
  void note_queued_copy(const void* src) {
    std::lock_guard<std::mutex> lock(mutex_);
    const char* s = static_cast<const char*>(src);
    auto it = live_.upper_bound(s);
    if (it != live_.begin() && s < std::prev(it)->first + std::prev(it)->second) copies_queued_ = true;
  }
  void note_stream_drained() {
    std::lock_guard<std::mutex> lock(mutex_);
    copies_queued_ = false;
  }

 private:
  std::mutex mutex_;
  std::multimap<std::size_t, void*> free_;
  std::map<const char*, std::size_t> live_;  // blocks handed out: start -> bytes
  bool copies_queued_ = false;
};

// Dense tensor-core peaks (no sparsity) by product name, FLOP/s; 0 for GPUs not listed, so the
// mfu column says "not computed" rather than guess. H100 and H200 SXM share the Hopper figures.
struct Peaks {
  double bf16, fp8;
};
Peaks peaks_for(const std::string& name) {
  if (name.find("H100") != std::string::npos || name.find("H200") != std::string::npos) return {989.4e12, 1978.9e12};
  if (name.find("A100") != std::string::npos) return {312e12, 0};  // Ampere has no FP8
  return {0, 0};
}

class CudaBackend final : public DeviceBackend {
 public:
  Device::Kind kind() const override { return Device::Kind::cuda; }
  int device_count() const override { return cuda::device_count(); }
  DeviceProperties properties(int index) const override {
    const cuda::DeviceProperties cp = cuda::device_properties(index);
    DeviceProperties p;
    p.name = cp.name;
    p.description = cuda::device_description(index);
    p.total_memory = cp.total_memory;
    p.native_bf16 = cp.major >= 8;
    const Peaks peaks = peaks_for(cp.name);
    p.peak_bf16_flops = peaks.bf16;
    p.peak_fp8_flops = peaks.fp8;
    return p;
  }
  Allocator& allocator(int index) override {
    static CudaAllocator alloc(index);
    if (alloc.device() != Device::cuda(index))
      throw std::logic_error("Tensor: this process uses " + alloc.device().str() + ", not " + Device::cuda(index).str());
    return alloc;
  }
  // cudaMemcpyDefault infers the direction from unified addressing, so one call serves
  // host -> device, device -> host and device -> device. The host waits only for copies into
  // host memory (it is about to read them): copies into device memory stay queued (issue 17's
  // sync-free step; every later kernel is ordered after them on the one compute stream).
  void copy(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes) override {
    const bool host_waits = dst_device.is_cpu();
    if (!host_waits && src_device.is_cpu()) pinned_.note_queued_copy(src);
    cuda::copy(dst, src, bytes, host_waits);
    if (host_waits) pinned_.note_stream_drained();
  }
  Allocator* pinned_host_allocator() override { return &pinned_; }
  void zero(void* dst, std::size_t bytes) override { cuda::memset_zero(dst, bytes); }
  void fill(void* dst, DType dtype, std::int64_t n, double value) override { cuda::fill(dst, dtype, n, value); }
  void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, std::int64_t n) override {
    if (src_dtype == dst_dtype)
      cuda::copy(dst, src, static_cast<std::size_t>(n) * dtype_size(dst_dtype), /*host_waits=*/false);
    else
      cuda::convert(src, src_dtype, dst, dst_dtype, n);
  }
  void synchronize(int) override {
    cuda::synchronize();
    pinned_.note_stream_drained();
  }
  std::int64_t host_syncs(int) const override { return cuda::host_sync_count(); }
  MemoryStats memory_stats(int index) const override {
    const cuda::MemoryStats s = cuda::memory_stats();
    MemoryStats m;
    m.in_use = s.in_use;
    m.peak = s.peak;
    m.reserved = s.reserved;
    m.peak_reserved = s.peak_reserved;
    m.capacity = index < cuda::device_count() ? cuda::device_properties(index).total_memory : 0;
    return m;
  }
  std::unique_ptr<CapturedStep> capture(int index, const std::function<void()>& body) override {
    cuda::set_device(index);
    return std::make_unique<CudaGraphStep>(cuda::graph_capture(body));
  }
  void reset_peak(int) override { cuda::reset_peak_memory(); }
  std::uint64_t timing_marker(int) override { return reinterpret_cast<std::uint64_t>(cuda::timing_event_record()); }
  double timing_elapsed_us(std::uint64_t from, std::uint64_t to) override {
    return 1000.0 * cuda::timing_event_elapsed_ms(reinterpret_cast<void*>(from), reinterpret_cast<void*>(to));
  }
  void timing_release(std::uint64_t marker) override { cuda::timing_event_release(reinterpret_cast<void*>(marker)); }

 private:
  PinnedHostAllocator pinned_;
};

// Registers at static initialisation, before main (the registry is safe to use then).
[[maybe_unused]] const bool registered = [] {
  static CudaBackend backend;
  register_backend(Device::Kind::cuda, &backend);
  return true;
}();

}  // namespace
}  // namespace titan
