// Delayed float8 scaling against the last torchao that had it (0.9.0, torch 2.6, emulate mode):
// tests/golden/float8_delayed.safetensors, made by scripts/reference/make_float8_delayed_golden.py.
// One Float8Linear trains step by step (input, weight and grad_output delayed, amax history 4);
// after every step's sync the amax histories and scales must equal torchao's bit for bit, and
// each micro-batch's output and gradients must equal torchao's up to f32 GEMM rounding (the
// float8 operands are identical).
//
// Layout: torchao keeps a fixed-length history, newest first, zero-filled, whose first step also
// holds the amax its initialisation measured; titan.cpp keeps the entries only, newest last. The
// tests map ours to torchao's layout (reverse, then that initial entry, then zeros): the entries
// are the same numbers; the extra initial copy and the zeros never change max(history), so the
// scales are the same bits (checked).
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <barrier>
#include <bit>
#include <cmath>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/safetensors.hpp"
#include "float8/float8_linear.hpp"

using namespace titan;
using namespace titan::float8;

namespace {

const checkpoint::SafetensorsFile& golden() {
  static const auto f =
      checkpoint::read_safetensors(std::string(TITAN_SOURCE_DIR) + "/tests/golden/float8_delayed.safetensors");
  return f;
}
const Tensor& G(const std::string& name) {
  INFO("golden tensor " << name);
  REQUIRE(golden().tensors.count(name) == 1);
  return golden().tensors.at(name);
}
int meta_int(const std::string& key) { return std::stoi(golden().metadata.at(key)); }

bool same_bits(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }

// max |a - b| / max |b|: f32 GEMM rounding is ~1e-7 of the output's scale.
double rel(const Tensor& a, const Tensor& b) {
  REQUIRE(a.numel() == b.numel());
  double diff = 0, scale = 0;
  for (std::int64_t i = 0; i < b.numel(); ++i) {
    diff = std::max(diff, std::abs(a.item(i) - b.item(i)));
    scale = std::max(scale, std::abs(b.item(i)));
  }
  return scale > 0 ? diff / scale : diff;
}

const char* kRoles[3] = {"input", "weight", "grad_output"};
const DType kDtypes[3] = {DType::f8e4m3, DType::f8e4m3, DType::f8e5m2};

// Our history of role r in torchao's layout (see the top of the file).
std::vector<float> torchao_layout(const DelayedScaling& s, int r, float initial_entry) {
  const std::vector<float> h = s.history(DelayedScaling::Role(r));
  std::vector<float> out(h.rbegin(), h.rend());
  out.push_back(initial_entry);
  out.resize(static_cast<size_t>(s.length()), 0.0f);
  return out;
}

// One micro-batch through `layer` with the golden weight; returns y, and the gradients via out-params.
Tensor run_micro(Float8Linear& layer, const Tensor& w, const Tensor& x, const Tensor& gy, Tensor& gx, Tensor& gw) {
  layer.weight.data().copy_from(w);
  layer.weight.zero_grad();
  autograd::Variable xv(x.clone(), true);
  autograd::Variable y = layer(xv);
  y.backward(gy);
  gx = xv.grad();
  gw = layer.weight.grad();
  return y.data();
}

// After step k's sync: histories (torchao's layout) and scales bit for bit, and the amax that
// joined each history.
void check_state(const DelayedScaling& s, const std::string& prefix, int k, const std::array<float, 3>& initial,
                 bool check_amax) {
  for (int r = 0; r < 3; ++r) {
    INFO(prefix << kRoles[r] << " after step " << k);
    const Tensor& want = G(prefix + "history." + kRoles[r] + "." + std::to_string(k));
    const std::vector<float> got = torchao_layout(s, r, initial[r]);
    REQUIRE(want.numel() == static_cast<std::int64_t>(got.size()));
    int mismatches = 0;
    for (size_t i = 0; i < got.size(); ++i) mismatches += !same_bits(got[i], static_cast<float>(want.item(i)));
    CHECK(mismatches == 0);
    const float want_scale = static_cast<float>(G(prefix + "scale." + kRoles[r] + "." + std::to_string(k)).item(0));
    CHECK(same_bits(static_cast<float>(s.scale(static_cast<DelayedScaling::Role>(r), kDtypes[r]).item(0)), want_scale));
    if (check_amax)
      CHECK(same_bits(s.history(DelayedScaling::Role(r)).back(), static_cast<float>(G("amax." + std::string(kRoles[r]) + "." + std::to_string(k)).item(0))));
  }
}

}  // namespace

TEST_CASE("delayed scaling matches torchao 0.9.0 step by step: histories, scales, outputs, gradients") {
  const int L = meta_int("history_len"), steps = meta_int("steps");
  REQUIRE(L == 4);
  std::vector<int> micro;  // micro-batches per step, "1,1,2,1,..."
  const std::string list = golden().metadata.at("micro_batches");
  for (size_t start = 0; start < list.size();) {
    const size_t comma = std::min(list.find(',', start), list.size());
    micro.push_back(std::stoi(list.substr(start, comma - start)));
    start = comma + 1;
  }
  REQUIRE(static_cast<int>(micro.size()) == steps);
  const Tensor& w1 = G("w.1");
  Float8Linear layer(w1.size(1), w1.size(0), recipe_from_name("delayed", L));
  const DelayedScaling& state = *layer.delayed_state();
  std::array<float, 3> initial{};
  int syncs = 0;
  for (int k = 1; k <= steps; ++k) {
    const std::string ks = std::to_string(k);
    for (int m = 0; m < micro[size_t(k - 1)]; ++m) {
      const std::string km = ks + "." + std::to_string(m);
      INFO("step " << k << ", micro-batch " << m);
      Tensor gx, gw;
      const Tensor y = run_micro(layer, G("w." + ks), G("x." + km), G("gy." + km), gx, gw);
      CHECK(rel(y, G("y." + km)) < 1e-6);
      CHECK(rel(gx, G("gx." + km)) < 1e-6);
      CHECK(rel(gw, G("gw." + km)) < 1e-6);
    }
    sync_amax_histories(layer, [&](const Tensor& amaxes) {
      ++syncs;
      CHECK(amaxes.numel() == 3);  // one collective: input, weight, grad_output of the one layer
    });
    if (k == 1)
      for (int r = 0; r < 3; ++r) initial[size_t(r)] = state.history(DelayedScaling::Role(r)).front();
    check_state(state, "", k, initial, true);
  }
  CHECK(syncs == steps);
  // The window: step 4's large input amax decides the input scale of steps 5 to 8 and has left the
  // history after step 8, so step 9 casts its small input with a 65x larger scale.
  CHECK(G("scale.input.8").item(0) > 60 * G("scale.input.7").item(0));
}

TEST_CASE("torchao 0.9.0 as released never rolls its amax history (why the golden keeps it)") {
  // Its sync rolls the histories in a torch.vstack copy and drops it (make_float8_delayed_golden.py):
  // every scale after step k is fp8_max / max(amax_k, amax_1), whatever history_len says.
  const int steps = meta_int("steps");
  int differ = 0;
  for (int k = 1; k <= steps; ++k)
    for (int r = 0; r < 3; ++r) {
      const std::string role = kRoles[r], ks = std::to_string(k);
      const double a_k = G("amax." + role + "." + ks).item(0), a_1 = G("history." + role + ".1").item(0);
      const float frozen = amax_to_scale(Tensor::full({1}, std::max(a_k, a_1)), kDtypes[r], false).item(0);
      INFO(role << " after step " << k);
      CHECK(same_bits(frozen, static_cast<float>(G("as_released.scale." + role + "." + ks).item(0))));
      differ += !same_bits(frozen, static_cast<float>(G("scale." + role + "." + ks).item(0)));
    }
  CHECK(differ > 0);  // with a real window the scales differ (first at step 3)
}

namespace {

// A MAX all-reduce of one float between two threads standing for two ranks: each puts its value in
// its slot and waits for the other; both read the max; a second barrier keeps a rank that runs on
// from overwriting its slot before the other has read it. Deterministic: the result depends only
// on the two values, not on the threads' timing.
class TwoThreadMax {
 public:
  float reduce(int rank, float amax) {
    slot_[size_t(rank)] = amax;
    barrier_.arrive_and_wait();
    const float global = std::max(slot_[0], slot_[1]);
    barrier_.arrive_and_wait();
    ++calls_[size_t(rank)];
    return global;
  }
  int calls(int rank) const { return calls_[size_t(rank)]; }

 private:
  std::barrier<> barrier_{2};
  std::array<float, 2> slot_{};
  std::array<int, 2> calls_{};
};

// One micro-batch's inputs and results on one rank.
struct MicroRun {
  Tensor w, x, gy;  // in
  Tensor y, gx, gw;  // out
};

// Two ranks of one data-parallel layer: both ranks' micro-batch runs at once, on two threads (so
// that a first-step cast can wait for the other rank's amax), then the step's sync with the MAX
// all-reduce done by hand across the two (torchao: all_reduce(MAX) in its sync).
struct TwoRanks {
  std::vector<std::unique_ptr<Float8Linear>> layers;
  TwoThreadMax reducer;
  // reduce_first_step: the layers get the first-step MAX reduction (what the float8 converter
  // sets on several ranks); without it each rank's first step is its own dynamic scaling.
  TwoRanks(std::int64_t in, std::int64_t out, bool reduce_first_step) {
    for (int r = 0; r < 2; ++r) {
      layers.push_back(std::make_unique<Float8Linear>(in, out, recipe_from_name("delayed", 4)));
      if (reduce_first_step)
        set_first_step_amax_reduction(*layers.back(), [this, r](const Tensor& amax) {
          amax.set(0, reducer.reduce(r, static_cast<float>(amax.item(0))));
        });
    }
  }
  // Runs runs[r] on rank r's layer, both at once. Catch2's assertions are not thread-safe, so the
  // threads only compute; a failure is rethrown here.
  void run(std::array<MicroRun, 2>& runs) {
    std::array<std::exception_ptr, 2> errors;
    auto body = [&](int r) {
      try {
        MicroRun& m = runs[size_t(r)];
        m.y = run_micro(*layers[size_t(r)], m.w, m.x, m.gy, m.gx, m.gw);
      } catch (...) {
        errors[size_t(r)] = std::current_exception();
      }
    };
    std::thread other(body, 1);
    body(0);
    other.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
  }
  void sync() {
    std::vector<float> global(3, 0.0f);
    for (auto& l : layers) {
      const DelayedScaling& s = *l->delayed_state();
      for (int r = 0; r < 3; ++r)
        if (s.seen(DelayedScaling::Role(r)))
          global[size_t(r)] = std::max(global[size_t(r)], static_cast<float>(s.pending_amax(DelayedScaling::Role(r)).item(0)));
    }
    for (auto& l : layers)
      sync_amax_histories(*l, [&](const Tensor& amaxes) {
        REQUIRE(amaxes.numel() == 3);
        for (int r = 0; r < 3; ++r) amaxes.set(r, global[size_t(r)]);
      });
  }
};

// Rank r's micro-batch of step k from the golden (read here, on the test's thread).
MicroRun golden_micro(int r, int k) {
  const std::string p = "dp2.r" + std::to_string(r) + ".", ks = std::to_string(k);
  return MicroRun{G("dp2.w." + ks), G(p + "x." + ks), G(p + "gy." + ks), {}, {}, {}};
}

}  // namespace

TEST_CASE("delayed scaling on 2 data-parallel ranks matches torchao 0.9.0 from the first step (global amax at step 1)") {
  // torchao initialises each amax with an all-reduced MAX (reduce_amax=True in
  // _maybe_initialize_amaxes_scales_for_float8_cast), so step 1 already casts with the global
  // amax; later steps take the histories that the end-of-step MAX all-reduce fills.
  const int steps = meta_int("dp2_steps");
  const Tensor& w1 = G("dp2.w.1");
  TwoRanks ranks(w1.size(1), w1.size(0), true);
  std::array<float, 3> initial{};
  for (int k = 1; k <= steps; ++k) {
    std::array<MicroRun, 2> runs{golden_micro(0, k), golden_micro(1, k)};
    const std::array<int, 2> calls_before{ranks.reducer.calls(0), ranks.reducer.calls(1)};
    ranks.run(runs);
    for (int r = 0; r < 2; ++r) {
      const std::string p = "dp2.r" + std::to_string(r) + ".", ks = std::to_string(k);
      INFO("rank " << r << ", step " << k);
      CHECK(rel(runs[size_t(r)].y, G(p + "y." + ks)) < 1e-6);
      CHECK(rel(runs[size_t(r)].gx, G(p + "gx." + ks)) < 1e-6);
      CHECK(rel(runs[size_t(r)].gw, G(p + "gw." + ks)) < 1e-6);
      // Step 1: one reduction per cast (x and W in forward; grad_output twice, W and x in
      // backward); later steps scale from the histories and reduce nothing.
      CHECK(ranks.reducer.calls(r) - calls_before[size_t(r)] == (k == 1 ? 6 : 0));
    }
    ranks.sync();
    if (k == 1)
      for (int r = 0; r < 3; ++r) initial[size_t(r)] = ranks.layers[0]->delayed_state()->history(DelayedScaling::Role(r)).front();
    for (int r = 0; r < 2; ++r)
      check_state(*ranks.layers[size_t(r)]->delayed_state(), "dp2.r" + std::to_string(r) + ".", k, initial, false);
  }
}

TEST_CASE("delayed scaling on 2 ranks without the first-step reduction: step 1 differs from torchao (the golden sees it)") {
  // Each rank's own amax at step 1: rank 0's input (1x) is smaller than rank 1's (3x), rank 1's
  // grad_output (0.5x) smaller than rank 0's, so each rank gets a different scale than torchao's
  // for one operand, and its results move far beyond GEMM rounding.
  const Tensor& w1 = G("dp2.w.1");
  TwoRanks ranks(w1.size(1), w1.size(0), false);
  std::array<MicroRun, 2> runs{golden_micro(0, 1), golden_micro(1, 1)};
  ranks.run(runs);
  CHECK(ranks.reducer.calls(0) + ranks.reducer.calls(1) == 0);
  CHECK(rel(runs[0].y, G("dp2.r0.y.1")) > 1e-3);   // rank 0's x cast with its own, smaller amax
  CHECK(rel(runs[0].gx, G("dp2.r0.gx.1")) < 1e-6);  // its grad_output's amax is the global one
  CHECK(rel(runs[1].gx, G("dp2.r1.gx.1")) > 1e-3);  // rank 1's grad_output with its own amax
  CHECK(rel(runs[1].y, G("dp2.r1.y.1")) < 1e-6);    // its x's amax is the global one
}
