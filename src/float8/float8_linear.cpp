#include "float8/float8_linear.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <string>

#include "core/errors.hpp"
#include "ops/ops.hpp"

namespace titan::float8 {

namespace {

using ops::ScaleAxis;
using Role = DelayedScaling::Role;

Tensor as_2d(const Tensor& t) { return t.view({t.numel() / t.size(-1), t.size(-1)}); }

// A scale where its GEMM runs (an offloaded shard's scale is made on the host): queued copy, no wait.
Tensor scale_on(const Tensor& scale, Device device) { return scale.device() == device ? scale : scale.to(device); }

// x2d [R, C] cast per `cfg` for a GEMM that contracts it over its columns (`over_cols`: scaled_mm
// takes it as it is) or over its rows (scaled_mm takes the transposed copy [C, R]); axiswise
// scales run along that contraction dim. The scale is dynamic, the delayed one (from the amax
// history; the first step's from the current amax, MAX-reduced across the data-parallel ranks when
// the layer has that reduction), or `fixed_scale` (tensorwise) when given.
Float8Operand cast_operand(const Tensor& x2d, const CastConfig& cfg, bool over_cols, bool pow2, DelayedScaling* delayed,
                           Role role, const Tensor& fixed_scale = Tensor(),
                           const std::function<void(const Tensor&)>* amax_over_group = nullptr) {
  const auto layout = over_cols ? ops::Float8Layout::row_major : ops::Float8Layout::transposed;
  ops::Float8Cast c;
  if (fixed_scale.defined()) {
    c = ops::cast_to_float8(x2d, cfg.dtype, scale_on(fixed_scale, x2d.device()), ScaleAxis::tensor, layout);
  } else if (delayed) {
    // Everything stays on x's device: the amax, the history's max and the scale (no host read).
    if (delayed->entries(role) == 0) {
      // torchao's amax initialisation: the global amax where there are several ranks. The
      // history records the local amax still; the end-of-step sync takes the MAX of those.
      const Tensor current = ops::amax(x2d, ScaleAxis::tensor);
      Tensor first = current;
      if (delayed->first_step_amax_max) {
        first = current.clone();
        delayed->first_step_amax_max(first);
      }
      c = ops::cast_to_float8(x2d, cfg.dtype, ops::amax_to_scale(first, cfg.dtype, false), ScaleAxis::tensor, layout);
      delayed->record(role, current);
    } else {
      // The scale comes from the history, so the cast measures this tensor's amax for it as it
      // reads x (one pass on CUDA, no separate amax).
      Tensor current;
      c = ops::cast_to_float8(x2d, cfg.dtype, scale_on(delayed->scale(role, cfg.dtype), x2d.device()), ScaleAxis::tensor,
                              layout, &current);
      delayed->record(role, current);
    }
  } else if (amax_over_group && *amax_over_group && cfg.granularity == Granularity::tensorwise) {
    // A part of a tensor split over a group (tensor parallel): the whole tensor's amax.
    Tensor amax = ops::amax(x2d, ScaleAxis::tensor);
    (*amax_over_group)(amax);
    c = ops::cast_to_float8(x2d, cfg.dtype, ops::amax_to_scale(amax, cfg.dtype, pow2), ScaleAxis::tensor, layout);
  } else {
    const ScaleAxis axis = cfg.granularity == Granularity::tensorwise ? ScaleAxis::tensor
                           : over_cols                               ? ScaleAxis::per_row
                                                                     : ScaleAxis::per_column;
    c = ops::cast_to_float8(x2d, cfg.dtype, axis, pow2, layout);
  }
  if (over_cols) return {c.data, c.scale};
  return {c.data_t, c.axis == ScaleAxis::per_column ? c.scale.view({x2d.size(1), 1}) : c.scale};
}

bool is_float8(DType dt) { return dt == DType::f8e4m3 || dt == DType::f8e5m2; }

// ---- FSDP's float8 all-gather (enable_fsdp_float8_all_gather) --------------------------------
// The gathered weight arrives as e4m3 bytes [N, K] with its tensorwise scale (the layer's
// set_precast_weight_scale, passed here as `weight_scale`). The output GEMM takes the bytes as
// they are; grad_input takes their byte transpose with the same scale (the values do not change,
// so it is exactly the dequantize + recast it replaces, without the float32 round trip). A
// high-precision weight is cast with that scale instead of its own amax.
Float8Operand precast_weight_operand(const Tensor& w, const Recipe& r, bool over_cols, const Tensor& weight_scale) {
  const CastConfig& cfg = over_cols ? r.weight : r.weight_for_grad_input;
  if (!is_float8(w.dtype())) return cast_operand(w, cfg, over_cols, false, nullptr, Role::weight, weight_scale);
  if (w.dtype() != cfg.dtype)
    throw std::invalid_argument("Float8Linear: a " + std::string(dtype_name(w.dtype())) + " weight does not fit the recipe's " +
                                std::string(dtype_name(cfg.dtype)) + " weight cast");
  const Tensor scale = scale_on(weight_scale, w.device());
  if (over_cols) return {w, scale};
  return {ops::transpose_float8(w), scale};
}

Float8Operand weight_operand(const Tensor& w, const Recipe& r, bool over_cols, DelayedScaling* delayed,
                             const Tensor& weight_scale) {
  if (weight_scale.defined()) return precast_weight_operand(w, r, over_cols, weight_scale);
  if (is_float8(w.dtype())) throw std::invalid_argument("Float8Linear: a float8 weight needs its scale");
  return cast_operand(w, over_cols ? r.weight : r.weight_for_grad_input, over_cols, r.round_scales_to_power_of_2, delayed,
                      Role::weight, Tensor(), &r.amax_over_group);
}

Tensor scaled_mm(const Float8Operand& a, const Float8Operand& b, DType out_dtype, bool fast_accum, const Recipe& r) {
  return ops::scaled_mm(a.data, a.scale, b.data, b.scale, out_dtype, fast_accum, r.emulate);
}

}  // namespace

std::pair<Float8Operand, Float8Operand> output_gemm_operands(const Tensor& x2d, const Tensor& w, const Recipe& r,
                                                             DelayedScaling* delayed, const Tensor& weight_scale) {
  return {cast_operand(x2d, r.input, true, r.round_scales_to_power_of_2, delayed, Role::input, Tensor(),
                       &r.amax_over_group),
          weight_operand(w, r, true, delayed, weight_scale)};
}

std::pair<Float8Operand, Float8Operand> grad_input_gemm_operands(const Tensor& gy2d, const Tensor& w, const Recipe& r,
                                                                 DelayedScaling* delayed, const Tensor& weight_scale,
                                                                 const Float8Operand* gy_cast) {
  return {gy_cast ? *gy_cast
                  : cast_operand(gy2d, r.grad_output, true, r.round_scales_to_power_of_2, delayed, Role::grad_output,
                                 Tensor(), &r.amax_over_group),
          weight_operand(w, r, false, delayed, weight_scale)};
}

std::pair<Float8Operand, Float8Operand> grad_weight_gemm_operands(const Tensor& gy2d, const Tensor& x2d, const Recipe& r,
                                                                  DelayedScaling* delayed, const Float8Operand* gy_cast,
                                                                  const Float8Operand* x_cast) {
  // A precast operand [M, C] is used transposed: a tensorwise cast along M makes the same bytes.
  return {gy_cast ? Float8Operand{ops::transpose_float8(gy_cast->data), gy_cast->scale}
                  : cast_operand(gy2d, r.grad_output_for_grad_weight, false, r.round_scales_to_power_of_2, delayed,
                                 Role::grad_output, Tensor(), &r.amax_over_group),
          x_cast ? Float8Operand{ops::transpose_float8(x_cast->data), x_cast->scale}
                 : cast_operand(x2d, r.input_for_grad_weight, false, r.round_scales_to_power_of_2, delayed, Role::input,
                                Tensor(), &r.amax_over_group)};
}

DelayedScaling::DelayedScaling(int length) : length_(length) {
  if (length < 1) throw std::invalid_argument("float8 delayed scaling: amax_history_len must be >= 1, got " + std::to_string(length));
}

void DelayedScaling::place_on(Device device) {
  if (!history_.defined()) {
    history_ = Tensor::zeros({3, length_}, DType::f32, device);
    pending_ = Tensor::zeros({3}, DType::f32, device);
    pushes_ = Tensor::zeros({3}, DType::i64, device);
  } else if (history_.device() != device) {
    history_ = history_.to(device);
    pending_ = pending_.to(device);
    pushes_ = pushes_.to(device);
  }
}

Tensor DelayedScaling::scale(Role r, DType f8) const {
  if (count_[r] == 0) throw std::logic_error("float8 delayed scaling: a scale before the first amax sync");
  if (!scale_[r].defined() || scale_[r].device() != history_.device()) {
    scale_[r] = Tensor::empty({1}, DType::f32, history_.device());
    scale_stale_[r] = true;
  }
  if (scale_stale_[r] || scale_dtype_[r] != f8) {
    scale_[r].copy_from(amax_to_scale(ops::amax(history_.slice_rows(r, r + 1), ScaleAxis::tensor), f8, false));
    scale_dtype_[r] = f8;
    scale_stale_[r] = false;
  }
  return scale_[r];
}

void DelayedScaling::record(Role r, const Tensor& amax) {
  // The latest cast's amax, as torchao (fp8_amax_* is overwritten by every cast): with gradient
  // accumulation the last micro-batch's amax joins the history (tests/unit/test_float8_delayed.cpp).
  place_on(amax.device());
  pending_.view_range(r, {1}).copy_from(amax);
  seen_[r] = true;
}

Tensor DelayedScaling::pending_amax(Role r) const {
  if (!seen_[r]) throw std::logic_error("float8 delayed scaling: no amax recorded for this role since the last sync");
  return pending_.view_range(r, {1});
}

void DelayedScaling::push(Role r, const Tensor& amax) {
  place_on(amax.device());
  ops::amax_history_push(history_.view_range(std::int64_t(r) * length_, {length_}), pushes_.view_range(r, {1}), amax);
  count_[r] = std::min(count_[r] + 1, length_);
  seen_[r] = false;
  scale_stale_[r] = true;
}

std::vector<float> DelayedScaling::history(Role r) const {
  if (!history_.defined()) return {};
  // The device's count: replayed steps (compile.enable) push without the host.
  const std::int64_t pushes = static_cast<std::int64_t>(pushes_.view_range(r, {1}).item(0));
  if (pushes == 0) return {};
  const Tensor row = history_.slice_rows(r, r + 1).to(Device::cpu());
  const std::int64_t n = std::min<std::int64_t>(pushes, length_), oldest = pushes < length_ ? 0 : pushes % length_;
  std::vector<float> out;
  for (std::int64_t i = 0; i < n; ++i) out.push_back(row.data<float>()[(oldest + i) % length_]);
  return out;
}

void DelayedScaling::set_history(Role r, const std::vector<float>& oldest_first) {
  place_on(history_.defined() ? history_.device() : Device::cpu());
  const int n = static_cast<int>(std::min<size_t>(oldest_first.size(), size_t(length_)));
  Tensor row = Tensor::zeros({length_});
  std::copy(oldest_first.end() - n, oldest_first.end(), row.data<float>());
  history_.slice_rows(r, r + 1).copy_from(row);
  pushes_.view_range(r, {1}).copy_from(Tensor::full({1}, double(n), DType::i64));
  count_[r] = n;
  seen_[r] = false;
  scale_stale_[r] = true;
}

Float8Linear::Float8Linear(std::int64_t in_features, std::int64_t out_features, Recipe recipe)
    : nn::Linear(in_features, out_features), recipe_(std::move(recipe)) {
  if (recipe_.delayed) delayed_ = std::make_shared<DelayedScaling>(recipe_.amax_history_len);
}

void sync_amax_histories(nn::Module& root, const std::function<void(const Tensor&)>& allreduce_max) {
  std::vector<DelayedScaling*> states;
  for (auto& [fqn, m] : root.named_modules())
    if (auto* f8 = dynamic_cast<Float8Linear*>(m); f8 && f8->delayed_state()) states.push_back(f8->delayed_state().get());
  if (states.empty()) return;
  Device device = Device::cpu();
  for (auto* s : states)
    for (int r = 0; r < 3; ++r)
      if (s->seen(Role(r))) device = s->pending_amax(Role(r)).device();
  const Tensor amaxes = Tensor::zeros({3 * std::int64_t(states.size())}, DType::f32, device);
  for (size_t i = 0; i < states.size(); ++i)
    for (int r = 0; r < 3; ++r)
      if (states[i]->seen(Role(r))) amaxes.view_range(3 * std::int64_t(i) + r, {1}).copy_from(states[i]->pending_amax(Role(r)));
  allreduce_max(amaxes);
  for (size_t i = 0; i < states.size(); ++i)
    for (int r = 0; r < 3; ++r)
      if (states[i]->seen(Role(r))) states[i]->push(Role(r), amaxes.view_range(3 * std::int64_t(i) + r, {1}));
}

void set_first_step_amax_reduction(nn::Module& root, const std::function<void(const Tensor&)>& allreduce_max) {
  for (auto& [fqn, m] : root.named_modules())
    if (auto* f8 = dynamic_cast<Float8Linear*>(m); f8 && f8->delayed_state()) f8->delayed_state()->first_step_amax_max = allreduce_max;
}

void mark_delayed_scales_stale(nn::Module& root) {
  for (auto& [fqn, m] : root.named_modules())
    if (auto* f8 = dynamic_cast<Float8Linear*>(m); f8 && f8->delayed_state()) f8->delayed_state()->mark_scales_stale();
}

nlohmann::json delayed_scaling_state(nn::Module& root) {
  nlohmann::json out = nlohmann::json::object();
  for (auto& [fqn, m] : root.named_modules())
    if (auto* f8 = dynamic_cast<Float8Linear*>(m); f8 && f8->delayed_state()) {
      nlohmann::json roles = nlohmann::json::array();
      for (int r = 0; r < 3; ++r) {
        nlohmann::json bits = nlohmann::json::array();
        for (float v : f8->delayed_state()->history(Role(r))) bits.push_back(std::bit_cast<std::uint32_t>(v));  // exact, NaN included
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
    for (size_t r = 0; r < 3 && r < state[fqn].size(); ++r) {
      std::vector<float> values;
      for (const auto& bits : state[fqn][r]) values.push_back(std::bit_cast<float>(bits.get<std::uint32_t>()));
      ds.set_history(Role(r), values);
    }
  }
}

autograd::Variable float8_linear(const autograd::Variable& x, const autograd::Variable& w, const Recipe& r,
                                 std::shared_ptr<DelayedScaling> delayed, const Tensor& weight_scale,
                                 const PrecastInput* input, std::shared_ptr<PrecastGradOutput> grad_output) {
  if (r.delayed && !delayed) throw std::invalid_argument("Float8Linear: the delayed recipe needs its amax state");
  if (weight_scale.defined() && (r.delayed || r.weight.granularity != Granularity::tensorwise ||
                       r.weight_for_grad_input.granularity != Granularity::tensorwise))
    throw std::invalid_argument("Float8Linear: a precast weight scale needs the tensorwise recipe");
  if (!r.input.enabled || !r.weight.enabled || !r.grad_output.enabled || !r.weight_for_grad_input.enabled)
    throw std::invalid_argument("Float8Linear: only the grad_weight GEMM may run in high precision");
  if (input && (r.delayed || r.input.granularity != Granularity::tensorwise || r.input.dtype != input->data.dtype() ||
                r.input_for_grad_weight.granularity != Granularity::tensorwise || r.input_for_grad_weight.dtype != r.input.dtype))
    throw std::invalid_argument("Float8Linear: a precast input needs the tensorwise dynamic recipe");
  // The input and weight as they are (float32, or bf16 storage on the GPU; the weight may be
  // FSDP's gathered e4m3 bytes): backward keeps references to them, not copies, and recasts them.
  // A precast input is kept as its float8 bytes instead.
  const Tensor wd = w.data();
  const Tensor xd = input ? Tensor() : x.data();
  const Shape x_shape = x.data().shape();
  const DType x_dtype = x.data().dtype();
  const DType gw_dtype = is_float8(wd.dtype()) ? x_dtype : wd.dtype();
  const Tensor x8_bytes = input ? as_2d(input->data) : Tensor();
  const Tensor x8_scale = input ? Tensor::full({1}, input->scale, DType::f32, wd.device()) : Tensor();
  // y = x W^T: x [M, K] and W [N, K], both scaled along K.
  const auto [x8, w8] = input ? std::pair<Float8Operand, Float8Operand>{{x8_bytes, x8_scale},
                                                                        weight_operand(wd, r, true, delayed.get(), weight_scale)}
                              : output_gemm_operands(as_2d(xd), wd, r, delayed.get(), weight_scale);
  const Tensor y = scaled_mm(x8, w8, x_dtype, r.fast_accum_output, r);
  Shape out_shape = x_shape;
  out_shape.back() = wd.size(0);
  const bool need_w = w.requires_grad();
  return autograd::record1("Float8Linear(" + r.name + ")", {x, w}, y.view(out_shape),
                           [xd, x_shape, x8_bytes, x8_scale, wd, r, need_w, delayed, weight_scale, x_dtype, gw_dtype,
                            grad_output](const std::vector<Tensor>& g) -> std::vector<Tensor> {
                             const Tensor gy = as_2d(g[0]);
                             // An output gradient that arrived cast counts for this gradient only (then it is used up).
                             std::optional<PrecastInput> gy_cast;
                             if (grad_output && grad_output->cast && grad_output->value.raw() == g[0].raw() &&
                                 grad_output->value.numel() == g[0].numel())
                               gy_cast = std::move(grad_output->cast);
                             if (grad_output) *grad_output = PrecastGradOutput{};
                             const std::optional<Float8Operand> gy8_cast =
                                 gy_cast ? std::optional<Float8Operand>(Float8Operand{
                                               as_2d(gy_cast->data), Tensor::full({1}, gy_cast->scale, DType::f32, wd.device())})
                                         : std::nullopt;
                             const std::optional<Float8Operand> x8_cast =
                                 x8_bytes.defined() ? std::optional<Float8Operand>(Float8Operand{x8_bytes, x8_scale}) : std::nullopt;
                             // dx = dy W: dy [M, N] scaled along N, and W^T [K, N] (W scaled along N).
                             const auto [gy8, wt8] = grad_input_gemm_operands(gy, wd, r, delayed.get(), weight_scale,
                                                                              gy8_cast ? &*gy8_cast : nullptr);
                             const Tensor gx = scaled_mm(gy8, wt8, x_dtype, r.fast_accum_grad_input, r).view(x_shape);
                             Tensor gw;
                             if (need_w && r.input_for_grad_weight.enabled && r.grad_output_for_grad_weight.enabled) {
                               // dW = dy^T x: dy^T [N, M] and x^T [K, M], both scaled along M.
                               auto [gyt8, xt8] = grad_weight_gemm_operands(gy, xd.defined() ? as_2d(xd) : Tensor(), r,
                                                                            delayed.get(), gy8_cast ? &*gy8_cast : nullptr,
                                                                            x8_cast ? &*x8_cast : nullptr);
                               gw = scaled_mm(gyt8, xt8, gw_dtype, r.fast_accum_grad_weight, r);
                             } else if (need_w) {  // high precision (rowwise_with_gw_hp): a plain GEMM
                               gw = Tensor::empty(wd.shape(), DType::f32, wd.device());
                               ops::linear_backward_weight(gy, as_2d(xd), gw, false);
                               if (gw_dtype != DType::f32) gw = gw.to(gw_dtype);
                             }
                             return {gx, gw};
                           });
}

std::vector<autograd::Variable> Float8Linear::forward(const std::vector<autograd::Variable>& in) {
  // A precast input counts only for the input it was announced with (then it is used up).
  std::optional<PrecastInput> input;
  if (precast_input_ && precast_value_.raw() == in[0].data().raw() && precast_value_.numel() == in[0].data().numel())
    input = std::move(precast_input_);
  precast_input_.reset();
  precast_value_ = Tensor();
  return {float8_linear(in[0], weight, recipe_, delayed_, precast_weight_scale_, input ? &*input : nullptr, precast_grad_)};
}

namespace {

// Float8Linear's codecs: the whole tensor cast with one tensorwise scale (the MAX of every rank's
// amax), the casts torchao's float8 TP styles make: the input to e4m3 before the sequence-parallel
// all-gather, a row-wise layer's output gradient to e5m2 before the backward all-gather.
class Float8TensorwiseCodec final : public nn::GatherCodec {
 public:
  enum class Reads { input, grad_output };
  Float8TensorwiseCodec(DType f8, Reads reads) : f8_(f8), reads_(reads) {}
  DType wire_dtype() const override { return f8_; }
  std::string kind() const override { return std::string(dtype_name(f8_)) + " tensorwise"; }
  Tensor encode(const Tensor& local, const std::function<void(const Tensor&)>& max_over_group) override {
    const Tensor x2d = as_2d(local);
    Tensor amax = ops::amax(x2d, ScaleAxis::tensor);
    max_over_group(amax);
    scale_ = ops::amax_to_scale(amax, f8_, false);
    return ops::cast_to_float8(x2d, f8_, scale_, ScaleAxis::tensor).data.view(local.shape());
  }
  Tensor decode(const Tensor& gathered, DType dtype) override {
    Tensor value = ops::dequantize(as_2d(gathered), scale_, ScaleAxis::tensor).view(gathered.shape());
    return value.dtype() == dtype ? value : value.to(dtype);
  }
  void arrived(nn::Linear& reader, const Tensor& value, const Tensor& gathered) override {
    const PrecastInput cast{gathered, static_cast<float>(scale_.item(0))};
    auto& layer = static_cast<Float8Linear&>(reader);
    if (reads_ == Reads::input) layer.set_precast_input(value, cast);
    else layer.set_precast_grad_output(value, cast);
  }

 private:
  DType f8_;
  Reads reads_;
  Tensor scale_;
};

// Whether a tensor both GEMMs read through `first` and `for_grad_weight` may arrive precast: one
// tensorwise dynamic scale and one dtype for both, no power-of-2 rounding.
bool one_tensorwise_cast(const Recipe& r, const CastConfig& first, const CastConfig& for_grad_weight) {
  return !r.delayed && !r.round_scales_to_power_of_2 && first.enabled && first.granularity == Granularity::tensorwise &&
         for_grad_weight.enabled && for_grad_weight.granularity == Granularity::tensorwise &&
         for_grad_weight.dtype == first.dtype;
}

}  // namespace

std::shared_ptr<nn::GatherCodec> Float8Linear::input_gather_codec() {
  const Recipe& r = recipe_;
  return one_tensorwise_cast(r, r.input, r.input_for_grad_weight) && r.input.dtype == DType::f8e4m3
             ? std::make_shared<Float8TensorwiseCodec>(DType::f8e4m3, Float8TensorwiseCodec::Reads::input)
             : nullptr;
}

std::shared_ptr<nn::GatherCodec> Float8Linear::output_grad_gather_codec() {
  const Recipe& r = recipe_;
  return one_tensorwise_cast(r, r.grad_output, r.grad_output_for_grad_weight)
             ? std::make_shared<Float8TensorwiseCodec>(r.grad_output.dtype, Float8TensorwiseCodec::Reads::grad_output)
             : nullptr;
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
                                              const std::string& recipe_name, int amax_history_len, bool emulate) {
  const Recipe recipe = recipe_from_name(recipe_name, amax_history_len, emulate);
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
