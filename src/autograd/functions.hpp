#pragma once
// Differentiable ops on Variables: each runs the forward op from ops/ and records a node whose
// backward calls the matching backward op with the tensors it saved.
#include <functional>

#include "autograd/variable.hpp"
#include "ops/ops.hpp"

namespace titan::autograd {

Variable linear(const Variable& x, const Variable& w);
Variable embedding(const Variable& weight, const Tensor& tokens);
Variable rmsnorm(const Variable& x, const Variable& w, double eps);
Variable rope(const Variable& x, const ops::RopeTable& table);
Variable attention(const Variable& q, const Variable& k, const Variable& v);
Variable swiglu(const Variable& a, const Variable& b);
Variable add(const Variable& a, const Variable& b);
Variable view(const Variable& x, const Shape& shape);
// Mean cross-entropy over rows whose target is not ignore_index: a scalar Variable.
Variable cross_entropy(const Variable& logits, const Tensor& targets, std::int64_t ignore_index = -100);

// Activation checkpointing: runs `fn` on `inputs` without recording, keeps only the inputs, and
// re-runs `fn` with recording inside backward to get the gradients. Parameter gradients reach
// their leaves during that inner backward; gradients w.r.t. `inputs` flow on as usual.
using CheckpointFn = std::function<std::vector<Variable>(const std::vector<Variable>&)>;
std::vector<Variable> checkpoint(const std::string& name, const CheckpointFn& fn, const std::vector<Variable>& inputs);

}  // namespace titan::autograd
