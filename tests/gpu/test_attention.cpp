// Causal GQA flash attention on the GPU (kernels/attention.cu) against the CPU op
// (src/ops/cpu/attention.hpp) on odd shapes: forward (out, lse) and backward (dq, dk, dv), f32
// (CUDA-core kernels) and bf16 (tensor-core kernels, and the CUDA-core fallback). The CPU computes
// in f32 on exactly the values the GPU sees (inputs rounded to bf16 for bf16 runs); the backward
// of both gets the same out (rounded to the storage dtype) and lse. Outputs are poisoned first.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "attention.hpp"
#include "gpu_test_helpers.hpp"
#include "ops/cpu/attention.hpp"

namespace {

using titan::DType;
using titan::gpu_test::DeviceBuffer;
using titan::gpu_test::random_vector;
using titan::gpu_test::require_close;
using titan::gpu_test::rounded;
namespace cuda = titan::cuda;

struct Shape {
  std::int64_t B, S, H, KV, D;
};

// Resets the kernel choice even when a REQUIRE throws out of the test.
struct ForceSimt {
  explicit ForceSimt(bool on) { cuda::attention_force_simt(on); }
  ~ForceSimt() { cuda::attention_force_simt(false); }
};

void check_attention(const Shape& s, DType dtype, double tol, std::uint32_t seed) {
  INFO("B=" << s.B << " S=" << s.S << " H=" << s.H << " KV=" << s.KV << " D=" << s.D << " dtype "
            << titan::dtype_name(dtype));
  const std::int64_t nq = s.B * s.S * s.H * s.D, nk = s.B * s.S * s.KV * s.D, nl = s.B * s.H * s.S;
  const auto q = rounded(random_vector(nq, seed), dtype);
  const auto k = rounded(random_vector(nk, seed + 1), dtype);
  const auto v = rounded(random_vector(nk, seed + 2), dtype);
  const auto dout = rounded(random_vector(nq, seed + 3), dtype);

  // Forward.
  std::vector<float> out_ref(static_cast<std::size_t>(nq)), lse_ref(static_cast<std::size_t>(nl));
  titan::ops::cpu::attention_forward(q.data(), k.data(), v.data(), out_ref.data(), lse_ref.data(), s.B, s.S, s.H,
                                     s.KV, s.D);
  DeviceBuffer d_q(q, dtype), d_k(k, dtype), d_v(v, dtype);
  DeviceBuffer d_out(nq, dtype), d_lse(nl, DType::f32);  // poisoned
  cuda::attention_forward(d_q.get(), d_k.get(), d_v.get(), d_out.get(), d_lse.as<float>(), s.B, s.S, s.H, s.KV, s.D,
                          dtype);
  require_close(d_out.download(), out_ref, tol, "out");
  require_close(d_lse.download(), lse_ref, 1e-4, "lse");

  // Backward, from the reference out (in the storage dtype) and lse.
  const auto out_in = rounded(out_ref, dtype);
  std::vector<float> dq_ref(static_cast<std::size_t>(nq)), dk_ref(static_cast<std::size_t>(nk)),
      dv_ref(static_cast<std::size_t>(nk));
  titan::ops::cpu::attention_backward(dout.data(), q.data(), k.data(), v.data(), out_in.data(), lse_ref.data(),
                                      dq_ref.data(), dk_ref.data(), dv_ref.data(), s.B, s.S, s.H, s.KV, s.D);
  DeviceBuffer d_dout(dout, dtype), d_o(out_in, dtype), d_l(lse_ref, DType::f32);
  DeviceBuffer d_dq(nq, dtype), d_dk(nk, dtype), d_dv(nk, dtype);  // poisoned
  cuda::attention_backward(d_dout.get(), d_q.get(), d_k.get(), d_v.get(), d_o.get(), d_l.as<float>(), d_dq.get(),
                           d_dk.get(), d_dv.get(), s.B, s.S, s.H, s.KV, s.D, dtype);
  require_close(d_dq.download(), dq_ref, tol, "dq");
  require_close(d_dk.download(), dk_ref, tol, "dk");
  require_close(d_dv.download(), dv_ref, tol, "dv");
}

void check_all_shapes(DType dtype, double tol) {
  std::uint32_t seed = 100;
  for (std::int64_t D : {16, 64, 128})
    for (std::int64_t S : {1, 37, 130, 257})
      for (std::int64_t KV : {2, 4}) {
        check_attention(Shape{2, S, 4, KV, D}, dtype, tol, seed);
        seed += 10;
      }
}

}  // namespace

TEST_CASE("attention: f32 forward and backward match the CPU op", "[gpu][attention]") {
  check_all_shapes(DType::f32, 1e-4);
}

TEST_CASE("attention: bf16 forward and backward (tensor cores) match the CPU op", "[gpu][attention]") {
  check_all_shapes(DType::bf16, 2e-2);
}

TEST_CASE("attention: bf16 on the CUDA-core fallback matches the CPU op", "[gpu][attention]") {
  ForceSimt simt(true);
  for (std::int64_t D : {32, 128}) check_attention(Shape{2, 130, 4, 2, D}, DType::bf16, 2e-2, 7);
  check_attention(Shape{1, 65, 2, 1, 64}, DType::bf16, 2e-2, 9);
}

TEST_CASE("attention: more shapes (D = 32, MQA, long rows, B = 1)", "[gpu][attention]") {
  check_attention(Shape{1, 300, 6, 1, 32}, DType::f32, 1e-4, 11);
  check_attention(Shape{1, 300, 6, 1, 32}, DType::bf16, 2e-2, 11);
  check_attention(Shape{1, 513, 8, 2, 128}, DType::bf16, 2e-2, 13);
  check_attention(Shape{3, 64, 2, 2, 64}, DType::bf16, 2e-2, 15);
}

TEST_CASE("attention: backward is deterministic", "[gpu][attention]") {
  const std::int64_t B = 1, S = 200, H = 8, KV = 2, D = 64;
  const std::int64_t nq = B * S * H * D, nk = B * S * KV * D, nl = B * H * S;
  for (DType dtype : {DType::bf16, DType::f32}) {
    INFO("dtype " << titan::dtype_name(dtype));
    DeviceBuffer q(random_vector(nq, 1), dtype), k(random_vector(nk, 2), dtype), v(random_vector(nk, 3), dtype);
    DeviceBuffer dout(random_vector(nq, 4), dtype), out(nq, dtype), lse(nl, DType::f32);
    cuda::attention_forward(q.get(), k.get(), v.get(), out.get(), lse.as<float>(), B, S, H, KV, D, dtype);
    std::vector<std::vector<float>> first;
    for (int run = 0; run < 2; ++run) {
      DeviceBuffer dq(nq, dtype), dk(nk, dtype), dv(nk, dtype);
      cuda::attention_backward(dout.get(), q.get(), k.get(), v.get(), out.get(), lse.as<float>(), dq.get(), dk.get(),
                               dv.get(), B, S, H, KV, D, dtype);
      std::vector<std::vector<float>> got = {dq.download(), dk.download(), dv.download()};
      if (run == 0) first = got;
      else
        for (std::size_t t = 0; t < got.size(); ++t) REQUIRE(std::memcmp(got[t].data(), first[t].data(), got[t].size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("attention: unsupported shapes and dtypes are clear errors", "[gpu][attention]") {
  DeviceBuffer buf(4096, DType::f32), lse(64, DType::f32);
  void* p = buf.get();
  float* l = lse.as<float>();
  CHECK_THROWS_AS(cuda::attention_forward(p, p, p, p, l, 1, 4, 2, 1, 48, DType::f32), std::invalid_argument);
  CHECK_THROWS_WITH(cuda::attention_forward(p, p, p, p, l, 1, 4, 2, 1, 48, DType::f32),
                    Catch::Contains("head dim 48"));
  CHECK_THROWS_AS(cuda::attention_forward(p, p, p, p, l, 1, 4, 4, 3, 16, DType::f32), std::invalid_argument);
  CHECK_THROWS_AS(cuda::attention_forward(p, p, p, p, l, 1, 4, 2, 1, 16, DType::f16), std::invalid_argument);
  CHECK_THROWS_AS(cuda::attention_backward(p, p, p, p, p, l, p, p, p, 1, 4, 2, 1, 256, DType::bf16),
                  std::invalid_argument);
}
