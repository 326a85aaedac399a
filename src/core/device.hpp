#pragma once
// Which compute devices this process can use. The CPU is always there; CUDA devices are counted
// only in a build with the CUDA backend.
#include <cstddef>
#include <string>

namespace titan {

struct DeviceInfo {
  bool cuda_built = false;  // compiled with the CUDA backend (nvcc was found)
  int cuda_devices = 0;     // GPUs visible to this process
  std::string gpu_name;     // description of the GPU this rank would use, if any
  std::size_t gpu_memory_bytes = 0;      // total memory of that GPU (0: none or unknown)
  bool gpu_native_bf16 = true;           // that GPU computes bf16 natively (sm_80+)
  std::size_t host_available_bytes = 0;  // MemAvailable, or the cgroup's headroom when lower (0: unknown)
};

// Host memory this process may still use: /proc/meminfo's MemAvailable, lowered to the cgroup's
// limit minus its usage when the process runs in a memory-limited cgroup (containers, CI). 0 when
// it cannot be read.
std::size_t host_available_memory();

// `local_rank` picks the GPU (rank i on a node uses GPU i mod count).
DeviceInfo probe_devices(int local_rank);

// training.device resolved: "auto" is "cuda" when this build has the CUDA backend and a GPU is
// visible, else "cpu"; "cpu" and "cuda" are kept as asked (whether a GPU is there to serve "cuda"
// is checked when the run starts, so a dry run can plan for a GPU cluster anywhere).
std::string resolve_device(const std::string& requested, const DeviceInfo& info);

// The device a rank trains on, for the plan: "cpu (...)" or "cuda:N name (...)".
std::string describe_device(const std::string& resolved, const DeviceInfo& info, int local_rank);

}  // namespace titan
