#pragma once
// Differentiable ops on Variables: each runs the forward op from ops/ and records a node whose
// backward calls the matching backward op with the tensors it saved.
#include <functional>

#include "autograd/variable.hpp"
#include "ops/ops.hpp"

namespace titan::autograd {

Variable linear(const Variable& x, const Variable& w);
Variable embedding(const Variable& weight, const Tensor& tokens);
// weight holds rows [first_row, first_row + R) of the table; other tokens give zero rows.
Variable embedding_rows(const Variable& weight, const Tensor& tokens, std::int64_t first_row);
Variable rmsnorm(const Variable& x, const Variable& w, double eps);
// {h, y} with h = a + b and y = rmsnorm(h, w): the residual add fused into the norm that reads it
// (one op, one pass; the values and gradients of add followed by rmsnorm).
std::vector<Variable> add_rmsnorm(const Variable& a, const Variable& b, const Variable& w, double eps);
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

// Per-op selective activation checkpointing (TorchTitan's selective_ac_option = "op"): like
// checkpoint(), but the forward also keeps the outputs of attention and of every matmul except
// every second one (linear() calls, counted from 1 per call of checkpoint_op_sac: the 1st, 3rd,
// 5th... are kept), and the recompute in backward reuses those outputs instead of running the
// ops again; everything else (norms, RoPE, SwiGLU, adds, the other matmuls) is recomputed.
// The recompute runs the same ops in the same order, so the n-th kept op of the forward is the
// n-th of the recompute. Float8 linears are not counted and always recomputed, as in TorchTitan,
// whose save list has aten.mm but not _scaled_mm.
struct OpSacPolicy {
  // Linears whose weight has one of these shapes [out, in] are recomputed and not counted
  // (activation_checkpoint.per_op_sac_force_recompute_mm_shapes_by_fqns).
  std::vector<Shape> force_recompute_weight_shapes;
};
std::vector<Variable> checkpoint_op_sac(const std::string& name, const CheckpointFn& fn,
                                        const std::vector<Variable>& inputs, const OpSacPolicy& policy);

}  // namespace titan::autograd
