#pragma once
// Host-side queries of the CUDA runtime, compiled by nvcc so that a CUDA build always exercises
// the toolchain. No kernels here: the op kernels arrive one family per file beside this one.
#include <string>

namespace titan::cuda {

// Number of CUDA devices visible to this process; 0 when there is no driver or no GPU
// (cudaGetDeviceCount reports an error then, which is not a failure for a CPU run).
int device_count();

// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)" for device `index`, or "" if it cannot be queried.
std::string device_description(int index);

}  // namespace titan::cuda
