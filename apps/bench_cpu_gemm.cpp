// bench_cpu_gemm: single-call GFLOP/s of each CPU GEMM library (ops/cpu/blas.hpp) at the trainer's
// GEMM shapes, in the three transpose combinations the Linear layers use:
//   NT  forward      y[M,N]  = x[M,K] w[N,K]^T
//   NN  grad_input   dx[M,K] = dy[M,N] w[N,K]        (printed with the forward's M, N, K)
//   TN  grad_weight  dw[N,K] = dy[M,N]^T x[M,K]
// Best of --reps rounds after a warm-up round (each round calls every library once per cell), threads from OPENBLAS_NUM_THREADS (run it with 1
// and taskset for the single-core numbers of docs/performance.md).
//
//   bench_cpu_gemm [--reps 3] [--shapes debug|1b|all] [--libs openblas,blis,onednn] [--bf16]
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "ops/cpu/blas.hpp"
#include "ops/cpu/cpu_isa.hpp"

namespace cpu = titan::ops::cpu;

namespace {

struct Shape {
  const char* what;
  int M, N, K;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"CPU GEMM library throughput at the trainer's shapes"};
  int reps = 3;
  std::string shapes = "all", libs = "openblas,blis,onednn";
  app.add_option("--reps", reps, "timed calls per shape (best is kept)");
  app.add_option("--shapes", shapes, "debug | 1b | all")->check(CLI::IsMember({"debug", "1b", "all"}));
  app.add_option("--libs", libs, "comma-separated libraries");
  bool bf16 = false;
  app.add_flag("--bf16", bf16, "also time gemm_bf16 (bf16 operands, f32 result): native (oneDNN) and widened to f32");
  CLI11_PARSE(app, argc, argv);

  // debugmodel: dim 256, FFN 768 (M = 4 x 256 and 4 x 2048 tokens); Llama 3.2 1B: dim 2048, FFN 8192.
  std::vector<Shape> list;
  if (shapes != "1b")
    for (int M : {1024, 8192})
      for (auto nk : {std::pair{256, 256}, {768, 256}, {256, 768}}) list.push_back({"debug", M, nk.first, nk.second});
  if (shapes != "debug")
    for (int M : {1024, 2048})
      for (auto nk : {std::pair{2048, 2048}, {8192, 2048}, {2048, 8192}, {4096, 4096}})
        list.push_back({"1B", M, nk.first, nk.second});

  const auto& isa = cpu::cpu_isa();
  std::printf("cpu: %s (%s), threads %d\n", isa.model_name.c_str(), isa.best().c_str(), cpu::gemm_threads());
  std::vector<cpu::GemmLibrary> chosen;
  std::stringstream ss(libs);
  for (std::string name; std::getline(ss, name, ',');) {
    const auto lib = cpu::parse_gemm_library(name);
    if (!lib) {
      std::fprintf(stderr, "bench_cpu_gemm: unknown library '%s' (openblas, blis, onednn)\n", name.c_str());
      return 2;
    }
    chosen.push_back(*lib);
    const auto k = cpu::gemm_kernel(*lib);
    std::printf("%-9s kernel %s%s\n", name.c_str(), k.kernel.c_str(), k.generic ? " (GENERIC)" : "");
  }
  // The bf16 columns: gemm_bf16 natively and widened (through the last library of --libs).
  std::vector<int> bf16_modes;
  if (bf16) {
    if (cpu::gemm_bf16_native_available()) bf16_modes.push_back(1);
    bf16_modes.push_back(0);
  }
  std::printf("%-6s %5s %5s %5s", "model", "M", "N", "K");
  for (auto lib : chosen)
    for (const char* t : {"NT", "NN", "TN"}) std::printf("  %8s", (std::string(cpu::gemm_library_name(lib)).substr(0, 5) + ":" + t).c_str());
  for (int mode : bf16_modes)
    for (const char* t : {"NT", "NN", "TN"}) std::printf("  %8s", (std::string(mode ? "bf16n:" : "bf16w:") + t).c_str());
  std::printf("   (GFLOP/s)\n");

  std::mt19937 rng(0);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<double> sums((chosen.size() + bf16_modes.size()) * 3, 0);
  for (const Shape& s : list) {
    std::vector<float> x(std::size_t(s.M) * s.K), w(std::size_t(s.N) * s.K), y(std::size_t(s.M) * s.N);
    for (auto& v : x) v = u(rng);
    for (auto& v : w) v = u(rng);
    for (auto& v : y) v = u(rng);
    std::vector<float> dx(x.size()), dw(w.size());
    auto bits = [](const std::vector<float>& v) {
      std::vector<std::uint16_t> b(v.size());
      std::transform(v.begin(), v.end(), b.begin(), titan::f32_to_bf16);
      return b;
    };
    const std::vector<std::uint16_t> xb = bits(x), wb = bits(w), yb = bits(y);
    const double flops = 2.0 * s.M * s.N * s.K;
    std::printf("%-6s %5d %5d %5d", s.what, s.M, s.N, s.K);
    // Rounds interleave the libraries, so a burst of load from elsewhere hits all of them alike;
    // each cell keeps its best call.
    std::vector<double> best((chosen.size() + bf16_modes.size()) * 3, 1e30);
    auto time_one = [](const std::function<void()>& fn) {
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    for (int round = -1; round < reps; ++round)  // round -1 warms every library up
      for (std::size_t li = 0; li < chosen.size(); ++li) {
        cpu::set_gemm_library(chosen[li]);
        const double t[3] = {
            time_one([&] { cpu::gemm(false, true, s.M, s.N, s.K, 1.f, x.data(), s.K, w.data(), s.K, 0.f, y.data(), s.N); }),
            time_one([&] { cpu::gemm(false, false, s.M, s.K, s.N, 1.f, y.data(), s.N, w.data(), s.K, 0.f, dx.data(), s.K); }),
            time_one([&] { cpu::gemm(true, false, s.N, s.K, s.M, 1.f, y.data(), s.N, x.data(), s.K, 0.f, dw.data(), s.K); })};
        if (round >= 0)
          for (int k = 0; k < 3; ++k) best[li * 3 + k] = std::min(best[li * 3 + k], t[k]);
      }
    for (int round = -1; round < reps; ++round)
      for (std::size_t mi = 0; mi < bf16_modes.size(); ++mi) {
        cpu::set_gemm_bf16_native(bf16_modes[mi] == 1);
        const double t[3] = {
            time_one([&] { cpu::gemm_bf16(false, true, s.M, s.N, s.K, 1.f, xb.data(), s.K, wb.data(), s.K, 0.f, y.data(), s.N); }),
            time_one([&] { cpu::gemm_bf16(false, false, s.M, s.K, s.N, 1.f, yb.data(), s.N, wb.data(), s.K, 0.f, dx.data(), s.K); }),
            time_one([&] { cpu::gemm_bf16(true, false, s.N, s.K, s.M, 1.f, yb.data(), s.N, xb.data(), s.K, 0.f, dw.data(), s.K); })};
        const std::size_t col = (chosen.size() + mi) * 3;
        if (round >= 0)
          for (int k = 0; k < 3; ++k) best[col + k] = std::min(best[col + k], t[k]);
      }
    for (std::size_t c = 0; c < best.size(); ++c) {
      const double g = flops / best[c] / 1e9;
      std::printf("  %8.1f", g);
      sums[c] += g;
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  std::printf("%-24s", "mean");
  for (double v : sums) std::printf("  %8.1f", v / double(list.size()));
  std::printf("\n");
  return 0;
}
