#pragma once
// Float8Linear and the quantize.linear.float8 converter (DESIGN.md section 5).
//
// Float8Linear is a Linear whose three GEMMs run on float8 operands cast per its recipe. On the
// CPU (and with emulate = true) a GEMM is emulated exactly as torchao's emulate mode does it:
// dequantize both operands to float32, multiply in float32, return the input's dtype. Like
// torchao, it saves the high-precision input and weight for backward and re-casts them there.
#include <nlohmann/json.hpp>

#include <array>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "float8/float8.hpp"
#include "nn/layers.hpp"

namespace titan::float8 {

// Delayed-scaling state of one Float8Linear: per operand role an amax history (newest last) and
// the largest amax seen since the last sync. A cast takes its scale from max(history); with no
// history yet (the first step) it uses the current amax, i.e. behaves dynamically.
struct DelayedScaling {
  enum Role { input = 0, weight = 1, grad_output = 2 };
  explicit DelayedScaling(int length) : length(length) {}
  // The scale from max(history) of role `r`; only meaningful once the history has an entry.
  float scale(Role r, DType f8) const;
  // Notes a tensor's amax for this step (the largest one wins).
  void record(Role r, float current);
  int length;
  std::array<std::deque<float>, 3> history;
  std::array<float, 3> pending{};
  std::array<bool, 3> seen{};
};

class Float8Linear : public nn::Linear {
 public:
  Float8Linear(std::int64_t in_features, std::int64_t out_features, Recipe recipe);
  std::string type_name() const override { return "Float8Linear"; }
  const Recipe& recipe() const { return recipe_; }
  // Null unless the recipe is delayed.
  const std::shared_ptr<DelayedScaling>& delayed_state() const { return delayed_; }
  // FSDP's float8 all-gather hands the layer a weight that is already float8 (dequantized on the
  // CPU) together with its scale: the layer casts with that scale, which reproduces the gathered
  // bytes exactly, instead of deriving one from the weight (tensorwise recipe only).
  void set_precast_weight_scale(std::optional<float> scale) { precast_weight_scale_ = scale; }

 protected:
  std::vector<autograd::Variable> forward(const std::vector<autograd::Variable>& in) override;

 private:
  Recipe recipe_;
  std::shared_ptr<DelayedScaling> delayed_;
  std::optional<float> precast_weight_scale_;
};

// y = x W^T with x [.., K] and W [N, K] through the recipe's float8 casts; differentiable.
// `delayed` is required (and used) when recipe.delayed. `weight_scale`, when given, is the
// tensorwise scale of both weight casts (a float8 all-gathered weight).
autograd::Variable float8_linear(const autograd::Variable& x, const autograd::Variable& w, const Recipe& recipe,
                                 std::shared_ptr<DelayedScaling> delayed = nullptr,
                                 std::optional<float> weight_scale = std::nullopt);

// End of a training step for delayed scaling: gathers every Float8Linear's pending amaxes into
// one vector, lets `allreduce_max` combine it across ranks (one collective for the whole model;
// identity on one process), and appends the results to the histories. No-op without delayed layers.
void sync_amax_histories(nn::Module& root, const std::function<void(std::vector<float>&)>& allreduce_max);

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
std::vector<LinearDecision> convert_to_float8(nn::Module& root, const std::vector<std::string>& filter_fqns,
                                              const std::string& recipe_name, int amax_history_len = 16);

}  // namespace titan::float8
