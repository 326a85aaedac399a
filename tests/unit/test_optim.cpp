// AdamW, gradient clipping and the LR schedule against PyTorch / TorchTitan (tests/golden/optim.safetensors,
// made by scripts/reference/make_optim_golden.py).
#include <catch2/catch.hpp>

#include <cmath>
#include <optional>

#include "checkpoint/safetensors.hpp"
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
    CHECK(optim::clip_grad_norm(ptrs, 1.0) == Approx(norms.item(k)).epsilon(1e-6));
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
