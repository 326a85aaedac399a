// ops::transpose_float8 on CUDA tensors (kernels/float8_cast.cu, transpose_fp8) against the CPU
// reference, byte for byte: every byte pattern (NaN and -0 included), shapes around the kernel's
// 64 x 64 tiles (1 x N, N x 1, odd sizes, exact tiles, more row tiles than one grid column holds
// in one pass), a view at an odd byte offset, and the grad_input operand that Float8Linear builds
// from FSDP's gathered e4m3 weight on the GPU.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "float8/float8_linear.hpp"
#include "gpu_test_helpers.hpp"
#include "ops/ops.hpp"

using namespace titan;

namespace {

const Device kGpu = Device::cuda(0);

std::vector<std::uint8_t> host_bytes(const Tensor& t) {
  const Tensor h = t.device().is_cpu() ? t : t.to(Device::cpu());
  const auto* p = h.data<std::uint8_t>();
  return std::vector<std::uint8_t>(p, p + h.numel());
}

// Bytes from a counter-based hash: every pattern appears in any tensor of a few hundred bytes.
Tensor byte_tensor(const Shape& shape, DType f8, std::uint32_t seed) {
  Tensor t = Tensor::empty(shape, f8);
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    std::uint32_t h = static_cast<std::uint32_t>(i) * 2654435761u + seed * 40503u;
    h ^= h >> 15;
    t.data<std::uint8_t>()[i] = static_cast<std::uint8_t>(h * 2246822519u >> 24);
  }
  return t;
}

}  // namespace

TEST_CASE("transpose_float8 on the GPU: the CPU's bytes for every shape, both formats", "[gpu]") {
  const Shape shapes[] = {{1, 1},   {1, 333}, {333, 1}, {5, 3},   {63, 65},     {64, 64},
                          {65, 64}, {128, 192}, {130, 67}, {1000, 37}, {4224, 17}, {65535 * 64 + 100, 2}};
  std::uint32_t seed = 7;
  for (DType f8 : {DType::f8e4m3, DType::f8e5m2})
    for (const Shape& shape : shapes) {
      INFO(dtype_name(f8) << " " << shape_str(shape));
      const Tensor q = byte_tensor(shape, f8, ++seed);
      const Tensor want = ops::transpose_float8(q);
      const Tensor got = ops::transpose_float8(q.to(kGpu));
      REQUIRE(got.device() == kGpu);
      REQUIRE(got.shape() == want.shape());
      REQUIRE(got.dtype() == f8);
      CHECK(host_bytes(got) == host_bytes(want));
    }
  // A view one row into its storage (an odd byte offset when the row length is odd).
  const Tensor big = byte_tensor({9, 67}, DType::f8e4m3, 99);
  CHECK(host_bytes(ops::transpose_float8(big.to(kGpu).slice_rows(1, 9))) == host_bytes(ops::transpose_float8(big.slice_rows(1, 9))));
  CHECK_THROWS_AS(ops::transpose_float8(Tensor::zeros({4, 4}).to(kGpu)), std::invalid_argument);
}

TEST_CASE("the grad_input operand from a gathered e4m3 weight on the GPU is the CPU's, byte for byte", "[gpu]") {
  const float8::Recipe r = float8::recipe_from_name("tensorwise");
  const auto v = gpu_test::random_vector(96 * 208, 3, 0.3f);
  const Tensor w = Tensor::from_vector(std::vector<double>(v.begin(), v.end()), {96, 208});
  const float scale = 600.0f;  // some weights saturate
  const Tensor w8 = ops::cast_to_float8(w, DType::f8e4m3, Tensor::full({1}, scale), ops::ScaleAxis::tensor).data;
  const Tensor gy = Tensor::zeros({8, 96});
  const auto cpu = float8::grad_input_gemm_operands(gy, w8, r, nullptr, Tensor::full({1}, scale)).second;
  // (a host scale: the operand takes it to the GPU)
  const auto gpu = float8::grad_input_gemm_operands(gy.to(kGpu), w8.to(kGpu), r, nullptr, Tensor::full({1}, scale)).second;
  REQUIRE(gpu.data.device() == kGpu);
  CHECK(host_bytes(gpu.data) == host_bytes(cpu.data));
  CHECK(gpu.scale.to(Device::cpu()).item(0) == scale);
}
