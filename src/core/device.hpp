#pragma once
// Which compute devices this process can use. The CPU is always there; CUDA devices are counted
// only in a build with the CUDA backend.
#include <string>

namespace titan {

struct DeviceInfo {
  bool cuda_built = false;  // compiled with the CUDA backend (nvcc was found)
  int cuda_devices = 0;     // GPUs visible to this process
  std::string gpu_name;     // description of the GPU this rank would use, if any
};

// `local_rank` picks the GPU (rank i on a node uses GPU i mod count).
DeviceInfo probe_devices(int local_rank);

// The environment variable TITAN_DEVICE: "cpu" (or unset) trains on the CPU, "cuda" opts in to
// the experimental GPU training path (docs/cuda.md). Returned as given, "" when unset.
std::string requested_device();

// The device a rank trains on, for the plan: "cpu (...)" or "cuda:N name (...)".
std::string describe_device(const DeviceInfo& info, int local_rank);

}  // namespace titan
