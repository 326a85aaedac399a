// The op API's float8 ops and multi-tensor AdamW on CUDA tensors against the CPU reference:
// casts and scales bit for bit; scaled_mm through cuBLASLt FP8 against the CPU emulation (with
// the FP8 tensor cores' accumulation tolerance), and with emulate = true to float32 GEMM rounding;
// Float8Linear's three GEMMs per recipe on the GPU; adamw_step against the CPU loop.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "float8/float8_linear.hpp"
#include "gpu_test_helpers.hpp"
#include "ops/ops.hpp"

using namespace titan;

namespace {

const Device kGpu = Device::cuda(0);

Tensor random_tensor(const Shape& shape, std::uint32_t seed, float scale = 1.0f) {
  const auto v = gpu_test::random_vector(numel_of(shape), seed, scale);
  return Tensor::from_vector(std::vector<double>(v.begin(), v.end()), shape, DType::f32);
}

Tensor host(const Tensor& t) { return t.to(Device::cpu()); }

using gpu_test::host_floats;

// Same bytes (float8 data) or same float32 bits up to NaN payloads.
bool same_values(const Tensor& gpu, const Tensor& cpu) {
  const Tensor g = host(gpu);
  if (g.shape() != cpu.shape() || g.dtype() != cpu.dtype()) return false;
  for (std::int64_t i = 0; i < cpu.numel(); ++i) {
    if (cpu.dtype() == DType::f32) {
      const float a = g.data<float>()[i], b = cpu.data<float>()[i];
      if (!(std::memcmp(&a, &b, 4) == 0 || (std::isnan(a) && std::isnan(b)))) return false;
    } else if (g.data<std::uint8_t>()[i] != cpu.data<std::uint8_t>()[i]) {
      return false;
    }
  }
  return true;
}

// |gpu - cpu| <= tol * sum_k |a_k b_k| per element (+ one bf16 rounding of |cpu| for bf16 out):
// the error of an accumulation scaled by what is accumulated, for the FP8 GEMM against the CPU
// emulation's float32 dot products of the same dequantized operands.
void require_gemm_close(const Tensor& y_gpu, const Tensor& y_cpu, const Tensor& da, const Tensor& db, double tol,
                        const std::string& what) {
  const Tensor g = host(y_gpu).to(DType::f32), c = y_cpu.to(DType::f32);
  const std::int64_t M = da.size(0), N = db.size(0), K = da.size(1);
  const bool bf16 = y_gpu.dtype() == DType::bf16;
  std::int64_t bad = 0;
  double worst = 0;
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      double mag = 0;
      for (std::int64_t k = 0; k < K; ++k) mag += std::abs(double(da.data<float>()[m * K + k]) * double(db.data<float>()[n * K + k]));
      const double want = c.data<float>()[m * N + n], got = g.data<float>()[m * N + n];
      const double allowed = tol * mag + (bf16 ? 0x1p-8 * std::abs(want) : 0.0) + 1e-30;
      const double err = std::abs(got - want);
      bad += !(err <= allowed);
      if (std::isfinite(err)) worst = std::max(worst, err / allowed);
    }
  INFO(what << ": " << bad << " of " << M * N << " elements outside the tolerance (worst " << worst << " of it)");
  REQUIRE(bad == 0);
}

}  // namespace

TEST_CASE("float8 ops on GPU tensors: amax, scales, casts (both layouts, f32 and bf16 inputs), dequantize as the CPU", "[gpu][float8]") {
  Tensor x = random_tensor({67, 80}, 60, 20.0f);
  x.set(3, 0.0);
  x.set(4, 1e-30);
  x.set(5, 1e6);  // saturates
  x.set(6, NAN);  // propagates into its row's, column's and the tensor's amax
  for (DType in : {DType::f32, DType::bf16}) {
    const Tensor xc = x.to(in), xg = xc.to(kGpu);
    for (auto axis : {ops::ScaleAxis::tensor, ops::ScaleAxis::per_row, ops::ScaleAxis::per_column})
      for (DType f8 : {DType::f8e4m3, DType::f8e5m2})
        for (bool pow2 : {false, true}) {
          INFO(dtype_name(in) << " axis " << int(axis) << " " << dtype_name(f8) << " pow2 " << pow2);
          const Tensor amax_c = ops::amax(xc, axis), amax_g = ops::amax(xg, axis);
          REQUIRE(same_values(amax_g, amax_c));
          const Tensor scale_c = ops::amax_to_scale(amax_c, f8, pow2), scale_g = ops::amax_to_scale(amax_g, f8, pow2);
          REQUIRE(same_values(scale_g, scale_c));
          const ops::Float8Cast cc = ops::cast_to_float8(xc, f8, scale_c, axis, ops::Float8Layout::both);
          const ops::Float8Cast cg = ops::cast_to_float8(xg, f8, scale_g, axis, ops::Float8Layout::both);
          REQUIRE(same_values(cg.data, cc.data));
          REQUIRE(same_values(cg.data_t, cc.data_t));
          REQUIRE(same_values(ops::cast_to_float8(xg, f8, scale_g, axis, ops::Float8Layout::transposed).data_t, cc.data_t));
          REQUIRE(same_values(ops::dequantize(cg.data, cg.scale, axis), ops::dequantize(cc.data, cc.scale, axis)));
        }
  }
}

TEST_CASE("scaled_mm on the GPU: cuBLASLt FP8 vs the CPU emulation; emulate = true vs the CPU", "[gpu][float8][gemm]") {
  struct Case {
    std::int64_t M, N, K;
    ops::ScaleAxis ax_a, ax_b;
    DType fa, fb;
  };
  const auto tw = ops::ScaleAxis::tensor, row = ops::ScaleAxis::per_row;
  const Case cases[] = {{37, 48, 64, tw, tw, DType::f8e4m3, DType::f8e4m3},  {130, 80, 272, tw, tw, DType::f8e5m2, DType::f8e4m3},
                        {64, 96, 128, tw, tw, DType::f8e4m3, DType::f8e5m2}, {37, 48, 64, row, row, DType::f8e4m3, DType::f8e4m3},
                        {200, 144, 320, row, row, DType::f8e4m3, DType::f8e4m3}, {48, 64, 80, row, tw, DType::f8e4m3, DType::f8e4m3},
                        {21, 32, 48, tw, row, DType::f8e4m3, DType::f8e4m3},
                        {21, 40, 24, tw, tw, DType::f8e4m3, DType::f8e4m3}};  // K, N not multiples of 16: emulated
  std::uint32_t seed = 700;
  for (const Case& c : cases)
    for (DType out : {DType::f32, DType::bf16})
      for (bool fast : {false, true}) {
        const std::string what = std::to_string(c.M) + "x" + std::to_string(c.N) + "x" + std::to_string(c.K) + " scales " +
                                 std::to_string(int(c.ax_a)) + "/" + std::to_string(int(c.ax_b)) + " " +
                                 std::string(dtype_name(c.fa)) + " x " + std::string(dtype_name(c.fb)) + " -> " +
                                 std::string(dtype_name(out)) + (fast ? " fast_accum" : "");
        INFO(what);
        const Tensor a = random_tensor({c.M, c.K}, seed += 3, 2.0f), b = random_tensor({c.N, c.K}, seed += 3, 0.1f);
        const ops::Float8Cast a8 = ops::cast_to_float8(a, c.fa, c.ax_a, c.ax_a == row);
        const ops::Float8Cast b8 = ops::cast_to_float8(b, c.fb, c.ax_b, c.ax_b == row);
        const Tensor y_cpu = ops::scaled_mm(a8.data, a8.scale, b8.data, b8.scale, out, fast);
        const Tensor ga = a8.data.to(kGpu), gsa = a8.scale.to(kGpu), gb = b8.data.to(kGpu), gsb = b8.scale.to(kGpu);
        const Tensor y_gpu = ops::scaled_mm(ga, gsa, gb, gsb, out, fast);
        REQUIRE(y_gpu.device() == kGpu);
        REQUIRE(y_gpu.dtype() == out);
        REQUIRE(y_gpu.shape() == Shape{c.M, c.N});
        const Tensor da = ops::dequantize(a8.data, a8.scale, c.ax_a), db = ops::dequantize(b8.data, b8.scale, c.ax_b);
        // Products of float8 values are exact; Hopper's FP8 accumulation keeps fewer bits than
        // float32 between promotions (all of K with fast accumulation): 2^-10 of sum |a b|.
        require_gemm_close(y_gpu, y_cpu, da, db, 0x1p-10, "cuBLASLt " + what);
        // emulate = true on the GPU: dequantize kernels + an f32 cuBLASLt GEMM: f32 rounding only.
        const Tensor y_emu = ops::scaled_mm(ga, gsa, gb, gsb, out, fast, true);
        require_gemm_close(y_emu, y_cpu, da, db, 2.0 * double(c.K) * 0x1p-24, "emulated " + what);
      }
  CHECK(ops::scaled_mm_implementation(kGpu, false).starts_with("cuBLASLt"));
  CHECK(ops::scaled_mm_implementation(kGpu, true).starts_with("emulated"));
}

TEST_CASE("Float8Linear on the GPU with FP8 GEMMs tracks the CPU emulation for every recipe", "[gpu][float8]") {
  for (const char* recipe : {"tensorwise", "rowwise", "rowwise_with_gw_hp"})
    for (DType dt : {DType::f32, DType::bf16})
      for (bool emulate : {false, true}) {
        INFO(recipe << " " << dtype_name(dt) << (emulate ? " emulate" : ""));
        const float8::Recipe r = float8::recipe_from_name(recipe, 16, emulate);
        // Inputs rounded through dt, so both sides see the same values.
        const Tensor x = random_tensor({2, 16, 64}, 80).to(dt), w = random_tensor({48, 64}, 81, 0.1f).to(dt),
                     dy = random_tensor({2, 16, 48}, 82).to(dt);
        autograd::Variable xc(x.to(DType::f32), true), wc(w.to(DType::f32), true);
        autograd::Variable xg(x.to(kGpu), true), wg(w.to(kGpu), true);
        autograd::Variable yc = float8::float8_linear(xc, wc, float8::recipe_from_name(recipe));
        autograd::Variable yg = float8::float8_linear(xg, wg, r);
        REQUIRE(yg.data().dtype() == dt);
        yc.backward(dy.to(DType::f32));
        yg.backward(dy.to(kGpu));
        // FP8 accumulation (or f32 rounding when emulated) and, for bf16, one output rounding.
        const double tol = dt == DType::bf16 ? 2e-2 : emulate ? 1e-5 : 1e-2;
        gpu_test::require_close(host_floats(yg.data()), yc.data().to_vector(), tol, "y");
        gpu_test::require_close(host_floats(xg.grad()), xc.grad().to_vector(), tol, "dx");
        gpu_test::require_close(host_floats(wg.grad()), wc.grad().to_vector(), tol, "dw");
      }
}

TEST_CASE("adamw_step on GPU tensors: one multi-tensor launch, within an ulp or two of the CPU loop", "[gpu][optim]") {
  const std::vector<std::int64_t> sizes = {1, 7, 1000, 65537 + 3};  // across the 64K-element chunks
  std::vector<Tensor> params, grads;
  for (size_t i = 0; i < sizes.size(); ++i) {
    params.push_back(random_tensor({sizes[i]}, 900 + std::uint32_t(i)));
    grads.push_back(random_tensor({sizes[i]}, 950 + std::uint32_t(i)));
  }
  auto [p, g, m, v, pg, gg, mg, vg] = gpu_test::adamw_lists(params, grads, kGpu);
  for (std::int64_t step = 1; step <= 3; ++step) {
    const ops::AdamWStep hp{1e-3, 0.9, 0.95, 1e-8, 0.1, step};
    ops::adamw_step(p, g, m, v, hp);
    ops::adamw_step(pg, gg, mg, vg, hp);
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    INFO("tensor " << i);
    gpu_test::require_close(host_floats(pg[i]), p[i].to_vector(), 1e-6, "param");
    gpu_test::require_close(host_floats(mg[i]), m[i].to_vector(), 1e-6, "exp_avg");
    gpu_test::require_close(host_floats(vg[i]), v[i].to_vector(), 1e-6, "exp_avg_sq");
  }
}
