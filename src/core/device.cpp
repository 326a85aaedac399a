#include "core/device.hpp"

#include <fstream>
#include <string>

#include "core/backend.hpp"

namespace titan {

// The GPU side comes from the registry: a CUDA backend is registered exactly when this build has
// one (core does not know how it is implemented).
DeviceInfo probe_devices(int local_rank) {
  DeviceInfo info;
  info.host_available_bytes = host_available_memory();
  info.cuda_built = has_backend(Device::Kind::cuda);
  if (info.cuda_built) {
    DeviceBackend& gpu = backend_for(Device::Kind::cuda);
    info.cuda_devices = gpu.device_count();
    if (info.cuda_devices > 0) {
      const DeviceProperties props = gpu.properties(local_rank % info.cuda_devices);
      info.gpu_name = props.description;
      info.gpu_memory_bytes = props.total_memory;
      info.gpu_native_bf16 = props.native_bf16;
    }
  }
  return info;
}

namespace {
// The first number in a file such as /sys/fs/cgroup/memory.max; 0 when absent or "max".
std::size_t read_number(const char* path) {
  std::ifstream in(path);
  unsigned long long v = 0;
  return (in >> v) ? static_cast<std::size_t>(v) : 0;
}
}  // namespace

std::size_t host_available_memory() {
  std::size_t avail = 0;
  std::ifstream meminfo("/proc/meminfo");
  std::string name;
  unsigned long long kib = 0;
  while (meminfo >> name >> kib) {
    if (name == "MemAvailable:") {
      avail = static_cast<std::size_t>(kib) * 1024;
      break;
    }
    meminfo.ignore(256, '\n');
  }
  // cgroup v2, then v1: a limit below the host's memory caps what this process can use.
  struct Pair { const char* limit; const char* usage; };
  for (const Pair& cg : {Pair{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
                         Pair{"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
    const std::size_t limit = read_number(cg.limit), usage = read_number(cg.usage);
    if (limit == 0 || limit < usage) continue;
    const std::size_t headroom = limit - usage;
    if (avail == 0 || headroom < avail) avail = headroom;
    break;
  }
  return avail;
}

std::string resolve_device(const std::string& requested, const DeviceInfo& info) {
  if (requested == "auto") return info.cuda_built && info.cuda_devices > 0 ? "cuda" : "cpu";
  return requested;
}

std::string describe_device(const std::string& resolved, const DeviceInfo& info, int local_rank) {
  if (resolved == "cuda") {
    if (info.cuda_devices == 0)
      return info.cuda_built ? "cuda (training.device = cuda, but no GPU is visible here)"
                             : "cuda (training.device = cuda, but this build has no CUDA backend)";
    return "cuda:" + std::to_string(local_rank % info.cuda_devices) + " " + info.gpu_name +
           " (experimental CUDA training, docs/cuda.md)";
  }
  if (info.cuda_devices == 0)
    return info.cuda_built ? "cpu (CUDA backend built, no GPU visible)" : "cpu (built without CUDA)";
  return "cpu (training.device = cpu; cuda:" + std::to_string(local_rank % info.cuda_devices) + " " + info.gpu_name +
         " is visible)";
}

}  // namespace titan
