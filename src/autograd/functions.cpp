#include "autograd/functions.hpp"

#include <stdexcept>

namespace titan::autograd {

using TV = std::vector<Tensor>;

Variable linear(const Variable& x, const Variable& w) {
  Tensor xd = x.data(), wd = w.data();
  const bool need_w = w.requires_grad();
  return record1("Linear", {x, w}, ops::linear(xd, wd), [xd, wd, need_w](const TV& g) -> TV {
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

Variable rmsnorm(const Variable& x, const Variable& w, double eps) {
  Tensor xd = x.data(), wd = w.data();
  ops::RmsNormOut o = ops::rmsnorm(xd, wd, eps);
  return record1("RMSNorm", {x, w}, o.y, [xd, wd, rstd = o.rstd](const TV& g) -> TV {
    Tensor dw = Tensor::zeros(wd.shape(), wd.dtype(), wd.device());
    Tensor dx = ops::rmsnorm_backward(g[0], xd, wd, rstd, dw);
    return {dx, dw};
  });
}

Variable rope(const Variable& x, const ops::RopeTable& table) {
  return record1("RoPE", {x}, ops::rope(x.data(), table),
                 [table](const TV& g) -> TV { return {ops::rope(g[0], table, /*inverse=*/true)}; });
}

Variable attention(const Variable& q, const Variable& k, const Variable& v) {
  Tensor qd = q.data(), kd = k.data(), vd = v.data();
  ops::AttentionOut o = ops::attention(qd, kd, vd);
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
  // The loss is kept in f32 even for bf16 logits (TorchTitan's .float() before the loss).
  Tensor loss = Tensor::full({1}, o.loss, ld.dtype() == DType::bf16 ? DType::f32 : ld.dtype(), ld.device());
  return record1("CrossEntropy", {logits}, loss, [ld, targets, o, ignore_index](const TV& g) -> TV {
    return {ops::cross_entropy_backward(ld, targets, o, g[0].item(0), ignore_index)};
  });
}

std::vector<Variable> checkpoint(const std::string& name, const CheckpointFn& fn, const std::vector<Variable>& inputs) {
  std::vector<Tensor> outputs;
  {
    NoGradGuard no_grad;
    for (auto& v : fn(inputs)) outputs.push_back(v.data());
  }
  std::vector<Tensor> saved;
  std::vector<bool> needs;
  for (const auto& in : inputs) {
    saved.push_back(in.data());
    needs.push_back(in.requires_grad());
  }
  return record("Checkpoint(" + name + ")", inputs, outputs, [fn, saved, needs](const TV& g) -> TV {
    // Re-run the forward with recording on fresh leaves, then backpropagate through it.
    std::vector<Variable> leaves;
    for (size_t i = 0; i < saved.size(); ++i) leaves.emplace_back(saved[i], needs[i]);
    std::vector<Variable> outs = fn(leaves);
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

}  // namespace titan::autograd
