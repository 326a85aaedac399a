#pragma once
// Module tree with TorchTitan's fully qualified names, parameters as autograd leaves, and the
// hooks FSDP and Float8Linear use (DESIGN.md section 6):
//   forward pre-hook    before forward (FSDP: all-gather the unit's parameters)
//   input hook          after the pre-hooks, may replace the inputs (tensor parallel: all-gather
//                       a sequence-sharded activation)
//   forward hook        after forward, may replace the outputs (FSDP: free, wrap outputs)
//   backward pre-hook   when the gradients w.r.t. the outputs arrive, before the module's own
//                       backward runs (FSDP: re-gather)
//   backward hook       once the gradients w.r.t. the inputs are computed (FSDP: reduce-scatter)
// Backward hooks work by wrapping outputs / inputs in identity autograd nodes.
#include <deque>
#include <stdexcept>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.hpp"
#include "nn/all_gather.hpp"

namespace titan::nn {

using autograd::Variable;

// While a MetaGuard is alive, new parameters are meta tensors (shapes only, no memory).
class MetaGuard {
 public:
  MetaGuard();
  ~MetaGuard();

 private:
  bool prev_;
};
bool meta_mode();

class Module {
 public:
  using PreHook = std::function<void(Module&)>;
  using PostHook = std::function<void(Module&, std::vector<Variable>& outputs)>;
  using InputHook = std::function<void(Module&, std::vector<Variable>& inputs)>;
  using BackwardHook = std::function<void(Module&)>;

  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Runs forward with every hook.
  std::vector<Variable> call(const std::vector<Variable>& inputs);
  Variable operator()(const Variable& x) { return call({x})[0]; }

  // "" for the root, "layers.0.attention" for a child's child, etc.
  const std::string& fqn() const { return fqn_; }
  virtual std::string type_name() const = 0;

  // Every parameter below this module with its full FQN ("layers.0.attention.wq.weight").
  std::vector<std::pair<std::string, Variable*>> named_parameters();
  // This module and every descendant, with FQNs, in registration order.
  std::vector<std::pair<std::string, Module*>> named_modules();
  std::vector<std::pair<std::string, Module*>> named_children();

  void add_forward_pre_hook(PreHook h) { pre_hooks_.push_back(std::move(h)); }
  void add_forward_hook(PostHook h) { post_hooks_.push_back(std::move(h)); }
  void add_forward_input_hook(InputHook h) { input_hooks_.push_back(std::move(h)); }
  void add_backward_pre_hook(BackwardHook h) { backward_pre_hooks_.push_back(std::move(h)); }
  void add_backward_hook(BackwardHook h) { backward_hooks_.push_back(std::move(h)); }

  // Replaces child `name` (e.g. Linear -> Float8Linear); returns the new child. Parents reach
  // swappable children through child<>() rather than stored references, which would dangle.
  Module& replace_child(const std::string& name, std::unique_ptr<Module> child);
  // The all-gather extension of this module's own parameter `name` (FSDP asks when it makes the
  // unit); null: FSDP gathers it in the mixed-precision param dtype. Set by whoever decides how
  // the parameter travels (the float8 converter), before FSDP is applied.
  std::shared_ptr<AllGatherExtension> all_gather_extension(const std::string& name) const;
  void set_all_gather_extension(const std::string& name, std::shared_ptr<AllGatherExtension> ext);
  // The child called `name`, as an M (a Float8Linear is a Linear); throws if missing.
  template <class M>
  M& child(const std::string& name) {
    for (auto& [n, c] : children_)
      if (n == name)
        if (auto* m = dynamic_cast<M*>(c.get())) return *m;
    throw std::logic_error("module '" + fqn_ + "' has no child '" + name + "' of the expected type");
  }

 protected:
  virtual std::vector<Variable> forward(const std::vector<Variable>& inputs) = 0;

  // A new f32 parameter filled with `fill` (or a meta tensor under MetaGuard).
  Variable& register_parameter(const std::string& name, const Shape& shape, double fill = 0.0);
  template <class M>
  M& register_module(const std::string& name, std::unique_ptr<M> child) {
    M& ref = *child;
    adopt(name, std::move(child));
    return ref;
  }

 private:
  void adopt(const std::string& name, std::unique_ptr<Module> child);
  void set_fqn(const std::string& fqn);

  std::string fqn_;
  std::deque<std::pair<std::string, Variable>> params_;  // deque: references stay valid
  std::vector<std::pair<std::string, std::shared_ptr<AllGatherExtension>>> extensions_;
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> children_;
  std::vector<PreHook> pre_hooks_;
  std::vector<PostHook> post_hooks_;
  std::vector<InputHook> input_hooks_;
  std::vector<BackwardHook> backward_pre_hooks_, backward_hooks_;
};

}  // namespace titan::nn
