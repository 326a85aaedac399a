#pragma once
// The Llama 3 transformer with TorchTitan's module tree and FQNs (DESIGN.md section 4):
//   tok_embeddings.weight
//   layers.{i}.attention.{wq,wk,wv,wo}.weight      layers.{i}.attention_norm.weight
//   layers.{i}.feed_forward.{w1,w2,w3}.weight      layers.{i}.ffn_norm.weight
//   norm.weight                                    output.weight
// Activations are [B, S, dim]; attention heads are [B, S, H, head_dim] views of the projections.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/llama3/args.hpp"
#include "nn/layers.hpp"

namespace titan::llama3 {

using autograd::Variable;

class Attention : public nn::Module {
 public:
  Attention(const ModelArgs& args, const ops::RopeTable* rope);
  std::string type_name() const override { return "Attention"; }
  nn::Linear& wq() { return child<nn::Linear>("wq"); }
  nn::Linear& wk() { return child<nn::Linear>("wk"); }
  nn::Linear& wv() { return child<nn::Linear>("wv"); }
  nn::Linear& wo() { return child<nn::Linear>("wo"); }

 protected:
  std::vector<Variable> forward(const std::vector<Variable>& in) override;

 private:
  std::int64_t head_dim_;
  const ops::RopeTable* rope_;
};

class FeedForward : public nn::Module {
 public:
  FeedForward(std::int64_t dim, std::int64_t hidden);
  std::string type_name() const override { return "FeedForward"; }
  nn::Linear& w1() { return child<nn::Linear>("w1"); }
  nn::Linear& w2() { return child<nn::Linear>("w2"); }
  nn::Linear& w3() { return child<nn::Linear>("w3"); }

 protected:
  std::vector<Variable> forward(const std::vector<Variable>& in) override;  // w2(silu(w1 x) * w3 x)
};

class TransformerBlock : public nn::Module {
 public:
  TransformerBlock(std::int64_t layer_id, const ModelArgs& args, const ops::RopeTable* rope);
  std::string type_name() const override { return "TransformerBlock"; }
  std::int64_t layer_id() const { return layer_id_; }
  Attention& attention;
  FeedForward& feed_forward;
  nn::RMSNorm &attention_norm, &ffn_norm;

 protected:
  // h = x + attention(attention_norm(x)); out = h + feed_forward(ffn_norm(h))
  std::vector<Variable> forward(const std::vector<Variable>& in) override;

 private:
  std::int64_t layer_id_;
};

// Children named "0", "1", ... so that their FQNs read layers.{i}.
class ModuleList : public nn::Module {
 public:
  std::string type_name() const override { return "ModuleList"; }
  template <class M>
  M& append(std::unique_ptr<M> m) {
    return register_module(std::to_string(size_++), std::move(m));
  }
  std::size_t size() const { return size_; }

 protected:
  std::vector<Variable> forward(const std::vector<Variable>&) override;

 private:
  std::size_t size_ = 0;
};

// Activation checkpointing policy (activation_checkpoint.mode / selective_ac_option).
struct ActivationCheckpointing {
  // op: per-op selective checkpointing of every block (autograd::checkpoint_op_sac).
  enum class Mode { none, full, selective, op } mode = Mode::none;
  std::int64_t every_n = 1;  // selective: TorchTitan checkpoints block i when (i + 1) % every_n == 0
  // op: linears whose FQN contains one of these are always recomputed, by weight shape as in
  // TorchTitan (per_op_sac_force_recompute_mm_shapes_by_fqns).
  std::vector<std::string> force_recompute_fqns = {};
  // Whether block `layer_id` is wrapped in a checkpoint (whole-block or per-op).
  bool applies_to(std::int64_t layer_id) const;
};

class Transformer : public nn::Module {
 public:
  // Builds the module tree; parameters are zero (norms one) until init_weights or a checkpoint
  // load. Under nn::MetaGuard nothing is allocated (for planning).
  explicit Transformer(const ModelArgs& args);
  std::string type_name() const override { return "Transformer"; }

  // Builds the RoPE table of a model constructed under nn::MetaGuard (whose parameters are then
  // materialised elsewhere, e.g. as FSDP shards); a no-op when it exists.
  void build_rope_table();
  // Moves every parameter and the RoPE table to `device` (single-process GPU training).
  void move_to(Device device);

  // tokens [B, S] (int32/int64) -> logits [B * S, vocab].
  Variable forward_tokens(const Tensor& tokens);
  // Throws UserError when a force_recompute_fqns entry matches a module that is not a Linear.
  void set_activation_checkpointing(ActivationCheckpointing ac);

  const ModelArgs& args() const { return args_; }
  nn::Embedding& tok_embeddings;
  ModuleList& layers;
  nn::RMSNorm& norm;
  nn::Linear& output() { return child<nn::Linear>("output"); }

 protected:
  std::vector<Variable> forward(const std::vector<Variable>& in) override;

 private:
  ModelArgs args_;
  ops::RopeTable rope_;
  ActivationCheckpointing ac_;
  autograd::OpSacPolicy op_sac_;  // ac_.mode == op: the weight shapes forced to recompute
  Tensor tokens_;
};

// ---- initialisation (TorchTitan's init_weights, layout-independent) ----
struct InitSpec {
  enum class Kind { normal, trunc_normal, ones } kind;
  double std = 1.0, a = 0, b = 0;  // trunc_normal bounds (absolute)
};
// How the parameter called `fqn` is initialised:
//   tok_embeddings: N(0, 1); wq, wk, wv, w1: trunc-normal std 0.02 cut at +-2;
//   wo, w2, w3: trunc-normal std 0.02 / sqrt(2 (layer_id + 1)) cut at +-2 (depth init);
//   output: trunc-normal std dim^-0.5 cut at +-3 std; norms: ones.
InitSpec init_spec(const std::string& fqn, const ModelArgs& args);
// Fills `out` with elements [first_element, first_element + out.numel()) of parameter `fqn`:
// element e is a pure function of (seed, fqn, e), so a shard is generated alone.
void init_parameter(const std::string& fqn, Tensor& out, std::int64_t first_element, const ModelArgs& args,
                    std::uint64_t seed);
void init_weights(Transformer& model, std::uint64_t seed);

// "tok_embeddings.weight [2048, 256]" etc., with the layers folded into one "layers.{0..N-1}" entry.
std::vector<std::string> describe_parameters(Transformer& model);

}  // namespace titan::llama3
