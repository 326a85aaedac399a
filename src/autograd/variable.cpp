#include "autograd/variable.hpp"

#include <atomic>
#include <map>
#include <queue>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "ops/ops.hpp"

namespace titan::autograd {

namespace {
std::atomic<std::uint64_t> g_sequence{0};
thread_local bool t_grad_enabled = true;
thread_local std::vector<std::function<void()>>* t_callbacks = nullptr;  // set while a backward runs
}  // namespace

struct VarImpl {
  Tensor data;
  Tensor grad;
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;
  int output_nr = 0;
  std::weak_ptr<Node> accumulator;  // leaves: created on first use, owned by the graph
  std::vector<std::function<void(Tensor&)>> accumulated_hooks;
  std::string name;
};

Node::Node(std::string n, int outputs) : name(std::move(n)), num_outputs(outputs), sequence_nr(g_sequence++) {}

namespace {

// Sum of gradients into a leaf's grad().
struct AccumulateGrad final : Node {
  explicit AccumulateGrad(std::shared_ptr<VarImpl> v) : Node("AccumulateGrad", 1), var(std::move(v)) {}
  std::vector<Tensor> apply(std::vector<Tensor>& g, bool) override {
    if (!g[0].defined()) return {};
    if (!var->grad.defined()) var->grad = g[0].clone();
    else ops::add_(var->grad, g[0]);
    for (auto& h : var->accumulated_hooks) h(var->grad);
    return {};
  }
  std::shared_ptr<VarImpl> var;
};

struct FunctionNode final : Node {
  FunctionNode(std::string n, int outputs, BackwardFn f) : Node(std::move(n), outputs), fn(std::move(f)) {}
  std::vector<Tensor> apply(std::vector<Tensor>& g, bool retain) override {
    if (!fn)
      throw std::logic_error("autograd: backward through '" + name +
                             "' a second time; its saved tensors were freed (use retain_graph)");
    std::vector<Tensor> out = fn(g);
    if (!retain) fn = nullptr;  // frees the saved tensors
    return out;
  }
  BackwardFn fn;
};

}  // namespace

Variable::Variable(Tensor data, bool requires_grad, std::string name) : impl_(std::make_shared<VarImpl>()) {
  impl_->data = std::move(data);
  impl_->requires_grad = requires_grad;
  impl_->name = std::move(name);
}

const Tensor& Variable::data() const { return impl_->data; }
void Variable::set_data(Tensor t) { impl_->data = std::move(t); }
Tensor& Variable::grad() const { return impl_->grad; }
bool Variable::requires_grad() const { return impl_ && impl_->requires_grad; }
const std::shared_ptr<Node>& Variable::grad_fn() const { return impl_->grad_fn; }
bool Variable::is_leaf() const { return impl_->grad_fn == nullptr; }
const std::string& Variable::name() const { return impl_->name; }
void Variable::zero_grad() { impl_->grad = Tensor(); }

Edge Variable::gradient_edge() const {
  if (!requires_grad()) return {};
  if (impl_->grad_fn) return {impl_->grad_fn, impl_->output_nr};
  std::shared_ptr<Node> acc = impl_->accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(impl_);
    impl_->accumulator = acc;
  }
  return {acc, 0};
}

Variable Variable::detach() const { return Variable(impl_->data, false, impl_->name); }

void Variable::add_grad_accumulated_hook(std::function<void(Tensor&)> hook) {
  impl_->accumulated_hooks.push_back(std::move(hook));
}

Variable Variable::make_output(Tensor data, std::shared_ptr<Node> fn, int output_nr) {
  Variable v(std::move(data), fn != nullptr);
  v.impl_->grad_fn = std::move(fn);
  v.impl_->output_nr = output_nr;
  return v;
}

void Variable::backward(Tensor grad, bool retain_graph) const { run_backward({*this}, {std::move(grad)}, retain_graph); }

NoGradGuard::NoGradGuard() : prev_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = prev_; }
bool grad_enabled() { return t_grad_enabled; }
bool in_backward() { return t_callbacks != nullptr; }

void queue_callback(std::function<void()> fn) {
  if (!t_callbacks) throw std::logic_error("autograd::queue_callback outside backward");
  t_callbacks->push_back(std::move(fn));
}

void run_backward(const std::vector<Variable>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  // Seed gradients.
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  std::vector<std::shared_ptr<Node>> starts;
  auto accumulate = [&](const std::shared_ptr<Node>& node, int input_nr, const Tensor& g) {
    auto& buf = buffers[node.get()];
    if (buf.empty()) buf.resize(static_cast<size_t>(node->num_outputs));
    Tensor& slot = buf[static_cast<size_t>(input_nr)];
    slot = slot.defined() ? ops::add(slot, g) : g;  // never modify a gradient someone else holds
  };
  for (size_t i = 0; i < roots.size(); ++i) {
    const Variable& r = roots[i];
    if (!r.requires_grad())
      throw std::logic_error("autograd: backward from a variable that does not require grad");
    Tensor g = i < grads.size() ? grads[i] : Tensor();
    if (!g.defined()) {
      if (r.data().numel() != 1) throw std::logic_error("autograd: backward from a non-scalar needs a gradient");
      g = Tensor::full(r.data().shape(), 1.0, r.data().dtype(), r.data().device());
    }
    Edge e = r.gradient_edge();
    accumulate(e.node, e.input_nr, g);
    starts.push_back(e.node);
  }

  // Dependencies: how many edges inside the graph point at each node.
  std::unordered_map<Node*, int> deps;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  for (auto& s : starts)
    if (seen.insert(s.get()).second) stack.push_back(s.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& e : n->next_edges) {
      if (!e.node) continue;
      ++deps[e.node.get()];
      if (seen.insert(e.node.get()).second) stack.push_back(e.node.get());
    }
  }

  // Ready nodes run latest-created first, so backward mirrors forward order.
  auto later_first = [](const std::shared_ptr<Node>& a, const std::shared_ptr<Node>& b) {
    return a->sequence_nr < b->sequence_nr;
  };
  std::priority_queue<std::shared_ptr<Node>, std::vector<std::shared_ptr<Node>>, decltype(later_first)> ready(later_first);
  std::unordered_set<Node*> queued;
  for (auto& s : starts)
    if (deps[s.get()] == 0 && queued.insert(s.get()).second) ready.push(s);

  std::vector<std::function<void()>> callbacks;
  auto* outer_callbacks = t_callbacks;
  if (!outer_callbacks) t_callbacks = &callbacks;  // nested backwards queue into the outermost
  try {
    while (!ready.empty()) {
      std::shared_ptr<Node> node = ready.top();
      ready.pop();
      std::vector<Tensor> grad_out = std::move(buffers[node.get()]);
      buffers.erase(node.get());
      grad_out.resize(static_cast<size_t>(node->num_outputs));
      for (auto& h : node->pre_hooks) h(grad_out);
      std::vector<Tensor> grad_in = node->apply(grad_out, retain_graph);
      for (auto& h : node->post_hooks) h();
      for (size_t i = 0; i < node->next_edges.size(); ++i) {
        const Edge& e = node->next_edges[i];
        if (!e.node) continue;
        if (i < grad_in.size() && grad_in[i].defined()) accumulate(e.node, e.input_nr, grad_in[i]);
        if (--deps[e.node.get()] == 0 && queued.insert(e.node.get()).second) ready.push(e.node);
      }
    }
    for (size_t i = 0; i < callbacks.size(); ++i) callbacks[i]();  // callbacks may queue more
  } catch (...) {
    t_callbacks = outer_callbacks;
    throw;
  }
  t_callbacks = outer_callbacks;
}

std::vector<Variable> record(const std::string& name, const std::vector<Variable>& inputs, std::vector<Tensor> outputs,
                             BackwardFn fn) {
  bool any = false;
  for (const auto& in : inputs) any |= in.requires_grad();
  std::vector<Variable> result;
  result.reserve(outputs.size());
  if (!any || !grad_enabled()) {
    for (auto& t : outputs) result.emplace_back(std::move(t), false);
    return result;
  }
  auto node = std::make_shared<FunctionNode>(name, static_cast<int>(outputs.size()), std::move(fn));
  for (const auto& in : inputs) node->next_edges.push_back(in.gradient_edge());
  for (size_t i = 0; i < outputs.size(); ++i) result.push_back(Variable::make_output(std::move(outputs[i]), node, int(i)));
  return result;
}

Variable record1(const std::string& name, const std::vector<Variable>& inputs, Tensor output, BackwardFn fn) {
  std::vector<Tensor> outs;
  outs.push_back(std::move(output));
  return record(name, inputs, std::move(outs), std::move(fn))[0];
}

}  // namespace titan::autograd
