#pragma once
// Whole-tensor reductions on the GPU, accumulated in double (the CPU op API returns doubles).
#include <cstdint>

#include "core/dtype.hpp"

namespace titan::cuda {

// Device results: *out (one double in device memory) = sum x[i] / sum x[i]^2. Deterministic:
// fixed grid, per-block partials in a fixed order, a single-block second pass.
void sum_async(const void* x, DType dtype, std::int64_t n, double* out);
void sum_squares_async(const void* x, DType dtype, std::int64_t n, double* out);
// The same, copied to the host (synchronizes the compute stream).
double sum(const void* x, DType dtype, std::int64_t n);
double sum_squares(const void* x, DType dtype, std::int64_t n);

}  // namespace titan::cuda
