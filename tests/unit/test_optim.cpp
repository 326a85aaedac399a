// AdamW, gradient clipping and the LR schedule against PyTorch / TorchTitan (tests/golden/optim.safetensors,
// made by scripts/reference/make_optim_golden.py).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <optional>

#include "checkpoint/safetensors.hpp"
#include "core/rng.hpp"
#include "ops/ops.hpp"
#include "optim/adamw.hpp"

using namespace titan;

namespace {
const checkpoint::SafetensorsFile& golden() {
  static const auto f = checkpoint::read_safetensors(std::string(TITAN_SOURCE_DIR) + "/tests/golden/optim.safetensors");
  return f;
}
}  // namespace

TEST_CASE("LR schedule: TorchTitan's warmup-stable-decay factors") {
  struct Case {
    const char* name;
    std::int64_t total, warmup;
    std::optional<double> ratio;
    const char* type;
    double min_factor;
  };
  const Case cases[] = {{"linear_wsd", 10, 2, 0.8, "linear", 0.0},
                        {"cosine_min", 12, 3, std::nullopt, "cosine", 0.1},
                        {"sqrt_half", 9, 2, 0.5, "sqrt", 0.0},
                        {"warmup_too_long", 5, 8, std::nullopt, "linear", 0.0},
                        {"decay_too_long", 10, 4, 0.9, "linear", 0.2}};
  for (const auto& c : cases) {
    INFO(c.name);
    std::vector<std::string> warnings;
    auto s = optim::LrSchedule::build(c.total, c.warmup, c.ratio ? &*c.ratio : nullptr, c.type, c.min_factor, &warnings);
    const Tensor& want = golden().tensors.at(std::string("sched.") + c.name);
    REQUIRE(want.numel() == c.total);
    for (std::int64_t k = 0; k < c.total; ++k) CHECK(s.factor(k) == Approx(want.item(k)).epsilon(1e-12));
    const bool adjusted = std::string(c.name).ends_with("too_long");
    CHECK(warnings.empty() == !adjusted);
  }
}

TEST_CASE("AdamW with clip_grad_norm matches torch.optim.AdamW step by step") {
  std::vector<autograd::Variable> vars;
  for (int i = 0; i < 3; ++i) vars.emplace_back(golden().tensors.at("adamw.p" + std::to_string(i) + ".init").clone(), true);
  std::vector<autograd::Variable*> ptrs;
  for (auto& v : vars) ptrs.push_back(&v);
  optim::AdamW opt(ptrs, {1e-2, 0.9, 0.95, 1e-8, 0.1});
  const double ratio = 0.8;
  auto sched = optim::LrSchedule::build(10, 2, &ratio, "linear", 0.0, nullptr);
  const Tensor& norms = golden().tensors.at("adamw.norms");
  for (int k = 0; k < 4; ++k) {
    for (int i = 0; i < 3; ++i) vars[i].grad() = golden().tensors.at("adamw.p" + std::to_string(i) + ".grad" + std::to_string(k)).clone();
    CHECK(optim::norm_from_sum_squares(optim::clip_grad_norm(ptrs, 1.0)) == Approx(norms.item(k)).epsilon(1e-6));
    opt.step(1e-2 * sched.factor(k));
    for (int i = 0; i < 3; ++i) {
      const Tensor& want = golden().tensors.at("adamw.p" + std::to_string(i) + ".step" + std::to_string(k));
      INFO("param " << i << " step " << k);
      double worst = 0;
      for (std::int64_t j = 0; j < want.numel(); ++j)
        worst = std::max(worst, std::abs(vars[i].data().item(j) - want.item(j)) / std::max(1e-3, std::abs(want.item(j))));
      CHECK(worst < 1e-5);
    }
  }
  CHECK(opt.steps() == 4);
}

namespace {
// The CPU AdamW loop before the update moved into the op API (src/optim/adamw.cpp, verbatim):
// ops::adamw_step must reproduce it bit for bit.
void previous_adamw_step(std::vector<Tensor>& p, const std::vector<Tensor>& g, std::vector<Tensor>& m,
                         std::vector<Tensor>& v, const optim::AdamWConfig& cfg_, double lr, std::int64_t step_) {
  const float b1 = static_cast<float>(cfg_.beta1), b2 = static_cast<float>(cfg_.beta2);
  const double bias1 = 1.0 - std::pow(cfg_.beta1, double(step_));
  const double bias2_sqrt = std::sqrt(1.0 - std::pow(cfg_.beta2, double(step_)));
  const float step_size = static_cast<float>(lr / bias1);
  const float decay = static_cast<float>(1.0 - lr * cfg_.weight_decay);
  const float eps = static_cast<float>(cfg_.eps), inv_bias2_sqrt = static_cast<float>(1.0 / bias2_sqrt);
  for (size_t i = 0; i < p.size(); ++i) {
    float* pp = p[i].data<float>();
    const float* gp = g[i].data<float>();
    float* mp = m[i].data<float>();
    float* vp = v[i].data<float>();
    const std::int64_t n = p[i].numel();
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) {
      pp[j] *= decay;
      mp[j] = b1 * mp[j] + (1.0f - b1) * gp[j];
      vp[j] = b2 * vp[j] + (1.0f - b2) * gp[j] * gp[j];
      const float denom = std::sqrt(vp[j]) * inv_bias2_sqrt + eps;
      pp[j] -= step_size * mp[j] / denom;
    }
  }
}

std::vector<Tensor> random_tensors(const std::vector<std::int64_t>& sizes, std::uint64_t seed, double std) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < sizes.size(); ++i) {
    Tensor t = Tensor::empty({sizes[i]});
    rng::fill_normal(t, rng::make_key(seed + i, "adamw"), 0, 0.0, std);
    out.push_back(t);
  }
  return out;
}

std::vector<Tensor> clones(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const auto& t : ts) out.push_back(t.clone());
  return out;
}

bool same_bits(const Tensor& a, const Tensor& b) { return std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0; }
}  // namespace

TEST_CASE("ops::adamw_step: bit for bit the previous optimizer loop, over several steps and odd sizes") {
  const std::vector<std::int64_t> sizes = {1, 7, 64, 1000, 4099};  // vector remainders of every length
  const optim::AdamWConfig cfg{3e-3, 0.9, 0.95, 1e-8, 0.1};
  std::vector<Tensor> p = random_tensors(sizes, 1, 1.0), m = random_tensors(sizes, 100, 0.0), v = random_tensors(sizes, 200, 0.0);
  std::vector<Tensor> p_ref = clones(p), m_ref = clones(m), v_ref = clones(v);
  for (std::int64_t step = 1; step <= 5; ++step) {
    const std::vector<Tensor> g = random_tensors(sizes, 1000 * step, step == 3 ? 1e-6 : 1.0);  // tiny grads too
    const double lr = 3e-3 * double(step) / 5;
    ops::adamw_step(p, g, m, v, {lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, step});
    previous_adamw_step(p_ref, g, m_ref, v_ref, cfg, lr, step);
    for (size_t i = 0; i < sizes.size(); ++i) {
      INFO("step " << step << " tensor " << i);
      CHECK(same_bits(p[i], p_ref[i]));
      CHECK(same_bits(m[i], m_ref[i]));
      CHECK(same_bits(v[i], v_ref[i]));
    }
  }
  // optim::AdamW goes through the op: one step on Variables gives the same bits.
  autograd::Variable var(p_ref[3].clone(), true);
  var.grad() = random_tensors({1000}, 77, 1.0)[0];
  optim::AdamW opt({&var}, cfg);
  opt.step(1e-3);
  std::vector<Tensor> pr = {p_ref[3].clone()}, mr = {Tensor::zeros({1000})}, vr = {Tensor::zeros({1000})};
  previous_adamw_step(pr, {var.grad()}, mr, vr, cfg, 1e-3, 1);
  CHECK(same_bits(var.data(), pr[0]));
  CHECK(same_bits(opt.exp_avg()[0], mr[0]));
  CHECK(same_bits(opt.exp_avg_sq()[0], vr[0]));
  // Mismatched lists and non-f32 tensors are errors.
  CHECK_THROWS_AS(ops::adamw_step(p, p, m, {}, ops::AdamWStep{}), std::invalid_argument);
  CHECK_THROWS_AS(ops::adamw_step({Tensor::zeros({3}, DType::f64)}, {Tensor::zeros({3}, DType::f64)},
                                  {Tensor::zeros({3}, DType::f64)}, {Tensor::zeros({3}, DType::f64)}, ops::AdamWStep{}),
                  std::invalid_argument);
  CHECK_THROWS_AS(ops::adamw_step({Tensor::zeros({3})}, {Tensor::zeros({4})}, {Tensor::zeros({3})}, {Tensor::zeros({3})},
                                  ops::AdamWStep{}),
                  std::invalid_argument);
}

TEST_CASE("ops::adamw_step with scalars in a tensor (the captured step's form): the one-call step's bits") {
  const std::vector<std::int64_t> sizes = {1, 7, 4099};
  const optim::AdamWConfig cfg{3e-3, 0.9, 0.95, 1e-8, 0.1};
  std::vector<Tensor> p = random_tensors(sizes, 5, 1.0), m = random_tensors(sizes, 105, 0.0), v = random_tensors(sizes, 205, 0.0);
  std::vector<Tensor> p_ref = clones(p), m_ref = clones(m), v_ref = clones(v);
  const Tensor scalars = Tensor::empty({6}, DType::f32);
  for (std::int64_t step = 1; step <= 4; ++step) {
    const std::vector<Tensor> g = random_tensors(sizes, 3000 * step, 1.0);
    const ops::AdamWStep hp{1e-3 * double(step), cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, step};
    ops::adamw_scalars_into(scalars, hp);  // the same buffer every step, as a CUDA graph needs
    ops::adamw_step(p, g, m, v, scalars);
    ops::adamw_step(p_ref, g, m_ref, v_ref, hp);
    // The buffer holds the float32 scalars the op documents.
    CHECK(scalars.item(2) == double(static_cast<float>(hp.lr / (1.0 - std::pow(hp.beta1, double(step))))));
    CHECK(scalars.item(3) == double(static_cast<float>(1.0 - hp.lr * hp.weight_decay)));
    for (size_t i = 0; i < sizes.size(); ++i) {
      INFO("step " << step << " tensor " << i);
      CHECK(same_bits(p[i], p_ref[i]));
      CHECK(same_bits(m[i], m_ref[i]));
      CHECK(same_bits(v[i], v_ref[i]));
    }
  }
  // optim::AdamW's prepare + apply is its step.
  autograd::Variable a(p_ref[2].clone(), true), b(p_ref[2].clone(), true);
  a.grad() = b.grad() = random_tensors({4099}, 78, 1.0)[0];
  optim::AdamW oa({&a}, cfg), ob({&b}, cfg);
  for (int k = 0; k < 3; ++k) {
    oa.step(2e-3);
    ob.prepare(2e-3);
    ob.apply();
  }
  CHECK(ob.steps() == 3);
  CHECK(same_bits(a.data(), b.data()));
  CHECK_THROWS_AS(ops::adamw_scalars_into(Tensor::empty({5}, DType::f32), {}), std::invalid_argument);
  CHECK_THROWS_AS(ops::adamw_step(p, p, m, v, Tensor::empty({6}, DType::f64)), std::invalid_argument);
}
