#include "float8/float8_linear.hpp"

#include <bit>
#include <cmath>

#include "core/errors.hpp"
#include "ops/ops.hpp"

namespace titan::float8 {

namespace {

// An operand of a GEMM, cast per `cfg` along the given reduce dim (or with its delayed scale),
// or left in high precision; returned dequantized (float32), which the emulated GEMM multiplies.
Tensor gemm_operand(const Tensor& x2d, const CastConfig& cfg, int reduce_dim, bool pow2, DelayedScaling* delayed,
                    DelayedScaling::Role role, const std::optional<float>& fixed_scale = std::nullopt) {
  if (!cfg.enabled) return x2d;
  if (fixed_scale) return fake_quantize(x2d, cfg.dtype, Granularity::tensorwise, 0, false, &*fixed_scale);
  if (delayed) {
    float current = 0;
    Tensor q;
    if (delayed->history[role].empty()) {  // first step: no history yet, scale dynamically
      current = amax(x2d, Granularity::tensorwise, 0).item(0);
      const float scale = amax_to_scale(Tensor::full({1}, current), cfg.dtype, false).item(0);
      q = fake_quantize(x2d, cfg.dtype, Granularity::tensorwise, 0, false, &scale);
    } else {  // one pass: cast with the history's scale and measure this tensor's amax
      const float scale = delayed->scale(role, cfg.dtype);
      q = fake_quantize(x2d, cfg.dtype, Granularity::tensorwise, 0, false, &scale, &current);
    }
    delayed->record(role, current);
    return q;
  }
  return fake_quantize(x2d, cfg.dtype, cfg.granularity, reduce_dim, pow2);
}

Tensor as_2d(const Tensor& t) { return t.view({t.numel() / t.size(-1), t.size(-1)}); }

}  // namespace

float DelayedScaling::scale(Role r, DType f8) const {
  if (history[r].empty()) return 1.0f;  // unused: the first step scales dynamically
  float from = history[r].front();
  for (float h : history[r]) from = (std::isnan(h) || std::isnan(from)) ? NAN : std::max(from, h);
  return amax_to_scale(Tensor::full({1}, from), f8, false).item(0);
}

void DelayedScaling::record(Role r, float current) {
  pending[r] = seen[r] ? (std::isnan(current) || std::isnan(pending[r]) ? NAN : std::max(pending[r], current)) : current;
  seen[r] = true;
}

Float8Linear::Float8Linear(std::int64_t in_features, std::int64_t out_features, Recipe recipe)
    : nn::Linear(in_features, out_features), recipe_(std::move(recipe)) {
  if (recipe_.delayed) delayed_ = std::make_shared<DelayedScaling>(recipe_.amax_history_len);
}

void sync_amax_histories(nn::Module& root, const std::function<void(std::vector<float>&)>& allreduce_max) {
  std::vector<DelayedScaling*> states;
  for (auto& [fqn, m] : root.named_modules())
    if (auto* f8 = dynamic_cast<Float8Linear*>(m); f8 && f8->delayed_state()) states.push_back(f8->delayed_state().get());
  if (states.empty()) return;
  std::vector<float> amaxes;
  for (auto* s : states)
    for (int r = 0; r < 3; ++r) amaxes.push_back(s->seen[r] ? s->pending[r] : 0.0f);
  allreduce_max(amaxes);
  size_t i = 0;
  for (auto* s : states)
    for (int r = 0; r < 3; ++r, ++i) {
      if (!s->seen[r]) continue;
      s->history[r].push_back(amaxes[i]);
      while (static_cast<int>(s->history[r].size()) > s->length) s->history[r].pop_front();
      s->seen[r] = false;
    }
}

nlohmann::json delayed_scaling_state(nn::Module& root) {
  nlohmann::json out = nlohmann::json::object();
  for (auto& [fqn, m] : root.named_modules())
    if (auto* f8 = dynamic_cast<Float8Linear*>(m); f8 && f8->delayed_state()) {
      nlohmann::json roles = nlohmann::json::array();
      for (const auto& history : f8->delayed_state()->history) {
        nlohmann::json bits = nlohmann::json::array();
        for (float v : history) bits.push_back(std::bit_cast<std::uint32_t>(v));  // exact, NaN included
        roles.push_back(bits);
      }
      out[fqn] = roles;
    }
  return out;
}

void load_delayed_scaling_state(nn::Module& root, const nlohmann::json& state) {
  for (auto& [fqn, m] : root.named_modules()) {
    auto* f8 = dynamic_cast<Float8Linear*>(m);
    if (!f8 || !f8->delayed_state() || !state.contains(fqn)) continue;
    DelayedScaling& ds = *f8->delayed_state();
    for (size_t r = 0; r < ds.history.size() && r < state[fqn].size(); ++r) {
      ds.history[r].clear();
      for (const auto& bits : state[fqn][r]) ds.history[r].push_back(std::bit_cast<float>(bits.get<std::uint32_t>()));
    }
  }
}

autograd::Variable float8_linear(const autograd::Variable& x, const autograd::Variable& w, const Recipe& r,
                                 std::shared_ptr<DelayedScaling> delayed, std::optional<float> weight_scale) {
  // On the GPU, bf16 mixed precision hands over real bf16 tensors; the emulation runs on their
  // (exact) f32 values and returns results in the caller's dtype.
  const DType x_dtype = x.data().dtype(), w_dtype = w.data().dtype();
  auto f32_of = [](const Tensor& t) { return t.dtype() == DType::bf16 && !t.device().is_cpu() ? t.to(DType::f32) : t; };
  const Tensor xd = f32_of(x.data()), wd = f32_of(w.data());
  if (xd.dtype() != DType::f32 || wd.dtype() != DType::f32)
    throw std::invalid_argument("Float8Linear: expects float32 input and weight");
  if (r.delayed && !delayed) throw std::invalid_argument("Float8Linear: the delayed recipe needs its amax state");
  if (weight_scale && (r.delayed || r.weight.granularity != Granularity::tensorwise))
    throw std::invalid_argument("Float8Linear: a precast weight scale needs the tensorwise recipe");
  const bool pow2 = r.round_scales_to_power_of_2;
  using Role = DelayedScaling::Role;
  DelayedScaling* ds = delayed.get();
  // Output GEMM: x [M, K] scaled along K (per row), W [N, K] scaled along K (per row of W).
  const Tensor x8 = gemm_operand(as_2d(xd), r.input, -1, pow2, ds, Role::input);
  const Tensor w8 = gemm_operand(wd, r.weight, -1, pow2, ds, Role::weight, weight_scale);
  Tensor y = ops::linear(x8, w8);
  Shape out_shape = xd.shape();
  out_shape.back() = wd.size(0);
  const bool need_w = w.requires_grad();
  if (x_dtype != DType::f32) y = y.to(x_dtype);
  return autograd::record1("Float8Linear(" + r.name + ")", {x, w}, y.view(out_shape),
                           [xd, wd, r, pow2, need_w, delayed, weight_scale, x_dtype, w_dtype](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                             DelayedScaling* ds = delayed.get();
                             const Tensor gy = as_2d(g[0].dtype() == DType::f32 ? g[0] : g[0].to(DType::f32));
                             // dx = dy W: dy [M, N] scaled along N (per row), W [N, K] along N (per column).
                             const Tensor gy8 = gemm_operand(gy, r.grad_output, -1, pow2, ds, Role::grad_output);
                             const Tensor wt8 = gemm_operand(wd, r.weight_for_grad_input, 0, pow2, ds, Role::weight, weight_scale);
                             Tensor gx = ops::linear_backward_input(gy8, wt8).view(xd.shape());
                             Tensor gw;
                             if (need_w) {
                               // dW = dy^T x: both scaled along M (per column).
                               const Tensor gy_w = gemm_operand(gy, r.grad_output_for_grad_weight, 0, pow2, ds, Role::grad_output);
                               const Tensor x_w = gemm_operand(as_2d(xd), r.input_for_grad_weight, 0, pow2, ds, Role::input);
                               gw = Tensor::empty(wd.shape(), DType::f32, wd.device());
                               ops::linear_backward_weight(gy_w, x_w, gw, false);
                               if (w_dtype != DType::f32) gw = gw.to(w_dtype);
                             }
                             if (x_dtype != DType::f32) gx = gx.to(x_dtype);
                             return {gx, gw};
                           });
}

std::vector<autograd::Variable> Float8Linear::forward(const std::vector<autograd::Variable>& in) {
  return {float8_linear(in[0], autograd::compute_weight(weight), recipe_, delayed_, precast_weight_scale_)};
}

std::vector<LinearDecision> plan_float8(nn::Module& root, const std::vector<std::string>& filter_fqns,
                                        const std::string& recipe_name) {
  bool auto_filter = false;
  std::vector<std::string> names;
  for (const auto& f : filter_fqns) {
    if (f == "auto_filter_small_kn") auto_filter = true;
    else names.push_back(f);
  }
  if (auto_filter && recipe_name == "rowwise_with_gw_hp")
    throw UserError("quantize.linear.float8.filter_fqns: auto_filter_small_kn has no thresholds for the "
                    "rowwise_with_gw_hp recipe (as in torchao); remove it or list the layers to skip by name");
  std::vector<LinearDecision> out;
  for (auto& [fqn, m] : root.named_modules()) {
    auto* lin = dynamic_cast<nn::Linear*>(m);
    if (!lin) continue;
    LinearDecision d{fqn, lin->out_features(), lin->in_features(), false, ""};
    const std::int64_t N = d.out_features, K = d.in_features;
    std::string matched;
    for (const auto& n : names)
      if (fqn.find(n) != std::string::npos) {
        matched = n;
        break;
      }
    if (N % 16 != 0 || K % 16 != 0) {
      d.reason = "not divisible by 16";
    } else if (!matched.empty()) {
      d.reason = "filtered by name ('" + matched + "')";
    } else if (auto_filter && ((recipe_name == "rowwise" && (N <= 2048 || K <= 1024 || (N <= 4096 && K <= 2048))) ||
                               (recipe_name != "rowwise" && K <= 4096 && N <= 1024))) {
      d.reason = "auto-filtered: too small to gain from float8 on H100";
    } else {
      d.convert = true;
      d.reason = "converted";
    }
    out.push_back(d);
  }
  return out;
}

std::vector<LinearDecision> convert_to_float8(nn::Module& root, const std::vector<std::string>& filter_fqns,
                                              const std::string& recipe_name, int amax_history_len) {
  const Recipe recipe = recipe_from_name(recipe_name, amax_history_len);
  auto decisions = plan_float8(root, filter_fqns, recipe_name);
  // Find each chosen Linear's parent and swap it, keeping the weight variable (and so its FQN).
  for (const auto& d : decisions) {
    if (!d.convert) continue;
    const size_t dot = d.fqn.rfind('.');
    const std::string parent_fqn = dot == std::string::npos ? "" : d.fqn.substr(0, dot);
    const std::string child = dot == std::string::npos ? d.fqn : d.fqn.substr(dot + 1);
    for (auto& [fqn, m] : root.named_modules()) {
      if (fqn != parent_fqn) continue;
      nn::Module* old_child = nullptr;
      for (auto& [name, c] : m->named_children())
        if (name == child) old_child = c;
      auto* old_linear = static_cast<nn::Linear*>(old_child);
      auto fresh = std::make_unique<Float8Linear>(old_linear->in_features(), old_linear->out_features(), recipe);
      fresh->weight = old_linear->weight;  // same Variable handle: same tensor, same leaf
      m->replace_child(child, std::move(fresh));
      break;
    }
  }
  return decisions;
}

}  // namespace titan::float8
