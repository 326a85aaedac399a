// The autograd engine: accumulation, shared inputs, retained graphs, no_grad, custom functions,
// module hooks and activation checkpointing.
#include <catch2/catch.hpp>

#include <optional>

#include "autograd/functions.hpp"
#include "core/rng.hpp"
#include "nn/layers.hpp"

using namespace titan;
using autograd::Variable;

namespace {

Tensor randn(const Shape& shape, std::uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::f64);
  rng::fill_normal(t, rng::make_key(seed, "autograd"), 0, 0.0, 1.0);
  return t;
}

// sum(x * c) as a differentiable scalar, via a custom function.
Variable weighted_sum(const Variable& x, const Tensor& c) {
  double s = 0;
  for (std::int64_t i = 0; i < x.data().numel(); ++i) s += x.data().item(i) * c.item(i);
  return autograd::record1("WeightedSum", {x}, Tensor::full({1}, s, DType::f64),
                           [c](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                             Tensor d = c.clone();
                             ops::scale_(d, g[0].item(0));
                             return {d};
                           });
}

}  // namespace

TEST_CASE("autograd: a tensor used by several ops gets the sum of their gradients") {
  Variable x(randn({2, 3}, 1), true), w(randn({4, 3}, 2), true);
  Tensor c1 = randn({2, 4}, 3), c2 = randn({2, 3}, 4);
  // L = sum(c1 * (x W^T)) + sum(c2 * x) + sum(c2 * x): x feeds three ops.
  Variable a = weighted_sum(autograd::linear(x, w), c1);
  Variable b = weighted_sum(x, c2);
  Variable loss = autograd::add(a, autograd::add(b, b));
  loss.backward();
  Tensor want = ops::linear_backward_input(c1, w.data());
  ops::add_(want, c2, 2.0);
  for (int i = 0; i < 6; ++i) CHECK(x.grad().item(i) == Approx(want.item(i)));
  Tensor dw = Tensor::empty({4, 3}, DType::f64);
  ops::linear_backward_weight(c1, x.data(), dw, false);
  for (int i = 0; i < 12; ++i) CHECK(w.grad().item(i) == Approx(dw.item(i)));
}

TEST_CASE("autograd: a graph reused twice with retain_graph accumulates; without it, it is freed") {
  Variable x(randn({5}, 5), true);
  Tensor c = randn({5}, 6);
  Variable y = weighted_sum(autograd::swiglu(x, x), c);
  y.backward(Tensor(), /*retain_graph=*/true);
  const double once = x.grad().item(2);
  y.backward();  // second pass through the same graph
  CHECK(x.grad().item(2) == Approx(2 * once));
  CHECK_THROWS_WITH(y.backward(), Catch::Matchers::Contains("a second time"));
}

TEST_CASE("autograd: no_grad records nothing; leaves that do not require grad get none") {
  Variable x(randn({3}, 7), true), frozen(randn({3}, 8), false);
  {
    autograd::NoGradGuard guard;
    Variable y = autograd::add(x, x);
    CHECK(!y.requires_grad());
    CHECK(!autograd::grad_enabled());
  }
  CHECK(autograd::grad_enabled());
  Variable y = weighted_sum(autograd::add(x, frozen), randn({3}, 9));
  y.backward();
  CHECK(x.grad().defined());
  CHECK(!frozen.grad().defined());
  CHECK_THROWS(weighted_sum(frozen, randn({3}, 1)).backward());  // nothing requires grad
}

TEST_CASE("autograd: gradient-accumulated hooks and end-of-backward callbacks") {
  Variable x(randn({4}, 10), true);
  std::vector<std::string> events;
  x.add_grad_accumulated_hook([&](Tensor& g) { events.push_back("grad " + std::to_string(g.numel())); });
  Variable y = autograd::record1("Probe", {x}, Tensor::full({1}, 0.0, DType::f64), [&](const std::vector<Tensor>&) {
    autograd::queue_callback([&] { events.push_back("final"); });
    events.push_back("probe");
    return std::vector<Tensor>{Tensor::full({4}, 1.0, DType::f64)};
  });
  y.backward();
  CHECK(events == std::vector<std::string>{"probe", "grad 4", "final"});
  CHECK_THROWS(autograd::queue_callback([] {}));
}

namespace {
struct Scale : nn::Module {
  explicit Scale(const char* name) : name_(name) {}
  std::string type_name() const override { return name_; }
  std::vector<Variable> forward(const std::vector<Variable>& in) override { return {autograd::add(in[0], in[0])}; }
  std::string name_;
};
struct Chain : nn::Module {
  Chain() : a(register_module("a", std::make_unique<Scale>("A"))), b(register_module("b", std::make_unique<Scale>("B"))) {}
  std::string type_name() const override { return "Chain"; }
  std::vector<Variable> forward(const std::vector<Variable>& in) override { return {b(a(in[0]))}; }
  Scale &a, &b;
};
}  // namespace

TEST_CASE("module hooks fire in forward and backward order") {
  Chain chain;
  CHECK(chain.a.fqn() == "a");
  std::vector<std::string> log;
  for (Scale* m : {&chain.a, &chain.b}) {
    m->add_forward_pre_hook([&](nn::Module& mod) { log.push_back("pre-forward " + mod.type_name()); });
    m->add_forward_hook([&](nn::Module& mod, std::vector<Variable>&) { log.push_back("post-forward " + mod.type_name()); });
    m->add_backward_pre_hook([&](nn::Module& mod) { log.push_back("pre-backward " + mod.type_name()); });
    m->add_backward_hook([&](nn::Module& mod) { log.push_back("post-backward " + mod.type_name()); });
  }
  Variable x(randn({3}, 11), true);
  Variable y = weighted_sum(chain(x), randn({3}, 12));
  y.backward();
  CHECK(log == std::vector<std::string>{"pre-forward A", "post-forward A", "pre-forward B", "post-forward B",
                                        "pre-backward B", "post-backward B", "pre-backward A", "post-backward A"});
  for (int i = 0; i < 3; ++i) CHECK(x.grad().item(i) != 0.0);
}

TEST_CASE("activation checkpointing gives the same gradients as plain backward") {
  nn::Linear l1(5, 7), l2(7, 5);
  l1.weight.data().copy_from(randn({7, 5}, 13).to(DType::f32));
  l2.weight.data().copy_from(randn({5, 7}, 14).to(DType::f32));
  Tensor xin = randn({3, 5}, 15).to(DType::f32);
  Tensor c = randn({3, 5}, 16).to(DType::f32);
  auto block = [&](const std::vector<Variable>& in) {
    return std::vector<Variable>{l2(autograd::swiglu(l1(in[0]), l1(in[0])))};
  };
  auto run = [&](bool ckpt) {
    l1.weight.zero_grad();
    l2.weight.zero_grad();
    Variable x(xin, true);
    Variable y = ckpt ? autograd::checkpoint("block", block, {x})[0] : block({x})[0];
    Variable loss = autograd::cross_entropy(y, Tensor::from_vector({1, 4, 0}, {3}, DType::i64));
    loss.backward();
    return std::vector<Tensor>{x.grad(), l1.weight.grad(), l2.weight.grad()};
  };
  auto plain = run(false), ckpt = run(true);
  for (int t = 0; t < 3; ++t)
    for (std::int64_t i = 0; i < plain[t].numel(); ++i) CHECK(ckpt[t].item(i) == plain[t].item(i));
}

TEST_CASE("bf16 storage: bf16 weights make bf16 activations and gradients; checkpointing recomputes alike") {
  // Mixed precision is the tensors' dtype (FSDP gathers bf16 weights): every op on bf16 inputs
  // returns bf16, its backward returns bf16 gradients, and no global mode is involved.
  nn::Linear l1(6, 10), l2(10, 6);
  const Tensor w1 = randn({10, 6}, 21).to(DType::f32), w2 = randn({6, 10}, 22).to(DType::f32);
  Tensor xin = randn({4, 6}, 23).to(DType::f32);
  auto block = [&](const std::vector<Variable>& in) { return std::vector<Variable>{l2(autograd::swiglu(l1(in[0]), l1(in[0])))}; };
  auto run = [&](DType dt, bool ckpt) {
    l1.weight = Variable(w1.to(dt), true);
    l2.weight = Variable(w2.to(dt), true);
    Variable x(xin.to(dt), true);
    Variable y = ckpt ? autograd::checkpoint("b", block, {x})[0] : block({x})[0];
    CHECK(y.data().dtype() == dt);
    autograd::cross_entropy(y, Tensor::from_vector({1, 4, 0, 5}, {4}, DType::i64)).backward();
    CHECK(x.grad().dtype() == dt);
    CHECK(l1.weight.grad().dtype() == dt);
    return std::vector<Tensor>{y.data(), x.grad(), l1.weight.grad()};
  };
  auto f32 = run(DType::f32, false), b = run(DType::bf16, false), bc = run(DType::bf16, true);
  for (int t = 0; t < 3; ++t) {
    INFO("tensor " << t);
    double diff = 0, scale = 0;
    for (std::int64_t i = 0; i < f32[t].numel(); ++i) {
      diff = std::max(diff, std::abs(b[t].item(i) - f32[t].item(i)));
      scale = std::max(scale, std::abs(f32[t].item(i)));
    }
    CHECK(diff > 0);             // bf16 rounding changes the values ...
    CHECK(diff < 0.05 * scale);  // ... by a few bf16 ulps (8 significant bits, a few roundings deep)
    for (std::int64_t i = 0; i < b[t].numel(); ++i) CHECK(bc[t].item(i) == b[t].item(i));
  }
}
