#pragma once
// Whole-tensor reductions on the GPU, accumulated in double (the CPU op API returns doubles).
#include <cstdint>

#include "core/dtype.hpp"

namespace titan::cuda {

// Device results: *out (one double in device memory) = sum x[i] / sum x[i]^2. Deterministic:
// fixed grid, per-block partials in a fixed order, a single-block second pass.
void sum_async(const void* x, DType dtype, std::int64_t n, double* out);
void sum_squares_async(const void* x, DType dtype, std::int64_t n, double* out);
// *out = x[0] + x[1] + ... + x[n-1] (device doubles), added left to right from 0 by one thread:
// the host's order, so a gradient norm summed from per-tensor parts matches the CPU's bit for bit.
// n is small (one part per tensor).
void sum_in_order_async(const double* x, std::int64_t n, double* out);
// The same, copied to the host (synchronizes the compute stream).
double sum(const void* x, DType dtype, std::int64_t n);
double sum_squares(const void* x, DType dtype, std::int64_t n);

}  // namespace titan::cuda
