#pragma once
// The CUDA runtime as the rest of titan.cpp sees it: plain C++ (no CUDA headers), so src/ can
// include it. One compute stream per process (every kernel and copy is ordered on it); memory
// comes from the device's stream-ordered pool (cudaMallocAsync) whose release threshold keeps
// freed blocks cached, so steady-state steps never call into the driver to allocate.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace titan::cuda {

// Number of CUDA devices visible to this process; 0 when there is no driver or no GPU
// (cudaGetDeviceCount reports an error then, which is not a failure for a CPU run).
int device_count();
// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)" for device `index`, or "" if it cannot be queried.
std::string device_description(int index);

struct DeviceProperties {
  std::string name;
  int major = 0, minor = 0, sm_count = 0;
  std::size_t total_memory = 0;
};
DeviceProperties device_properties(int index);

// Makes `index` this process's device and creates its compute stream and pool (once).
void set_device(int index);
int current_device();  // -1 before set_device
void* stream_handle();  // the compute stream (a cudaStream_t)
void synchronize();     // waits for the compute stream
// Host waits on the device so far: synchronize(), copy() into host memory, the token-range
// check; the speed target of a steady-state step is none (docs/cuda.md).
std::int64_t host_sync_count();
void note_host_sync();  // a kernel file's own cudaStreamSynchronize

// Stream-ordered allocation on the compute stream (pointers 256-byte aligned).
void* allocate(std::size_t bytes);
void deallocate(void* ptr, std::size_t bytes);  // never throws (destructors call it)

struct MemoryStats {
  std::size_t in_use = 0;    // bytes held by live tensors
  std::size_t peak = 0;      // max of in_use since start or reset_peak_memory()
  std::size_t reserved = 0;  // bytes the pool and CUDA graphs hold from the driver (in_use + cached)
  std::size_t peak_reserved = 0;  // max of reserved since start or reset_peak_memory()
};
MemoryStats memory_stats();
void reset_peak_memory();

// Copies `bytes` between any two of host and device memory (direction inferred by the driver's
// unified addressing), ordered on the compute stream. With `host_waits` it returns when the copy
// is complete (the host is about to read dst: one host sync). Without, it returns once the copy
// is queued: later work on the stream sees the bytes, and the source may be reused at once unless
// it is pinned host memory (cudaMemcpyAsync stages pageable memory before it returns; pinned
// memory is read by DMA when the stream gets there, so it must stay unchanged until then).
void copy(void* dst, const void* src, std::size_t bytes, bool host_waits = true);
// Page-locked host memory (cudaHostAlloc), which copies to and from the device read and write by
// DMA without staging; the free waits for the stream first (a queued copy may still read it).
void* host_allocate_pinned(std::size_t bytes);
void host_free_pinned(void* ptr) noexcept;
void memset_zero(void* dst, std::size_t bytes);  // asynchronous on the compute stream

// CUDA graphs of the compute stream (compile.enable). graph_capture runs `body` with the stream
// in capture mode (thread-local: only this thread's unsafe calls are refused), so the kernels,
// copies and stream-ordered allocations it queues are recorded instead of run; allocations become
// the graph's own memory, at fixed addresses, freed and made again by each launch (the pool's
// cached blocks are handed back to the driver first, one host sync). It returns the
// instantiated graph, or throws with CUDA's reason (the stream is usable again either way).
// graph_launch queues one replay on the compute stream; graph_destroy frees the graph.
void* graph_capture(const std::function<void()>& body);
void graph_launch(void* graph);
void graph_destroy(void* graph) noexcept;

// Timing markers on the compute stream (the profiler's GPU spans): a recorded cudaEvent (from a
// pool), the milliseconds between two (waits for `to`), and the event's return to the pool.
void* timing_event_record();
double timing_event_elapsed_ms(void* from, void* to);
void timing_event_release(void* event);

}  // namespace titan::cuda
