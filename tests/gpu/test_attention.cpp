// Causal GQA flash attention on the GPU (kernels/attention.cu) against the CPU op
// (src/ops/cpu/attention.hpp) on odd shapes: forward (out, lse) and backward (dq, dk, dv), f32
// (CUDA-core kernels) and bf16 (titan.cpp's tensor-core kernels, the CUDA-core fallback, and
// cuDNN's fused flash attention, each pinned with set_attention_impl), and every bf16 path again
// at S = 4096, 8192 and 4097 ([long]). The CPU computes
// in f32 on exactly the values the GPU sees (inputs rounded to bf16 for bf16 runs); the backward
// of both gets the same out (rounded to the storage dtype) and lse. Outputs are poisoned first.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
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

// Reset the kernel choice even when a REQUIRE throws out of the test.
struct ForceSimt {
  explicit ForceSimt(bool on) { cuda::attention_force_simt(on); }
  ~ForceSimt() { cuda::attention_force_simt(false); }
};
struct UseImpl {
  explicit UseImpl(cuda::AttentionImpl impl) { cuda::set_attention_impl(impl); }
  ~UseImpl() { cuda::set_attention_impl(cuda::AttentionImpl::automatic); }
};
// debug.deterministic's cuDNN backward (titan.cpp's kernels are deterministic either way).
struct Deterministic {
  Deterministic() { cuda::set_attention_deterministic(true); }
  ~Deterministic() { cuda::set_attention_deterministic(false); }
};

const char* impl_name(cuda::AttentionImpl impl) {
  switch (impl) {
    case cuda::AttentionImpl::cudnn: return "cudnn";
    case cuda::AttentionImpl::titan: return "titan";
    default: return "automatic";
  }
}

// Why the cuDNN cases cannot run in this build ("" when they can). A build without the cuDNN
// frontend's headers has no cuDNN path to test; a machine without libcudnn fails the cases (the
// device check must say so), since AttentionImpl::cudnn then throws cuDNN's reason.
std::string cudnn_not_built() {
  const std::string what = cuda::attention_implementation(1, 64, 2, 1, 64, DType::bf16);
  return what.find("no cuDNN frontend headers") != std::string::npos ? what : "";
}

void check_attention(const Shape& s, DType dtype, double tol, std::uint32_t seed,
                     const std::vector<cuda::AttentionImpl>& impls = {cuda::AttentionImpl::titan}) {
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
  // Backward, from the reference out (in the storage dtype) and lse.
  const auto out_in = rounded(out_ref, dtype);
  std::vector<float> dq_ref(static_cast<std::size_t>(nq)), dk_ref(static_cast<std::size_t>(nk)),
      dv_ref(static_cast<std::size_t>(nk));
  titan::ops::cpu::attention_backward(dout.data(), q.data(), k.data(), v.data(), out_in.data(), lse_ref.data(),
                                      dq_ref.data(), dk_ref.data(), dv_ref.data(), s.B, s.S, s.H, s.KV, s.D);
  DeviceBuffer d_q(q, dtype), d_k(k, dtype), d_v(v, dtype), d_dout(dout, dtype);
  // Each implementation's forward; then each backward from another implementation's out and lse
  // when there are two (a cuDNN forward feeds titan.cpp's backward and the reverse: the contract
  // says their lse agree), else from the reference's.
  std::vector<std::unique_ptr<DeviceBuffer>> outs, lses;
  for (cuda::AttentionImpl impl : impls) {
    INFO("forward by " << impl_name(impl));
    UseImpl use(impl);
    outs.push_back(std::make_unique<DeviceBuffer>(nq, dtype));  // poisoned
    lses.push_back(std::make_unique<DeviceBuffer>(nl, DType::f32));
    cuda::attention_forward(d_q.get(), d_k.get(), d_v.get(), outs.back()->get(), lses.back()->as<float>(), s.B, s.S,
                            s.H, s.KV, s.D, dtype);
    require_close(outs.back()->download(), out_ref, tol, "out");
    require_close(lses.back()->download(), lse_ref, 1e-4, "lse");
  }
  DeviceBuffer d_o(out_in, dtype), d_l(lse_ref, DType::f32);
  for (std::size_t i = 0; i < impls.size(); ++i) {
    const std::size_t from = impls.size() > 1 ? (i + 1) % impls.size() : i;
    DeviceBuffer& o = impls.size() > 1 ? *outs[from] : d_o;
    DeviceBuffer& l = impls.size() > 1 ? *lses[from] : d_l;
    INFO("backward by " << impl_name(impls[i]) << " from the out and lse of "
                        << (impls.size() > 1 ? impl_name(impls[from]) : "the CPU reference"));
    UseImpl use(impls[i]);
    DeviceBuffer d_dq(nq, dtype), d_dk(nk, dtype), d_dv(nk, dtype);  // poisoned
    cuda::attention_backward(d_dout.get(), d_q.get(), d_k.get(), d_v.get(), o.get(), l.as<float>(), d_dq.get(),
                             d_dk.get(), d_dv.get(), s.B, s.S, s.H, s.KV, s.D, dtype);
    require_close(d_dq.download(), dq_ref, tol, "dq");
    require_close(d_dk.download(), dk_ref, tol, "dk");
    require_close(d_dv.download(), dv_ref, tol, "dv");
  }
}

void check_all_shapes(DType dtype, double tol, cuda::AttentionImpl impl = cuda::AttentionImpl::titan) {
  // cuDNN is required here only where it must run: the head dims that matter (64, 128) and more
  // than one token (it has no backward for S = 1); automatic mode covers the rest.
  const bool cudnn = impl == cuda::AttentionImpl::cudnn;
  std::uint32_t seed = 100;
  for (std::int64_t D : {16, 64, 128})
    for (std::int64_t S : {1, 37, 130, 257})
      for (std::int64_t KV : {2, 4}) {
        if (!cudnn || (D >= 64 && S > 1)) check_attention(Shape{2, S, 4, KV, D}, dtype, tol, seed, {impl});
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

TEST_CASE("attention: cuDNN's fused attention matches the CPU op", "[gpu][attention][cudnn]") {
  if (const std::string why = cudnn_not_built(); !why.empty()) {
    WARN("skipped: " << why);
    return;
  }
  check_all_shapes(DType::bf16, 2e-2, cuda::AttentionImpl::cudnn);
  check_attention(Shape{1, 300, 6, 1, 32}, DType::bf16, 2e-2, 11, {cuda::AttentionImpl::cudnn});
  check_attention(Shape{1, 513, 8, 2, 128}, DType::bf16, 2e-2, 13, {cuda::AttentionImpl::cudnn});
  check_attention(Shape{3, 64, 2, 2, 64}, DType::bf16, 2e-2, 15, {cuda::AttentionImpl::cudnn});
  // A cuDNN forward's lse feeds titan.cpp's backward and the reverse: the contract says they agree.
  check_attention(Shape{2, 257, 4, 2, 128}, DType::bf16, 2e-2, 17,
                  {cuda::AttentionImpl::cudnn, cuda::AttentionImpl::titan});
  const std::string what = cuda::attention_implementation(2, 257, 4, 2, 128, DType::bf16);
  INFO(what);
  CHECK(what.rfind("cuDNN ", 0) == 0);
  CHECK(what.find("forward and backward") != std::string::npos);
  // Automatic mode at the shapes cuDNN was not required on (the debug model's D = 16, one token):
  // whichever runs must match, and a refused pass says why.
  for (std::int64_t S : {1, 37}) check_attention(Shape{2, S, 4, 2, 16}, DType::bf16, 2e-2, 19, {cuda::AttentionImpl::automatic});
  const std::string one = cuda::attention_implementation(2, 1, 4, 2, 16, DType::bf16);
  INFO(one);
  CHECK(one.find("(cuDNN: ") != std::string::npos);  // no cuDNN backward for one-token sequences
  {
    UseImpl use(cuda::AttentionImpl::cudnn);
    DeviceBuffer buf(2 * 4 * 16, DType::bf16), lse(8, DType::f32);
    void* p = buf.get();
    CHECK_THROWS_WITH(cuda::attention_backward(p, p, p, p, p, lse.as<float>(), p, p, p, 2, 1, 4, 2, 16, DType::bf16),
                      Catch::Contains("cuDNN attention was required but"));
  }
  // debug.deterministic's backward is its own plan; at these sizes its workspace is small.
  {
    Deterministic deterministic;
    check_attention(Shape{2, 130, 4, 2, 64}, DType::bf16, 2e-2, 21, {cuda::AttentionImpl::cudnn});
  }
}

TEST_CASE("attention: every bf16 path at S = 4096, 8192 and 4097", "[gpu][attention][long]") {
  // The CPU reference is the cost here (seconds at S = 8192 on the GEMM library's threads), so each
  // shape is computed once and compared with every path. Tolerance as the short shapes: bf16
  // rounding of out, P and dS is relative, and the sums over longer rows average it, not grow it.
  std::vector<cuda::AttentionImpl> impls = {cuda::AttentionImpl::titan};
  if (cudnn_not_built().empty()) impls.push_back(cuda::AttentionImpl::cudnn);
  std::uint32_t seed = 200;
  for (std::int64_t S : {4096, 8192, 4097}) check_attention(Shape{1, S, 4, 2, 128}, DType::bf16, 2e-2, seed++, impls);
}

namespace {

// Two backward runs from the same inputs give the same bits (under Deterministic, for cuDNN).
void check_backward_repeats(DType dtype, cuda::AttentionImpl impl) {
  const std::int64_t B = 1, S = 200, H = 8, KV = 2, D = 64;
  const std::int64_t nq = B * S * H * D, nk = B * S * KV * D, nl = B * H * S;
  UseImpl use(impl);
  Deterministic deterministic;
  INFO("dtype " << titan::dtype_name(dtype) << ", implementation " << impl_name(impl));
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

}  // namespace

TEST_CASE("attention: backward is deterministic", "[gpu][attention]") {
  check_backward_repeats(DType::bf16, cuda::AttentionImpl::titan);
  check_backward_repeats(DType::f32, cuda::AttentionImpl::titan);
}

TEST_CASE("attention: debug.deterministic reaches cuDNN's backward", "[gpu][attention][cudnn]") {
  if (const std::string why = cudnn_not_built(); !why.empty()) {
    WARN("skipped: " << why);
    return;
  }
  check_backward_repeats(DType::bf16, cuda::AttentionImpl::cudnn);
  // The deterministic backward's B x H x S x S workspace is 4 GiB at the bench shape: over the
  // budget, so its plan is refused and says why; the default backward's plan is not. (Asking
  // builds the plans and allocates nothing.)
  const std::string fast = cuda::attention_implementation(1, 8192, 32, 8, 128, DType::bf16);
  INFO(fast);
  CHECK(fast.find("forward and backward") != std::string::npos);
  Deterministic deterministic;
  const std::string det = cuda::attention_implementation(1, 8192, 32, 8, 128, DType::bf16);
  INFO(det);
  CHECK(det.find("fused flash attention forward, titan.cpp's mma.sync flash attention backward (cuDNN: its plan needs") !=
        std::string::npos);
  CHECK(det.find("deterministic backward keeps") != std::string::npos);
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
