// The CUDA runtime wrapper (runtime.hpp): device queries, the compute stream, the pool
// allocator with its byte counters, copies. Errors become exceptions (common.cuh).
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "common.cuh"

namespace titan::cuda {

void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
  throw std::runtime_error("CUDA error in " + std::string(what) + " (" + file + ":" + std::to_string(line) +
                           "): " + cudaGetErrorString(err));
}
void throw_usage_error(const std::string& message) { throw std::invalid_argument(message); }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  return n;
}

DeviceProperties device_properties(int index) {
  cudaDeviceProp prop{};
  TITAN_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  DeviceProperties p;
  p.name = prop.name;
  p.major = prop.major;
  p.minor = prop.minor;
  p.sm_count = prop.multiProcessorCount;
  p.total_memory = prop.totalGlobalMem;
  return p;
}

std::string device_description(int index) {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
    cudaGetLastError();
    return "";
  }
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %.1f GiB)", prop.name, prop.major, prop.minor,
                static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

namespace {
int g_device = -1;
cudaStream_t g_stream = nullptr;
std::atomic<std::size_t> g_in_use{0}, g_peak{0};

void require_device() {
  if (g_device < 0) set_device(0);
}
}  // namespace

void set_device(int index) {
  if (g_device == index) return;
  if (g_device >= 0) throw_usage_error("cuda::set_device: this process already uses cuda:" + std::to_string(g_device));
  TITAN_CUDA_CHECK(cudaSetDevice(index));
  TITAN_CUDA_CHECK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
  // Keep every freed block in the pool (the default threshold 0 hands memory back to the driver
  // at each synchronization, which would make every step allocate again).
  cudaMemPool_t pool;
  TITAN_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, index));
  std::uint64_t threshold = UINT64_MAX;
  TITAN_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  g_device = index;
}

int current_device() { return g_device; }

void* stream_handle() {
  require_device();
  return g_stream;
}

namespace {
std::atomic<std::int64_t> g_host_syncs{0};
}  // namespace

std::int64_t host_sync_count() { return g_host_syncs.load(); }
void note_host_sync() { ++g_host_syncs; }

void synchronize() {
  require_device();
  note_host_sync();
  TITAN_CUDA_CHECK(cudaStreamSynchronize(g_stream));
}

void* allocate(std::size_t bytes) {
  require_device();
  if (bytes == 0) bytes = 1;
  void* p = nullptr;
  const cudaError_t err = cudaMallocAsync(&p, bytes, g_stream);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    const MemoryStats s = memory_stats();
    throw std::runtime_error("CUDA out of memory: asked for " + std::to_string(bytes >> 20) + " MiB with " +
                             std::to_string(s.in_use >> 20) + " MiB in use and " + std::to_string(s.reserved >> 20) +
                             " MiB reserved on cuda:" + std::to_string(g_device) +
                             "; lower training.local_batch_size or seq_len, or raise the shard degree");
  }
  TITAN_CUDA_CHECK(err);
  const std::size_t now = g_in_use += bytes;
  std::size_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
  return p;
}

void deallocate(void* ptr, std::size_t bytes) {
  if (!ptr) return;
  if (bytes == 0) bytes = 1;
  g_in_use -= bytes;
  // Called from destructors (Storage), so it must not throw: after an asynchronous kernel fault
  // every free reports the same sticky error, and the first synchronizing call has already
  // raised it as an exception with its real message.
  if (cudaFreeAsync(ptr, g_stream) != cudaSuccess) cudaGetLastError();
}

MemoryStats memory_stats() {
  MemoryStats s;
  s.in_use = g_in_use.load();
  s.peak = g_peak.load();
  if (g_device >= 0) {
    cudaMemPool_t pool;
    std::uint64_t reserved = 0, high = 0;
    TITAN_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, g_device));
    TITAN_CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved));
    TITAN_CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &high));
    // CUDA graphs (compile.enable) allocate from their own memory, outside the pool: counted too.
    std::uint64_t graph_reserved = 0, graph_high = 0;
    TITAN_CUDA_CHECK(cudaDeviceGetGraphMemAttribute(g_device, cudaGraphMemAttrReservedMemCurrent, &graph_reserved));
    TITAN_CUDA_CHECK(cudaDeviceGetGraphMemAttribute(g_device, cudaGraphMemAttrReservedMemHigh, &graph_high));
    // (A high-water mark reset to 0 may read 0 until the next allocation: at least the current.)
    s.reserved = reserved + graph_reserved;
    s.peak_reserved = std::max(high, reserved) + std::max(graph_high, graph_reserved);
  }
  return s;
}

void reset_peak_memory() {
  g_peak = g_in_use.load();
  if (g_device >= 0) {
    // Setting the pool's high-water mark to 0 restarts it from the current reservation.
    cudaMemPool_t pool;
    std::uint64_t zero = 0;
    TITAN_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, g_device));
    TITAN_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &zero));
    TITAN_CUDA_CHECK(cudaDeviceSetGraphMemAttribute(g_device, cudaGraphMemAttrReservedMemHigh, &zero));
  }
}

void copy(void* dst, const void* src, std::size_t bytes, bool host_waits) {
  if (bytes == 0) return;
  require_device();
  TITAN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, g_stream));
  if (!host_waits) return;
  note_host_sync();
  TITAN_CUDA_CHECK(cudaStreamSynchronize(g_stream));
}

void* host_allocate_pinned(std::size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaHostAlloc(&p, bytes == 0 ? 1 : bytes, cudaHostAllocDefault);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw std::runtime_error("out of page-locked host memory: asked for " + std::to_string(bytes >> 20) +
                             " MiB for CPU offload; raise the shard degree or turn training.enable_cpu_offload off");
  }
  TITAN_CUDA_CHECK(err);
  return p;
}

void host_free_pinned(void* ptr) noexcept {
  if (!ptr) return;
  if (g_stream && cudaStreamSynchronize(g_stream) != cudaSuccess) cudaGetLastError();
  if (cudaFreeHost(ptr) != cudaSuccess) cudaGetLastError();
}

void memset_zero(void* dst, std::size_t bytes) {
  if (bytes == 0) return;
  require_device();
  TITAN_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, g_stream));
}

namespace {
thread_local bool t_capturing = false;

// Ends a capture that failed, so the stream can be used again.
void abandon_capture() {
  cudaGraph_t graph = nullptr;
  if (cudaStreamEndCapture(g_stream, &graph) == cudaSuccess && graph) cudaGraphDestroy(graph);
  cudaGetLastError();
  t_capturing = false;
}
}  // namespace

void* graph_capture(const std::function<void()>& body) {
  require_device();
  if (t_capturing) throw_usage_error("cuda::graph_capture: already capturing");
  // The graph's allocations come from its own memory, not from the pool, which keeps every block
  // freed so far (release threshold at max): without handing those back first, a step's
  // activations would be held twice, once cached in the pool and once by the graph.
  synchronize();
  cudaMemPool_t pool;
  TITAN_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, g_device));
  TITAN_CUDA_CHECK(cudaMemPoolTrimTo(pool, 0));
  TITAN_CUDA_CHECK(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeThreadLocal));
  t_capturing = true;
  try {
    body();
  } catch (...) {
    abandon_capture();
    throw;
  }
  t_capturing = false;
  cudaGraph_t graph = nullptr;
  // An unsupported call inside the body (a host wait, a pageable copy) invalidated the capture:
  // this reports it (cudaErrorStreamCaptureInvalidated / Unsupported).
  const cudaError_t ended = cudaStreamEndCapture(g_stream, &graph);
  if (ended != cudaSuccess) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw_cuda_error(ended, "cudaStreamEndCapture", __FILE__, __LINE__);
  }
  cudaGraphExec_t exec = nullptr;
  // Auto-free on launch: the memory the step allocates and keeps (gradients, its outputs) is
  // freed by the next launch before that launch allocates it again, at the same address.
  const cudaError_t made = cudaGraphInstantiateWithFlags(&exec, graph, cudaGraphInstantiateFlagAutoFreeOnLaunch);
  cudaGraphDestroy(graph);
  TITAN_CUDA_CHECK(made);
  return exec;
}

void graph_launch(void* graph) {
  require_device();
  TITAN_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), g_stream));
}

void graph_destroy(void* graph) noexcept {
  if (graph && cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph)) != cudaSuccess) cudaGetLastError();
}

namespace {
std::vector<cudaEvent_t> g_timing_events;  // the pool (the profiler records from one thread)
}

void* timing_event_record() {
  cudaEvent_t e;
  if (!g_timing_events.empty()) {
    e = g_timing_events.back();
    g_timing_events.pop_back();
  } else {
    TITAN_CUDA_CHECK(cudaEventCreate(&e));  // with timing (the default flags)
  }
  TITAN_CUDA_CHECK(cudaEventRecord(e, g_stream));
  return e;
}

double timing_event_elapsed_ms(void* from, void* to) {
  TITAN_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(to)));
  float ms = 0;
  TITAN_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(from), static_cast<cudaEvent_t>(to)));
  return ms;
}

void timing_event_release(void* event) { g_timing_events.push_back(static_cast<cudaEvent_t>(event)); }

}  // namespace titan::cuda
