#include "autograd/functions.hpp"

#include <algorithm>
#include <memory>
#include <stdexcept>

namespace titan::autograd {

using TV = std::vector<Tensor>;

namespace {

// The checkpoint_op_sac call whose fn is running on this thread (forward or recompute), if any.
struct OpSacRun {
  const OpSacPolicy* policy;
  bool recompute;
  std::vector<TV>* kept;  // outputs of the kept ops, in forward order
  size_t next_kept = 0;   // recompute: the next kept entry to reuse
  std::int64_t mm_count = 0;
};
thread_local OpSacRun* g_op_sac = nullptr;

enum class SacOp { mm, attention };

// Runs `compute` unless the current op-SAC recompute kept this op's outputs in forward; keeps
// them in forward when the policy says so. Outside checkpoint_op_sac it just computes.
TV op_sac_outputs(SacOp op, const Shape& weight_shape, const std::function<TV()>& compute) {
  OpSacRun* run = g_op_sac;
  if (!run) return compute();
  bool keep = true;  // attention
  if (op == SacOp::mm) {
    const auto& forced = run->policy->force_recompute_weight_shapes;
    if (std::find(forced.begin(), forced.end(), weight_shape) != forced.end()) return compute();
    keep = ++run->mm_count % 2 == 1;
  }
  if (!keep) return compute();
  if (run->recompute) {
    if (run->next_kept >= run->kept->size())
      throw std::logic_error("checkpoint_op_sac: the recompute ran more kept ops than the forward");
    return (*run->kept)[run->next_kept++];
  }
  TV out = compute();
  run->kept->push_back(out);
  return out;
}

class OpSacScope {
 public:
  explicit OpSacScope(OpSacRun* run) : prev_(g_op_sac) { g_op_sac = run; }
  ~OpSacScope() { g_op_sac = prev_; }
  OpSacScope(const OpSacScope&) = delete;
  OpSacScope& operator=(const OpSacScope&) = delete;

 private:
  OpSacRun* prev_;
};

}  // namespace

Variable linear(const Variable& x, const Variable& w) {
  Tensor xd = x.data(), wd = w.data();
  const bool need_w = w.requires_grad();
  Tensor y = op_sac_outputs(SacOp::mm, wd.shape(), [&] { return TV{ops::linear(xd, wd)}; })[0];
  return record1("Linear", {x, w}, y, [xd, wd, need_w](const TV& g) -> TV {
    Tensor dw;
    if (need_w) {
      dw = Tensor::empty(wd.shape(), wd.dtype(), wd.device());
      ops::linear_backward_weight(g[0], xd, dw, false);
    }
    return {ops::linear_backward_input(g[0], wd), dw};
  });
}

Variable embedding(const Variable& weight, const Tensor& tokens) {
  Tensor w = weight.data();
  return record1("Embedding", {weight}, ops::embedding(w, tokens),
                 [tokens, shape = w.shape(), dt = w.dtype(), dev = w.device()](const TV& g) -> TV {
    Tensor dw = Tensor::zeros(shape, dt, dev);
    ops::embedding_backward(g[0], tokens, dw);
    return {dw};
  });
}

Variable embedding_rows(const Variable& weight, const Tensor& tokens, std::int64_t first_row) {
  Tensor w = weight.data();
  return record1("Embedding", {weight}, ops::embedding_rows(w, tokens, first_row),
                 [tokens, first_row, shape = w.shape(), dev = w.device()](const TV& g) -> TV {
    Tensor dw = Tensor::zeros(shape, DType::f32, dev);
    ops::embedding_rows_backward(g[0], tokens, dw, first_row);
    return {dw};
  });
}

Variable rmsnorm(const Variable& x, const Variable& w, double eps) {
  Tensor xd = x.data(), wd = w.data();
  ops::RmsNormOut o = ops::rmsnorm(xd, wd, eps);
  return record1("RMSNorm", {x, w}, o.y, [xd, wd, rstd = o.rstd](const TV& g) -> TV {
    Tensor dw = Tensor::zeros(wd.shape(), wd.dtype(), wd.device());
    Tensor dx = ops::rmsnorm_backward(g[0], xd, wd, rstd, dw);
    return {dx, dw};
  });
}

std::vector<Variable> add_rmsnorm(const Variable& a, const Variable& b, const Variable& w, double eps) {
  Tensor wd = w.data();
  ops::AddRmsNormOut o = ops::add_rmsnorm(a.data(), b.data(), wd, eps);
  return record("AddRMSNorm", {a, b, w}, {o.h, o.y}, [hd = o.h, wd, rstd = o.rstd](const TV& g) -> TV {
    // g[0]: h's gradient from the residual stream, g[1]: the norm output's. dh goes to a and b alike.
    if (!g[1].defined()) return {g[0], g[0], Tensor()};
    Tensor dw = Tensor::zeros(wd.shape(), wd.dtype(), wd.device());
    Tensor dh = ops::rmsnorm_backward(g[1], hd, wd, rstd, dw, g[0]);
    return {dh, dh, dw};
  });
}

Variable rope(const Variable& x, const ops::RopeTable& table) {
  return record1("RoPE", {x}, ops::rope(x.data(), table),
                 [table](const TV& g) -> TV { return {ops::rope(g[0], table, /*inverse=*/true)}; });
}

Variable attention(const Variable& q, const Variable& k, const Variable& v) {
  Tensor qd = q.data(), kd = k.data(), vd = v.data();
  const TV kept = op_sac_outputs(SacOp::attention, {}, [&] {
    ops::AttentionOut fresh = ops::attention(qd, kd, vd);
    return TV{fresh.out, fresh.lse};
  });
  const ops::AttentionOut o{kept[0], kept[1]};
  Tensor out = o.out;
  return record1("Attention", {q, k, v}, out, [qd, kd, vd, o](const TV& g) -> TV {
    ops::AttentionGrads d = ops::attention_backward(g[0], qd, kd, vd, o);
    return {d.dq, d.dk, d.dv};
  });
}

Variable swiglu(const Variable& a, const Variable& b) {
  Tensor ad = a.data(), bd = b.data();
  return record1("SwiGLU", {a, b}, ops::swiglu(ad, bd), [ad, bd](const TV& g) -> TV {
    Tensor da, db;
    ops::swiglu_backward(g[0], ad, bd, da, db);
    return {da, db};
  });
}

Variable add(const Variable& a, const Variable& b) {
  return record1("Add", {a, b}, ops::add(a.data(), b.data()), [](const TV& g) -> TV { return {g[0], g[0]}; });
}

Variable view(const Variable& x, const Shape& shape) {
  return record1("View", {x}, x.data().view(shape),
                 [in_shape = x.data().shape()](const TV& g) -> TV { return {g[0].view(in_shape)}; });
}

Variable cross_entropy(const Variable& logits, const Tensor& targets, std::int64_t ignore_index) {
  Tensor ld = logits.data();
  ops::CrossEntropyOut o = ops::cross_entropy(ld, targets, ignore_index);
  // The loss is f32 even for bf16 logits (TorchTitan's .float() before the loss), where the logits are.
  return record1("CrossEntropy", {logits}, o.loss, [ld, targets, o, ignore_index](const TV& g) -> TV {
    return {ops::cross_entropy_backward(ld, targets, o, g[0].item(0), ignore_index)};
  });
}

namespace {

// checkpoint() and checkpoint_op_sac(): `policy` null for the plain one. The forward runs without
// recording (under the op-SAC scope, which keeps the chosen outputs); backward re-runs `fn` with
// recording on fresh leaves (reusing the kept outputs) and backpropagates through it.
std::vector<Variable> checkpoint_impl(const std::string& node_name, const CheckpointFn& fn,
                                      const std::vector<Variable>& inputs, std::shared_ptr<const OpSacPolicy> policy) {
  auto kept = std::make_shared<std::vector<TV>>();
  std::vector<Tensor> outputs;
  {
    NoGradGuard no_grad;
    OpSacRun run{policy.get(), /*recompute=*/false, kept.get()};
    OpSacScope scope(policy ? &run : nullptr);
    for (auto& v : fn(inputs)) outputs.push_back(v.data());
  }
  std::vector<Tensor> saved;
  std::vector<bool> needs;
  for (const auto& in : inputs) {
    saved.push_back(in.data());
    needs.push_back(in.requires_grad());
  }
  return record(node_name, inputs, outputs, [fn, saved, needs, kept, policy](const TV& g) -> TV {
    std::vector<Variable> leaves;
    for (size_t i = 0; i < saved.size(); ++i) leaves.emplace_back(saved[i], needs[i]);
    std::vector<Variable> outs;
    {
      OpSacRun run{policy.get(), /*recompute=*/true, kept.get()};
      OpSacScope scope(policy ? &run : nullptr);
      outs = fn(leaves);
      if (run.next_kept != kept->size())
        throw std::logic_error("checkpoint_op_sac: the recompute ran fewer kept ops than the forward");
    }
    kept->clear();  // the nodes just recorded hold the kept outputs they need; drop this copy
    std::vector<Variable> roots;
    std::vector<Tensor> grads;
    for (size_t i = 0; i < outs.size(); ++i)
      if (outs[i].requires_grad() && g[i].defined()) {
        roots.push_back(outs[i]);
        grads.push_back(g[i]);
      }
    if (!roots.empty()) run_backward(roots, grads, false);
    TV grad_inputs;
    for (auto& l : leaves) grad_inputs.push_back(l.requires_grad() ? l.grad() : Tensor());
    return grad_inputs;
  });
}

}  // namespace

std::vector<Variable> checkpoint(const std::string& name, const CheckpointFn& fn, const std::vector<Variable>& inputs) {
  return checkpoint_impl("Checkpoint(" + name + ")", fn, inputs, nullptr);
}

std::vector<Variable> checkpoint_op_sac(const std::string& name, const CheckpointFn& fn,
                                        const std::vector<Variable>& inputs, const OpSacPolicy& policy) {
  return checkpoint_impl("OpSAC(" + name + ")", fn, inputs, std::make_shared<const OpSacPolicy>(policy));
}

}  // namespace titan::autograd
