#pragma once
// Float8Linear and the quantize.linear.float8 converter (DESIGN.md section 5).
//
// Float8Linear is a Linear whose three GEMMs are ops::scaled_mm calls on float8 operands cast per
// its recipe, with torchao's per-GEMM settings (fast accumulation in the output GEMM only). What
// scaled_mm runs is the op API's business: on the CPU (and everywhere with emulate = true)
// torchao's emulate mode (dequantize both operands, float32 GEMM, the input's dtype), on CUDA
// cuBLASLt FP8. Like torchao, it saves the high-precision input and weight for backward (as
// references) and re-casts them there, once per GEMM along that GEMM's contraction dim.
#include <nlohmann/json.hpp>

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "float8/float8.hpp"
#include "nn/layers.hpp"

namespace titan::float8 {

// Delayed-scaling state of one Float8Linear: per operand role an amax history and the amax of its
// latest cast since the last sync (torchao's fp8_amax_*). A cast takes its scale from
// max(history); with no history yet (the first step) it uses the current amax, i.e. behaves
// dynamically, or, on several data-parallel ranks, the MAX of the current amax over the ranks
// (`first_step_amax_max`), as torchao initialises its amaxes (reduce_amax=True).
//
// The amaxes and histories are f32 tensors on the device the casts run on, never read by the host
// during training (a GPU step makes no sync for them): history [3, length] is a ring per role,
// zero-filled, so max over a whole row is max over its entries (amaxes are >= 0 or NaN, and NaN
// propagates as torch.max does). The host keeps only the bookkeeping (entries, ring position,
// whether a role was cast this step), which is the same on every rank.
class DelayedScaling {
 public:
  enum Role { input = 0, weight = 1, grad_output = 2 };
  explicit DelayedScaling(int length);
  int length() const { return length_; }
  // Entries in role r's history as the host counted its pushes (0 until the first sync). A
  // replayed step (compile.enable) pushes on the device only, so this stops counting there;
  // history() reads the device's count.
  int entries(Role r) const { return count_[r]; }
  // f32 [1] on the history's device: the scale from max(history of r); needs an entry. Computed
  // once per history state and dtype (a layer's casts of one role share it within a step), into
  // the same tensor every time (a captured step replays its writes there).
  Tensor scale(Role r, DType f8) const;
  // Notes this step's amax of role r (f32 [1], the cast's device; the latest one wins, as in torchao).
  void record(Role r, const Tensor& amax);
  // Whether role r was cast since the last push, and its latest amax (f32 [1]).
  bool seen(Role r) const { return seen_[r]; }
  Tensor pending_amax(Role r) const;
  // Appends `amax` (f32 [1]) to role r's history, dropping the oldest beyond length(); clears seen.
  // The ring's position is on the device (ops::amax_history_push).
  void push(Role r, const Tensor& amax);
  // Role r's history oldest first, read back to the host (checkpoints, tests), and its inverse
  // (a checkpoint's entries; the last `length` are kept).
  std::vector<float> history(Role r) const;
  void set_history(Role r, const std::vector<float>& oldest_first);
  // The next scale() of every role is computed from the history again.
  void mark_scales_stale() const { scale_stale_ = {true, true, true}; }
  // Null on one rank; else a MAX all-reduce (in place) of one amax across the data-parallel ranks,
  // which every first-step cast (no history yet) calls with its own amax before it takes a scale.
  std::function<void(const Tensor&)> first_step_amax_max;

 private:
  // The tensors on `device` (allocated zero on first use, moved once after a checkpoint load).
  void place_on(Device device);
  int length_;
  Tensor history_;  // f32 [3, length]
  Tensor pending_;  // f32 [3]
  Tensor pushes_;   // i64 [3]: pushes so far per role; the next one goes to column pushes % length
  std::array<int, 3> count_{};
  std::array<bool, 3> seen_{};
  mutable std::array<Tensor, 3> scale_;  // f32 [1] each, allocated once per device
  mutable std::array<bool, 3> scale_stale_{true, true, true};  // after a push or a load
  mutable std::array<DType, 3> scale_dtype_{};
};

// An input that arrived already cast (tensor parallel: cast to e4m3 on each rank with the whole
// tensor's scale, then all-gathered as bytes): data [.., K] float8, value = data / scale.
struct PrecastInput {
  Tensor data;
  float scale = 1;
};

// Where a backward finds an output gradient that arrived already cast (e5m2 bytes + the whole
// tensor's scale): it counts only for the gradient tensor `value` (then it is used up).
struct PrecastGradOutput {
  Tensor value;
  std::optional<PrecastInput> cast;
};

class Float8Linear : public nn::Linear {
 public:
  Float8Linear(std::int64_t in_features, std::int64_t out_features, Recipe recipe);
  std::string type_name() const override { return "Float8Linear"; }
  bool honours_product() const override { return false; }  // forward is the float8 product
  const Recipe& recipe() const { return recipe_; }
  // Null unless the recipe is delayed.
  const std::shared_ptr<DelayedScaling>& delayed_state() const { return delayed_; }
  // FSDP's float8 all-gather hands the layer its weight already cast (e4m3 bytes, or their
  // dequantized value) together with the scale: the GEMMs take the bytes as they are, or recast
  // the value with that scale, which reproduces the gathered bytes exactly, instead of deriving a
  // scale from the weight (tensorwise recipe only). The scale is an f32 [1] tensor, left where FSDP
  // computed it (on a GPU: never read by the host); undefined: none.
  void set_precast_weight_scale(Tensor scale) { precast_weight_scale_ = std::move(scale); }
  // Tensor parallel: this layer's input, weight and output gradient are parts of tensors split
  // over a group; `max_over_group` MAX-reduces a tensorwise amax over it (Recipe::amax_over_group).
  void set_amax_over_group(std::function<void(const Tensor&)> max_over_group) {
    recipe_.amax_over_group = std::move(max_over_group);
  }
  // Tensorwise dynamic recipes: a codec that casts the input to e4m3 before a TP all-gather, so
  // that 1 byte per element travels and the GEMMs take the gathered bytes as they are (the same
  // bytes this layer's own cast of the gathered input would make). Null for other recipes.
  std::shared_ptr<nn::GatherCodec> input_gather_codec() override;
  // The next forward's input `value` arrived as `input` (the codec's arrived()).
  void set_precast_input(const Tensor& value, PrecastInput input) {
    precast_value_ = value;
    precast_input_ = std::move(input);
  }
  // Likewise for the output gradient (torchao casts a row-wise TP layer's output gradient to
  // e5m2 before the backward all-gather): the next backward whose gradient is `value` uses the
  // bytes of `grad_output` in both of its GEMMs. Tensorwise dynamic recipes; else null.
  std::shared_ptr<nn::GatherCodec> output_grad_gather_codec() override;
  void set_precast_grad_output(const Tensor& value, PrecastInput grad_output) {
    precast_grad_->value = value;
    precast_grad_->cast = std::move(grad_output);
  }

 protected:
  std::vector<autograd::Variable> forward(const std::vector<autograd::Variable>& in) override;

 private:
  Recipe recipe_;
  std::shared_ptr<DelayedScaling> delayed_;
  Tensor precast_weight_scale_;
  Tensor precast_value_;
  std::optional<PrecastInput> precast_input_;
  std::shared_ptr<PrecastGradOutput> precast_grad_ = std::make_shared<PrecastGradOutput>();
};

// One float8 GEMM operand in scaled_mm's layout: data [rows, K] with the GEMM's contraction dim
// last, scale [1] or [rows, 1].
struct Float8Operand {
  Tensor data, scale;
};
// The (a, b) operands Float8Linear hands scaled_mm for each of its GEMMs (x2d, gy2d: the input and
// output gradient as [tokens, features]); they record into `delayed` as the layer does. Public so
// that tests compare them with torchao's.
//   output:      y = x W^T     a = x [M, K],     b = W [N, K]
//   grad_input:  dx = dy W     a = dy [M, N],    b = W^T [K, N]
//   grad_weight: dW = dy^T x   a = dy^T [N, M],  b = x^T [K, M]  (float8 recipes only)
std::pair<Float8Operand, Float8Operand> output_gemm_operands(const Tensor& x2d, const Tensor& w, const Recipe& r,
                                                             DelayedScaling* delayed = nullptr,
                                                             const Tensor& weight_scale = Tensor());
// A `*_cast` operand, when given, is that tensor already cast ([M, C] bytes and a tensorwise
// scale: TP's precast input / output gradient), used instead of casting it (transposed for grad_weight).
std::pair<Float8Operand, Float8Operand> grad_input_gemm_operands(const Tensor& gy2d, const Tensor& w, const Recipe& r,
                                                                 DelayedScaling* delayed = nullptr,
                                                                 const Tensor& weight_scale = Tensor(),
                                                                 const Float8Operand* gy_cast = nullptr);
std::pair<Float8Operand, Float8Operand> grad_weight_gemm_operands(const Tensor& gy2d, const Tensor& x2d, const Recipe& r,
                                                                  DelayedScaling* delayed = nullptr,
                                                                  const Float8Operand* gy_cast = nullptr,
                                                                  const Float8Operand* x_cast = nullptr);

// y = x W^T with x [.., K] and W [N, K] through the recipe's float8 casts; differentiable.
// `delayed` is required (and used) when recipe.delayed. `weight_scale`, when defined, is the
// tensorwise scale (f32 [1], on any device) of both weight casts (FSDP's float8 all-gather): W is then either its e4m3
// bytes, used as they are, or a high-precision weight cast with that scale.
// `input`, when given, is x already cast (tensorwise e4m3): the output GEMM takes its bytes and
// the grad_weight GEMM their transpose, instead of casting x (which backward then does not keep).
// `grad_output`, when given, is looked at in backward: if it holds a cast of the gradient tensor
// backward receives (tensorwise e5m2), the grad_input GEMM takes its bytes and the grad_weight
// GEMM their transpose, instead of casting the gradient.
autograd::Variable float8_linear(const autograd::Variable& x, const autograd::Variable& w, const Recipe& recipe,
                                 std::shared_ptr<DelayedScaling> delayed = nullptr,
                                 const Tensor& weight_scale = Tensor(),
                                 const PrecastInput* input = nullptr,
                                 std::shared_ptr<PrecastGradOutput> grad_output = nullptr);

// End of a training step for delayed scaling: gathers every Float8Linear's pending amaxes into
// one f32 tensor [3 x layers] (input, weight, grad_output per layer; 0 for a role not cast) on
// their device, lets `allreduce_max` combine it across ranks in place (one collective for the
// whole model; identity on one process), and appends the results to the histories: device copies
// only, no host read. No-op without delayed layers.
void sync_amax_histories(nn::Module& root, const std::function<void(const Tensor&)>& allreduce_max);

// Gives every delayed Float8Linear under `root` the first-step MAX all-reduce (see DelayedScaling;
// null restores per-rank first steps). Until the first sync each of the layer's casts calls it once:
// in forward x and W, in backward grad_output twice and the recast W and x, so 6 calls per layer
// and micro-batch (2 more per forward that activation checkpointing re-runs), all in step 1 (the
// backward recasts; the results equal the forward's).
void set_first_step_amax_reduction(nn::Module& root, const std::function<void(const Tensor&)>& allreduce_max);
// Every delayed Float8Linear under `root` computes its scales from its histories at their next use.
void mark_delayed_scales_stale(nn::Module& root);

// Delayed-scaling histories of every Float8Linear under `root`, for checkpoints: {fqn: [input,
// weight, grad_output histories as float32 bit patterns]} (empty without delayed layers); and
// the inverse, which restores the layers the state names.
nlohmann::json delayed_scaling_state(nn::Module& root);
void load_delayed_scaling_state(nn::Module& root, const nlohmann::json& state);

// The converter's decision for one Linear.
struct LinearDecision {
  std::string fqn;
  std::int64_t out_features = 0, in_features = 0;
  bool convert = false;
  std::string reason;  // "converted", or why not
};

// Decides, for every Linear under `root` (meta tensors are fine), whether it becomes a
// Float8Linear: both weight dims divisible by 16; FQN containing none of `filter_fqns`; and, when
// "auto_filter_small_kn" is listed, torchao's H100 size thresholds for the recipe
// (N, K = weight shape; tensorwise skips K <= 4096 and N <= 1024; rowwise skips N <= 2048,
// K <= 1024, or N <= 4096 and K <= 2048).
std::vector<LinearDecision> plan_float8(nn::Module& root, const std::vector<std::string>& filter_fqns,
                                        const std::string& recipe_name);
// Swaps the chosen Linears for Float8Linears sharing their weights. Returns the decisions.
// `emulate` (quantize.linear.float8.emulate) makes every GEMM of theirs run emulated.
std::vector<LinearDecision> convert_to_float8(nn::Module& root, const std::vector<std::string>& filter_fqns,
                                              const std::string& recipe_name, int amax_history_len = 16,
                                              bool emulate = false);

}  // namespace titan::float8
