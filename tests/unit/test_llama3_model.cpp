// The Llama 3 model: FQNs, parameter counts, layout-independent init, activation checkpointing,
// and the golden check against the float64 PyTorch reference (scripts/reference/llama3_reference.py).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "checkpoint/safetensors.hpp"
#include "models/llama3/hf.hpp"
#include "models/llama3/model.hpp"
#include "ops/cpu/threads.hpp"

using namespace titan;
using namespace titan::llama3;

namespace {

ModelArgs tiny_args() {
  ModelArgs a;
  a.dim = 48;
  a.n_layers = 2;
  a.n_heads = 4;
  a.n_kv_heads = 2;
  a.vocab_size = 64;
  a.multiple_of = 32;
  a.ffn_dim_multiplier = std::nullopt;
  a.max_seq_len = 23;
  return a;
}

// max |a - b| / max |b|: the error relative to the tensor's scale.
double rel_error(const Tensor& a, const Tensor& b) {
  double diff = 0, scale = 0;
  for (std::int64_t i = 0; i < b.numel(); ++i) {
    diff = std::max(diff, std::abs(a.item(i) - b.item(i)));
    scale = std::max(scale, std::abs(b.item(i)));
  }
  return diff / scale;
}

}  // namespace

TEST_CASE("llama3: TorchTitan's FQNs and shapes") {
  ModelArgs a = *find_flavor("llama3", "debugmodel");
  a.max_seq_len = 64;
  Transformer model(a);
  auto params = model.named_parameters();
  REQUIRE(params.size() == 2 + 6 * 9 + 1);
  CHECK(params.front().first == "tok_embeddings.weight");
  CHECK(params[1].first == "layers.0.attention.wq.weight");
  CHECK(params[2].first == "layers.0.attention.wk.weight");
  CHECK(params[5].first == "layers.0.feed_forward.w1.weight");
  CHECK(params[8].first == "layers.0.attention_norm.weight");
  CHECK(params[9].first == "layers.0.ffn_norm.weight");
  CHECK(params[params.size() - 2].first == "norm.weight");
  CHECK(params.back().first == "output.weight");
  CHECK(params[5].second->shape() == Shape{768, 256});
  std::int64_t total = 0;
  for (auto& [fqn, p] : params) total += numel_of(p->shape());
  CHECK(total == count_parameters(a).total);
}

TEST_CASE("llama3: the 8B model is planned on the meta device and counts 8,030,261,248 parameters") {
  nn::MetaGuard meta;
  Transformer model(*find_flavor("llama3", "8B"));
  std::int64_t total = 0;
  for (auto& [fqn, p] : model.named_parameters()) {
    CHECK(p->data().is_meta());
    total += numel_of(p->shape());
  }
  CHECK(total == 8'030'261'248LL);
  auto lines = describe_parameters(model);
  CHECK(lines.front() == "tok_embeddings.weight [128256, 4096]");
  CHECK(lines[1] == "layers.{0..31}.attention.wq.weight [4096, 4096]");
  CHECK(lines[2] == "layers.{0..31}.attention.wk.weight [1024, 4096]");
  CHECK(lines.back() == "output.weight [128256, 4096]");
}

TEST_CASE("llama3 init: TorchTitan's distributions, identical for any sharding") {
  ModelArgs a = *find_flavor("llama3", "debugmodel");
  a.max_seq_len = 16;
  Transformer model(a);
  init_weights(model, 42);
  auto stats = [&](const std::string& fqn) {
    for (auto& [name, p] : model.named_parameters())
      if (name == fqn) {
        double s2 = 0, mx = 0;
        for (std::int64_t i = 0; i < p->data().numel(); ++i) {
          s2 += p->data().item(i) * p->data().item(i);
          mx = std::max(mx, std::abs(p->data().item(i)));
        }
        return std::pair{std::sqrt(s2 / double(p->data().numel())), mx};
      }
    FAIL("no parameter " << fqn);
    return std::pair{0.0, 0.0};
  };
  CHECK(stats("tok_embeddings.weight").first == Approx(1.0).epsilon(0.02));
  CHECK(stats("layers.0.attention.wq.weight").first == Approx(0.02).epsilon(0.02));
  CHECK(stats("layers.3.attention.wo.weight").first == Approx(0.02 / std::sqrt(8.0)).epsilon(0.02));
  CHECK(stats("layers.5.feed_forward.w3.weight").first == Approx(0.02 / std::sqrt(12.0)).epsilon(0.02));
  auto out = stats("output.weight");
  CHECK(out.first == Approx(1 / 16.0 * 0.9733).epsilon(0.03));  // std of N(0, s) cut at +-3s is 0.9733 s
  CHECK(out.second <= 3 / 16.0);
  CHECK(stats("norm.weight").first == 1.0);

  // A shard of rows [100, 200) of wq generated alone equals the same rows of the full tensor.
  Tensor shard = Tensor::empty({100, 256});
  init_parameter("layers.2.attention.wq.weight", shard, 100 * 256, a, 42);
  Tensor full = model.named_parameters()[1 + 2 * 9].second->data();
  REQUIRE(model.named_parameters()[1 + 2 * 9].first == "layers.2.attention.wq.weight");
  for (std::int64_t i = 0; i < shard.numel(); i += 97) CHECK(shard.item(i) == full.item(100 * 256 + i));
  // Another seed, other weights.
  Tensor other = Tensor::empty({100, 256});
  init_parameter("layers.2.attention.wq.weight", other, 100 * 256, a, 43);
  CHECK(other.item(0) != shard.item(0));
}

TEST_CASE("llama3 init on the CPU pool: the same bits on 1 and 3 threads, and as a small shard made alone") {
  const ModelArgs a = *find_flavor("llama3", "debugmodel");
  const std::string fqn = "layers.1.feed_forward.w1.weight";
  const Shape shape{1000, 600};  // 600,000 values: 3 chunks of the pool
  const int saved = ops::cpu::cpu_threads();
  std::vector<std::vector<double>> runs;
  for (const int threads : {1, 3}) {
    ops::cpu::set_cpu_threads(threads);
    Tensor t = Tensor::empty(shape);
    init_parameter(fqn, t, 0, a, 7);
    runs.push_back(t.to_vector());
  }
  ops::cpu::set_cpu_threads(saved);
  CHECK(runs[0] == runs[1]);
  // Rows [430, 450) straddle the first chunk boundary (element 262,144): one fill, no chunks.
  Tensor rows = Tensor::empty({20, 600});
  init_parameter(fqn, rows, 430 * 600, a, 7);
  const std::vector<double> alone = rows.to_vector();
  CHECK(std::equal(alone.begin(), alone.end(), runs[1].begin() + 430 * 600));
}

TEST_CASE("llama3 golden: logits, loss and every gradient match the float64 PyTorch reference") {
  auto golden = checkpoint::read_safetensors(std::string(TITAN_SOURCE_DIR) + "/tests/golden/llama3_tiny.safetensors");
  ModelArgs a = tiny_args();
  for (auto mode : {ActivationCheckpointing::Mode::none, ActivationCheckpointing::Mode::full,
                    ActivationCheckpointing::Mode::op}) {
    INFO("activation checkpointing mode " << int(mode));
    Transformer model(a);
    model.set_activation_checkpointing({mode, 1});
    for (auto& [fqn, p] : model.named_parameters()) {
      const Tensor& w = golden.tensors.at("weights." + fqn);
      REQUIRE(w.shape() == p->shape());
      p->data().copy_from(w);
    }
    const Tensor& tokens = golden.tensors.at("tokens");
    Tensor targets = golden.tensors.at("targets").view({tokens.numel()});
    autograd::Variable logits = model.forward_tokens(tokens);
    autograd::Variable loss = autograd::cross_entropy(logits, targets);
    CHECK(loss.data().item(0) == Approx(golden.tensors.at("loss").item(0)).epsilon(1e-6));
    CHECK(rel_error(logits.data(), golden.tensors.at("logits")) < 1e-5);
    loss.backward();
    for (auto& [fqn, p] : model.named_parameters()) {
      INFO(fqn);
      CHECK(rel_error(p->grad(), golden.tensors.at("grad." + fqn)) < 1e-5);
    }
  }
}

TEST_CASE("llama3: selective activation checkpointing follows TorchTitan's every-Nth-block rule") {
  ActivationCheckpointing ac{ActivationCheckpointing::Mode::selective, 2};
  CHECK(!ac.applies_to(0));
  CHECK(ac.applies_to(1));
  CHECK(!ac.applies_to(2));
  CHECK(ac.applies_to(3));
  CHECK(ActivationCheckpointing{ActivationCheckpointing::Mode::full, 1}.applies_to(4));
  CHECK(!ActivationCheckpointing{}.applies_to(4));
}

namespace {

double max_abs_diff(const Tensor& a, const Tensor& b) {
  double m = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(a.item(i) - b.item(i)));
  return m;
}

// Forward + backward of the debug model (2 layers, seq 64) under `ac`: the bytes the forward left
// alive for backward, the loss and every gradient.
struct AcRun {
  double saved_bytes = 0;
  double loss = 0;
  std::vector<Tensor> grads;
};
AcRun run_with_ac(const ActivationCheckpointing& ac) {
  ModelArgs a = *find_flavor("llama3", "debugmodel");
  a.n_layers = 2;
  const std::int64_t B = 2, S = 64;
  a.max_seq_len = S;
  Transformer model(a);
  model.set_activation_checkpointing(ac);
  init_weights(model, 3);
  Tensor tokens = Tensor::empty({B, S}, DType::i64);
  Tensor targets = Tensor::empty({B * S}, DType::i64);
  for (std::int64_t i = 0; i < B * S; ++i) {
    tokens.set(i, double((i * 13) % a.vocab_size));
    targets.set(i, double((i * 13 + 5) % a.vocab_size));
  }
  AcRun r;
  const std::size_t before = cpu_bytes_in_use();
  autograd::Variable loss = autograd::cross_entropy(model.forward_tokens(tokens), targets);
  r.saved_bytes = double(cpu_bytes_in_use()) - double(before);
  r.loss = loss.data().item(0);
  loss.backward();
  for (auto& [fqn, p] : model.named_parameters()) r.grads.push_back(p->grad());
  return r;
}

}  // namespace

TEST_CASE("llama3: per-op selective AC gives the same loss and gradients as none, bit for bit, keeping less than none and more than full") {
  using Mode = ActivationCheckpointing::Mode;
  const AcRun none = run_with_ac({Mode::none, 1});
  const AcRun full = run_with_ac({Mode::full, 1});
  const AcRun op = run_with_ac({Mode::op, 1});
  // The recompute runs the same kernels on the same inputs, and kept outputs are the forward's.
  CHECK(op.loss == none.loss);
  REQUIRE(op.grads.size() == none.grads.size());
  for (size_t i = 0; i < op.grads.size(); ++i) CHECK(max_abs_diff(op.grads[i], none.grads[i]) == 0.0);
  CHECK(op.saved_bytes < none.saved_bytes);
  CHECK(op.saved_bytes > full.saved_bytes);
  // Per block and token, op keeps 4 dim + kv_dim + ffn_hidden floats and H log-sum-exps beyond
  // full's block input: wq, wv, attention, w1 and w2 outputs (debug model: 4*256 + 256 + 768 + 16).
  const double T = 2 * 64;
  CHECK(op.saved_bytes - full.saved_bytes == Approx(2 * T * ((3 * 256 + 256 + 768) * 4 + 16 * 4)).epsilon(0.02));

  // Forcing w1 to recompute goes by its weight shape [768, 256], which w3 shares: both leave the
  // count, wq wk wv wo w2 are counted 1 to 5, so wq, wv and w2 stay kept and w1 no longer is.
  const AcRun forced = run_with_ac({Mode::op, 1, {"feed_forward.w1"}});
  CHECK(forced.loss == none.loss);
  for (size_t i = 0; i < forced.grads.size(); ++i) CHECK(max_abs_diff(forced.grads[i], none.grads[i]) == 0.0);
  CHECK(op.saved_bytes - forced.saved_bytes == Approx(2 * T * 768 * 4).epsilon(0.02));
}

TEST_CASE("llama3: per_op_sac_force_recompute_mm_shapes_by_fqns must name linears") {
  ModelArgs a = *find_flavor("llama3", "debugmodel");
  a.n_layers = 1;
  Transformer model(a);
  CHECK_THROWS_WITH(model.set_activation_checkpointing({ActivationCheckpointing::Mode::op, 1, {"attention_norm"}}),
                    Catch::Contains("matches 'layers.0.attention_norm', a RMSNorm"));
  // TorchTitan's default names a MoE router Llama does not have: nothing matches, nothing forced.
  CHECK_NOTHROW(model.set_activation_checkpointing({ActivationCheckpointing::Mode::op, 1, {"moe.router.gate"}}));
}

TEST_CASE("llama3: peak memory of a training step stays below 2x what the estimate accounts for") {
  for (auto mode : {ActivationCheckpointing::Mode::none, ActivationCheckpointing::Mode::selective,
                    ActivationCheckpointing::Mode::full, ActivationCheckpointing::Mode::op}) {
    ModelArgs a = *find_flavor("llama3", "debugmodel");
    const std::int64_t B = 2, S = 128;
    a.max_seq_len = S;
    const ActivationCheckpointing ac{mode, 2};
    std::int64_t checkpointed = 0;
    for (std::int64_t i = 0; i < a.n_layers; ++i) checkpointed += ac.applies_to(i);
    const std::size_t before = cpu_bytes_in_use();
    Transformer model(a);
    model.set_activation_checkpointing(ac);
    init_weights(model, 1);
    Tensor tokens = Tensor::empty({B, S}, DType::i64);
    Tensor targets = Tensor::empty({B * S}, DType::i64);
    for (std::int64_t i = 0; i < B * S; ++i) {
      tokens.set(i, double((i * 7) % a.vocab_size));
      targets.set(i, double((i * 7 + 1) % a.vocab_size));
    }
    reset_cpu_peak_bytes();
    autograd::cross_entropy(model.forward_tokens(tokens), targets).backward();
    const double peak = double(cpu_peak_bytes() - before);
    const ParamCount c = count_parameters(a);
    const double accounted =
        2.0 * 4 * double(c.total) +
        double(activation_bytes(a, B, S, checkpointed, 4, false, mode == ActivationCheckpointing::Mode::op));
    INFO("mode " << int(mode) << ": peak " << peak / 1e6 << " MB, accounted " << accounted / 1e6 << " MB");
    CHECK(peak < 2 * accounted);
    CHECK(peak > 0.5 * accounted);  // the estimate is not wildly pessimistic either
  }
}

TEST_CASE("HF import by row ranges (what an FSDP rank reads) equals the full read, q/k heads split anywhere") {
  const std::string dir = std::string(TITAN_SOURCE_DIR) + "/tests/golden/hf_tiny";
  std::ifstream in(dir + "/config.json");
  const llama3::ModelArgs args = llama3::args_from_hf_config(nlohmann::json::parse(in), dir + "/config.json");
  const auto full = llama3::read_hf(dir, args);
  REQUIRE(!full.empty());
  for (int shards : {2, 3, 5}) {
    for (int k = 0; k < shards; ++k) {
      std::map<std::string, std::pair<std::int64_t, std::int64_t>> wanted;
      for (const auto& [fqn, t] : full) {
        const std::int64_t per = (t.size(0) + shards - 1) / shards;
        const std::int64_t b = std::min(t.size(0), k * per), e = std::min(t.size(0), b + per);
        wanted[fqn] = {b, e};
      }
      const auto rows = llama3::read_hf_rows(dir, args, wanted);
      REQUIRE(rows.size() == full.size());
      for (const auto& [fqn, t] : full) {
        INFO(fqn << " shard " << k << " of " << shards);
        const auto& r = rows.at(fqn);
        REQUIRE(r.global == t.shape());
        const auto [b, e] = wanted.at(fqn);
        const std::int64_t row = t.numel() / t.size(0);
        REQUIRE(r.rows.numel() == (e - b) * row);
        REQUIRE(r.rows.to_vector() == t.view_range(b * row, {(e - b) * row}).to_vector());
      }
    }
  }
}
