// The CPU flash-attention kernel (src/ops/cpu/attention.hpp) through ops::attention and
// ops::attention_backward, float32 (AVX2 tile kernel) and float64 (cpu::gemm, the reference
// instantiation), against a direct float64 evaluation of the formulas, on shapes that reach every
// edge of its tiling: S = 1, S below a query block (128), S equal to it, S past one key tile (256)
// and not a multiple of either, several key tiles (online-softmax rescaling), head dims 16 / 64 /
// 128 (whole 16-column panels) and 24 (a masked 8-column tail), GQA groups 1, 2 and 4, batch 2.
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <stdexcept>
#include <cstring>
#include <vector>

#include "core/rng.hpp"
#include "ops/cpu/blas.hpp"
#include "ops/cpu/cpu_isa.hpp"
#include "ops/cpu/threads.hpp"
#include "ops/ops.hpp"

using namespace titan;

namespace {

struct Shape5 {
  std::int64_t B, S, H, KV, D;
};

Tensor randn(const Shape& shape, std::uint64_t seed, DType dt) {
  Tensor t = Tensor::empty(shape, dt);
  rng::fill_normal(t, rng::make_key(seed, "attention_cpu"), 0, 0.0, 1.0);
  return t;
}

struct Reference {
  std::vector<double> out, lse, dq, dk, dv;
};

// O(S^2) float64 attention forward and backward, written from the definitions:
//   P_ij = exp(s_ij) / sum_{j'<=i} exp(s_ij'),  s_ij = q_i.k_j / sqrt(D),  O_i = sum_j P_ij v_j
//   dP_ij = dO_i.v_j,  dS_ij = P_ij (dP_ij - sum_j' P_ij' dP_ij'),  dq_i = sum_j dS_ij k_j / sqrt(D),
//   dk_j = sum_i dS_ij q_i / sqrt(D),  dv_j = sum_i P_ij dO_i   (summed over a kv head's query heads)
std::vector<double> values(const Tensor& t) {
  std::vector<double> x(static_cast<size_t>(t.numel()));
  for (std::int64_t i = 0; i < t.numel(); ++i) x[size_t(i)] = t.item(i);
  return x;
}

Reference reference(const Shape5& s, const Tensor& q_t, const Tensor& k_t, const Tensor& v_t, const Tensor& do_t) {
  const auto [B, S, H, KV, D] = s;
  const std::vector<double> q = values(q_t), k = values(k_t), v = values(v_t), dout = values(do_t);
  const double scale = 1.0 / std::sqrt(double(D));
  Reference r;
  r.out.assign(size_t(B * S * H * D), 0.0), r.dq.assign(r.out.size(), 0.0);
  r.dk.assign(size_t(B * S * KV * D), 0.0), r.dv.assign(r.dk.size(), 0.0), r.lse.assign(size_t(B * H * S), 0.0);
  auto qi = [&](auto b, auto i, auto h, auto c) { return ((b * S + i) * H + h) * D + c; };
  auto ki = [&](auto b, auto j, auto g, auto c) { return ((b * S + j) * KV + g) * D + c; };
  std::vector<double> p(static_cast<size_t>(S)), dp(static_cast<size_t>(S));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < S; ++i) {
        const std::int64_t g = h / (H / KV);
        double mx = -1e300, sum = 0, delta = 0;
        for (std::int64_t j = 0; j <= i; ++j) {
          double d = 0;
          for (std::int64_t c = 0; c < D; ++c) d += q.at(qi(b, i, h, c)) * k.at(ki(b, j, g, c));
          p[j] = d * scale;
          mx = std::max(mx, p[j]);
        }
        for (std::int64_t j = 0; j <= i; ++j) sum += (p[j] = std::exp(p[j] - mx));
        r.lse[(b * H + h) * S + i] = mx + std::log(sum);
        for (std::int64_t j = 0; j <= i; ++j) {
          p[j] /= sum;
          double d = 0;
          for (std::int64_t c = 0; c < D; ++c) {
            r.out[qi(b, i, h, c)] += p[j] * v.at(ki(b, j, g, c));
            d += dout.at(qi(b, i, h, c)) * v.at(ki(b, j, g, c));
          }
          dp[j] = d;
          delta += p[j] * d;
        }
        for (std::int64_t j = 0; j <= i; ++j) {
          const double ds = p[j] * (dp[j] - delta) * scale;
          for (std::int64_t c = 0; c < D; ++c) {
            r.dq[qi(b, i, h, c)] += ds * k.at(ki(b, j, g, c));
            r.dk[ki(b, j, g, c)] += ds * q.at(qi(b, i, h, c));
            r.dv[ki(b, j, g, c)] += p[j] * dout.at(qi(b, i, h, c));
          }
        }
      }
  return r;
}

// max |got - want| / max(1, max |want|): the error relative to the tensor's own scale.
double scaled_error(const Tensor& got, const std::vector<double>& want) {
  REQUIRE(got.numel() == std::int64_t(want.size()));
  double worst = 0, scale = 1;
  for (double w : want) scale = std::max(scale, std::abs(w));
  for (std::int64_t i = 0; i < got.numel(); ++i) worst = std::max(worst, std::abs(got.item(i) - want[size_t(i)]));
  return worst / scale;
}

void check_against_reference(const Shape5& s, DType dt, double tol_out, double tol_grad) {
  const auto [B, S, H, KV, D] = s;
  INFO("B " << B << " S " << S << " H " << H << " KV " << KV << " D " << D << " " << dtype_name(dt));
  // Same values for both dtypes: drawn in float64, then rounded (exactly representable in f32).
  auto draw = [&](const Shape& shape, std::uint64_t seed) { return randn(shape, seed, DType::f32).to(dt); };
  const Tensor q = draw({B, S, H, D}, 1), k = draw({B, S, KV, D}, 2), v = draw({B, S, KV, D}, 3),
               dout = draw({B, S, H, D}, 4);
  const Reference want = reference(s, q, k, v, dout);
  const ops::AttentionOut o = ops::attention(q, k, v);
  const ops::AttentionGrads g = ops::attention_backward(dout, q, k, v, o);
  CHECK(scaled_error(o.out, want.out) < tol_out);
  // lse is saved as float32 whatever T is: its own rounding (6e-8 relative) bounds it.
  CHECK(scaled_error(o.lse, want.lse) < 1e-6);
  CHECK(scaled_error(g.dq, want.dq) < tol_grad);
  CHECK(scaled_error(g.dk, want.dk) < tol_grad);
  CHECK(scaled_error(g.dv, want.dv) < tol_grad);
}

// Bit for bit the same tensor contents.
bool same(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// The CPU pool's thread count and the GEMM library (which picks the pool kind), for one test.
struct RestoreThreadsAndLibrary {
  int saved = ops::cpu::cpu_threads();
  ops::cpu::GemmLibrary library = ops::cpu::gemm_library();
  ~RestoreThreadsAndLibrary() {
    ops::cpu::set_gemm_library(library);
    ops::cpu::set_cpu_threads(saved);
  }
};

const Shape5 kShapes[] = {
    {1, 1, 2, 1, 16},     // one token: P = 1, O = v_0, dq = 0
    {1, 5, 4, 2, 64},     // S below a query block
    {1, 128, 4, 1, 16},   // S exactly one query block, group 4
    {2, 200, 2, 1, 24},   // a partial second query block; D = 24: a masked 8-column tail in the tile kernel
    {1, 300, 4, 2, 128},  // past one key tile, S a multiple of neither block, group 2
    {1, 600, 2, 2, 16},   // three key tiles: the running max rescales, group 1
};

}  // namespace

TEST_CASE("attention cpu: float32 flash kernel against a float64 direct evaluation (forward and backward)",
          "[.][attention_cpu]") {
  // float32 tolerance: every output is a chain of sums of at most max(D, S) = 600 products of
  // O(1) inputs, each step rounded to float32 (2^-24 = 6e-8 relative), plus fast_expf's 2e-7 on
  // P; rounding errors of such sums add like a random walk, sqrt(600) * 1e-7 ~ 2.5e-6 of the
  // tensor's scale (seen here: at most 9e-7). 2e-5 is 8x that; a wrong mask, a missed rescale
  // or a dropped tile moves some element by 1e-2 or more.
  for (const Shape5& s : kShapes) check_against_reference(s, DType::f32, 2e-5, 2e-5);
}

TEST_CASE("attention cpu: float64 kernel against a float64 direct evaluation (forward and backward)",
          "[.][attention_cpu]") {
  // Same algorithm in float64 (cpu::gemm, std::exp): the forward differs only in summation order
  // (seen: 1e-15). Backward recomputes P from the lse saved as float32, whose rounding
  // (6e-8 relative, |lse| <= ~8 here) moves P by up to ~5e-7 relative (seen: 2e-7 in the grads).
  for (const Shape5& s : kShapes) check_against_reference(s, DType::f64, 1e-12, 2e-6);
}

TEST_CASE("attention cpu: float32 matches float64 across five key tiles", "[.][attention_cpu]") {
  const Shape5 s{1, 1100, 2, 1, 64};
  auto draw = [&](const Shape& shape, std::uint64_t seed) { return randn(shape, seed, DType::f32); };
  const Tensor q = draw({s.B, s.S, s.H, s.D}, 5), k = draw({s.B, s.S, s.KV, s.D}, 6), v = draw({s.B, s.S, s.KV, s.D}, 7),
               dout = draw({s.B, s.S, s.H, s.D}, 8);
  const Tensor q64 = q.to(DType::f64), k64 = k.to(DType::f64), v64 = v.to(DType::f64), do64 = dout.to(DType::f64);
  const auto o32 = ops::attention(q, k, v);
  const auto o64 = ops::attention(q64, k64, v64);
  const auto g32 = ops::attention_backward(dout, q, k, v, o32);
  const auto g64 = ops::attention_backward(do64, q64, k64, v64, o64);
  // Same argument as the float32 case above, sums of up to 1100 terms: sqrt(1100) * 1e-7 ~ 3e-6.
  CHECK(scaled_error(o32.out, values(o64.out)) < 2e-5);
  CHECK(scaled_error(g32.dq, values(g64.dq)) < 2e-5);
  CHECK(scaled_error(g32.dk, values(g64.dk)) < 2e-5);
  CHECK(scaled_error(g32.dv, values(g64.dv)) < 2e-5);
}

TEST_CASE("attention cpu: reruns are bit-identical", "[.][attention_cpu]") {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor q = randn({2, 300, 4, 64}, 9, dt), k = randn({2, 300, 2, 64}, 10, dt), v = randn({2, 300, 2, 64}, 11, dt),
                 dout = randn({2, 300, 4, 64}, 12, dt);
    const auto o1 = ops::attention(q, k, v), o2 = ops::attention(q, k, v);
    const auto g1 = ops::attention_backward(dout, q, k, v, o1), g2 = ops::attention_backward(dout, q, k, v, o2);
    CHECK(same(o1.out, o2.out));
    CHECK(same(o1.lse, o2.lse));
    CHECK(same(g1.dq, g2.dq));
    CHECK(same(g1.dk, g2.dk));
    CHECK(same(g1.dv, g2.dv));
  }
}

TEST_CASE("attention cpu: any pool thread count gives the same bits and stays correct",
          "[.][attention_cpu]") {
  // Each (batch, kv head) unit is computed whole by one thread (ops/cpu/threads.hpp), so 1, 2
  // and 3 threads (more than this 2-core machine has: units are handed out unevenly) agree bit
  // for bit. Shapes: GQA group 2 with 2 x 3 = 6 units, and one unit only (B = 1, KV = 1).
  RestoreThreadsAndLibrary restore;
  for (auto lib : {ops::cpu::GemmLibrary::openblas, ops::cpu::GemmLibrary::onednn})
  for (const Shape5& s : {Shape5{2, 300, 6, 3, 64}, Shape5{1, 200, 2, 1, 16}}) {
    ops::cpu::set_gemm_library(lib);  // the pool: titan.cpp's workers, or oneDNN's OpenMP team
    const Tensor q = randn({s.B, s.S, s.H, s.D}, 21, DType::f32), k = randn({s.B, s.S, s.KV, s.D}, 22, DType::f32),
                 v = randn({s.B, s.S, s.KV, s.D}, 23, DType::f32), dout = randn({s.B, s.S, s.H, s.D}, 24, DType::f32);
    ops::cpu::set_cpu_threads(1);
    const auto o1 = ops::attention(q, k, v);
    const auto g1 = ops::attention_backward(dout, q, k, v, o1);
    for (int threads : {2, 3}) {
      INFO(ops::cpu::gemm_library_name(lib) << " threads " << threads << " B " << s.B << " KV " << s.KV);
      ops::cpu::set_cpu_threads(threads);
      REQUIRE(ops::cpu::cpu_threads() == threads);
      const auto o = ops::attention(q, k, v);
      const auto g = ops::attention_backward(dout, q, k, v, o);
      CHECK(same(o.out, o1.out));
      CHECK(same(o.lse, o1.lse));
      CHECK(same(g.dq, g1.dq));
      CHECK(same(g.dk, g1.dk));
      CHECK(same(g.dv, g1.dv));
    }
  }
  ops::cpu::set_cpu_threads(2);  // and correct, not merely repeatable, with the pool on
  check_against_reference(kShapes[3], DType::f32, 2e-5, 2e-5);
}

TEST_CASE("cpu threads: parallel_for runs every index once and nests inline and passes exceptions on", "[.][attention_cpu]") {
  RestoreThreadsAndLibrary restore;
  // With oneDNN the pool is its OpenMP team, otherwise titan.cpp's own workers: both.
  for (auto lib : {ops::cpu::GemmLibrary::openblas, ops::cpu::GemmLibrary::onednn})
  for (int threads : {1, 2, 4}) {
    INFO("library " << ops::cpu::gemm_library_name(lib) << " threads " << threads);
    ops::cpu::set_gemm_library(lib);
    ops::cpu::set_cpu_threads(threads);
    for (std::int64_t n : {0, 1, 7, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n) + 1);
      std::atomic<int> nested{0};
      ops::cpu::parallel_for(n, [&](std::int64_t i) {
        hits[size_t(i)]++;
        if (i == 0) ops::cpu::parallel_for(5, [&](std::int64_t) { nested++; });
      });
      for (std::int64_t i = 0; i < n; ++i) CHECK(hits[size_t(i)] == 1);
      CHECK(hits[size_t(n)] == 0);
      CHECK(nested == (n > 0 ? 5 : 0));
    }
    CHECK_THROWS_WITH(ops::cpu::parallel_for(50, [](std::int64_t i) {
                        if (i == 17) throw std::runtime_error("unit 17 failed");
                      }),
                      "unit 17 failed");
    std::atomic<int> after{0};  // the pool still works after an exception
    ops::cpu::parallel_for(10, [&](std::int64_t) { after++; });
    CHECK(after == 10);
  }
}

TEST_CASE("attention cpu: the AVX-512 and AVX2 kernels give the same bits", "[.][attention_cpu]") {
  // Tile GEMMs and exp rows: the same operations per element and the same summation order on
  // both paths (ops/cpu/attention_tile_gemm.hpp, fast_math.hpp). Shapes with partial 16- and
  // 32-column blocks (D = 24, S not a multiple of 16) and whole ones (D = 128).
  if (!ops::cpu::cpu_isa().avx512f) {
    WARN("no AVX-512 on this CPU: only the AVX2 path runs here");
    return;
  }
  struct Restore {
    ~Restore() { ops::cpu::set_avx512_enabled(true); }
  } restore;
  for (const Shape5& s : {Shape5{1, 300, 4, 2, 128}, Shape5{2, 203, 2, 1, 24}, Shape5{1, 600, 2, 2, 16}}) {
    INFO("S " << s.S << " D " << s.D);
    const Tensor q = randn({s.B, s.S, s.H, s.D}, 31, DType::f32), k = randn({s.B, s.S, s.KV, s.D}, 32, DType::f32),
                 v = randn({s.B, s.S, s.KV, s.D}, 33, DType::f32), dout = randn({s.B, s.S, s.H, s.D}, 34, DType::f32);
    ops::cpu::set_avx512_enabled(false);
    REQUIRE_FALSE(ops::cpu::use_avx512());
    const auto o2 = ops::attention(q, k, v);
    const auto g2 = ops::attention_backward(dout, q, k, v, o2);
    ops::cpu::set_avx512_enabled(true);
    REQUIRE(ops::cpu::use_avx512());
    const auto o5 = ops::attention(q, k, v);
    const auto g5 = ops::attention_backward(dout, q, k, v, o5);
    CHECK(same(o5.out, o2.out));
    CHECK(same(o5.lse, o2.lse));
    CHECK(same(g5.dq, g2.dq));
    CHECK(same(g5.dk, g2.dk));
    CHECK(same(g5.dv, g2.dv));
  }
}
