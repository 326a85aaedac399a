#include "train/cpu_gemm.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <vector>
#include <unistd.h>

#include "core/errors.hpp"
#include "ops/cpu/blas.hpp"
#include "ops/cpu/cpu_isa.hpp"

namespace titan::train {

namespace {

std::string g_cache_dir;

std::string fmt_gflops(double flops) { return fmt::format("{:.1f}", flops / 1e9); }

}  // namespace

void set_cpu_gemm_cache_dir(const std::string& dir) { g_cache_dir = dir; }

double calibrate_cpu_gemm_peak(int runs) {
  // 1024^3 sits on every library's plateau on one core (docs/performance.md) and takes ~30 ms.
  const int n = 1024;
  std::vector<float> a(std::size_t(n) * n, 0.5f), b(std::size_t(n) * n, 0.25f), c(std::size_t(n) * n);
  auto once = [&] { ops::cpu::gemm(false, true, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n); };
  once();
  double best = 1e30;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    once();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * double(n) * n * n / best;
}

std::string CpuGemm::describe() const {
  return library + " (kernel " + kernel + (generic ? ", GENERIC: set " + fix : "") + "), " + std::to_string(threads) +
         " thread(s), peak " + fmt_gflops(peak_flops_per_core()) + " GFLOP/s per core (" + peak_source + "); bf16 " + bf16 +
         "; cpu " + cpu;
}

CpuGemm select_cpu_gemm(const std::string& choice, const std::string& bf16) {
  namespace cpu = ops::cpu;
  cpu::GemmLibrary lib = cpu::auto_gemm_library();
  if (choice != "auto") {
    const auto named = cpu::parse_gemm_library(choice);
    if (!named)
      throw UserError("config: training.cpu_gemm = \"" + printable(choice) +
                      "\" is not a CPU GEMM library: one of auto, openblas, blis, onednn");
    lib = *named;
  }
  cpu::set_gemm_library(lib);
  if (bf16 != "auto" && bf16 != "native" && bf16 != "widened")
    throw UserError("config: training.cpu_bf16_gemm = \"" + printable(bf16) + "\" is not one of auto, native, widened");
  if (bf16 == "native" && !cpu::gemm_bf16_native_available())
    throw UserError("config: training.cpu_bf16_gemm = \"native\" needs a CPU with AVX512_BF16 or AMX-BF16 and oneDNN for "
                    "it (this one: " + cpu::cpu_isa().best() + "); set it to \"auto\" or \"widened\"");
  cpu::set_gemm_bf16_native(bf16 == "native" || (bf16 == "auto" && cpu::gemm_bf16_native_by_default()));
  const cpu::GemmKernel k = cpu::gemm_kernel(lib);
  CpuGemm g;
  g.library = cpu::gemm_library_name(lib);
  g.kernel = k.kernel;
  g.generic = k.generic;
  g.fix = k.fix;
  g.cpu = cpu::cpu_isa().model_name + " (" + cpu::cpu_isa().best() + ")";
  g.bf16 = cpu::gemm_bf16_path();
  g.threads = cpu::gemm_threads();
  if (k.generic)
    spdlog::warn("cpu gemm: {} runs its generic '{}' kernel on this {} CPU (several times slower); set {} or "
                 "training.cpu_gemm = \"{}\"",
                 g.library, g.kernel, cpu::cpu_isa().best(), g.fix, cpu::gemm_library_name(cpu::auto_gemm_library()));

  // The peak is a property of (CPU, library, kernel, threads), the cache's key.
  const std::string key = g.cpu + " | " + g.library + " | " + g.kernel + " | " + std::to_string(g.threads);
  const std::filesystem::path file = g_cache_dir.empty() ? std::filesystem::path() : std::filesystem::path(g_cache_dir) / "cpu_gemm_peak.json";
  if (file.empty()) {
    // No cache: one calibration per process and key (make_plan runs per fuzz input, per test).
    static std::map<std::string, double> measured_once;
    auto [it, fresh] = measured_once.try_emplace(key, 0.0);
    if (fresh) it->second = calibrate_cpu_gemm_peak();
    g.peak_flops = it->second;
    g.peak_source = "calibrated: best of 5 1024^3 sgemm, not cached";
    return g;
  }
  nlohmann::json cache = nlohmann::json::object();
  {
    std::ifstream in(file);
    if (in) {
      cache = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
      if (!cache.is_object()) cache = nlohmann::json::object();
    }
  }
  // A cached peak is the best seen so far: one more short run per start can only raise it, so a
  // calibration taken while the machine was busy does not stay low forever.
  const bool cached = cache.contains(key) && cache[key].is_number() && cache[key].get<double>() > 0;
  const double measured = calibrate_cpu_gemm_peak(cached ? 1 : 5);
  g.peak_flops = cached ? std::max(cache[key].get<double>(), measured) : measured;
  g.peak_source = cached ? "best so far, cached in " + file.string() : "calibrated: best of 5 1024^3 sgemm";
  if (cached && measured <= cache[key].get<double>()) return g;
  {
    // Best effort: a read-only home only means the next run calibrates again.
    std::error_code ec;
    std::filesystem::create_directories(file.parent_path(), ec);
    cache[key] = g.peak_flops;
    const std::filesystem::path tmp = file.string() + ".tmp" + std::to_string(::getpid());
    {
      std::ofstream out(tmp);
      out << cache.dump(2) << "\n";
      if (!out) ec = std::make_error_code(std::errc::io_error);
    }
    if (!ec) std::filesystem::rename(tmp, file, ec);
    if (ec) {
      std::filesystem::remove(tmp, ec);
      spdlog::debug("cpu gemm: could not cache the peak in {}", file.string());
    } else if (!cached) {
      g.peak_source += ", cached in " + file.string();
    }
  }
  return g;
}

}  // namespace titan::train
