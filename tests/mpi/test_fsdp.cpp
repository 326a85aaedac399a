// FSDP on every (replicate, shard) factorisation of the world: a sharded model computes what the
// full model computes (loss bit-identical, gradients to rounding of the averaging), each rank
// holds 1/shard of the state, float8 all-gather reproduces the single-process float8 weights bit
// for bit, and the amax all-reduces are counted as the recipe says.
#include <catch2/catch.hpp>

#include <cstring>

#include <cmath>
#include <map>
#include <optional>

#include "autograd/functions.hpp"
#include "dist/fsdp.hpp"
#include "ops/cpu/threads.hpp"
#include "float8/fsdp_float8.hpp"
#include "models/llama3/parallelize.hpp"
#include "mpi_world.hpp"

using namespace titan;
using namespace titan::dist;

namespace {

llama3::ModelArgs tiny_args() {
  llama3::ModelArgs a;
  a.dim = 64;
  a.n_layers = 2;
  a.n_heads = 4;
  a.n_kv_heads = 2;
  a.vocab_size = 96;
  a.multiple_of = 16;  // ffn hidden 176: every Linear dim divisible by 16 (float8-eligible)
  a.max_seq_len = 8;
  return a;
}

std::vector<std::pair<int, int>> meshes(int world) {
  std::vector<std::pair<int, int>> out;
  for (int r = 1; r <= world; ++r)
    if (world % r == 0) out.emplace_back(r, world / r);
  return out;
}

constexpr std::uint64_t kSeed = 11;

struct Batch {
  Tensor tokens = Tensor::empty({2, 8}, DType::i64), labels = Tensor::empty({16}, DType::i64);
  Batch() {
    for (int i = 0; i < 16; ++i) {
      tokens.set(i, (i * 37 + 5) % 96);
      labels.set(i, (i * 53 + 17) % 96);
    }
  }
};

// The single-process model (float8-converted when asked), initialised whole.
std::unique_ptr<llama3::Transformer> full_model(bool float8) {
  auto m = std::make_unique<llama3::Transformer>(tiny_args());
  if (float8) float8::convert_to_float8(*m, {}, "tensorwise");
  llama3::init_weights(*m, kSeed);
  return m;
}

struct Sharded {
  std::unique_ptr<llama3::Transformer> model;
  std::unique_ptr<Fsdp> fsdp;
  int precompute_all_reduces = 0;
};

// float8_gather: Float8Linear weights travel as e4m3 (the float8 all-gather extension), with
// scales precomputed in one all-reduce when `precompute`.
Sharded sharded_model(DeviceMesh& mesh, bool float8, FsdpOptions opt, const std::string& reshard = "default",
                      bool float8_gather = false, bool precompute = false) {
  Sharded s;
  {
    nn::MetaGuard meta;  // no rank builds the full model
    s.model = std::make_unique<llama3::Transformer>(tiny_args());
    if (float8) float8::convert_to_float8(*s.model, {}, "tensorwise");
  }
  if (float8_gather) float8::enable_fsdp_float8_all_gather(*s.model);
  s.model->build_rope_table();
  s.fsdp = std::make_unique<Fsdp>(mesh, opt);
  llama3::apply_fsdp(*s.model, *s.fsdp, reshard);
  s.fsdp->init_shards([](const std::string& fqn, Tensor& rows, std::int64_t first) {
    llama3::init_parameter(fqn, rows, first, tiny_args(), kSeed);
  });
  s.fsdp->refresh_after_update();
  if (precompute)
    s.precompute_all_reduces = float8::precompute_float8_dynamic_scale_for_fsdp(
        *s.model, [&](const autograd::Variable& w) -> const Tensor& { return s.fsdp->local_shard_of(w); },
        [&](const Tensor& t) { mesh.shard_group().all_reduce(t, ReduceOp::max); });
  return s;
}

double loss_of(llama3::Transformer& m, const Batch& b, bool backward) {
  autograd::Variable loss = autograd::cross_entropy(m.forward_tokens(b.tokens), b.labels);
  if (backward) loss.backward();
  return loss.data().item(0);
}

std::map<std::string, autograd::Variable*> by_fqn(llama3::Transformer& m) {
  std::map<std::string, autograd::Variable*> out;
  for (auto& [fqn, p] : m.named_parameters()) out[fqn] = p;
  return out;
}

}  // namespace

TEST_CASE("fsdp: sharded training step equals the full model's, on every mesh and reshard policy") {
  const Batch batch;
  auto ref = full_model(false);
  const double ref_loss = loss_of(*ref, batch, true);
  auto ref_params = by_fqn(*ref);
  for (auto [rep, sh] : meshes(g_world->size()))
    for (const char* policy : {"default", "always", "never"}) {
      INFO("mesh " << rep << " x " << sh << ", reshard " << policy);
      DeviceMesh mesh(*g_world, rep, sh);
      Sharded s = sharded_model(mesh, false, {}, policy);
      // Every rank feeds the same batch, so the averaged gradients are the full model's.
      CHECK(loss_of(*s.model, batch, true) == ref_loss);  // same weights, same ops: bit-identical
      auto shards = s.fsdp->sharded_parameters();
      for (size_t i = 0; i < shards.size(); ++i) {
        const std::string& fqn = s.fsdp->fqn_of(i);
        const Tensor full = ref_params.at(fqn)->grad(), mine = shards[i]->grad();
        REQUIRE(mine.defined());
        const std::int64_t rows = full.size(0), rps = mine.size(0), row = full.numel() / rows;
        const std::int64_t first = mesh.shard_index() * rps;
        double worst = 0;
        for (std::int64_t r = 0; r < rps; ++r)
          for (std::int64_t c = 0; c < row; ++c) {
            const double got = mine.item(r * row + c);
            const double want = first + r < rows ? full.item((first + r) * row + c) : 0.0;  // padding stays 0
            worst = std::max(worst, std::abs(got - want) / (std::abs(want) + 1e-6));
          }
        INFO(fqn);
        CHECK(worst < 1e-5);
      }
    }
}

TEST_CASE("fsdp: parameter init on several pool threads gives the same bits as on one") {
  DeviceMesh mesh(*g_world, 1, g_world->size());
  auto shards = [&](int threads) {
    ops::cpu::set_cpu_threads(threads);
    Sharded s = sharded_model(mesh, false, FsdpOptions{});
    std::vector<Tensor> out;
    for (auto* p : s.fsdp->sharded_parameters()) out.push_back(p->data().clone());
    return out;
  };
  const auto one = shards(1), four = shards(4);
  ops::cpu::set_cpu_threads(1);
  REQUIRE(one.size() == four.size());
  for (size_t i = 0; i < one.size(); ++i) {
    REQUIRE(one[i].nbytes() == four[i].nbytes());
    CHECK(std::memcmp(one[i].raw(), four[i].raw(), one[i].nbytes()) == 0);
  }
}

TEST_CASE("fsdp: each rank holds 1/shard of the parameters and gradients (padded to whole rows)") {
  auto ref = full_model(false);
  std::int64_t full_bytes = 0, max_row_bytes = 0;
  for (auto& [fqn, p] : ref->named_parameters()) {
    full_bytes += std::int64_t(p->data().nbytes());
    max_row_bytes += std::int64_t(p->data().nbytes()) / p->shape()[0];
  }
  const Batch batch;
  for (auto [rep, sh] : meshes(g_world->size())) {
    INFO("mesh " << rep << " x " << sh);
    DeviceMesh mesh(*g_world, rep, sh);
    Sharded s = sharded_model(mesh, false, {});
    loss_of(*s.model, batch, true);
    const ShardedStateBytes b = s.fsdp->state_bytes();
    CHECK(b.params * sh >= full_bytes);
    CHECK(b.params * sh <= full_bytes + (sh - 1) * max_row_bytes);  // at most S - 1 padding rows per parameter
    CHECK(b.grads == b.params);
  }
}

TEST_CASE("fsdp: float8 all-gather gives bit-identical float8 weights and loss; amax all-reduces counted") {
  const Batch batch;
  auto ref = full_model(true);
  autograd::NoGradGuard no_grad;
  const double ref_loss = loss_of(*ref, batch, false);
  auto ref_params = by_fqn(*ref);
  for (auto [rep, sh] : meshes(g_world->size()))
    for (bool precompute : {false, true}) {
      INFO("mesh " << rep << " x " << sh << (precompute ? ", precomputed scales" : ""));
      DeviceMesh mesh(*g_world, rep, sh);
      Sharded s = sharded_model(mesh, true, {}, "never", true, precompute);  // units stay gathered for inspection
      reset_comm_stats();
      CHECK(loss_of(*s.model, batch, false) == ref_loss);
      // 2 blocks x 7 Linears + output: one all-reduce each at their gather, or one for all of
      // them after the shards changed (already issued) when precomputed.
      CHECK(s.fsdp->extension_all_reduces() == (precompute ? 0 : 15));
      CHECK(s.precompute_all_reduces == (precompute ? 1 : 0));
      // The float8 weights travel as 1 byte per element, the rest (norms, embedding) as f32.
      std::int64_t expect_bytes = 0;
      for (auto& [fqn, p] : s.model->named_parameters()) {
        const std::int64_t rows = p->shape()[0], rps = (rows + sh - 1) / sh, row = p->data().numel() / rows;
        const bool f8 = p->data().dtype() == DType::f8e4m3;
        // Counted as what arrives: each rank's segment of the unit's flat buffer, 16-byte aligned.
        expect_bytes += sh * ((rps * row * (f8 ? 1 : 4) + 15) / 16 * 16);
      }
      // A shard group of one exchanges nothing (each shard is cast straight into its buffer).
      CHECK(comm_stats().bytes[CommStats::all_gather] == (sh > 1 ? expect_bytes : 0));
      int compared = 0;
      for (auto& [fqn, m] : s.model->named_modules()) {
        auto* f8 = dynamic_cast<float8::Float8Linear*>(m);
        if (!f8) continue;
        const Tensor gathered = f8->weight.data();  // the e4m3 bytes the GEMMs use
        REQUIRE(gathered.dtype() == DType::f8e4m3);
        const Tensor want = float8::cast_to_float8(ref_params.at(fqn + ".weight")->data(), DType::f8e4m3,
                                                   float8::Granularity::tensorwise, 0, false).data;
        bool same = true;
        for (std::int64_t i = 0; i < want.numel(); ++i) same &= gathered.data<std::uint8_t>()[i] == want.data<std::uint8_t>()[i];
        INFO(fqn);
        CHECK(same);
        ++compared;
      }
      CHECK(compared == 15);
    }
}

TEST_CASE("fsdp: what backward keeps alive is references to gathered units, in bf16 as in f32") {
  // Live allocator bytes right after forward, per rank: the master shards plus whatever the
  // graph keeps for backward. The layers save references to FSDP's gathered buffers (released
  // after forward, re-gathered for backward), never private copies, so bf16 mixed precision keeps
  // less alive than f32 (its activations are bf16), and the total falls as the shard degree grows.
  const Batch batch;
  std::map<int, std::size_t> live_f32;
  for (auto [rep, sh] : meshes(g_world->size()))
    for (DType param_dtype : {DType::f32, DType::bf16}) {
      INFO("mesh " << rep << " x " << sh << (param_dtype == DType::bf16 ? ", bf16" : ", f32"));
      DeviceMesh mesh(*g_world, rep, sh);
      const std::size_t before = cpu_bytes_in_use();
      std::size_t after_forward = 0;
      {
        FsdpOptions opt;
        opt.param_dtype = param_dtype;
        Sharded s = sharded_model(mesh, false, opt);
        autograd::Variable loss = autograd::cross_entropy(s.model->forward_tokens(batch.tokens), batch.labels);
        after_forward = cpu_bytes_in_use() - before;
        loss.backward();
      }
      if (param_dtype == DType::f32) {
        live_f32[sh] = after_forward;
      } else {
        CHECK(after_forward < live_f32[sh]);  // bf16 activations take half the bytes
      }
    }
  // Shard degrees in increasing order: what is alive after forward shrinks with each.
  std::size_t previous = SIZE_MAX;
  for (auto& [sh, bytes] : live_f32) {
    INFO("shard " << sh << ": " << bytes << " bytes alive after forward");
    CHECK(bytes < previous);
    previous = bytes;
  }
}

TEST_CASE("fsdp: one collective per unit and direction; prefetch issues the next unit's gather before this one computes") {
  const Batch batch;
  // Units in forward order: tok_embeddings, layers.0, layers.1, [norm, output].
  const char* unit_fqns[] = {"tok_embeddings", "layers.0", "layers.1", "output"};
  const int n_units = 4;
  for (auto [rep, sh] : meshes(g_world->size()))
    for (bool prefetch : {true, false}) {
      INFO("mesh " << rep << " x " << sh << (prefetch ? ", prefetch" : ", no prefetch"));
      DeviceMesh mesh(*g_world, rep, sh);
      Sharded s = sharded_model(mesh, false, {});
      s.fsdp->set_prefetch(prefetch);
      // Hooks registered after FSDP's: a unit's forward pre-hook sees its own gather done and,
      // with prefetch, the next one issued; its post-hook runs when its compute has ended.
      // The clock: gathers FSDP has issued (a shard group of one issues them without a collective).
      const std::int64_t gathers_before = s.fsdp->gather_counts().shard_group;
      const auto gathers = [&] { return s.fsdp->gather_counts().shard_group - gathers_before; };
      std::map<std::string, std::int64_t> gathers_at_end, gathers_at_backward;
      int max_live = 0;
      for (auto& [fqn, m] : s.model->named_modules())
        for (const char* u : unit_fqns)
          if (fqn == u) {
            m->add_forward_pre_hook([&](nn::Module&) { max_live = std::max(max_live, s.fsdp->live_units()); });
            m->add_forward_hook([&, name = fqn](nn::Module&, std::vector<autograd::Variable>&) {
              if (!autograd::in_backward()) gathers_at_end[name] = gathers();
              max_live = std::max(max_live, s.fsdp->live_units());
            });
            m->add_backward_pre_hook([&, name = fqn](nn::Module&) {
              gathers_at_backward[name] = gathers();
              max_live = std::max(max_live, s.fsdp->live_units());
            });
          }
      reset_comm_stats();
      loss_of(*s.model, batch, true);
      // Forward: when unit i finishes computing, units 0..i are gathered and (prefetch) i+1 issued.
      for (int i = 0; i + 1 < n_units; ++i) {
        INFO(unit_fqns[i]);
        CHECK(gathers_at_end[unit_fqns[i]] == i + 1 + (prefetch ? 1 : 0));
      }
      // Backward (default policy: the last unit stays gathered, the others re-gather): when
      // layers.1's backward starts, its own re-gather is done and layers.0's issued.
      CHECK(gathers_at_backward["layers.1"] == n_units + 1 + (prefetch ? 1 : 0));
      // One gather per unit in forward, one re-gather per resharded unit in backward, one
      // reduce-scatter per unit, and on replicate > 1 one all-reduce per unit. A shard group of
      // one gathers and reduces without a collective (on replicas, only their all-reduce runs).
      const CommStats& c = comm_stats();
      CHECK(gathers() == n_units + (n_units - 1));
      CHECK(c.calls[CommStats::all_gather] == (sh > 1 ? n_units + (n_units - 1) : 0));
      CHECK(c.calls[CommStats::reduce_scatter] == (sh > 1 ? n_units : 0));
      CHECK(c.calls[CommStats::all_reduce] == (rep > 1 ? n_units : 0));
      // Memory bound: never more than two units' full parameters alive (the computing one and the
      // prefetched one); one without prefetch.
      CHECK(max_live == (prefetch ? 2 : 1));
    }
}
