// cuBLASLt GEMMs (kernels/gemm.hpp) vs a float64 triple loop on the same (dtype-rounded) inputs:
// odd shapes, every transpose, padded leading dims, strided batches, alpha/beta, poisoned
// outputs (beta = 0 must not read C), padding columns left untouched, misaligned views (a
// different alignment class, so a different plan), K = 0, argument checks; fp8 tensorwise and
// rowwise against the dequantized float8 values.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "gemm.hpp"
#include "gpu_test_helpers.hpp"
#include "runtime.hpp"

namespace {

using namespace titan;
using gpu_test::DeviceBuffer;
using gpu_test::random_vector;
using gpu_test::require_close;
using gpu_test::rounded;

struct GemmCase {
  bool ta, tb;
  std::int64_t M, N, K, lda, ldb, ldc, sa, sb, sc, batch;
  float alpha, beta;
};

// Row-major stored sizes (elements) of A, B, C for a case.
std::int64_t a_rows(const GemmCase& g) { return g.ta ? g.K : g.M; }
std::int64_t b_rows(const GemmCase& g) { return g.tb ? g.N : g.K; }
std::int64_t span(std::int64_t rows, std::int64_t ld, std::int64_t stride, std::int64_t batch) {
  return (batch - 1) * stride + rows * ld;
}

// C (whole buffer, padding included) after the GEMM, in double.
std::vector<double> reference(const GemmCase& g, const std::vector<float>& A, const std::vector<float>& B,
                              const std::vector<float>& C0) {
  std::vector<double> C(C0.begin(), C0.end());
  for (std::int64_t b = 0; b < g.batch; ++b)
    for (std::int64_t m = 0; m < g.M; ++m)
      for (std::int64_t n = 0; n < g.N; ++n) {
        double acc = 0;
        for (std::int64_t k = 0; k < g.K; ++k) {
          const double a = g.ta ? A[b * g.sa + k * g.lda + m] : A[b * g.sa + m * g.lda + k];
          const double bb = g.tb ? B[b * g.sb + n * g.ldb + k] : B[b * g.sb + k * g.ldb + n];
          acc += a * bb;
        }
        double& c = C[b * g.sc + m * g.ldc + n];
        c = double(g.alpha) * acc + (g.beta == 0.f ? 0.0 : double(g.beta) * c);
      }
  return C;
}

// Runs one case on the GPU and checks the logical elements (tolerance) and the padding
// (bit-identical to what was there: poison or the initial values).
void run_case(const GemmCase& g, DType in, DType out, double tol, std::uint32_t seed, std::int64_t misalign = 0) {
  const std::int64_t na = span(a_rows(g), g.lda, g.sa, g.batch), nb = span(b_rows(g), g.ldb, g.sb, g.batch),
                     nc = span(g.M, g.ldc, g.sc, g.batch);
  const std::vector<float> A = rounded(random_vector(na, seed), in);
  const std::vector<float> B = rounded(random_vector(nb, seed + 1), in);
  // beta == 0: C stays poisoned (NaN) and must not be read; else finite initial values.
  std::vector<float> C0 = g.beta == 0.f ? std::vector<float>(std::size_t(nc), NAN) : rounded(random_vector(nc, seed + 2), out);

  // `misalign` elements of offset put every matrix at a smaller alignment class.
  auto padded = [&](const std::vector<float>& v) {
    std::vector<float> p(std::size_t(misalign), 0.f);
    p.insert(p.end(), v.begin(), v.end());
    return p;
  };
  DeviceBuffer dA(padded(A), in), dB(padded(B), in);
  DeviceBuffer dC(nc + misalign, out);
  if (g.beta != 0.f) dC.upload(padded(C0));
  auto at = [&](const DeviceBuffer& d, DType dt) { return static_cast<char*>(d.get()) + misalign * dtype_size(dt); };

  cuda::gemm(g.ta, g.tb, g.M, g.N, g.K, g.alpha, at(dA, in), in, g.lda, g.sa, at(dB, in), in, g.ldb, g.sb, g.beta,
             at(dC, out), out, g.ldc, g.sc, g.batch);
  std::vector<float> got = dC.download();
  got.erase(got.begin(), got.begin() + misalign);
  const std::vector<double> want = reference(g, A, B, C0);

  std::vector<float> got_logical;
  std::vector<double> want_logical;
  std::vector<bool> logical(std::size_t(nc), false);
  for (std::int64_t b = 0; b < g.batch; ++b)
    for (std::int64_t m = 0; m < g.M; ++m)
      for (std::int64_t n = 0; n < g.N; ++n) {
        const std::size_t i = std::size_t(b * g.sc + m * g.ldc + n);
        logical[i] = true;
        got_logical.push_back(got[i]);
        want_logical.push_back(want[i]);
      }
  const std::string what = std::string("gemm ") + (g.ta ? "T" : "N") + (g.tb ? "T" : "N") + " M=" + std::to_string(g.M) +
                           " N=" + std::to_string(g.N) + " K=" + std::to_string(g.K) + " batch=" +
                           std::to_string(g.batch) + " " + std::string(dtype_name(in)) + "->" +
                           std::string(dtype_name(out)) + " misalign=" + std::to_string(misalign);
  require_close(got_logical, want_logical, tol, what);
  std::size_t padding_changed = 0;
  for (std::size_t i = 0; i < std::size_t(nc); ++i)
    if (!logical[i]) {
      const float w = C0[i], v = got[i];
      if (!((std::isnan(w) && std::isnan(v)) || std::memcmp(&w, &v, 4) == 0)) ++padding_changed;
    }
  INFO(what << ": padding elements changed: " << padding_changed);
  REQUIRE(padding_changed == 0);
}

GemmCase tight(bool ta, bool tb, std::int64_t M, std::int64_t N, std::int64_t K, float alpha = 1.f, float beta = 0.f) {
  GemmCase g{ta, tb, M, N, K, ta ? M : K, tb ? K : N, N, 0, 0, 0, 1, alpha, beta};
  return g;
}

// Tolerance: f32 inputs and output 1e-5; bf16 inputs with an f32 output 1e-4 (tensor-core f32
// accumulation is not bit-IEEE); bf16 output one rounding, 1e-2.
double tol(DType in, DType out) { return out == DType::bf16 ? 1e-2 : in == DType::bf16 ? 1e-4 : 1e-5; }

}  // namespace

TEST_CASE("gemm: all transposes, odd shapes, f32 and bf16", "[gpu][gemm]") {
  const std::pair<DType, DType> types[] = {{DType::f32, DType::f32}, {DType::bf16, DType::f32}, {DType::bf16, DType::bf16}};
  std::uint32_t seed = 100;
  for (auto [in, out] : types)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        run_case(tight(ta, tb, 37, 53, 129), in, out, tol(in, out), seed += 3);
        run_case(tight(ta, tb, 1, 7, 3, 0.5f, 0.f), in, out, tol(in, out), seed += 3);
        run_case(tight(ta, tb, 64, 48, 256, 1.f, 1.f), in, out, tol(in, out), seed += 3);  // accumulate into C
      }
}

TEST_CASE("gemm: batched 3-D with padded leading dims, gaps between items, alpha and beta", "[gpu][gemm]") {
  const std::pair<DType, DType> types[] = {{DType::f32, DType::f32}, {DType::bf16, DType::f32}, {DType::bf16, DType::bf16}};
  std::uint32_t seed = 500;
  for (auto [in, out] : types)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        GemmCase g = tight(ta, tb, 19, 33, 71, 0.75f, -0.5f);
        g.batch = 3;
        g.lda += 5;
        g.ldb += 2;
        g.ldc += 3;
        g.sa = a_rows(g) * g.lda + 7;
        g.sb = b_rows(g) * g.ldb + 1;
        g.sc = g.M * g.ldc + 9;
        run_case(g, in, out, tol(in, out), seed += 3);
        g.beta = 0.f;  // poisoned output, not read
        run_case(g, in, out, tol(in, out), seed += 3);
      }
}

TEST_CASE("gemm: misaligned views pick their own plan, repeated calls are bit-identical", "[gpu][gemm]") {
  for (DType in : {DType::f32, DType::bf16}) {
    run_case(tight(false, true, 45, 67, 96), in, DType::f32, tol(in, DType::f32), 900, 1);
    run_case(tight(true, false, 45, 67, 96), in, in, tol(in, in), 901, 3);
    GemmCase g = tight(false, false, 16, 24, 40, 1.f, 0.25f);
    g.batch = 2;
    g.sa = g.M * g.lda + 1;  // odd strides: batch item 1 is misaligned even when item 0 is not
    g.sb = g.K * g.ldb + 3;
    g.sc = g.M * g.ldc + 5;
    run_case(g, in, DType::f32, tol(in, DType::f32), 902);
  }
  // The cached plan gives the same bits on a second call.
  const std::int64_t M = 33, N = 65, K = 127;
  DeviceBuffer A(random_vector(M * K, 7), DType::bf16), B(random_vector(N * K, 8), DType::bf16);
  DeviceBuffer C1(M * N, DType::f32), C2(M * N, DType::f32);
  cuda::gemm(false, true, M, N, K, 1.f, A.get(), DType::bf16, K, 0, B.get(), DType::bf16, K, 0, 0.f, C1.get(), DType::f32, N, 0, 1);
  cuda::gemm(false, true, M, N, K, 1.f, A.get(), DType::bf16, K, 0, B.get(), DType::bf16, K, 0, 0.f, C2.get(), DType::f32, N, 0, 1);
  const auto c1 = C1.download(), c2 = C2.download();
  REQUIRE(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)) == 0);
}

TEST_CASE("gemm: K = 0 scales C by beta, empty outputs are no-ops", "[gpu][gemm]") {
  for (DType out : {DType::f32, DType::bf16}) {
    const DType in = out == DType::bf16 ? DType::bf16 : DType::f32;
    GemmCase g = tight(false, false, 5, 6, 0, 1.f, 0.5f);
    g.lda = 1;
    g.ldb = 6;
    run_case(g, in, out, 0.0, 1200);
    g.beta = 0.f;  // zeros over the poison
    run_case(g, in, out, 0.0, 1201);
  }
  DeviceBuffer C(4, DType::f32);
  cuda::gemm(false, false, 0, 4, 3, 1.f, nullptr, DType::f32, 3, 0, nullptr, DType::f32, 4, 0, 0.f, C.get(), DType::f32, 4, 0, 1);
  for (float v : C.download()) REQUIRE(std::isnan(v));  // untouched
}

TEST_CASE("gemm: argument errors are std::invalid_argument", "[gpu][gemm]") {
  DeviceBuffer A(64, DType::f32), B(64, DType::f32), C(64, DType::f32), H(64, DType::bf16);
  auto call = [&](std::int64_t lda, std::int64_t ldb, std::int64_t ldc, DType a, DType b, DType c, const void* ap) {
    cuda::gemm(false, false, 4, 4, 4, 1.f, ap, a, lda, 0, b == DType::bf16 ? H.get() : B.get(), b, ldb, 0, 0.f,
               c == DType::bf16 ? H.get() : C.get(), c, ldc, 0, 1);
  };
  CHECK_THROWS_AS(call(3, 4, 4, DType::f32, DType::f32, DType::f32, A.get()), std::invalid_argument);  // lda < K
  CHECK_THROWS_AS(call(4, 3, 4, DType::f32, DType::f32, DType::f32, A.get()), std::invalid_argument);  // ldb < N
  CHECK_THROWS_AS(call(4, 4, 3, DType::f32, DType::f32, DType::f32, A.get()), std::invalid_argument);  // ldc < N
  CHECK_THROWS_AS(call(4, 4, 4, DType::f32, DType::bf16, DType::f32, A.get()), std::invalid_argument);  // mixed inputs
  CHECK_THROWS_AS(call(4, 4, 4, DType::f32, DType::f32, DType::bf16, A.get()), std::invalid_argument);  // f32 -> bf16
  CHECK_THROWS_AS(call(4, 4, 4, DType::f32, DType::f32, DType::f32, static_cast<char*>(A.get()) + 2),
                  std::invalid_argument);  // misaligned element
  CHECK_THROWS_AS(cuda::gemm(false, false, -1, 4, 4, 1.f, A.get(), DType::f32, 4, 0, B.get(), DType::f32, 4, 0, 0.f,
                             C.get(), DType::f32, 4, 0, 1),
                  std::invalid_argument);
  CHECK_THROWS_AS(cuda::gemm(false, false, 4, 4, 4, 1.f, A.get(), DType::f32, 4, 16, B.get(), DType::f32, 4, 16, 0.f,
                             C.get(), DType::f32, 4, 8, 2),
                  std::invalid_argument);  // overlapping outputs
}

// ---- fp8 -------------------------------------------------------------------------------------

namespace {

bool device_has_rowwise_fp8() {
  const auto p = cuda::device_properties(cuda::current_device());
  return p.major >= 9;
}

// Random values exactly representable in `f8` (spread over several binades, a few zeros).
std::vector<float> random_f8_values(std::int64_t n, DType f8, std::uint32_t seed) {
  std::vector<float> v = random_vector(n, seed, 4.0f);
  for (auto& x : v) x = f8 == DType::f8e4m3 ? f8e4m3_to_f32(f32_to_f8e4m3(x)) : f8e5m2_to_f32(f32_to_f8e5m2(x));
  return v;
}

void run_fp8_case(std::int64_t M, std::int64_t N, std::int64_t K, DType a_dt, DType b_dt, DType c_dt,
                  cuda::Fp8Scaling scaling, bool fast_accum, std::uint32_t seed) {
  const std::vector<float> A = random_f8_values(M * K, a_dt, seed), B = random_f8_values(N * K, b_dt, seed + 1);
  const bool rowwise = scaling == cuda::Fp8Scaling::rowwise;
  std::mt19937 gen(seed + 2);
  std::uniform_real_distribution<float> u(0.01f, 0.5f);
  std::vector<float> sa(rowwise ? std::size_t(M) : 1), sb(rowwise ? std::size_t(N) : 1);
  for (auto& s : sa) s = u(gen);
  for (auto& s : sb) s = u(gen);
  DeviceBuffer dA(A, a_dt), dB(B, b_dt), dsa(sa, DType::f32), dsb(sb, DType::f32), dC(M * N, c_dt);
  cuda::gemm_fp8(M, N, K, dA.get(), a_dt, dsa.as<float>(), dB.get(), b_dt, dsb.as<float>(), dC.get(), c_dt, scaling,
                 fast_accum);
  std::vector<double> want(std::size_t(M * N));
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      double acc = 0;
      for (std::int64_t k = 0; k < K; ++k) acc += double(A[m * K + k]) * double(B[n * K + k]);
      want[std::size_t(m * N + n)] = acc * double(sa[rowwise ? m : 0]) * double(sb[rowwise ? n : 0]);
    }
  // Products of float8 values are exact in f32, but Hopper's fp8 tensor-core accumulation keeps
  // only ~14 mantissa bits between promotions (all of K with fast accumulation): 1e-2 for both
  // outputs. A layout or scale mix-up is an O(1) error.
  require_close(dC.download(), want, 1e-2,
                std::string("gemm_fp8 ") + (rowwise ? "rowwise " : "tensorwise ") + std::string(dtype_name(a_dt)) +
                    " x " + std::string(dtype_name(b_dt)) + " -> " + std::string(dtype_name(c_dt)) +
                    (fast_accum ? " fast_accum" : "") + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
                    " K=" + std::to_string(K));
}

}  // namespace

TEST_CASE("gemm_fp8 tensorwise vs the dequantized float8 product", "[gpu][gemm][fp8]") {
  const std::pair<DType, DType> pairs[] = {
      {DType::f8e4m3, DType::f8e4m3}, {DType::f8e4m3, DType::f8e5m2}, {DType::f8e5m2, DType::f8e4m3}};
  std::uint32_t seed = 2000;
  for (auto [a, b] : pairs)
    for (DType c : {DType::f32, DType::bf16})
      for (bool fast : {false, true}) {
        run_fp8_case(37, 48, 64, a, b, c, cuda::Fp8Scaling::tensorwise, fast, seed += 5);
        run_fp8_case(130, 80, 272, a, b, c, cuda::Fp8Scaling::tensorwise, fast, seed += 5);
      }
}

TEST_CASE("gemm_fp8 rowwise (outer-vector scales) vs the dequantized float8 product", "[gpu][gemm][fp8]") {
  // cuBLASLt has outer-vector scaling on Hopper (sm_90) from cuBLAS 12.9; elsewhere it must be
  // refused with a std::runtime_error that says so.
  const bool hopper = device_has_rowwise_fp8();
  std::uint32_t seed = 3000;
  for (DType c : {DType::f32, DType::bf16})
    for (bool fast : {false, true}) {
      try {
        run_fp8_case(37, 48, 64, DType::f8e4m3, DType::f8e4m3, c, cuda::Fp8Scaling::rowwise, fast, seed += 5);
        run_fp8_case(200, 144, 320, DType::f8e4m3, DType::f8e4m3, c, cuda::Fp8Scaling::rowwise, fast, seed += 5);
      } catch (const std::runtime_error& e) {
        if (hopper) FAIL(e.what());
        WARN("rowwise fp8 GEMM refused on this GPU: " << e.what());
        return;
      }
    }
}

TEST_CASE("gemm_fp8: argument errors are std::invalid_argument", "[gpu][gemm][fp8]") {
  DeviceBuffer A(64 * 64 + 16, DType::f8e4m3), S(64, DType::f32), C(64 * 64, DType::f32);
  const float* s = S.as<float>();
  auto call = [&](std::int64_t M, std::int64_t N, std::int64_t K, const void* a, DType adt, DType bdt, DType cdt) {
    cuda::gemm_fp8(M, N, K, a, adt, s, A.get(), bdt, s, C.get(), cdt, cuda::Fp8Scaling::tensorwise, false);
  };
  const DType e4 = DType::f8e4m3, e5 = DType::f8e5m2;
  CHECK_THROWS_AS(call(16, 16, 40, A.get(), e4, e4, DType::f32), std::invalid_argument);  // K % 16
  CHECK_THROWS_AS(call(16, 40, 16, A.get(), e4, e4, DType::f32), std::invalid_argument);  // N % 16
  CHECK_THROWS_AS(call(16, 16, 16, A.get(), e5, e5, DType::f32), std::invalid_argument);  // e5m2 x e5m2
  CHECK_THROWS_AS(call(16, 16, 16, A.get(), DType::bf16, e4, DType::f32), std::invalid_argument);
  CHECK_THROWS_AS(call(16, 16, 16, A.get(), e4, e4, DType::f16), std::invalid_argument);
  CHECK_THROWS_AS(call(16, 16, 16, static_cast<char*>(A.get()) + 8, e4, e4, DType::f32), std::invalid_argument);
  CHECK_THROWS_AS(cuda::gemm_fp8(16, 16, 16, A.get(), e4, nullptr, A.get(), e4, s, C.get(), DType::f32,
                                 cuda::Fp8Scaling::tensorwise, false),
                  std::invalid_argument);
}
