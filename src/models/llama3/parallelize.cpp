#include "models/llama3/parallelize.hpp"

#include "core/errors.hpp"

namespace titan::llama3 {

namespace {

// The parameter becomes this rank's part of dim `dim` (still a meta tensor: FSDP or a load fills it).
void shard_parameter(dist::TpLayout& layout, const std::string& fqn, autograd::Variable& w, int dim) {
  Shape local = w.shape();
  local[size_t(dim)] /= layout.size;
  w.set_data(Tensor::meta(local));
  layout.sharded_dim[fqn] = dim;
  layout.local_shape[fqn] = local;
}

void require_divisible(std::int64_t n, int tp, const std::string& what) {
  if (n % tp != 0)
    throw UserError("parallelism: tensor_parallel_degree = " + std::to_string(tp) + " must divide " + what + " (" +
                    std::to_string(n) + "); choose a TP degree that divides it");
}

// Module input: sequence shards -> the whole sequence (encoded as its `consumers`, the Linears
// that read it, ask: e.g. float8); module output: partial sums -> shards. `last` is the Linear
// whose output is the module's (wo, w2): the backward all-gather brings its output gradient in
// the encoding it asks for (float8: e5m2).
void sequence_parallel_region(nn::Module& m, dist::ProcessGroup& tp, std::vector<nn::Linear*> consumers,
                              nn::Linear& last, bool async_tp, dist::TpLayout& layout) {
  layout.pairs += 2;
  bool fuse_in = async_tp;
  for (nn::Linear* c : consumers) fuse_in = fuse_in && c->honours_product();
  if (fuse_in) {
    // One fused gather for all consumers; each is handed its output for the input it is called with.
    auto handed = std::make_shared<std::vector<std::pair<autograd::Variable, autograd::Variable>>>(consumers.size());
    for (size_t i = 0; i < consumers.size(); ++i)
      consumers[i]->set_product([handed, i](const autograd::Variable& x, const autograd::Variable& w) {
        // The gathered input, possibly behind identity nodes (module backward hooks, e.g. the
        // profiler's): the same tensor. Anything else is computed here; a product from the
        // gathered variable itself is still right, as its gradient flows back through the gather.
        auto& [input, output] = (*handed)[i];
        const bool arrived = output.defined() && x.data().raw() == input.data().raw() &&
                             x.data().numel() == input.data().numel();
        autograd::Variable y = arrived ? output : autograd::linear(x, w);
        input = output = autograd::Variable();
        return y;
      });
    m.add_forward_input_hook([&tp, consumers, handed](nn::Module&, std::vector<autograd::Variable>& in) {
      std::vector<autograd::Variable> weights;
      for (nn::Linear* c : consumers) weights.push_back(c->weight);
      dist::GatheredLinears r = dist::all_gather_linears(in[0], weights, tp);
      for (size_t i = 0; i < consumers.size(); ++i) (*handed)[i] = {r.gathered, r.outputs[i]};
      in[0] = r.gathered;
    });
    ++layout.fused_pairs;
  } else {
    m.add_forward_input_hook([&tp, consumers](nn::Module&, std::vector<autograd::Variable>& in) {
      in[0] = dist::all_gather_sequence(in[0], tp, consumers);
    });
  }
  if (async_tp && last.honours_product()) {
    last.set_product([&tp](const autograd::Variable& x, const autograd::Variable& w) {
      return dist::linear_reduce_scatter(x, w, tp);
    });
    ++layout.fused_pairs;
  } else {
    m.add_forward_hook([&tp, &last](nn::Module&, std::vector<autograd::Variable>& out) {
      out[0] = dist::reduce_scatter_sequence(out[0], tp, &last);
    });
  }
}

}  // namespace

dist::TpLayout apply_tp(Transformer& model, dist::ProcessGroup& tp, bool loss_parallel, bool async_tp) {
  dist::TpLayout layout;
  layout.size = tp.size();
  layout.rank = tp.rank();
  if (layout.size == 1) return layout;
  const ModelArgs& a = model.args();
  const int T = layout.size;
  require_divisible(a.n_heads, T, "model n_heads");
  require_divisible(a.kv_heads(), T, "model n_kv_heads");
  require_divisible(a.ffn_hidden(), T, "the feed-forward hidden size");
  require_divisible(a.vocab_size, T, "the vocabulary size");

  auto& emb = model.tok_embeddings;
  shard_parameter(layout, "tok_embeddings.weight", emb.weight, 0);
  emb.hold_rows_from(layout.rank * (a.vocab_size / T));
  emb.add_forward_hook([&tp](nn::Module&, std::vector<autograd::Variable>& out) { out[0] = dist::reduce_scatter_sequence(out[0], tp); });

  for (auto& [name, m] : model.layers.named_children()) {
    auto* block = static_cast<TransformerBlock*>(m);
    const std::string prefix = "layers." + name + ".";
    Attention& attn = block->attention;
    for (const char* w : {"wq", "wk", "wv"}) shard_parameter(layout, prefix + "attention." + w + ".weight", attn.child<nn::Linear>(w).weight, 0);
    shard_parameter(layout, prefix + "attention.wo.weight", attn.wo().weight, 1);
    sequence_parallel_region(attn, tp, {&attn.wq(), &attn.wk(), &attn.wv()}, attn.wo(), async_tp, layout);
    FeedForward& ffn = block->feed_forward;
    for (const char* w : {"w1", "w3"}) shard_parameter(layout, prefix + "feed_forward." + w + ".weight", ffn.child<nn::Linear>(w).weight, 0);
    shard_parameter(layout, prefix + "feed_forward.w2.weight", ffn.w2().weight, 1);
    sequence_parallel_region(ffn, tp, {&ffn.w1(), &ffn.w3()}, ffn.w2(), async_tp, layout);
  }

  nn::Linear& out = model.output();
  shard_parameter(layout, "output.weight", out.weight, 0);
  ++layout.pairs;
  if (async_tp && out.honours_product()) {
    out.set_product([&tp](const autograd::Variable& x, const autograd::Variable& w) {
      return dist::all_gather_linears(x, {w}, tp).outputs[0];
    });
    ++layout.fused_pairs;
  } else {
    out.add_forward_input_hook([&tp, &out](nn::Module&, std::vector<autograd::Variable>& in) {
      in[0] = dist::all_gather_sequence(in[0], tp, {&out});
    });
  }
  if (!loss_parallel)
    out.add_forward_hook([&tp](nn::Module&, std::vector<autograd::Variable>& o) { o[0] = dist::all_gather_columns(o[0], tp); });
  return layout;
}

void apply_fsdp(Transformer& model, dist::Fsdp& fsdp, const std::string& policy) {
  const bool reshard = policy != "never";
  fsdp.add_unit("tok_embeddings", {&model.tok_embeddings}, reshard);
  for (auto& [name, block] : model.layers.named_children()) fsdp.add_unit("layers." + name, {block}, reshard);
  fsdp.add_unit("norm, output", {&model.norm, &model.output()}, policy == "always");
}

}  // namespace titan::llama3
