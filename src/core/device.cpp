#include "core/device.hpp"

#include <cstdlib>

#ifdef TITAN_WITH_CUDA
#include "kernels/runtime.hpp"
#endif

namespace titan {

DeviceInfo probe_devices(int local_rank) {
  DeviceInfo info;
#ifdef TITAN_WITH_CUDA
  info.cuda_built = true;
  info.cuda_devices = cuda::device_count();
  if (info.cuda_devices > 0) info.gpu_name = cuda::device_description(local_rank % info.cuda_devices);
#else
  (void)local_rank;
#endif
  return info;
}

std::string requested_device() {
  const char* env = std::getenv("TITAN_DEVICE");
  return env ? env : "";
}

std::string describe_device(const DeviceInfo& info, int local_rank) {
  if (info.cuda_devices == 0)
    return info.cuda_built ? "cpu (CUDA backend built, no GPU visible)" : "cpu (built without CUDA)";
  const std::string gpu = "cuda:" + std::to_string(local_rank % info.cuda_devices) + " " + info.gpu_name;
  // GPU training is opt-in while it is experimental: name the device that is really used.
  if (requested_device() == "cuda") return gpu + " (experimental CUDA training, TITAN_DEVICE=cuda)";
  return "cpu (" + gpu + " is visible; TITAN_DEVICE=cuda trains on it, experimental)";
}

}  // namespace titan
