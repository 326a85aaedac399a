#pragma once
// The device backend registry (DESIGN.md section 3, "The device seam"; c10's allocator registry).
//
// Everything core does with device memory (allocate, copy, fill, convert, synchronize, memory
// counters, device queries) goes through the DeviceBackend registered for the memory's
// Device::Kind. The CPU backend is registered here in core; every other backend registers itself
// from its own side of the tree (the CUDA one from src/ops/cuda_backend.cpp), so core names no
// backend and includes nothing from kernels/. Asking for a kind nobody registered is an error
// that says so, which is how a build without nvcc refuses a CUDA tensor.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/dtype.hpp"
#include "core/tensor.hpp"

namespace titan {

// What a backend knows about one of its devices. Zero means unknown.
struct DeviceProperties {
  std::string name;         // "NVIDIA H100 80GB HBM3", "cpu"
  std::string description;  // the name with details for the plan: "NVIDIA H100 ... (sm_90, 79.1 GiB)"
  std::size_t total_memory = 0;
  // Dense (no sparsity) tensor-core peaks, FLOP/s, for the mfu column. The CPU backend reports 0:
  // its peak is calibrated by the trainer (train/cpu_gemm.hpp).
  double peak_bf16_flops = 0;
  double peak_fp8_flops = 0;
  // Computes bf16 natively (NVIDIA sm_80 and later; the CPU's emulation counts as yes): what
  // mixed_precision_param = "auto" asks.
  bool native_bf16 = true;
};

// The allocator's byte counters for one device.
struct MemoryStats {
  std::size_t in_use = 0;    // bytes held by live storages
  std::size_t peak = 0;      // max of in_use since start or the last reset_peak
  std::size_t reserved = 0;  // bytes the allocator holds from the system (in_use + cached)
  std::size_t peak_reserved = 0;  // max of reserved since start or the last reset_peak
  std::size_t capacity = 0;  // total memory of the device (host RAM for the CPU)
};

// A step recorded once and replayed (compile.enable; DeviceBackend::capture).
class CapturedStep {
 public:
  virtual ~CapturedStep() = default;
  // Queues the recorded work again, with the pointers and arguments it was recorded with.
  virtual void replay() = 0;
};

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;
  virtual Device::Kind kind() const = 0;

  virtual int device_count() const = 0;
  virtual DeviceProperties properties(int index) const = 0;

  // Where storages on device `index` get their bytes (Storage keeps the reference, so it must
  // outlive every storage: backends hand out allocators that live until the process ends).
  virtual Allocator& allocator(int index) = 0;

  // `bytes` from src to dst, either of which may be host memory (the other is this backend's).
  // Into host memory it returns when dst holds the bytes. Into device memory it may return once
  // the copy is queued before the device's later work (CUDA: no host sync); the source may be
  // reused at once, except memory from pinned_host_allocator(), which must stay unchanged until
  // the device's queue has passed the copy (FSDP's offloaded shards: the host writes them only
  // in the optimizer step, after the backward's gradient copies to the host waited).
  virtual void copy(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes) = 0;
  // Host memory this backend's devices copy to and from without staging (CUDA: page-locked),
  // for host tensors that cross every step (CPU offload); null: ordinary host memory serves.
  virtual Allocator* pinned_host_allocator() { return nullptr; }
  // dst[0..bytes) = 0: all-zero bits are zero in every dtype, so this serves Tensor::zeros.
  virtual void zero(void* dst, std::size_t bytes) = 0;
  // dst[i] = value rounded to dtype, for n elements.
  virtual void fill(void* dst, DType dtype, std::int64_t n, double value) = 0;
  // dst[i] = src[i] converted between dtypes, both buffers on this backend's device; floats
  // round to nearest even, float8 saturates to +-max and keeps NaN (core/dtype.hpp's rules).
  virtual void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, std::int64_t n) = 0;
  // Waits until all work queued on device `index` is done (a no-op where work is synchronous).
  virtual void synchronize(int index) = 0;
  // How many times the host has waited for device `index` so far (synchronize, blocking copies,
  // values read back): the step log's syncs/step. 0 where the host does the work (the CPU).
  virtual std::int64_t host_syncs(int /*index*/) const { return 0; }

  virtual MemoryStats memory_stats(int index) const = 0;
  virtual void reset_peak(int index) = 0;

  // Device timestamps for the profiler's GPU spans (core/trace.hpp, DeviceTimer): a marker
  // enqueued on device `index`'s work queue (0: this backend has none, e.g. the CPU, whose work
  // is the host's), the device time between two markers in microseconds (waiting for `to`), and
  // a marker's release.
  virtual std::uint64_t timing_marker(int /*index*/) { return 0; }
  virtual double timing_elapsed_us(std::uint64_t /*from*/, std::uint64_t /*to*/) { return 0; }
  virtual void timing_release(std::uint64_t /*marker*/) {}

  // Records the work `body` queues on device `index` as one unit that replay() queues again
  // (CUDA: a CUDA graph of the compute stream). The recorded work has not run when this returns:
  // the caller replays it once for the step it captured. Memory `body` allocates becomes the
  // unit's own, at the same addresses on every replay. Throws with the backend's reason when
  // something in `body` cannot be recorded. nullptr: this backend records nothing (the CPU,
  // where the host does the work), and `body` has run, eagerly.
  virtual std::unique_ptr<CapturedStep> capture(int /*index*/, const std::function<void()>& body) {
    body();
    return nullptr;
  }
};

// "cpu", "cuda": the kind as Device::str spells it.
const char* kind_name(Device::Kind kind);

// Installs `backend` for `kind` (it must live until the process ends; a later call replaces it,
// which is how a test puts a fake in place). Called from static initialisers, so it is safe to
// call before main.
void register_backend(Device::Kind kind, DeviceBackend* backend);
bool has_backend(Device::Kind kind);
// The backend for `kind`; throws std::invalid_argument naming the kind when none is registered.
DeviceBackend& backend_for(Device::Kind kind);
inline DeviceBackend& backend_for(Device device) { return backend_for(device.kind); }

// Copies bytes between any two devices: host <-> host is memmove; otherwise the non-CPU side's
// backend moves them.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes);

}  // namespace titan
