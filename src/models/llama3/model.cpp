#include "models/llama3/model.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <regex>
#include <stdexcept>

#include "core/errors.hpp"
#include "core/rng.hpp"
#include "ops/cpu/threads.hpp"

namespace titan::llama3 {

Attention::Attention(const ModelArgs& a, const ops::RopeTable* rope)
    : head_dim_(a.head_dim()),
      rope_(rope) {
  register_module("wq", std::make_unique<nn::Linear>(a.dim, a.n_heads * a.head_dim()));
  register_module("wk", std::make_unique<nn::Linear>(a.dim, a.kv_heads() * a.head_dim()));
  register_module("wv", std::make_unique<nn::Linear>(a.dim, a.kv_heads() * a.head_dim()));
  register_module("wo", std::make_unique<nn::Linear>(a.n_heads * a.head_dim(), a.dim));
}

std::vector<Variable> Attention::forward(const std::vector<Variable>& in) {
  const Variable& x = in[0];
  const std::int64_t B = x.shape()[0], S = x.shape()[1];
  // Heads are counted from the projections' widths, as TorchTitan's view(bs, seqlen, -1, head_dim):
  // a tensor-parallel plan that gives this rank n_heads / tp of them needs no change here.
  auto heads = [&](const Variable& proj) { return autograd::view(proj, {B, S, proj.shape().back() / head_dim_, head_dim_}); };
  Variable q = heads(wq()(x));
  Variable k = heads(wk()(x));
  Variable v = heads(wv()(x));
  q = autograd::rope(q, *rope_);
  k = autograd::rope(k, *rope_);
  Variable o = autograd::attention(q, k, v);
  return {wo()(autograd::view(o, {B, S, o.shape()[2] * head_dim_}))};
}

FeedForward::FeedForward(std::int64_t dim, std::int64_t hidden) {
  register_module("w1", std::make_unique<nn::Linear>(dim, hidden));
  register_module("w2", std::make_unique<nn::Linear>(hidden, dim));
  register_module("w3", std::make_unique<nn::Linear>(dim, hidden));
}

std::vector<Variable> FeedForward::forward(const std::vector<Variable>& in) {
  return {w2()(autograd::swiglu(w1()(in[0]), w3()(in[0])))};
}

TransformerBlock::TransformerBlock(std::int64_t layer_id, const ModelArgs& a, const ops::RopeTable* rope)
    : attention(register_module("attention", std::make_unique<Attention>(a, rope))),
      feed_forward(register_module("feed_forward", std::make_unique<FeedForward>(a.dim, a.ffn_hidden()))),
      attention_norm(register_module("attention_norm", std::make_unique<nn::RMSNorm>(a.dim, a.norm_eps))),
      ffn_norm(register_module("ffn_norm", std::make_unique<nn::RMSNorm>(a.dim, a.norm_eps))),
      layer_id_(layer_id) {}

std::vector<Variable> TransformerBlock::forward(const std::vector<Variable>& in) {
  // h = x + attention(attention_norm(x)) and ffn_norm(h) in one fused op: h is not written and
  // read back, and its two gradients meet inside the norm's backward.
  const std::vector<Variable> h = ffn_norm.call({in[0], attention(attention_norm(in[0]))});
  return {autograd::add(h[0], feed_forward(h[1]))};
}

std::vector<Variable> ModuleList::forward(const std::vector<Variable>&) {
  throw std::logic_error("ModuleList has no forward; call its children");
}

bool ActivationCheckpointing::applies_to(std::int64_t layer_id) const {
  switch (mode) {
    case Mode::none: return false;
    case Mode::full: return true;
    case Mode::selective: return (layer_id + 1) % every_n == 0;
    case Mode::op: return true;
  }
  return false;
}

void Transformer::set_activation_checkpointing(ActivationCheckpointing ac) {
  op_sac_ = {};
  if (ac.mode == ActivationCheckpointing::Mode::op && !ac.force_recompute_fqns.empty()) {
    for (auto& entry : named_modules()) {
      // Named, not a structured binding: clang 14 cannot capture a binding in a lambda.
      const std::string& fqn = entry.first;
      auto* m = entry.second;
      const bool listed = std::any_of(ac.force_recompute_fqns.begin(), ac.force_recompute_fqns.end(),
                                      [&](const std::string& f) { return fqn.find(f) != std::string::npos; });
      if (!listed) continue;
      auto* linear = dynamic_cast<nn::Linear*>(m);
      if (!linear)
        throw UserError("activation_checkpoint.per_op_sac_force_recompute_mm_shapes_by_fqns matches '" + fqn +
                        "', a " + m->type_name() + "; list FQNs of linear layers (e.g. feed_forward.w1)");
      const Shape shape = linear->weight.shape();
      auto& shapes = op_sac_.force_recompute_weight_shapes;
      if (std::find(shapes.begin(), shapes.end(), shape) == shapes.end()) shapes.push_back(shape);
    }
  }
  ac_ = std::move(ac);
}

Transformer::Transformer(const ModelArgs& a)
    : tok_embeddings(register_module("tok_embeddings", std::make_unique<nn::Embedding>(a.vocab_size, a.dim))),
      layers(register_module("layers", std::make_unique<ModuleList>())),
      norm(register_module("norm", std::make_unique<nn::RMSNorm>(a.dim, a.norm_eps))),
      args_(a) {
  if (a.dim % a.n_heads != 0 || a.n_heads % a.kv_heads() != 0 || a.head_dim() % 2 != 0)
    throw std::invalid_argument("llama3: dim " + std::to_string(a.dim) + ", n_heads " + std::to_string(a.n_heads) +
                                ", n_kv_heads " + std::to_string(a.kv_heads()) +
                                " do not give an even head_dim shared by whole KV groups");
  if (!nn::meta_mode()) build_rope_table();
  for (std::int64_t i = 0; i < a.n_layers; ++i) layers.append(std::make_unique<TransformerBlock>(i, a, &rope_));
  register_module("output", std::make_unique<nn::Linear>(a.dim, a.vocab_size));
}

void Transformer::build_rope_table() {
  if (rope_.cos.defined()) return;
  const ModelArgs& a = args_;
  rope_ = ops::rope_table(a.head_dim(), a.max_seq_len, a.rope_theta, a.rope_scaling ? &*a.rope_scaling : nullptr);
}

void Transformer::move_to(Device device) {
  for (auto& [fqn, p] : named_parameters())
    if (p->data().device() != device) p->set_data(p->data().to(device));
  build_rope_table();
  rope_ = {rope_.cos.to(device), rope_.sin.to(device)};
}

Variable Transformer::forward_tokens(const Tensor& tokens) {
  if (tokens.dim() != 2) throw std::invalid_argument("Transformer: tokens must be [batch, seq], got " + shape_str(tokens.shape()));
  if (tokens.size(1) > args_.max_seq_len)
    throw std::invalid_argument("Transformer: sequence of " + std::to_string(tokens.size(1)) + " tokens exceeds max_seq_len " +
                                std::to_string(args_.max_seq_len));
  tokens_ = tokens;
  Variable logits = call({})[0];
  // Not kept past the forward (the embedding's backward holds its own reference): a step that
  // dropped the previous step's tokens here would free memory from before it (StepCapture).
  tokens_ = Tensor();
  return logits;
}

std::vector<Variable> Transformer::forward(const std::vector<Variable>&) {
  const std::int64_t B = tokens_.size(0), S = tokens_.size(1);
  Variable h = tok_embeddings.lookup(tokens_);
  for (auto& [name, m] : layers.named_children()) {
    auto* block = static_cast<TransformerBlock*>(m);
    auto run_block = [block](const std::vector<Variable>& in) { return block->call(in); };
    if (ac_.mode == ActivationCheckpointing::Mode::op)
      h = autograd::checkpoint_op_sac(block->fqn(), run_block, {h}, op_sac_)[0];
    else if (ac_.applies_to(block->layer_id()))
      h = autograd::checkpoint(block->fqn(), run_block, {h})[0];
    else
      h = (*block)(h);
  }
  Variable logits = output()(norm(h));
  // The width from the tensor: a vocabulary-sharded output (loss parallel) gives vocab / tp.
  return {autograd::view(logits, {B * S, logits.shape().back()})};
}

InitSpec init_spec(const std::string& fqn, const ModelArgs& args) {
  static const std::regex layer_re(R"(layers\.(\d+)\.(attention|feed_forward)\.(w[qkvo123])\.weight)");
  std::smatch m;
  if (fqn == "tok_embeddings.weight") return {InitSpec::Kind::normal, 1.0};
  if (fqn == "output.weight") {
    const double std = 1.0 / std::sqrt(double(args.dim));
    return {InitSpec::Kind::trunc_normal, std, -3 * std, 3 * std};
  }
  if (fqn == "norm.weight" || fqn.ends_with("_norm.weight")) return {InitSpec::Kind::ones};
  if (std::regex_match(fqn, m, layer_re)) {
    const std::string w = m[3];
    const double depth_std = 0.02 / std::sqrt(2.0 * double(std::stoll(m[1]) + 1));
    const bool depth_scaled = w == "wo" || w == "w2" || w == "w3";
    return {InitSpec::Kind::trunc_normal, depth_scaled ? depth_std : 0.02, -2.0, 2.0};
  }
  throw std::invalid_argument("llama3: no initialisation rule for parameter '" + fqn + "'");
}

namespace {

// fill(part, offset) over `out` in chunks on the CPU pool (training.cpu_threads). The random
// streams are counter-based (element i's value depends only on the key and its index), so every
// split gives the same bits: an 8B-shaped model's ~1.5e9 values take seconds on all cores, not
// minutes on one.
void fill_in_chunks(Tensor& out, const std::function<void(Tensor&, std::int64_t)>& fill) {
  constexpr std::int64_t kGrain = 1 << 18;  // ~20 ms of trunc_normal per chunk
  if (!out.device().is_cpu() || out.numel() <= kGrain) return fill(out, 0);
  const Tensor flat = out.view({out.numel()});
  ops::cpu::parallel_chunks(out.numel(), kGrain, [&](std::int64_t begin, std::int64_t end) {
    Tensor part = flat.view_range(begin, {end - begin});
    fill(part, begin);
  });
}

}  // namespace

void init_parameter(const std::string& fqn, Tensor& out, std::int64_t first_element, const ModelArgs& args,
                    std::uint64_t seed) {
  const InitSpec spec = init_spec(fqn, args);
  const auto key = rng::make_key(seed, fqn);
  const auto first = static_cast<std::uint64_t>(first_element);
  switch (spec.kind) {
    case InitSpec::Kind::ones: out.fill(1.0); break;
    case InitSpec::Kind::normal:
      fill_in_chunks(out, [&](Tensor& part, std::int64_t at) {
        rng::fill_normal(part, key, first + std::uint64_t(at), 0.0, spec.std);
      });
      break;
    case InitSpec::Kind::trunc_normal:
      fill_in_chunks(out, [&](Tensor& part, std::int64_t at) {
        rng::fill_trunc_normal(part, key, first + std::uint64_t(at), 0.0, spec.std, spec.a, spec.b);
      });
      break;
  }
}

void init_weights(Transformer& model, std::uint64_t seed) {
  for (auto& [fqn, p] : model.named_parameters()) {
    Tensor t = p->data();
    init_parameter(fqn, t, 0, model.args(), seed);
  }
}

std::vector<std::string> describe_parameters(Transformer& model) {
  std::vector<std::string> lines;
  const std::string first_layer = "layers.0.";
  const std::string folded = "layers.{0.." + std::to_string(model.args().n_layers - 1) + "}.";
  for (auto& [fqn, p] : model.named_parameters()) {
    if (fqn.rfind("layers.", 0) == 0 && fqn.rfind(first_layer, 0) != 0) continue;
    std::string name = fqn.rfind(first_layer, 0) == 0 ? folded + fqn.substr(first_layer.size()) : fqn;
    lines.push_back(name + " " + shape_str(p->shape()));
  }
  return lines;
}

}  // namespace titan::llama3
