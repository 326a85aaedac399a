#pragma once
// Float8Linear and the quantize.linear.float8 converter (DESIGN.md section 5).
//
// Float8Linear is a Linear whose three GEMMs run on float8 operands cast per its recipe. On the
// CPU (and with emulate = true) a GEMM is emulated exactly as torchao's emulate mode does it:
// dequantize both operands to float32, multiply in float32, return the input's dtype. Like
// torchao, it saves the high-precision input and weight for backward and re-casts them there.
#include <string>
#include <vector>

#include "float8/float8.hpp"
#include "nn/layers.hpp"

namespace titan::float8 {

class Float8Linear : public nn::Linear {
 public:
  Float8Linear(std::int64_t in_features, std::int64_t out_features, Recipe recipe)
      : nn::Linear(in_features, out_features), recipe_(std::move(recipe)) {}
  std::string type_name() const override { return "Float8Linear"; }
  const Recipe& recipe() const { return recipe_; }

 protected:
  std::vector<autograd::Variable> forward(const std::vector<autograd::Variable>& in) override;

 private:
  Recipe recipe_;
};

// y = x W^T with x [.., K] and W [N, K] through the recipe's float8 casts; differentiable.
autograd::Variable float8_linear(const autograd::Variable& x, const autograd::Variable& w, const Recipe& recipe);

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
                                              const std::string& recipe_name);

}  // namespace titan::float8
