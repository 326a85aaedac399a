#pragma once
// Reverse-mode autograd with a dynamic tape (DESIGN.md section 3).
//
// A Variable is a Tensor plus autograd metadata. An op on Variables whose inputs require grad
// records a Node holding what its backward needs (captured in a closure) and one Edge per input
// pointing at the node that produced that input (or at the input's AccumulateGrad if it is a
// leaf). backward() runs the graph in reverse creation order, summing the gradients that reach
// each node, and accumulates leaf gradients into Variable::grad().
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace titan::autograd {

struct Node;
struct VarImpl;

// Where a gradient flows: input `input_nr` of `node` (null node: the input needs no gradient).
struct Edge {
  std::shared_ptr<Node> node;
  int input_nr = 0;
};

struct Node : std::enable_shared_from_this<Node> {
  explicit Node(std::string name, int num_outputs);
  virtual ~Node() = default;
  // Gradients w.r.t. this node's outputs in, gradients w.r.t. its inputs out (one per next_edge;
  // undefined Tensors for inputs that get none). `retain` keeps saved state for another backward.
  virtual std::vector<Tensor> apply(std::vector<Tensor>& grad_outputs, bool retain) = 0;

  std::string name;
  int num_outputs;
  std::uint64_t sequence_nr;       // creation order: later nodes run first in backward
  std::vector<Edge> next_edges;    // one per input
  // Called with the gradients w.r.t. the outputs before apply (module backward pre-hooks).
  std::vector<std::function<void(std::vector<Tensor>&)>> pre_hooks;
  // Called after apply (module backward hooks, "gradient ready" callbacks).
  std::vector<std::function<void()>> post_hooks;
};

class Variable {
 public:
  Variable() = default;
  // A leaf. `requires_grad` leaves accumulate gradients in grad().
  explicit Variable(Tensor data, bool requires_grad = false, std::string name = "");

  bool defined() const { return impl_ != nullptr; }
  const Tensor& data() const;
  // Replaces the tensor behind this variable (same shape), e.g. FSDP swapping in gathered storage.
  void set_data(Tensor t);
  Tensor& grad() const;  // undefined until a gradient arrives
  bool requires_grad() const;
  const std::shared_ptr<Node>& grad_fn() const;
  bool is_leaf() const;
  const std::string& name() const;
  const Shape& shape() const { return data().shape(); }

  // The gradient edge for using this variable as an op input.
  Edge gradient_edge() const;
  // A new leaf sharing this tensor, cut from the graph.
  Variable detach() const;
  // Hook run after a gradient was accumulated into this leaf's grad(); it receives that grad.
  void add_grad_accumulated_hook(std::function<void(Tensor& grad)> hook);
  void zero_grad();

  // backward() from a scalar (default gradient 1) or with an explicit gradient.
  void backward(Tensor grad = Tensor(), bool retain_graph = false) const;

  // Used by the recording machinery: make this variable output `output_nr` of `fn`.
  static Variable make_output(Tensor data, std::shared_ptr<Node> fn, int output_nr);
  VarImpl* impl() const { return impl_.get(); }

 private:
  std::shared_ptr<VarImpl> impl_;
};

// Disables recording in its scope (thread-local), like torch.no_grad().
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();

 private:
  bool prev_;
};
bool grad_enabled();

// Runs backward from `roots` with `grads` (one per root; undefined = ones for a scalar root).
void run_backward(const std::vector<Variable>& roots, const std::vector<Tensor>& grads, bool retain_graph);
// Registers a callback for the end of the current backward (FSDP waits for reductions there).
// Inside a nested backward (activation checkpointing re-runs a block's backward inside the
// outer one) it still belongs to the outermost backward. Outside a backward it throws.
void queue_callback(std::function<void()> fn);
// True while a backward runs on this thread (FSDP: a forward re-run by activation checkpointing
// must not free the parameters its backward is about to use).
bool in_backward();

// ---- custom functions ----
// backward(grad_outputs) -> grad_inputs, one per input (undefined = no gradient).
using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;

// Records `outputs` as produced from `inputs` by an op named `name` whose backward is `fn`.
// Nothing is recorded when grad mode is off or no input requires grad; then `fn` (and the
// tensors it captured) are dropped at once. Every built-in op and Float8Linear go through this.
std::vector<Variable> record(const std::string& name, const std::vector<Variable>& inputs, std::vector<Tensor> outputs,
                             BackwardFn fn);
Variable record1(const std::string& name, const std::vector<Variable>& inputs, Tensor output, BackwardFn fn);

}  // namespace titan::autograd
