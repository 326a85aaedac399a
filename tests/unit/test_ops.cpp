// Every op's forward against a direct float64 formula, and every backward against central finite
// differences in float64 on random inputs of odd sizes; the float32 path against the float64 one.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>

#include "core/rng.hpp"
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
  CHECK(o.loss == Approx(want / 4).epsilon(1e-12));
  Tensor dx = ops::cross_entropy_backward(x, t, o, 1.0);
  // check_grad on a scalar loss: R = 1 with f returning a one-element tensor.
  Tensor one = Tensor::full({1}, 1.0, DType::f64);
  check_grad(x, [&] { return Tensor::full({1}, ops::cross_entropy(x, t).loss, DType::f64); }, one, dx);
  for (int j = 0; j < 9; ++j) CHECK(dx.item(1 * 9 + j) == 0.0);
  CHECK_THROWS(ops::cross_entropy(x, Tensor::from_vector({9, 0, 0, 0, 0, 0}, {6}, DType::i64)));
}

TEST_CASE("op reductions and in-place arithmetic") {
  Tensor a = Tensor::from_vector({1, -2, 3}, {3}, DType::f32);
  CHECK(ops::sum(a) == 2.0);
  CHECK(ops::sum_squares(a) == 14.0);
  Tensor b = Tensor::from_vector({1, 1, 1}, {3}, DType::f32);
  ops::add_(a, b, 2.0);
  CHECK(a.to_vector() == std::vector<double>{3, 0, 5});
  ops::scale_(a, 0.5);
  CHECK(a.to_vector() == std::vector<double>{1.5, 0, 2.5});
  CHECK_THROWS(ops::add(a, Tensor::zeros({3}, DType::f64)));   // dtype mismatch
  CHECK_THROWS(ops::sum(Tensor::zeros({3}, DType::bf16)));      // storage dtype: no arithmetic
}
