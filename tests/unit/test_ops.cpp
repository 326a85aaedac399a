// Every op's forward against a direct float64 formula, and every backward against central finite
// differences in float64 on random inputs of odd sizes; the float32 path against the float64 one.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <limits>
#include <cstring>
#include <functional>

#include "core/rng.hpp"
#include "ops/cpu/blas.hpp"
#include "ops/cpu/threads.hpp"
#include "ops/ops.hpp"

using namespace titan;

namespace {

Tensor randn(const Shape& shape, std::uint64_t seed, double std = 1.0, DType dt = DType::f64) {
  Tensor t = Tensor::empty(shape, dt);
  rng::fill_normal(t, rng::make_key(seed, "test"), 0, 0.0, std);
  return t;
}

double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) s += a.item(i) * b.item(i);
  return s;
}

// Checks d(sum(f(x) * R))/dx[i] against `analytic` at every element of x (central differences).
void check_grad(Tensor& x, const std::function<Tensor()>& f, const Tensor& R, const Tensor& analytic, double tol = 1e-6) {
  REQUIRE(analytic.shape() == x.shape());
  const double h = 1e-6;
  double worst = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    const double x0 = x.item(i);
    x.set(i, x0 + h);
    const double up = dot(f(), R);
    x.set(i, x0 - h);
    const double down = dot(f(), R);
    x.set(i, x0);
    const double numeric = (up - down) / (2 * h);
    const double err = std::abs(numeric - analytic.item(i)) / std::max(1.0, std::abs(numeric));
    worst = std::max(worst, err);
  }
  CHECK(worst < tol);
}

void check_close(const Tensor& a, const Tensor& b, double rel) {
  REQUIRE(a.numel() == b.numel());
  double worst = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    worst = std::max(worst, std::abs(a.item(i) - b.item(i)) / std::max(1.0, std::abs(b.item(i))));
  CHECK(worst < rel);
}

}  // namespace

TEST_CASE("op linear: forward, both backwards, float32 vs float64") {
  Tensor x = randn({3, 5, 7}, 1), w = randn({11, 7}, 2);
  Tensor y = ops::linear(x, w);
  REQUIRE(y.shape() == Shape{3, 5, 11});
  for (int r = 0; r < 15; ++r)
    for (int n = 0; n < 11; ++n) {
      double want = 0;
      for (int k = 0; k < 7; ++k) want += x.item(r * 7 + k) * w.item(n * 7 + k);
      CHECK(y.item(r * 11 + n) == Approx(want).epsilon(1e-12));
    }
  Tensor R = randn({3, 5, 11}, 3);
  Tensor dx = ops::linear_backward_input(R, w);
  Tensor dw = Tensor::zeros({11, 7}, DType::f64);
  ops::linear_backward_weight(R, x, dw, true);
  check_grad(x, [&] { return ops::linear(x, w); }, R, dx);
  check_grad(w, [&] { return ops::linear(x, w); }, R, dw);
  Tensor once = Tensor::empty({11, 7}, DType::f64);
  ops::linear_backward_weight(R, x, once, false);  // overwrite
  ops::linear_backward_weight(R, x, dw, true);     // accumulate: now twice the gradient
  for (int i = 0; i < 77; ++i) CHECK(dw.item(i) == Approx(2 * once.item(i)));
  check_close(ops::linear(x.to(DType::f32), w.to(DType::f32)), y, 1e-5);
}

TEST_CASE("op matmul: batched, all four transpose combinations") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const int M = 3, N = 5, K = 7, B = 2;
      Tensor a = randn(ta ? Shape{B, K, M} : Shape{B, M, K}, 4), b = randn(tb ? Shape{B, N, K} : Shape{B, K, N}, 5);
      Tensor c = randn({B, M, N}, 6);
      Tensor c0 = c.clone();
      ops::matmul(ta, tb, 0.5, a, b, 2.0, c);
      for (int bi = 0; bi < B; ++bi)
        for (int i = 0; i < M; ++i)
          for (int j = 0; j < N; ++j) {
            double s = 0;
            for (int k = 0; k < K; ++k)
              s += a.item(bi * M * K + (ta ? k * M + i : i * K + k)) * b.item(bi * K * N + (tb ? j * K + k : k * N + j));
            CHECK(c.item(bi * M * N + i * N + j) == Approx(0.5 * s + 2.0 * c0.item(bi * M * N + i * N + j)));
          }
    }
}

TEST_CASE("op swiglu: forward and backward") {
  Tensor a = randn({4, 9}, 7), b = randn({4, 9}, 8), R = randn({4, 9}, 9);
  Tensor h = ops::swiglu(a, b);
  for (int i = 0; i < 36; ++i) CHECK(h.item(i) == Approx(a.item(i) / (1 + std::exp(-a.item(i))) * b.item(i)));
  Tensor da, db;
  ops::swiglu_backward(R, a, b, da, db);
  check_grad(a, [&] { return ops::swiglu(a, b); }, R, da);
  check_grad(b, [&] { return ops::swiglu(a, b); }, R, db);
}

TEST_CASE("op embedding: gather, scatter-add backward, bad tokens") {
  Tensor w = randn({13, 5}, 10);
  Tensor tok = Tensor::from_vector({3, 0, 12, 3, 7}, {5}, DType::i64);
  Tensor y = ops::embedding(w, tok);
  REQUIRE(y.shape() == Shape{5, 5});
  for (int d = 0; d < 5; ++d) CHECK(y.item(2 * 5 + d) == w.item(12 * 5 + d));
  Tensor R = randn({5, 5}, 11), dw = Tensor::zeros({13, 5}, DType::f64);
  ops::embedding_backward(R, tok, dw);
  check_grad(w, [&] { return ops::embedding(w, tok); }, R, dw);
  CHECK(dw.item(3 * 5) == Approx(R.item(0) + R.item(15)));  // token 3 appears twice
  Tensor tok32 = Tensor::from_vector({1, 2}, {2}, DType::i32);
  CHECK(ops::embedding(w, tok32).item(5) == w.item(10));
  CHECK_THROWS(ops::embedding(w, Tensor::from_vector({13}, {1}, DType::i64)));
}

TEST_CASE("op rmsnorm: forward and backward for x and weight") {
  Tensor x = randn({3, 2, 11}, 12), w = randn({11}, 13), R = randn({3, 2, 11}, 14);
  auto o = ops::rmsnorm(x, w, 1e-5);
  for (int r = 0; r < 6; ++r) {
    double ss = 0;
    for (int i = 0; i < 11; ++i) ss += x.item(r * 11 + i) * x.item(r * 11 + i);
    const double rs = 1 / std::sqrt(ss / 11 + 1e-5);
    for (int i = 0; i < 11; ++i) CHECK(o.y.item(r * 11 + i) == Approx(x.item(r * 11 + i) * rs * w.item(i)));
  }
  Tensor dw = Tensor::zeros({11}, DType::f64);
  Tensor dx = ops::rmsnorm_backward(R, x, w, o.rstd, dw);
  check_grad(x, [&] { return ops::rmsnorm(x, w, 1e-5).y; }, R, dx);
  check_grad(w, [&] { return ops::rmsnorm(x, w, 1e-5).y; }, R, dw);
  check_close(ops::rmsnorm(x.to(DType::f32), w.to(DType::f32), 1e-5).y, o.y, 1e-5);
}

TEST_CASE("op add_rmsnorm: the residual add fused into the norm gives add + rmsnorm's bits, and their gradients") {
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    INFO(dtype_name(dt));
    const auto in = [&](const Shape& shape, std::uint64_t seed) { return randn(shape, seed).to(dt); };
    const Tensor a = in({3, 5, 37}, 21), b = in({3, 5, 37}, 22), w = in({37}, 23), dy = in({3, 5, 37}, 24),
                 dh = in({3, 5, 37}, 25);
    const ops::AddRmsNormOut f = ops::add_rmsnorm(a, b, w, 1e-5);
    const Tensor h = ops::add(a, b);
    const ops::RmsNormOut n = ops::rmsnorm(h, w, 1e-5);
    CHECK(f.h.to_vector() == h.to_vector());
    CHECK(f.y.to_vector() == n.y.to_vector());
    CHECK(f.rstd.to_vector() == n.rstd.to_vector());
    Tensor dw_fused = Tensor::zeros({37}, dt), dw = Tensor::zeros({37}, dt);
    const Tensor dx_fused = ops::rmsnorm_backward(dy, f.h, w, f.rstd, dw_fused, dh);
    const Tensor dx = ops::add(ops::rmsnorm_backward(dy, h, w, n.rstd, dw), dh);
    CHECK(dx_fused.to_vector() == dx.to_vector());
    CHECK(dw_fused.to_vector() == dw.to_vector());
  }
  // float64 against finite differences of sum(h * Rh + y * Ry) through a and w.
  Tensor a = randn({2, 3, 11}, 31), b = randn({2, 3, 11}, 32), w = randn({11}, 33);
  const Tensor Rh = randn({2, 3, 11}, 34), Ry = randn({2, 3, 11}, 35);
  const ops::AddRmsNormOut o = ops::add_rmsnorm(a, b, w, 1e-5);
  Tensor dw = Tensor::zeros({11}, DType::f64);
  const Tensor da = ops::rmsnorm_backward(Ry, o.h, w, o.rstd, dw, Rh);
  const auto both = [&] {  // [h, y] flattened, paired with [Rh, Ry]
    const ops::AddRmsNormOut t = ops::add_rmsnorm(a, b, w, 1e-5);
    Tensor out = Tensor::empty({2 * t.h.numel()}, DType::f64);
    out.view_range(0, t.h.shape()).copy_from(t.h);
    out.view_range(t.h.numel(), t.y.shape()).copy_from(t.y);
    return out;
  };
  Tensor R = Tensor::empty({2 * Rh.numel()}, DType::f64);
  R.view_range(0, Rh.shape()).copy_from(Rh);
  R.view_range(Rh.numel(), Ry.shape()).copy_from(Ry);
  check_grad(a, both, R, da);
  check_grad(w, both, R, dw);
  CHECK_THROWS_WITH(ops::add_rmsnorm(a, randn({2, 3, 10}, 36), w, 1e-5), Catch::Contains("add_rmsnorm"));
  Tensor dw2 = Tensor::zeros({11}, DType::f64);
  CHECK_THROWS_WITH(ops::rmsnorm_backward(Ry, o.h, w, o.rstd, dw2, randn({2, 3, 10}, 37)), Catch::Contains("dx_add"));
  // Mixed dtypes (which add() takes: f32 with bf16) run as the separate ops.
  const Tensor a32 = a.to(DType::f32), b16 = b.to(DType::bf16), w32 = w.to(DType::f32);
  const ops::AddRmsNormOut m = ops::add_rmsnorm(a32, b16, w32, 1e-5);
  const Tensor hm = ops::add(a32, b16);
  CHECK(m.h.to_vector() == hm.to_vector());
  const ops::RmsNormOut nm = ops::rmsnorm(hm, w32, 1e-5);
  CHECK(m.y.to_vector() == nm.y.to_vector());
  Tensor dw3 = Tensor::zeros({11}), dw4 = Tensor::zeros({11});
  const Tensor Ry32 = Ry.to(DType::f32), Rh16 = Rh.to(DType::bf16);
  CHECK(ops::rmsnorm_backward(Ry32, hm, w32, nm.rstd, dw3, Rh16).to_vector() ==
        ops::add(ops::rmsnorm_backward(Ry32, hm, w32, nm.rstd, dw4), Rh16).to_vector());
}

TEST_CASE("op rope: rotation of pairs, Llama 3.1 scaling, inverse as backward") {
  ops::RopeScaling scaling;
  const auto table = ops::rope_table(6, 17, 500000.0, &scaling);
  const auto plain = ops::rope_table(6, 17, 500000.0, nullptr);
  // Pair 0 has the highest frequency (wavelength 2*pi < 8192/4): unscaled. The lowest frequency
  // (wavelength > 8192) is divided by 8.
  const double f0 = 1.0, f2 = std::pow(500000.0, -4.0 / 6.0);
  CHECK(table.cos.item(5 * 3 + 0) == Approx(std::cos(5 * f0)));
  CHECK(table.sin.item(5 * 3 + 2) == Approx(std::sin(5 * f2 / 8)));
  CHECK(plain.sin.item(5 * 3 + 2) == Approx(std::sin(5 * f2)));
  Tensor x = randn({2, 17, 3, 6}, 15), R = randn({2, 17, 3, 6}, 16);
  Tensor y = ops::rope(x, table);
  // Explicit formula at (b=1, s=9, h=2, pair 1).
  const std::int64_t base = ((1 * 17 + 9) * 3 + 2) * 6;
  const double c = table.cos.item(9 * 3 + 1), s = table.sin.item(9 * 3 + 1);
  CHECK(y.item(base + 2) == Approx(x.item(base + 2) * c - x.item(base + 3) * s));
  CHECK(y.item(base + 3) == Approx(x.item(base + 2) * s + x.item(base + 3) * c));
  check_grad(x, [&] { return ops::rope(x, table); }, R, ops::rope(R, table, true));
  check_close(ops::rope(y, table, true), x, 1e-6);  // the inverse undoes the rotation
}

TEST_CASE("op attention: training.gpu_attention's choices; the CPU names its one implementation") {
  using namespace titan;
  CHECK_THROWS_WITH(ops::set_gpu_attention("fast", false), Catch::Contains("expects auto, cudnn or titan, got 'fast'"));
  for (const char* choice : {"titan", "cudnn", "auto"}) CHECK_NOTHROW(ops::set_gpu_attention(choice, false));
  CHECK(ops::attention_implementation(Device::cpu(), 1, 64, 4, 2, 16, DType::bf16) ==
        "titan.cpp's CPU flash attention (bf16)");
}

TEST_CASE("op attention: causal GQA forward against a direct softmax, backward against finite differences") {
  const int B = 2, S = 7, H = 6, KV = 2, D = 5;
  Tensor q = randn({B, S, H, D}, 17), k = randn({B, S, KV, D}, 18), v = randn({B, S, KV, D}, 19);
  auto o = ops::attention(q, k, v);
  // Direct: for each (b, h, i), softmax over j <= i of q.k / sqrt(D), times v.
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < S; ++i) {
        const int g = h / (H / KV);
        std::vector<double> p(i + 1);
        double mx = -1e300, sum = 0;
        for (int j = 0; j <= i; ++j) {
          double s = 0;
          for (int d = 0; d < D; ++d) s += q.item(((b * S + i) * H + h) * D + d) * k.item(((b * S + j) * KV + g) * D + d);
          p[j] = s / std::sqrt(double(D));
          mx = std::max(mx, p[j]);
        }
        for (auto& pj : p) sum += (pj = std::exp(pj - mx));
        for (int d = 0; d < D; ++d) {
          double want = 0;
          for (int j = 0; j <= i; ++j) want += p[j] / sum * v.item(((b * S + j) * KV + g) * D + d);
          CHECK(o.out.item(((b * S + i) * H + h) * D + d) == Approx(want).epsilon(1e-12));
        }
      }
  Tensor R = randn({B, S, H, D}, 20);
  auto g = ops::attention_backward(R, q, k, v, o);
  check_grad(q, [&] { return ops::attention(q, k, v).out; }, R, g.dq);
  check_grad(k, [&] { return ops::attention(q, k, v).out; }, R, g.dk);
  check_grad(v, [&] { return ops::attention(q, k, v).out; }, R, g.dv);
  check_close(ops::attention(q.to(DType::f32), k.to(DType::f32), v.to(DType::f32)).out, o.out, 1e-5);
  CHECK_THROWS(ops::attention(q, randn({B, S, 4, D}, 1), randn({B, S, 4, D}, 2)));  // 6 heads over 4 kv heads
}

TEST_CASE("op cross_entropy: mean over non-ignored rows, backward") {
  Tensor x = randn({6, 9}, 21, 2.0);
  Tensor t = Tensor::from_vector({3, -100, 8, 0, -100, 5}, {6}, DType::i64);
  auto o = ops::cross_entropy(x, t);
  CHECK(o.n_valid == 4);
  double want = 0;
  for (int n : {0, 2, 3, 5}) {
    double sum = 0;
    for (int j = 0; j < 9; ++j) sum += std::exp(x.item(n * 9 + j));
    want += std::log(sum) - x.item(n * 9 + static_cast<int>(t.item(n)));
  }
  CHECK(o.loss.item(0) == Approx(want / 4).epsilon(1e-12));
  Tensor dx = ops::cross_entropy_backward(x, t, o, 1.0);
  // check_grad on a scalar loss: R = 1 with f returning a one-element tensor.
  Tensor one = Tensor::full({1}, 1.0, DType::f64);
  check_grad(x, [&] { return ops::cross_entropy(x, t).loss.to(DType::f64); }, one, dx);
  for (int j = 0; j < 9; ++j) CHECK(dx.item(1 * 9 + j) == 0.0);
  CHECK_THROWS(ops::cross_entropy(x, Tensor::from_vector({9, 0, 0, 0, 0, 0}, {6}, DType::i64)));
}

TEST_CASE("op clip_to_max_norm_ scales by max_norm / (norm + 1e-6) exactly as scale_, only when it shrinks") {
  const Tensor g1 = Tensor::from_vector({3, -4, 0.1}, {3}, DType::f32), g2 = Tensor::from_vector({1e-3, 12}, {2}, DType::f32);
  const Tensor total = ops::sum_squares_total({g1, g2}, Device::cpu());
  const double norm = std::sqrt(total.item(0));
  auto clipped = [&](double max_norm, const Tensor& sq) {
    std::vector<Tensor> gs = {g1.clone(), g2.clone()};
    ops::clip_to_max_norm_(gs, sq, max_norm);
    return gs;
  };
  // Above max_norm: every tensor as scale_ makes it, bit for bit.
  const auto c = clipped(1.0, total);
  Tensor want1 = g1.clone(), want2 = g2.clone();
  ops::scale_(want1, 1.0 / (norm + 1e-6));
  ops::scale_(want2, 1.0 / (norm + 1e-6));
  CHECK(c[0].to_vector() == want1.to_vector());
  CHECK(c[1].to_vector() == want2.to_vector());
  // At or under max_norm, with max_norm <= 0 (clipping off) and with a non-finite norm: untouched.
  for (const double max_norm : {norm + 1.0, 0.0, -1.0}) CHECK(clipped(max_norm, total)[1].to_vector() == g2.to_vector());
  for (const double bad : {std::numeric_limits<double>::infinity(), std::nan("")})
    CHECK(clipped(1.0, Tensor::full({1}, bad, DType::f64))[0].to_vector() == g1.to_vector());
}

TEST_CASE("op take_device_errors: nothing to take on the CPU (it throws at once), a nonzero flag throws") {
  const Tensor taken = ops::take_device_errors(Device::cpu());
  CHECK(taken.numel() == 1);
  CHECK(taken.item(0) == 0.0);
  CHECK_NOTHROW(ops::raise_device_errors(taken));
  CHECK_NOTHROW(ops::raise_device_errors(Device::cpu()));
  CHECK_THROWS(ops::raise_device_errors(Tensor::full({1}, 1.0, DType::f64)));
}

TEST_CASE("op reductions and in-place arithmetic") {
  Tensor a = Tensor::from_vector({1, -2, 3}, {3}, DType::f32);
  CHECK(ops::sum(a) == 2.0);
  CHECK(ops::sum_squares(a) == 14.0);
  // Per tensor, as sum_squares (f64, bit for bit), in the order given; any float dtype.
  const Tensor h = Tensor::from_vector({0.5, -1.25, 3.0, 7.0}, {2, 2}, DType::bf16);
  const Tensor each = ops::sum_squares_each({a, h, a});
  CHECK(each.dtype() == DType::f64);
  CHECK(each.to_vector() == std::vector<double>{14.0, ops::sum_squares(h), 14.0});
  CHECK(ops::sum_squares_each({}).numel() == 0);
  // The total adds the parts in list order from 0, in double: what a host loop over each gives.
  const Tensor total = ops::sum_squares_total({h, a, h}, Device::cpu());
  CHECK(total.dtype() == DType::f64);
  CHECK(total.item(0) == (0.0 + ops::sum_squares(h)) + 14.0 + ops::sum_squares(h));
  CHECK(ops::sum_squares_total({}, Device::cpu()).item(0) == 0.0);
  CHECK_THROWS(ops::clip_to_max_norm_({a}, Tensor::full({1}, 1.0, DType::f32), 1.0));  // not f64
  Tensor b = Tensor::from_vector({1, 1, 1}, {3}, DType::f32);
  ops::add_(a, b, 2.0);
  CHECK(a.to_vector() == std::vector<double>{3, 0, 5});
  ops::scale_(a, 0.5);
  CHECK(a.to_vector() == std::vector<double>{1.5, 0, 2.5});
  CHECK_THROWS(ops::add(a, Tensor::zeros({3}, DType::f64)));   // dtype mismatch
  CHECK(ops::sum(Tensor::full({3}, 1.5, DType::bf16)) == 4.5);  // bf16: widened to f32 (below)
  CHECK(ops::sum(Tensor::full({3}, 1.5, DType::f16)) == 4.5);   // f16 likewise (float16 mixed precision)
  CHECK_THROWS(ops::sum(Tensor::zeros({3}, DType::i32)));         // i32: not an op dtype
}

namespace {
// training.cpu_bf16_gemm for one test, restored after it.
struct Bf16GemmMode {
  bool saved = ops::cpu::gemm_bf16_native();
  explicit Bf16GemmMode(bool native) { ops::cpu::set_gemm_bf16_native(native); }
  ~Bf16GemmMode() { ops::cpu::set_gemm_bf16_native(saved); }
};
}  // namespace

TEST_CASE("op bf16 on the CPU: widen to f32, the f32 kernel, each output rounded to bf16 once") {
  // The rounding points of a CUDA kernel with bf16 I/O and f32 math. Each CPU op on bf16 tensors
  // must equal, bit for bit, the f32 op on the widened inputs with its outputs rounded (with
  // training.cpu_bf16_gemm = "widened"; the native bf16 GEMMs are the next test).
  Bf16GemmMode widened(false);
  auto b = [](const Tensor& t) { return t.to(DType::bf16); };
  auto f = [](const Tensor& t) { return t.to(DType::f32); };
  auto same = [](const Tensor& got, const Tensor& want_f32) {
    REQUIRE(got.dtype() == DType::bf16);
    return got.to_vector() == want_f32.to(DType::bf16).to_vector();
  };
  const Tensor x = b(randn({3, 5, 8}, 101)), w = b(randn({6, 8}, 102)), dy = b(randn({3, 5, 6}, 103));
  CHECK(ops::computes_in(Device::cpu(), DType::bf16));
  CHECK(same(ops::linear(x, w), ops::linear(f(x), f(w))));
  CHECK(same(ops::linear_backward_input(dy, w), ops::linear_backward_input(f(dy), f(w))));
  Tensor dw = Tensor::empty({6, 8}, DType::bf16), dwf = Tensor::empty({6, 8}, DType::f32);
  ops::linear_backward_weight(dy, x, dw, false);
  ops::linear_backward_weight(f(dy), f(x), dwf, false);
  CHECK(same(dw, dwf));
  Tensor acc = dw.clone(), acc_f = f(dw);  // accumulate: in f32 over the bf16 values, rounded once
  ops::linear_backward_weight(dy, x, acc, true);
  ops::linear_backward_weight(f(dy), f(x), acc_f, true);
  CHECK(same(acc, acc_f));
  const Tensor a = b(randn({4, 9}, 104)), c = b(randn({4, 9}, 105));
  CHECK(same(ops::swiglu(a, c), ops::swiglu(f(a), f(c))));
  Tensor da, dc, daf, dcf;
  ops::swiglu_backward(a, a, c, da, dc);
  ops::swiglu_backward(f(a), f(a), f(c), daf, dcf);
  CHECK(same(da, daf));
  CHECK(same(dc, dcf));
  CHECK(same(ops::add(a, c), ops::add(f(a), f(c))));
  const Tensor g = b(randn({11}, 106)), h = b(randn({2, 3, 11}, 107));
  const ops::RmsNormOut n = ops::rmsnorm(h, g, 1e-5), nf = ops::rmsnorm(f(h), f(g), 1e-5);
  CHECK(same(n.y, nf.y));
  CHECK(n.rstd.dtype() == DType::f32);
  CHECK(n.rstd.to_vector() == nf.rstd.to_vector());
  const Tensor q = b(randn({1, 7, 4, 8}, 108)), k = b(randn({1, 7, 2, 8}, 109)), v = b(randn({1, 7, 2, 8}, 110));
  const ops::AttentionOut o = ops::attention(q, k, v), of = ops::attention(f(q), f(k), f(v));
  CHECK(same(o.out, of.out));
  const ops::AttentionGrads ag = ops::attention_backward(q, q, k, v, o);
  const ops::AttentionGrads agf = ops::attention_backward(f(q), f(q), f(k), f(v), {f(o.out), o.lse});
  CHECK(same(ag.dq, agf.dq));
  CHECK(same(ag.dk, agf.dk));
  CHECK(same(ag.dv, agf.dv));
  const Tensor logits = b(randn({5, 9}, 111));
  const Tensor targets = Tensor::from_vector({1, 8, 0, -100, 3}, {5}, DType::i64);
  const ops::CrossEntropyOut ce = ops::cross_entropy(logits, targets), cef = ops::cross_entropy(f(logits), targets);
  CHECK(ce.loss.dtype() == DType::f32);  // the loss stays f32 for bf16 logits
  CHECK(ce.loss.item(0) == cef.loss.item(0));
  CHECK(same(ops::cross_entropy_backward(logits, targets, ce, 0.5), ops::cross_entropy_backward(f(logits), targets, cef, 0.5)));
  const Tensor emb = b(randn({13, 5}, 112));
  const Tensor tok = Tensor::from_vector({3, 0, 12, 3}, {4}, DType::i64);
  CHECK(ops::embedding(emb, tok).to_vector() == ops::embedding(f(emb), tok).to_vector());  // exact either way
}

TEST_CASE("op bf16 on the CPU: native bf16 GEMMs (AVX512_BF16/AMX) differ from widened ones in summation order only") {
  if (!ops::cpu::gemm_bf16_native_available()) {
    WARN("no AVX512_BF16/AMX-BF16 here: gemm_bf16 cannot run natively, nothing to compare");
    return;
  }
  // The products of bf16 values are exact in f32 either way; only the order of the f32 sums
  // differs, so each rounded output is the widened one or a bf16 neighbour, and the f32 sums
  // (dw accumulated in f32) agree to K * 2^-24 of the sum of |products|.
  auto b = [](const Tensor& t) { return t.to(DType::bf16); };
  const Tensor x = b(randn({4, 16, 96}, 121)), w = b(randn({40, 96}, 122)), dy = b(randn({4, 16, 40}, 123));
  auto run = [&](bool native) {
    Bf16GemmMode mode(native);
    Tensor dw = Tensor::zeros({40, 96}, DType::f32);
    ops::linear_backward_weight(dy, x, dw, true);
    Tensor c = Tensor::zeros({4, 16, 16}, DType::f32);
    ops::matmul(false, true, 0.5, x, x, 0.0, c);
    return std::vector<Tensor>{ops::linear(x, w), ops::linear_backward_input(dy, w), dw, c};
  };
  const std::vector<Tensor> nat = run(true), wid = run(false);
  const char* what[] = {"linear", "linear_backward_input", "linear_backward_weight (f32, accumulated)", "matmul"};
  for (std::size_t i = 0; i < nat.size(); ++i) {
    INFO(what[i]);
    REQUIRE(nat[i].dtype() == wid[i].dtype());
    const std::vector<double> g = nat[i].to_vector(), want = wid[i].to_vector();
    const double ulp = nat[i].dtype() == DType::bf16 ? std::ldexp(1.0, -7) : std::ldexp(1.0, -24) * 96 * 64;
    int differ = 0;
    for (std::size_t j = 0; j < g.size(); ++j) {
      CHECK(std::abs(g[j] - want[j]) <= ulp * std::max(1.0, std::abs(want[j])));
      differ += g[j] != want[j];
    }
    CHECK(differ < int(g.size()));  // mostly the same values, not another computation
  }
}

TEST_CASE("op elementwise passes on the CPU pool give the same bits for any thread count") {
  // SwiGLU, add, AdamW, RMSNorm, RoPE and cross-entropy run in fixed chunks on
  // ops/cpu/threads.hpp's pool;
  // sizes past several chunks and not a multiple of one.
  struct Restore {
    int saved = ops::cpu::cpu_threads();
    ~Restore() { ops::cpu::set_cpu_threads(saved); }
  } restore;
  const Tensor a = randn({3, 21001}, 131, 1.0, DType::f32), b = randn({3, 21001}, 132, 1.0, DType::f32),
               dh = randn({3, 21001}, 133, 1.0, DType::f32), x = randn({700, 96}, 134, 1.0, DType::f32),
               w = randn({96}, 135, 1.0, DType::f32), q = randn({2, 150, 4, 32}, 136, 1.0, DType::f32),
               logits = randn({203, 300}, 137, 3.0, DType::f32), dyn = randn({700, 96}, 138, 1.0, DType::f32);
  const auto table = ops::rope_table(32, 150, 500000.0, nullptr);
  std::vector<double> tv(203);
  for (std::size_t i = 0; i < tv.size(); ++i) tv[i] = i % 7 == 3 ? -100 : double((i * 37) % 300);  // some ignored
  const Tensor targets = Tensor::from_vector(tv, {203}, DType::i64);
  auto run = [&](int threads) {
    ops::cpu::set_cpu_threads(threads);
    std::vector<Tensor> out;
    out.push_back(ops::swiglu(a, b));
    Tensor da, db;
    ops::swiglu_backward(dh, a, b, da, db);
    out.push_back(da);
    out.push_back(db);
    out.push_back(ops::add(a, b));
    std::vector<Tensor> p{a.clone()}, m{b.clone()}, v{ops::add(dh, dh)};
    ops::scale_(v[0], 0.0);
    ops::adamw_step(p, {dh}, m, v, {1e-2, 0.9, 0.95, 1e-8, 0.1, 3});
    out.push_back(p[0]);
    out.push_back(m[0]);
    out.push_back(v[0]);
    const ops::RmsNormOut n = ops::rmsnorm(x, w, 1e-5);
    out.push_back(n.y);
    out.push_back(n.rstd);
    Tensor dnw = Tensor::zeros({96}, DType::f32);  // dw summed over chunks of rows, in chunk order
    out.push_back(ops::rmsnorm_backward(dyn, x, w, n.rstd, dnw));
    out.push_back(dnw);
    const ops::AddRmsNormOut an = ops::add_rmsnorm(x, dyn, w, 1e-5);  // the fused residual: rows in chunks
    out.push_back(an.h);
    out.push_back(an.y);
    out.push_back(ops::rmsnorm_backward(dyn, an.h, w, an.rstd, dnw, x));
    out.push_back(ops::rope(q, table));  // token rows in chunks
    const ops::CrossEntropyOut ce = ops::cross_entropy(logits, targets);  // rows in chunks, loss summed in order
    out.push_back(ce.loss);
    out.push_back(ops::cross_entropy_backward(logits, targets, ce, 1.0));
    return out;
  };
  const std::vector<Tensor> one = run(1);
  for (int threads : {2, 3}) {
    const std::vector<Tensor> many = run(threads);
    for (std::size_t i = 0; i < one.size(); ++i) {
      INFO("threads " << threads << " output " << i);
      CHECK(std::memcmp(one[i].raw(), many[i].raw(), one[i].nbytes()) == 0);
    }
  }
  CHECK(one[0].to_vector() != one[3].to_vector());  // distinct outputs, not one buffer compared with itself
}

// ---- float8 ops (torchao's numerics, DESIGN.md section 5) ----

namespace {

const double kNaN = std::nan(""), kInf = INFINITY;

std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }

// Bit patterns equal (any NaN equals any NaN).
bool same_floats(const Tensor& a, const std::vector<double>& want) {
  if (a.numel() != std::int64_t(want.size()) || a.dtype() != DType::f32) return false;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    const float x = a.data<float>()[i], y = static_cast<float>(want[size_t(i)]);
    if (!(bits(x) == bits(y) || (std::isnan(x) && std::isnan(y)))) return false;
  }
  return true;
}

std::vector<std::uint8_t> bytes_of(const Tensor& t) {
  const auto* p = t.data<std::uint8_t>();
  return std::vector<std::uint8_t>(p, p + t.numel());
}

}  // namespace

TEST_CASE("op amax: tensorwise, per row, per column; NaN propagates; empty groups are 0") {
  const Tensor x = Tensor::from_vector({1, -3, 2, 0, 0, 0, -kInf, 0.5, 1, kNaN, 1, 2}, {4, 3});
  CHECK(same_floats(ops::amax(x, ops::ScaleAxis::tensor), {kNaN}));
  const Tensor rows = ops::amax(x, ops::ScaleAxis::per_row), cols = ops::amax(x, ops::ScaleAxis::per_column);
  CHECK(rows.shape() == Shape{4, 1});
  CHECK(cols.shape() == Shape{1, 3});
  CHECK(same_floats(rows, {3, 0, kInf, kNaN}));
  CHECK(same_floats(cols, {kNaN, 3, 2}));
  const Tensor no_nan = x.slice_rows(0, 3);
  CHECK(same_floats(ops::amax(no_nan, ops::ScaleAxis::tensor), {kInf}));
  CHECK(same_floats(ops::amax(no_nan, ops::ScaleAxis::per_column), {kInf, 3, 2}));
  // bfloat16 input (these values are exact in bf16): the same results.
  CHECK(same_floats(ops::amax(x.to(DType::bf16), ops::ScaleAxis::per_row), {3, 0, kInf, kNaN}));
  CHECK(same_floats(ops::amax(Tensor::zeros({0, 3}), ops::ScaleAxis::tensor), {0}));
  CHECK(same_floats(ops::amax(Tensor::zeros({0, 3}), ops::ScaleAxis::per_column), {0, 0, 0}));
  CHECK(same_floats(ops::amax(Tensor::zeros({2, 0}), ops::ScaleAxis::per_row), {0, 0}));
  CHECK_THROWS_AS(ops::amax(Tensor::zeros({3}), ops::ScaleAxis::tensor), std::invalid_argument);           // not 2-D
  CHECK_THROWS_AS(ops::amax(Tensor::zeros({2, 2}, DType::f64), ops::ScaleAxis::tensor), std::invalid_argument);
}

TEST_CASE("op amax_to_scale: torchao's scales (table from torchao 0.18), power-of-2 rounding") {
  // amax: zero and tiny ones clamp to 1e-12; inf -> 0; NaN stays; 1.75 + 1 ulp and + 3 ulp give
  // scales just below 256 (e4m3) and 32768 (e5m2), where float32 log2 may round up to the power
  // of two: torch's exp2(floor(log2(scale))) then gives 256 for the first and 128 for the second.
  const std::vector<double> amax = {0, 1e-20, 1e-12, 3.5, 448, 1, 1000, 2.75e-3, kInf, kNaN,
                                    std::bit_cast<float>(0x3FE00001u), std::bit_cast<float>(0x3FE00003u)};
  const Tensor a = Tensor::from_vector(amax, {std::int64_t(amax.size())});
  auto f = [](std::uint32_t b) { return double(std::bit_cast<float>(b)); };
  CHECK(same_floats(ops::amax_to_scale(a, DType::f8e4m3, false),
                    {f(0x57cbba10), f(0x57cbba10), f(0x57cbba10), 128, 1, 448, f(0x3ee56042), f(0x481f1746), 0, kNaN,
                     f(0x437fffff), f(0x437ffffd)}));
  CHECK(same_floats(ops::amax_to_scale(a, DType::f8e4m3, true),
                    {f(0x57800000), f(0x57800000), f(0x57800000), 128, 1, 256, 0.25, 131072, 0, kNaN, 256, 128}));
  CHECK(same_floats(ops::amax_to_scale(a, DType::f8e5m2, false),
                    {f(0x5b4bba10), f(0x5b4bba10), f(0x5b4bba10), 16384, 128, 57344, f(0x42656042), f(0x4b9f1746), 0, kNaN,
                     f(0x46ffffff), f(0x46fffffd)}));
  CHECK(same_floats(ops::amax_to_scale(a, DType::f8e5m2, true),
                    {f(0x5b000000), f(0x5b000000), f(0x5b000000), 16384, 128, 32768, 32, 16777216, 0, kNaN, 32768, 32768}));
  // The shape is kept ([R, 1] amax -> [R, 1] scales); the formula against float64 on random amaxes.
  Tensor r = randn({37, 1}, 5, 100.0, DType::f32);
  const Tensor s = ops::amax_to_scale(ops::amax(r, ops::ScaleAxis::per_row), DType::f8e4m3, false);
  CHECK(s.shape() == Shape{37, 1});
  for (std::int64_t i = 0; i < 37; ++i)
    CHECK(s.data<float>()[i] == static_cast<float>(448.0 / std::max(std::abs(double(r.data<float>()[i])), 1e-12)));
  CHECK_THROWS_AS(ops::amax_to_scale(a, DType::bf16, false), std::invalid_argument);
}

TEST_CASE("op cast_to_float8: saturation, round to nearest even, NaN, every layout and group") {
  // e4m3 around 16 has spacing 2: 17 ties to 16 (even), 19 to 20; 448.1 and 1000 saturate to 448
  // (0x7E), -inf to -448; NaN stays NaN (0x7F); 2^-10, half the smallest subnormal 2^-9, ties to 0.
  const Tensor x = Tensor::from_vector({17, 19, 448.1, 1000, -kInf, kNaN, 0.5, -0.0, 0.0009765625, 0.001953125}, {2, 5});
  const Tensor one = Tensor::full({1}, 1.0);
  const ops::Float8Cast c = ops::cast_to_float8(x, DType::f8e4m3, one, ops::ScaleAxis::tensor);
  CHECK(bytes_of(c.data) == std::vector<std::uint8_t>{0x58, 0x5A, 0x7E, 0x7E, 0xFE, 0x7F, 0x30, 0x80, 0x00, 0x01});
  CHECK_FALSE(c.data_t.defined());
  // e5m2 (max 57344, spacing 4 around 16): 18 ties to 16, 22 to 24; inf saturates; NaN 0x7E.
  const Tensor y = Tensor::from_vector({18, 22, 6e4, kInf, kNaN, -1}, {1, 6});
  CHECK(bytes_of(ops::cast_to_float8(y, DType::f8e5m2, one, ops::ScaleAxis::tensor).data) ==
        std::vector<std::uint8_t>{0x4C, 0x4E, 0x7B, 0x7B, 0x7E, 0xBC});

  // Random data, every group kind and layout, against titan's scalar conversion of the f32 product.
  const Tensor r = randn({37, 45}, 7, 30.0, DType::f32);
  const std::int64_t R = 37, C = 45;
  for (auto axis : {ops::ScaleAxis::tensor, ops::ScaleAxis::per_row, ops::ScaleAxis::per_column})
    for (DType f8 : {DType::f8e4m3, DType::f8e5m2}) {
      INFO("axis " << int(axis) << " " << dtype_name(f8));
      const ops::Float8Cast both = ops::cast_to_float8(r, f8, axis, axis != ops::ScaleAxis::tensor, ops::Float8Layout::both);
      REQUIRE(both.data.shape() == Shape{R, C});
      REQUIRE(both.data_t.shape() == Shape{C, R});
      const float* s = both.scale.data<float>();
      const float* p = r.data<float>();
      int bad = 0, bad_t = 0;
      for (std::int64_t i = 0; i < R; ++i)
        for (std::int64_t j = 0; j < C; ++j) {
          const float sc = axis == ops::ScaleAxis::tensor ? s[0] : axis == ops::ScaleAxis::per_row ? s[i] : s[j];
          const float prod = p[i * C + j] * sc;
          const std::uint8_t want = f8 == DType::f8e4m3 ? f32_to_f8e4m3(prod) : f32_to_f8e5m2(prod);
          bad += both.data.data<std::uint8_t>()[i * C + j] != want;
          bad_t += both.data_t.data<std::uint8_t>()[j * R + i] != want;
        }
      CHECK(bad == 0);
      CHECK(bad_t == 0);
      // The row-major-only and transposed-only casts write the same bytes; so does a bf16 input
      // for values that bf16 holds exactly.
      CHECK(bytes_of(ops::cast_to_float8(r, f8, both.scale, axis).data) == bytes_of(both.data));
      const ops::Float8Cast t_only = ops::cast_to_float8(r, f8, both.scale, axis, ops::Float8Layout::transposed);
      CHECK_FALSE(t_only.data.defined());
      CHECK(bytes_of(t_only.data_t) == bytes_of(both.data_t));
      const Tensor rb = r.to(DType::bf16);
      CHECK(bytes_of(ops::cast_to_float8(rb, f8, both.scale, axis).data) ==
            bytes_of(ops::cast_to_float8(rb.to(DType::f32), f8, both.scale, axis).data));
    }
  CHECK_THROWS_AS(ops::cast_to_float8(r, DType::f8e4m3, Tensor::full({2}, 1.0), ops::ScaleAxis::tensor), std::invalid_argument);
  CHECK_THROWS_AS(ops::cast_to_float8(r, DType::f8e4m3, Tensor::full({C, 1}, 1.0), ops::ScaleAxis::per_row),
                  std::invalid_argument);
  CHECK_THROWS_AS(ops::cast_to_float8(r, DType::f16, one, ops::ScaleAxis::tensor), std::invalid_argument);
}

TEST_CASE("op cast_to_float8 with a given scale reports the tensor's amax, NaN included") {
  const Tensor one = Tensor::full({1}, 0.5);
  for (bool nan : {false, true}) {
    Tensor x = randn({7, 13}, 41, 3.0, DType::f32);
    if (nan) x.set(50, kNaN);
    Tensor amax;
    const ops::Float8Cast c = ops::cast_to_float8(x, DType::f8e4m3, one, ops::ScaleAxis::tensor, ops::Float8Layout::both, &amax);
    const Tensor want = ops::amax(x, ops::ScaleAxis::tensor);
    REQUIRE(amax.shape() == Shape{1});
    CHECK(std::bit_cast<std::uint32_t>(float(amax.item(0))) == std::bit_cast<std::uint32_t>(float(want.item(0))));
    CHECK(std::isnan(amax.item(0)) == nan);
    const ops::Float8Cast plain = ops::cast_to_float8(x, DType::f8e4m3, one, ops::ScaleAxis::tensor, ops::Float8Layout::both);
    CHECK(std::memcmp(c.data.raw(), plain.data.raw(), c.data.nbytes()) == 0);
  }
}

TEST_CASE("op dequantize: float32(data) / scale per group") {
  // e4m3 bytes: 0x58 = 16, 0x30 = 0.5, 0xFE = -448, 0x01 = 2^-9.
  const Tensor q = Tensor::from_vector({16, 0.5, -448, 0.001953125}, {2, 2}, DType::f8e4m3);
  CHECK(bytes_of(q) == std::vector<std::uint8_t>{0x58, 0x30, 0xFE, 0x01});
  CHECK(ops::dequantize(q, Tensor::full({1}, 4.0), ops::ScaleAxis::tensor).to_vector() ==
        std::vector<double>{4, 0.125, -112, 0.00048828125});
  CHECK(ops::dequantize(q, Tensor::from_vector({2, 0.5}, {2, 1}), ops::ScaleAxis::per_row).to_vector() ==
        std::vector<double>{8, 0.25, -896, 0.00390625});
  CHECK(ops::dequantize(q, Tensor::from_vector({2, 0.5}, {1, 2}), ops::ScaleAxis::per_column).to_vector() ==
        std::vector<double>{8, 1, -224, 0.00390625});
  const Tensor third = Tensor::full({1}, 3.0);
  CHECK(ops::dequantize(q, third, ops::ScaleAxis::tensor).data<float>()[1] == 0.5f / 3.0f);  // one f32 division
  CHECK_THROWS_AS(ops::dequantize(Tensor::zeros({2, 2}), third, ops::ScaleAxis::tensor), std::invalid_argument);
}

TEST_CASE("op transpose_float8: out[c, r] = data[r, c] for every byte, any shape, both formats") {
  // Shapes around the 64 x 64 blocks (single rows and columns, odd sizes, exact and partial
  // blocks); bytes from a counter walk every pattern, NaN and -0 included.
  const Shape shapes[] = {{1, 1}, {1, 77}, {77, 1}, {5, 3}, {63, 65}, {64, 64}, {64, 129}, {130, 67}, {3, 200}};
  std::uint32_t seed = 1;
  for (DType f8 : {DType::f8e4m3, DType::f8e5m2})
    for (const Shape& shape : shapes) {
      const std::int64_t R = shape[0], C = shape[1];
      INFO(dtype_name(f8) << " " << shape_str(shape));
      Tensor q = Tensor::empty(shape, f8);
      for (std::int64_t i = 0; i < R * C; ++i) q.data<std::uint8_t>()[i] = static_cast<std::uint8_t>((seed = seed * 1664525u + 1013904223u) >> 24);
      const Tensor t = ops::transpose_float8(q);
      REQUIRE(t.shape() == Shape{C, R});
      REQUIRE(t.dtype() == f8);
      CHECK(t.device() == q.device());
      std::int64_t wrong = 0;
      for (std::int64_t r = 0; r < R; ++r)
        for (std::int64_t c = 0; c < C; ++c) wrong += t.data<std::uint8_t>()[c * R + r] != q.data<std::uint8_t>()[r * C + c];
      CHECK(wrong == 0);
      CHECK(bytes_of(ops::transpose_float8(t)) == bytes_of(q));
    }
  // A view into a larger storage: the transpose reads from the view's offset.
  Tensor big = Tensor::empty({6, 4}, DType::f8e4m3);
  for (std::int64_t i = 0; i < 24; ++i) big.data<std::uint8_t>()[i] = static_cast<std::uint8_t>(i);
  CHECK(bytes_of(ops::transpose_float8(big.slice_rows(2, 4))) == std::vector<std::uint8_t>{8, 12, 9, 13, 10, 14, 11, 15});
  CHECK_THROWS_AS(ops::transpose_float8(Tensor::zeros({2, 3})), std::invalid_argument);                  // not float8
  CHECK_THROWS_AS(ops::transpose_float8(Tensor::zeros({6}, DType::f8e4m3)), std::invalid_argument);      // 1-D
  CHECK_THROWS_AS(ops::transpose_float8(Tensor::zeros({2, 2, 2}, DType::f8e5m2)), std::invalid_argument);  // 3-D
}

TEST_CASE("op scaled_mm (CPU: torchao's emulation): tensorwise, rowwise and mixed scales against float64") {
  const std::int64_t M = 19, N = 24, K = 40;
  const Tensor a = randn({M, K}, 11, 2.0, DType::f32), b = randn({N, K}, 12, 0.1, DType::f32);
  struct Case {
    ops::ScaleAxis ax_a, ax_b;
    DType fa, fb;
  };
  const auto tw = ops::ScaleAxis::tensor, row = ops::ScaleAxis::per_row;
  for (const Case c : {Case{tw, tw, DType::f8e4m3, DType::f8e4m3}, Case{tw, tw, DType::f8e5m2, DType::f8e4m3},
                       Case{row, row, DType::f8e4m3, DType::f8e4m3}, Case{row, tw, DType::f8e4m3, DType::f8e4m3},
                       Case{tw, row, DType::f8e4m3, DType::f8e5m2}}) {
    INFO("scales " << int(c.ax_a) << "/" << int(c.ax_b) << " " << dtype_name(c.fa) << " x " << dtype_name(c.fb));
    const ops::Float8Cast a8 = ops::cast_to_float8(a, c.fa, c.ax_a, false), b8 = ops::cast_to_float8(b, c.fb, c.ax_b, false);
    const Tensor y = ops::scaled_mm(a8.data, a8.scale, b8.data, b8.scale, DType::f32, true);
    REQUIRE(y.shape() == Shape{M, N});
    // float64 reference on the dequantized operands; the f32 GEMM's error is below K u sum|a b|.
    const Tensor da = ops::dequantize(a8.data, a8.scale, c.ax_a), db = ops::dequantize(b8.data, b8.scale, c.ax_b);
    double worst = 0;
    for (std::int64_t m = 0; m < M; ++m)
      for (std::int64_t n = 0; n < N; ++n) {
        double exact = 0, mag = 0;
        for (std::int64_t k = 0; k < K; ++k) {
          const double t = double(da.data<float>()[m * K + k]) * double(db.data<float>()[n * K + k]);
          exact += t;
          mag += std::abs(t);
        }
        worst = std::max(worst, std::abs(double(y.data<float>()[m * N + n]) - exact) / (double(K) * 0x1p-24 * mag));
      }
    CHECK(worst <= 1.0);
    // bf16 output: the float32 result rounded once; emulate = true is what the CPU always runs.
    CHECK(ops::scaled_mm(a8.data, a8.scale, b8.data, b8.scale, DType::bf16, false).to_vector() == y.to(DType::bf16).to_vector());
    CHECK(ops::scaled_mm(a8.data, a8.scale, b8.data, b8.scale, DType::f32, false, true).to_vector() == y.to_vector());
  }
  const ops::Float8Cast a8 = ops::cast_to_float8(a, DType::f8e4m3, row, true), b8 = ops::cast_to_float8(b, DType::f8e4m3, tw, false);
  CHECK_THROWS_AS(ops::scaled_mm(a8.data, a8.scale.view({1, M}), b8.data, b8.scale, DType::f32, false), std::invalid_argument);
  const ops::Float8Cast k16 = ops::cast_to_float8(randn({N, 16}, 13, 1.0, DType::f32), DType::f8e4m3, tw, false);
  CHECK_THROWS_AS(ops::scaled_mm(a8.data, a8.scale, k16.data, k16.scale, DType::f32, false), std::invalid_argument);  // K
  CHECK_THROWS_AS(ops::scaled_mm(a, a8.scale, b8.data, b8.scale, DType::f32, false), std::invalid_argument);       // not float8
  CHECK_THROWS_AS(ops::scaled_mm(a8.data, a8.scale, b8.data, b8.scale, DType::f16, false), std::invalid_argument);  // out dtype
  CHECK(ops::scaled_mm_implementation(Device::cpu(), false).starts_with("emulated"));
}

// Tensor parallel's pieces: a vocabulary split into shards, combined as the TP group would (MAX
// of the row maxima, SUM of the shard sums), must give the whole cross-entropy and its gradient.
TEST_CASE("op cross_entropy over vocabulary shards equals the whole one, forward and backward") {
  const std::int64_t N = 6, V = 12, T = 3, Vs = V / T;
  Tensor x64 = randn({N, V}, 31, 2.0);
  Tensor x = x64.to(DType::f32);
  Tensor t = Tensor::from_vector({3, -100, 11, 0, 7, 4}, {N}, DType::i64);
  std::vector<Tensor> shards;
  for (std::int64_t s = 0; s < T; ++s) {
    Tensor part = Tensor::empty({N, Vs});
    for (std::int64_t n = 0; n < N; ++n) part.view_range(n * Vs, {Vs}).copy_from(x.view_range(n * V + s * Vs, {Vs}));
    shards.push_back(part);
  }
  Tensor m = ops::cross_entropy_row_max(shards[0]);
  for (std::int64_t s = 1; s < T; ++s) {
    Tensor ms = ops::cross_entropy_row_max(shards[size_t(s)]);
    for (std::int64_t n = 0; n < N; ++n) m.set(n, std::max(m.item(n), ms.item(n)));
  }
  Tensor sums = Tensor::zeros({2, N}, DType::f64);
  for (std::int64_t s = 0; s < T; ++s) ops::add_(sums, ops::cross_entropy_shard_sums(shards[size_t(s)], t, s * Vs, m));
  double loss = 0;
  for (std::int64_t n = 0; n < N; ++n)
    if (t.item(n) != -100) loss += m.item(n) + std::log(sums.item(n)) - sums.item(N + n);
  const auto whole = ops::cross_entropy(x.to(DType::f64), t);
  CHECK(loss / double(whole.n_valid) == Approx(whole.loss.item(0)).epsilon(1e-6));
  Tensor dwhole = ops::cross_entropy_backward(x.to(DType::f64), t, whole, 0.5);
  for (std::int64_t s = 0; s < T; ++s) {
    Tensor d = ops::cross_entropy_shard_backward(shards[size_t(s)], t, s * Vs, m, sums.view_range(0, {N}), whole.n_valid, 0.5);
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t j = 0; j < Vs; ++j) CHECK(d.item(n * Vs + j) == Approx(dwhole.item(n * V + s * Vs + j)).margin(1e-6));
  }
}

TEST_CASE("op embedding over row shards: the shards' lookups sum to the whole one; backward by rows") {
  Tensor w = randn({10, 3}, 41).to(DType::f32);
  Tensor tokens = Tensor::from_vector({0, 9, 4, 5, 5, 2}, {2, 3}, DType::i64);
  Tensor whole = ops::embedding(w, tokens);
  Tensor sum = Tensor::zeros(whole.shape());
  Tensor dy = randn(whole.shape(), 42).to(DType::f32);
  Tensor dwhole = Tensor::zeros({10, 3});
  ops::embedding_backward(dy, tokens, dwhole);
  for (std::int64_t first : {0, 5}) {
    ops::add_(sum, ops::embedding_rows(w.slice_rows(first, first + 5), tokens, first));
    Tensor dw = Tensor::zeros({5, 3});
    ops::embedding_rows_backward(dy, tokens, dw, first);
    for (std::int64_t i = 0; i < 15; ++i) CHECK(dw.item(i) == dwhole.item(first * 3 + i));
  }
  for (std::int64_t i = 0; i < whole.numel(); ++i) CHECK(sum.item(i) == whole.item(i));
}
