// bench_attention_cpu: times ops::attention and ops::attention_backward (causal GQA, float32) on
// the CPU for one shape; scripts/bench_cpu_attention.sh runs it beside PyTorch's SDPA.
//   bench_attention_cpu [--batch 1] [--seq 2048] [--heads 8] [--kv-heads 4] [--head-dim 64] [--iters 3]
// Prints `titan fwd X ms bwd Y ms`: the best of --iters after one warm-up, in CPU time of this
// process (a shared machine's time slicing does not count against either side).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "core/rng.hpp"
#include "ops/ops.hpp"

namespace {
double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}
}  // namespace

int main(int argc, char** argv) {
  using namespace titan;
  CLI::App app{"Time causal GQA attention forward and backward on the CPU (float32)"};
  std::int64_t batch = 1, seq = 2048, heads = 8, kv_heads = 4, head_dim = 64;
  int iters = 3;
  app.add_option("--batch", batch)->check(CLI::PositiveNumber);
  app.add_option("--seq", seq)->check(CLI::PositiveNumber);
  app.add_option("--heads", heads)->check(CLI::PositiveNumber);
  app.add_option("--kv-heads", kv_heads)->check(CLI::PositiveNumber);
  app.add_option("--head-dim", head_dim)->check(CLI::PositiveNumber);
  app.add_option("--iters", iters)->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  if (heads % kv_heads != 0) {
    std::fprintf(stderr, "error: --heads %lld is not a multiple of --kv-heads %lld; pick heads = kv_heads * group\n",
                 static_cast<long long>(heads), static_cast<long long>(kv_heads));
    return 2;
  }
  auto randn = [](const Shape& shape, std::uint64_t seed) {
    Tensor t = Tensor::empty(shape, DType::f32);
    rng::fill_normal(t, rng::make_key(seed, "bench_attention_cpu"), 0, 0.0, 1.0);
    return t;
  };
  const Tensor q = randn({batch, seq, heads, head_dim}, 1), k = randn({batch, seq, kv_heads, head_dim}, 2),
               v = randn({batch, seq, kv_heads, head_dim}, 3), dout = randn({batch, seq, heads, head_dim}, 4);
  double fwd = 1e30, bwd = 1e30;
  for (int it = 0; it <= iters; ++it) {
    const double t0 = cpu_seconds();
    const ops::AttentionOut o = ops::attention(q, k, v);
    const double t1 = cpu_seconds();
    const ops::AttentionGrads g = ops::attention_backward(dout, q, k, v, o);
    const double t2 = cpu_seconds();
    if (it > 0) fwd = std::min(fwd, t1 - t0), bwd = std::min(bwd, t2 - t1);
  }
  std::printf("titan fwd %.1f ms bwd %.1f ms\n", fwd * 1e3, bwd * 1e3);
  return 0;
}
