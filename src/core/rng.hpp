#pragma once
// Counter-based random numbers (Philox-4x32-10, Salmon et al., SC'11).
//
// Element i of a generated tensor is a pure function of (seed, name, i): the key comes from the
// seed and the tensor's name (its FQN), the counter from the element index. Any slice of a
// tensor can therefore be generated alone, which is how each FSDP rank initialises only its
// shard and still gets the same weights on every mesh (DESIGN.md section 4).
#include <array>
#include <cstdint>
#include <string_view>

#include "core/tensor.hpp"

namespace titan::rng {

// One Philox-4x32 block: 10 rounds over the 128-bit counter (index, stream) with a 64-bit key.
std::array<std::uint32_t, 4> philox(std::uint64_t index, std::uint32_t stream, std::uint64_t key);

// Key for the stream of values named `name` under `seed`.
std::uint64_t make_key(std::uint64_t seed, std::string_view name);

// Uniform in (0, 1), 53 bits.
double uniform(std::uint64_t key, std::uint64_t index, std::uint32_t stream = 0);
// Standard normal (Box-Muller on the block's two uniforms).
double normal(std::uint64_t key, std::uint64_t index, std::uint32_t stream = 0);
// Normal(mean, std) truncated to [a, b] by inverse-CDF sampling (PyTorch's trunc_normal_ method).
double trunc_normal(std::uint64_t key, std::uint64_t index, double mean, double std, double a, double b);

// Inverse error function (double precision).
double erfinv(double y);

// Fill `t` (any float dtype) with elements first_index, first_index + 1, ... of a stream.
void fill_normal(Tensor& t, std::uint64_t key, std::uint64_t first_index, double mean, double std);
void fill_trunc_normal(Tensor& t, std::uint64_t key, std::uint64_t first_index, double mean, double std, double a,
                       double b);

}  // namespace titan::rng
