#include "nn/module.hpp"

#include <stdexcept>

namespace titan::nn {

namespace {

thread_local bool t_meta = false;

// Identity over `vars`: a node whose backward passes gradients through and runs `hook` first.
std::vector<Variable> identity_with_hook(const std::string& name, const std::vector<Variable>& vars,
                                         std::function<void()> hook) {
  std::vector<Tensor> outs;
  for (const auto& v : vars) outs.push_back(v.data());
  return autograd::record(name, vars, outs, [hook](const std::vector<Tensor>& g) {
    hook();
    return g;
  });
}

}  // namespace

MetaGuard::MetaGuard() : prev_(t_meta) { t_meta = true; }
MetaGuard::~MetaGuard() { t_meta = prev_; }
bool meta_mode() { return t_meta; }

std::vector<Variable> Module::call(const std::vector<Variable>& inputs) {
  for (auto& h : pre_hooks_) h(*this);
  std::vector<Variable> in = inputs;
  for (auto& h : input_hooks_) h(*this, in);
  const bool hook_backward = autograd::grad_enabled();
  if (hook_backward && !backward_hooks_.empty()) {
    // Gradients w.r.t. the inputs pass this node once the module's backward is done.
    in = identity_with_hook(type_name() + "BackwardHook", in, [this] {
      for (auto& h : backward_hooks_) h(*this);
    });
  }
  std::vector<Variable> out = forward(in);
  for (auto& h : post_hooks_) h(*this, out);
  if (hook_backward && !backward_pre_hooks_.empty()) {
    out = identity_with_hook(type_name() + "BackwardPreHook", out, [this] {
      for (auto& h : backward_pre_hooks_) h(*this);
    });
  }
  return out;
}

std::vector<std::pair<std::string, Variable*>> Module::named_parameters() {
  std::vector<std::pair<std::string, Variable*>> out;
  for (auto& [name, p] : params_) out.emplace_back(fqn_.empty() ? name : fqn_ + "." + name, &p);
  for (auto& [name, c] : children_)
    for (auto& item : c->named_parameters()) out.push_back(item);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{fqn_, this}};
  for (auto& [name, c] : children_)
    for (auto& item : c->named_modules()) out.push_back(item);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_children() {
  std::vector<std::pair<std::string, Module*>> out;
  for (auto& [name, c] : children_) out.emplace_back(name, c.get());
  return out;
}

Module& Module::replace_child(const std::string& name, std::unique_ptr<Module> child) {
  for (auto& [n, c] : children_)
    if (n == name) {
      c = std::move(child);
      c->set_fqn(fqn_.empty() ? name : fqn_ + "." + name);
      return *c;
    }
  throw std::invalid_argument("replace_child: '" + fqn_ + "' has no child '" + name + "'");
}

std::shared_ptr<AllGatherExtension> Module::all_gather_extension(const std::string& name) const {
  for (const auto& [n, ext] : extensions_)
    if (n == name) return ext;
  return nullptr;
}

void Module::set_all_gather_extension(const std::string& name, std::shared_ptr<AllGatherExtension> ext) {
  bool known = false;
  for (const auto& [n, p] : params_) known |= n == name;
  if (!known) throw std::invalid_argument("set_all_gather_extension: '" + fqn_ + "' has no parameter '" + name + "'");
  for (auto& [n, e] : extensions_)
    if (n == name) {
      e = std::move(ext);
      return;
    }
  extensions_.emplace_back(name, std::move(ext));
}

Variable& Module::register_parameter(const std::string& name, const Shape& shape, double fill) {
  Tensor init = t_meta ? Tensor::meta(shape) : Tensor::full(shape, fill);
  params_.emplace_back(name, Variable(std::move(init), true, name));
  return params_.back().second;
}

void Module::adopt(const std::string& name, std::unique_ptr<Module> child) {
  child->set_fqn(fqn_.empty() ? name : fqn_ + "." + name);
  children_.emplace_back(name, std::move(child));
}

void Module::set_fqn(const std::string& fqn) {
  fqn_ = fqn;
  for (auto& [name, c] : children_) c->set_fqn(fqn_ + "." + name);
}

}  // namespace titan::nn
