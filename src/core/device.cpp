#include "core/device.hpp"

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

std::string describe_device(const DeviceInfo& info, int local_rank) {
  if (info.cuda_devices == 0)
    return info.cuda_built ? "cpu (CUDA backend built, no GPU visible)" : "cpu (built without CUDA)";
  // The CUDA op backend is built and tested (titan_gpu_tests), but the trainer does not place
  // the model on the GPU yet: say so rather than name a device that is not used.
  return "cpu (cuda:" + std::to_string(local_rank % info.cuda_devices) + " " + info.gpu_name +
         " is visible; training on the GPU is not wired yet)";
}

}  // namespace titan
