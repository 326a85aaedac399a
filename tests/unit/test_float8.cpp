// Float8 numerics against the real torchao in emulate mode (tests/golden/float8.safetensors, made
// by scripts/reference/make_float8_golden.py), SQNR bounds, and the converter's decisions.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>

#include "checkpoint/safetensors.hpp"
#include "core/errors.hpp"
#include "core/rng.hpp"
#include "float8/float8_linear.hpp"
#include "models/llama3/model.hpp"

using namespace titan;
using namespace titan::float8;

namespace {
const checkpoint::SafetensorsFile& golden() {
  static const auto f = checkpoint::read_safetensors(std::string(TITAN_SOURCE_DIR) + "/tests/golden/float8.safetensors");
  return f;
}
const Tensor& G(const std::string& name) { return golden().tensors.at(name); }

bool same_bits(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b) || (std::isnan(a) && std::isnan(b)); }

Tensor randn(const Shape& shape, std::uint64_t seed, double std = 1.0) {
  Tensor t = Tensor::empty(shape);
  rng::fill_normal(t, rng::make_key(seed, "float8"), 0, 0.0, std);
  return t;
}
}  // namespace

TEST_CASE("float8 casts: scales and data bit for bit equal to torchao's, for every granularity") {
  struct Cfg {
    const char* name;
    DType dt;
    Granularity g;
    int dim;
    bool pow2;
  };
  const Cfg cfgs[] = {{"tw_e4m3", DType::f8e4m3, Granularity::tensorwise, 0, false},
                      {"tw_e5m2", DType::f8e5m2, Granularity::tensorwise, 0, false},
                      {"row_e4m3", DType::f8e4m3, Granularity::axiswise, -1, true},
                      {"col_e4m3", DType::f8e4m3, Granularity::axiswise, 0, true}};
  for (const char* c : {"normal", "wide", "special"}) {
    const Tensor& x = G(std::string("cast.") + c + ".x");
    for (const auto& cfg : cfgs) {
      const std::string key = std::string("cast.") + c + "." + cfg.name;
      INFO(key);
      Float8Tensor f8 = cast_to_float8(x, cfg.dt, cfg.g, cfg.dim, cfg.pow2);
      const Tensor& want_scale = G(key + ".scale");
      REQUIRE(f8.scale.numel() == want_scale.numel());
      int scale_mismatch = 0, data_mismatch = 0;
      for (std::int64_t i = 0; i < want_scale.numel(); ++i)
        scale_mismatch += !same_bits(f8.scale.data<float>()[i], want_scale.data<float>()[i]);
      const Tensor& want_data = G(key + ".data");
      REQUIRE(want_data.dtype() == cfg.dt);
      for (std::int64_t i = 0; i < want_data.numel(); ++i) {
        const std::uint8_t a = f8.data.data<std::uint8_t>()[i], b = want_data.data<std::uint8_t>()[i];
        const bool both_nan = std::isnan(f8.data.item(i)) && std::isnan(want_data.item(i));
        data_mismatch += (a != b && !both_nan);
      }
      CHECK(scale_mismatch == 0);
      CHECK(data_mismatch == 0);
      // The fused quantize-dequantize the GEMMs use equals casting then dequantizing, bit for bit.
      const Tensor fused = fake_quantize(x, cfg.dt, cfg.g, cfg.dim, cfg.pow2), twostep = f8.dequantize();
      int fused_mismatch = 0;
      for (std::int64_t i = 0; i < fused.numel(); ++i) fused_mismatch += !same_bits(fused.data<float>()[i], twostep.data<float>()[i]);
      CHECK(fused_mismatch == 0);
    }
  }
}

TEST_CASE("Float8Linear: output and gradients match torchao's emulation for every recipe") {
  const Tensor &x = G("linear.x"), &w = G("linear.w"), &gy = G("linear.gy");
  for (const char* recipe : {"tensorwise", "rowwise", "rowwise_with_gw_hp"}) {
    INFO(recipe);
    autograd::Variable xv(x.clone(), true), wv(w.clone(), true);
    autograd::Variable y = float8_linear(xv, wv, recipe_from_name(recipe));
    y.backward(gy);
    auto rel = [](const Tensor& a, const Tensor& b) {
      double diff = 0, scale = 0;
      for (std::int64_t i = 0; i < b.numel(); ++i) {
        diff = std::max(diff, std::abs(a.item(i) - b.item(i)));
        scale = std::max(scale, std::abs(b.item(i)));
      }
      return diff / scale;
    };
    const std::string k = std::string("linear.") + recipe;
    CHECK(rel(y.data(), G(k + ".y")) < 1e-6);  // f32 GEMM rounding only: the float8 operands are identical
    CHECK(rel(xv.grad(), G(k + ".gx")) < 1e-6);
    CHECK(rel(wv.grad(), G(k + ".gw")) < 1e-6);
  }
}

TEST_CASE("float8 SQNR: output and gradients above 20 dB on a Llama3-70B-shaped FFN slice") {
  // 70B: dim 8192, ffn hidden 28672; scaled down by 64 in each dim, keeping the 3.5 aspect ratio.
  const std::int64_t M = 96, K = 128, N = 448;
  Tensor x = randn({M, K}, 1), w = randn({N, K}, 2, 0.02), gy = randn({M, N}, 3, 0.1);
  autograd::Variable xr(x.clone(), true), wr(w.clone(), true);
  autograd::Variable yr = autograd::linear(xr, wr);
  yr.backward(gy);
  for (const char* recipe : {"tensorwise", "rowwise", "rowwise_with_gw_hp"}) {
    INFO(recipe);
    autograd::Variable xv(x.clone(), true), wv(w.clone(), true);
    autograd::Variable y = float8_linear(xv, wv, recipe_from_name(recipe));
    y.backward(gy);
    CHECK(sqnr(yr.data(), y.data()) > 20);
    CHECK(sqnr(xr.grad(), xv.grad()) > 20);
    CHECK(sqnr(wr.grad(), wv.grad()) > 20);
  }
}

TEST_CASE("float8 converter: size, name and auto filters, and the swap keeps the weights") {
  llama3::ModelArgs a = *llama3::find_flavor("debugmodel");
  a.max_seq_len = 16;
  a.vocab_size = 2040;  // output.weight [2040, 256]: not divisible by 16... 2040 = 16 * 127.5
  llama3::Transformer model(a);
  llama3::init_weights(model, 1);
  auto plan = plan_float8(model, {"wk"}, "tensorwise");
  int converted = 0;
  for (const auto& d : plan) {
    if (d.fqn == "output") CHECK(d.reason == "not divisible by 16");
    if (d.fqn == "layers.0.attention.wk") CHECK(d.reason == "filtered by name ('wk')");
    if (d.fqn == "layers.0.attention.wq") CHECK(d.reason == "converted");
    converted += d.convert;
  }
  CHECK(plan.size() == 6 * 7 + 1);
  CHECK(converted == 6 * 6);
  // auto_filter_small_kn: every debug-model GEMM is far below the H100 break-even sizes.
  for (const auto& d : plan_float8(model, {"auto_filter_small_kn"}, "tensorwise"))
    if (d.fqn != "output") CHECK(d.reason.rfind("auto-filtered", 0) == 0);
  CHECK_THROWS_AS(plan_float8(model, {"auto_filter_small_kn"}, "rowwise_with_gw_hp"), UserError);
  CHECK_THROWS_AS(recipe_from_name("blockwise"), UserError);

  const Tensor wq_before = model.named_parameters()[1].second->data();
  auto fqns_before = model.named_parameters();
  convert_to_float8(model, {"wk"}, "rowwise");
  auto* attn = &static_cast<llama3::TransformerBlock*>(model.layers.named_children()[0].second)->attention;
  CHECK(attn->named_children()[0].second->type_name() == "Float8Linear");  // wq
  CHECK(attn->named_children()[1].second->type_name() == "Linear");        // wk, filtered
  auto fqns_after = model.named_parameters();
  REQUIRE(fqns_after.size() == fqns_before.size());
  for (size_t i = 0; i < fqns_after.size(); ++i) CHECK(fqns_after[i].first == fqns_before[i].first);
  CHECK(model.named_parameters()[1].second->data().storage() == wq_before.storage());
  // The converted model still trains: a forward + backward reaches every weight.
  Tensor tokens = Tensor::from_vector(std::vector<double>(16, 5.0), {1, 16}, DType::i64);
  autograd::cross_entropy(model.forward_tokens(tokens), Tensor::from_vector(std::vector<double>(16, 3.0), {16}, DType::i64)).backward();
  for (auto& [fqn, p] : model.named_parameters()) CHECK(p->grad().defined());
}

TEST_CASE("delayed scaling: the first step is dynamic, later scales come from the amax history") {
  Tensor w = randn({32, 48}, 11, 0.2), x1 = randn({5, 48}, 12, 1.0), x2 = randn({5, 48}, 13, 4.0);
  Recipe delayed = recipe_from_name("delayed", 3);
  auto state = std::make_shared<DelayedScaling>(3);
  autograd::Variable wv(w.clone(), true);
  // Step 1: no history yet, so the casts are the tensorwise recipe's.
  autograd::Variable y1 = float8_linear(autograd::Variable(x1.clone()), wv, delayed, state);
  autograd::Variable y1_tw = float8_linear(autograd::Variable(x1.clone()), wv, recipe_from_name("tensorwise"));
  for (std::int64_t i = 0; i < y1.data().numel(); ++i) CHECK(y1.data().item(i) == y1_tw.data().item(i));
  // The step ends: x1's amax joins the input history.
  // (sync_amax_histories does this for a whole model; see the next test.)
  const float amax1 = amax(x1, Granularity::tensorwise, 0).item(0);
  state->history[DelayedScaling::input].push_back(state->pending[DelayedScaling::input]);
  state->history[DelayedScaling::weight].push_back(state->pending[DelayedScaling::weight]);
  state->seen = {false, false, false};
  CHECK(state->history[DelayedScaling::input].back() == amax1);
  // Step 2: x2 (4x larger) is cast with the scale from x1's amax, so it saturates.
  autograd::Variable y2 = float8_linear(autograd::Variable(x2.clone()), wv, delayed, state);
  const float scale1 = amax_to_scale(Tensor::full({1}, amax1), DType::f8e4m3, false).item(0);
  const Tensor x2q = cast_to_float8_with_scale(x2, DType::f8e4m3, scale1).dequantize();
  const Tensor wq = cast_to_float8(w, DType::f8e4m3, Granularity::tensorwise, 0, false).dequantize();
  const Tensor want = ops::linear(x2q, wq);
  for (std::int64_t i = 0; i < want.numel(); ++i) CHECK(y2.data().item(i) == Approx(want.item(i)).epsilon(1e-6));
  CHECK(state->pending[DelayedScaling::input] == amax(x2, Granularity::tensorwise, 0).item(0));
}

TEST_CASE("delayed scaling in a model: one sync per step fills bounded histories") {
  llama3::ModelArgs a = *llama3::find_flavor("debugmodel");
  a.n_layers = 1;
  a.max_seq_len = 8;
  llama3::Transformer model(a);
  llama3::init_weights(model, 2);
  convert_to_float8(model, {"output"}, "delayed", 2);
  Tensor tokens = Tensor::from_vector(std::vector<double>(8, 7.0), {1, 8}, DType::i64);
  Tensor targets = Tensor::from_vector(std::vector<double>(8, 9.0), {8}, DType::i64);
  int calls = 0;
  for (int step = 0; step < 4; ++step) {
    autograd::cross_entropy(model.forward_tokens(tokens), targets).backward();
    sync_amax_histories(model, [&](std::vector<float>& v) {
      ++calls;
      CHECK(v.size() == 7 * 3);  // 7 converted layers x (input, weight, grad_output)
    });
  }
  CHECK(calls == 4);
  for (auto& [fqn, m] : model.named_modules())
    if (auto* f8 = dynamic_cast<Float8Linear*>(m)) {
      INFO(fqn);
      for (int r = 0; r < 3; ++r) CHECK(f8->delayed_state()->history[r].size() == 2);
    }
}
