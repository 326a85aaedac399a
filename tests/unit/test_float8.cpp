// Float8 numerics against the real torchao in emulate mode (tests/golden/float8.safetensors and
// float8_gemms.safetensors, made by scripts/reference/make_float8_golden.py), SQNR bounds, and the
// converter's decisions.
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
      // The transposed copy the backward GEMMs take holds the same bytes, transposed.
      const ops::Float8Cast both = ops::cast_to_float8(x, cfg.dt, scale_axis(cfg.g, cfg.dim), cfg.pow2, ops::Float8Layout::both);
      const std::int64_t R = x.size(0), C = x.size(1);
      int transposed_mismatch = 0;
      for (std::int64_t r = 0; r < R; ++r)
        for (std::int64_t c = 0; c < C; ++c)
          transposed_mismatch += both.data_t.data<std::uint8_t>()[c * R + r] != f8.data.data<std::uint8_t>()[r * C + c];
      CHECK(transposed_mismatch == 0);
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
  llama3::ModelArgs a = *llama3::find_flavor("llama3", "debugmodel");
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
  CHECK_FALSE(state->seen(DelayedScaling::grad_output));  // no backward ran
  state->push(DelayedScaling::input, state->pending_amax(DelayedScaling::input));
  state->push(DelayedScaling::weight, state->pending_amax(DelayedScaling::weight));
  CHECK_FALSE(state->seen(DelayedScaling::input));
  CHECK(state->history(DelayedScaling::input) == std::vector<float>{amax1});
  // Step 2: x2 (4x larger) is cast with the scale from x1's amax, so it saturates.
  autograd::Variable y2 = float8_linear(autograd::Variable(x2.clone()), wv, delayed, state);
  const float scale1 = amax_to_scale(Tensor::full({1}, amax1), DType::f8e4m3, false).item(0);
  const Tensor x2q = cast_to_float8_with_scale(x2, DType::f8e4m3, scale1).dequantize();
  const Tensor wq = cast_to_float8(w, DType::f8e4m3, Granularity::tensorwise, 0, false).dequantize();
  const Tensor want = ops::linear(x2q, wq);
  for (std::int64_t i = 0; i < want.numel(); ++i) CHECK(y2.data().item(i) == Approx(want.item(i)).epsilon(1e-6));
  CHECK(state->pending_amax(DelayedScaling::input).item(0) == amax(x2, Granularity::tensorwise, 0).item(0));
}

TEST_CASE("delayed scaling's history is a ring on the device: oldest first, bounded, NaN kept, checkpoint round trip") {
  DelayedScaling s(3);
  const auto in = DelayedScaling::input;
  CHECK(s.entries(in) == 0);
  CHECK(s.history(in).empty());
  CHECK_THROWS_WITH(s.scale(in, DType::f8e4m3), Catch::Contains("before the first amax sync"));
  CHECK_THROWS_WITH(s.pending_amax(in), Catch::Contains("no amax recorded"));
  for (float a : {2.0f, 8.0f, 1.0f, 4.0f, 0.5f}) s.push(in, Tensor::full({1}, a));
  CHECK(s.entries(in) == 3);
  CHECK(s.history(in) == std::vector<float>{1.0f, 4.0f, 0.5f});  // 2 and 8 have left the window
  CHECK(s.scale(in, DType::f8e4m3).item(0) == amax_to_scale(Tensor::full({1}, 4.0), DType::f8e4m3, false).item(0));
  CHECK(s.history(DelayedScaling::weight).empty());  // roles are separate rows
  s.push(in, Tensor::full({1}, NAN));
  CHECK(std::isnan(s.scale(in, DType::f8e4m3).item(0)));  // torch.max propagates NaN
  // A checkpoint's list (longer than the window: its newest entries are kept) restores the ring.
  DelayedScaling t(3);
  t.set_history(in, {9.0f, 3.0f, 2.0f, 1.0f});
  CHECK(t.history(in) == std::vector<float>{3.0f, 2.0f, 1.0f});
  t.push(in, Tensor::full({1}, 0.25f));
  CHECK(t.history(in) == std::vector<float>{2.0f, 1.0f, 0.25f});
  CHECK_THROWS_WITH(DelayedScaling(0), Catch::Contains("amax_history_len must be >= 1"));
}

TEST_CASE("delayed scaling in a model: one sync per step fills bounded histories") {
  llama3::ModelArgs a = *llama3::find_flavor("llama3", "debugmodel");
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
    sync_amax_histories(model, [&](const Tensor& v) {
      ++calls;
      CHECK(v.numel() == 7 * 3);  // 7 converted layers x (input, weight, grad_output)
    });
  }
  CHECK(calls == 4);
  for (auto& [fqn, m] : model.named_modules())
    if (auto* f8 = dynamic_cast<Float8Linear*>(m)) {
      INFO(fqn);
      for (int r = 0; r < 3; ++r) CHECK(f8->delayed_state()->history(DelayedScaling::Role(r)).size() == 2);
    }
}

// ---- scaled_mm against torchao's emulated GEMMs (tests/golden/float8_gemms.safetensors) ----
// The golden file holds, per recipe and GEMM, the float8 operands torchao's emulate mode really
// multiplied (captured at its float8 mm, in scaled_mm's layout) and its outputs, for a "general"
// case and an "exact" one whose dequantized products and partial sums are all float32 values
// (power-of-2 scales, values with few mantissa bits in a narrow range; the generator checks it),
// where any summation order gives the same bits.

namespace {
const checkpoint::SafetensorsFile& gemm_golden() {
  static const auto f = checkpoint::read_safetensors(std::string(TITAN_SOURCE_DIR) + "/tests/golden/float8_gemms.safetensors");
  return f;
}
const Tensor& GG(const std::string& name) { return gemm_golden().tensors.at(name); }
bool in_golden(const std::string& name) { return gemm_golden().tensors.count(name) != 0; }

const char* const kRecipes[] = {"tensorwise", "rowwise", "rowwise_with_gw_hp"};
const char* const kCases[] = {"general", "exact"};

Tensor as_2d(const Tensor& t) { return t.view({t.numel() / t.size(-1), t.size(-1)}); }

// Elements whose bits differ (float32: NaNs equal; float8: the bytes).
int bit_mismatches(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return -1;
  int n = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    n += a.dtype() == DType::f32 ? !same_bits(a.data<float>()[i], b.data<float>()[i])
                                 : a.data<std::uint8_t>()[i] != b.data<std::uint8_t>()[i];
  return n;
}

// Float8Linear's (a, b) operands of `gemm` for the golden inputs of `c`.
std::pair<Float8Operand, Float8Operand> our_operands(const std::string& c, const std::string& gemm, const Recipe& r) {
  const Tensor x2d = as_2d(GG("gemm." + c + ".x")), w = GG("gemm." + c + ".w"), gy2d = as_2d(GG("gemm." + c + ".gy"));
  if (gemm == "output") return output_gemm_operands(x2d, w, r);
  if (gemm == "grad_input") return grad_input_gemm_operands(gy2d, w, r);
  return grad_weight_gemm_operands(gy2d, x2d, r);
}

// torchao's result of `gemm` (its output or gradient) as the GEMM's [rows, cols].
Tensor torchao_result(const std::string& key, const std::string& gemm) {
  return as_2d(GG(key + (gemm == "output" ? ".y" : gemm == "grad_input" ? ".gx" : ".gw")));
}

// max over elements of |got - want| / (2 K 2^-24 sum_k |a_k b_k|): two float32 dot products of
// length K differ by at most that much (each is within K u sum|a b| of the exact value).
double rounding_ratio(const Tensor& got, const Tensor& want, const Tensor& a, const Tensor& sa, const Tensor& b,
                      const Tensor& sb) {
  const Tensor da = ops::dequantize(a, sa, sa.numel() == 1 ? ops::ScaleAxis::tensor : ops::ScaleAxis::per_row);
  const Tensor db = ops::dequantize(b, sb, sb.numel() == 1 ? ops::ScaleAxis::tensor : ops::ScaleAxis::per_row);
  const std::int64_t M = a.size(0), N = b.size(0), K = a.size(1);
  double worst = 0;
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      double mag = 0;
      for (std::int64_t k = 0; k < K; ++k) mag += std::abs(double(da.data<float>()[m * K + k]) * double(db.data<float>()[n * K + k]));
      const double diff = std::abs(double(got.data<float>()[m * N + n]) - double(want.data<float>()[m * N + n]));
      worst = std::max(worst, mag == 0 ? (diff == 0 ? 0.0 : INFINITY) : diff / (2.0 * double(K) * 0x1p-24 * mag));
    }
  return worst;
}
}  // namespace

TEST_CASE("Float8Linear hands scaled_mm torchao's float8 operands, bit for bit, in every GEMM of every recipe") {
  int gemms = 0;
  for (const std::string c : kCases)
    for (const std::string recipe : kRecipes) {
      const Recipe r = recipe_from_name(recipe);
      for (const std::string gemm : {"output", "grad_input", "grad_weight"}) {
        const std::string key = "gemm." + c + "." + recipe + "." + gemm;
        INFO(key);
        if (gemm == "grad_weight" && recipe == "rowwise_with_gw_hp") {  // torchao: high precision, no float8 GEMM
          CHECK_FALSE(in_golden(key + ".a"));
          CHECK_FALSE(r.input_for_grad_weight.enabled);
          continue;
        }
        const auto [a, b] = our_operands(c, gemm, r);
        CHECK(bit_mismatches(a.data, GG(key + ".a")) == 0);
        CHECK(bit_mismatches(a.scale, GG(key + ".sa")) == 0);
        CHECK(bit_mismatches(b.data, GG(key + ".b")) == 0);
        CHECK(bit_mismatches(b.scale, GG(key + ".sb")) == 0);
        ++gemms;
      }
    }
  CHECK(gemms == 2 * 8);
}

TEST_CASE("CPU scaled_mm on torchao's operands equals torchao's emulated GEMMs: bit for bit where order cannot matter") {
  for (const std::string c : kCases)
    for (const std::string recipe : kRecipes)
      for (const std::string gemm : {"output", "grad_input", "grad_weight"}) {
        const std::string key = "gemm." + c + "." + recipe, op = key + "." + gemm;
        if (!in_golden(op + ".a")) continue;
        INFO(op);
        const Tensor &a = GG(op + ".a"), &sa = GG(op + ".sa"), &b = GG(op + ".b"), &sb = GG(op + ".sb");
        const Tensor got = ops::scaled_mm(a, sa, b, sb, DType::f32, gemm == "output");
        const Tensor want = torchao_result(key, gemm);
        if (c == "exact") CHECK(bit_mismatches(got, want) == 0);
        else CHECK(rounding_ratio(got, want, a, sa, b, sb) <= 1.0);
      }
}

TEST_CASE("Float8Linear end to end: torchao's output and gradients bit for bit on the exact case, every recipe") {
  for (const std::string c : kCases)
    for (const std::string recipe : kRecipes) {
      const std::string key = "gemm." + c + "." + recipe;
      INFO(key);
      autograd::Variable xv(GG("gemm." + c + ".x").clone(), true), wv(GG("gemm." + c + ".w").clone(), true);
      autograd::Variable y = float8_linear(xv, wv, recipe_from_name(recipe));
      y.backward(GG("gemm." + c + ".gy"));
      if (c == "exact") {  // rowwise_with_gw_hp's high-precision dW included: its f32 GEMM is exact too
        CHECK(bit_mismatches(y.data(), GG(key + ".y")) == 0);
        CHECK(bit_mismatches(xv.grad(), GG(key + ".gx")) == 0);
        CHECK(bit_mismatches(wv.grad(), GG(key + ".gw")) == 0);
      } else {  // the same float8 operands (above); the f32 GEMMs round in their own order
        for (auto [got, want] : {std::pair{y.data(), GG(key + ".y")}, {xv.grad(), GG(key + ".gx")}, {wv.grad(), GG(key + ".gw")}}) {
          double diff = 0, scale = 0;
          for (std::int64_t i = 0; i < want.numel(); ++i) {
            diff = std::max(diff, std::abs(got.item(i) - want.item(i)));
            scale = std::max(scale, std::abs(want.item(i)));
          }
          CHECK(diff / scale < 1e-6);
        }
      }
    }
}

TEST_CASE("quantize.linear.float8.emulate reaches every Float8Linear; on the CPU it changes nothing") {
  llama3::ModelArgs a = *llama3::find_flavor("llama3", "debugmodel");
  a.n_layers = 1;
  a.max_seq_len = 8;
  Tensor tokens = Tensor::from_vector(std::vector<double>(8, 7.0), {1, 8}, DType::i64);
  std::vector<double> logits[2];
  for (bool emulate : {false, true}) {
    llama3::Transformer model(a);
    llama3::init_weights(model, 3);
    convert_to_float8(model, {"output"}, "rowwise", 16, emulate);
    int layers = 0;
    for (auto& [fqn, m] : model.named_modules())
      if (auto* f8 = dynamic_cast<Float8Linear*>(m)) {
        CHECK(f8->recipe().emulate == emulate);
        ++layers;
      }
    CHECK(layers == 7);
    logits[emulate] = model.forward_tokens(tokens).data().to_vector();
  }
  CHECK(logits[0] == logits[1]);  // the CPU always runs the emulation
  CHECK(recipe_from_name("tensorwise").emulate == false);
  CHECK(recipe_from_name("tensorwise", 16, true).emulate);
}

TEST_CASE("FSDP's gathered e4m3 weight: the grad_input GEMM takes its byte transpose, as dequantize + recast gave") {
  // The gathered weight is e4m3 bytes [N, K] with the shard group's tensorwise scale. The scale
  // here comes from an amax below the weight's, so some bytes saturate; -0, a value under the
  // smallest subnormal and NaN are set too. Shapes are not multiples of the 64-byte blocks.
  const Recipe r = recipe_from_name("tensorwise");
  std::uint64_t seed = 40;
  for (const Shape& shape : {Shape{16, 16}, Shape{48, 80}, Shape{112, 208}}) {
    INFO(shape_str(shape));
    const Tensor w = randn(shape, ++seed, 0.3);
    w.set(0, 5.0);
    w.set(1, -0.0);
    w.set(2, 1e-30);
    w.set(3, NAN);
    const float scale = amax_to_scale(Tensor::full({1}, 0.5), DType::f8e4m3, false).item(0);
    const Tensor s = Tensor::full({1}, scale);
    const Tensor w8 = ops::cast_to_float8(w, DType::f8e4m3, s, ops::ScaleAxis::tensor).data;
    const Tensor gy = randn({7, shape[0]}, ++seed);
    const auto [gy8, wt8] = grad_input_gemm_operands(gy, w8, r, nullptr, s);
    // What precast_weight_operand did before: float32 values, recast with the same scale, transposed.
    const Tensor before = ops::cast_to_float8(ops::dequantize(w8, s, ops::ScaleAxis::tensor), DType::f8e4m3, s,
                                              ops::ScaleAxis::tensor, ops::Float8Layout::transposed)
                              .data_t;
    REQUIRE(wt8.data.shape() == before.shape());
    REQUIRE(wt8.data.dtype() == DType::f8e4m3);
    CHECK(bit_mismatches(wt8.data, before) == 0);
    CHECK(same_bits(wt8.scale.item(0), scale));
    // The high-precision weight cast with that scale (a gather in f32) gives the same operand.
    CHECK(bit_mismatches(grad_input_gemm_operands(gy, w, r, nullptr, s).second.data, before) == 0);
    // The output GEMM takes the gathered bytes themselves.
    CHECK(output_gemm_operands(randn({3, shape[1]}, ++seed), w8, r, nullptr, s).second.data.raw() == w8.raw());
  }
}
