#include "train/cpu_gemm.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <vector>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "core/errors.hpp"
#include "ops/cpu/blas.hpp"
#include "ops/cpu/cpu_isa.hpp"

namespace titan::train {

namespace {

std::string g_cache_dir;

std::string fmt_gflops(double flops) { return fmt::format("{:.1f}", flops / 1e9); }

// flock on {cache dir}/cpu_gemm.lock for the life of the object: the ranks of one machine start
// together, and one measures while the others wait and then read what it wrote. Best effort: no
// lock (a read-only cache dir) only means two ranks may both measure.
class CacheLock {
 public:
  explicit CacheLock(const std::filesystem::path& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    fd_ = ::open((dir / "cpu_gemm.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ >= 0) ::flock(fd_, LOCK_EX);
  }
  ~CacheLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the flock
  }
  CacheLock(const CacheLock&) = delete;
  CacheLock& operator=(const CacheLock&) = delete;

 private:
  int fd_ = -1;
};

nlohmann::json read_json_object(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) return nlohmann::json::object();
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : nlohmann::json::object();
}

// Best effort, through a temporary and a rename so a reader never sees half a file.
bool write_json(const std::filesystem::path& file, const nlohmann::json& j) {
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  const std::filesystem::path tmp = file.string() + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    out.close();  // the flush at close can fail too (a full disk): checked before the rename
    if (!out) ec = std::make_error_code(std::errc::io_error);
  }
  if (!ec) std::filesystem::rename(tmp, file, ec);
  if (ec) std::filesystem::remove(tmp, ec);
  return !ec;
}

}  // namespace

std::vector<GemmTiming> time_cpu_gemm_libraries(int rounds) {
  namespace cpu = ops::cpu;
  // The Linear layers' three GEMMs (forward NT, grad-input NN, grad-weight TN) at 1024^3, on every
  // library's plateau (docs/performance.md); rounds interleave the libraries so load from
  // elsewhere hits all alike, and each cell keeps its best call. ~0.1 s per library per round.
  const int n = 1024;
  std::vector<float> a(std::size_t(n) * n, 0.5f), b(std::size_t(n) * n, 0.25f), c(std::size_t(n) * n);
  std::vector<GemmTiming> out;
  for (cpu::GemmLibrary lib : cpu::kGemmLibraries)
    if (!cpu::gemm_kernel(lib).generic) out.push_back({cpu::gemm_library_name(lib), {1e30, 1e30, 1e30}, 0});
  const cpu::GemmLibrary saved = cpu::gemm_library();
  for (int round = -1; round < rounds; ++round)  // round -1 warms each library up (JIT, buffers)
    for (GemmTiming& t : out) {
      cpu::set_gemm_library(*cpu::parse_gemm_library(t.library));
      for (int k = 0; k < 3; ++k) {
        const auto t0 = std::chrono::steady_clock::now();
        cpu::gemm(k == 2, k == 0, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (round >= 0) t.best_seconds[k] = std::min(t.best_seconds[k], s);
      }
    }
  cpu::set_gemm_library(saved);
  for (GemmTiming& t : out) {
    double sum = 0;
    for (double s : t.best_seconds) sum += 2.0 * double(n) * n * n / s;
    t.mean_flops = sum / 3;
  }
  return out;
}

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
  return library + " (kernel " + kernel + (generic ? ", GENERIC: set " + fix : "") + "; " + chosen_by + "), " +
         std::to_string(threads) + " thread(s), peak " + fmt_gflops(peak_flops_per_core()) + " GFLOP/s per core (" +
         peak_source + "); bf16 " + bf16 + "; cpu " + cpu;
}

CpuGemm select_cpu_gemm(const std::string& choice, const std::string& bf16) {
  namespace cpu = ops::cpu;
  const std::filesystem::path dir = g_cache_dir.empty() ? std::filesystem::path() : std::filesystem::path(g_cache_dir);
  std::optional<CacheLock> lock;
  if (!dir.empty()) lock.emplace(dir);  // held until the choice and the peak are cached
  cpu::GemmLibrary lib = cpu::auto_gemm_library();
  std::string chosen_by = "named by training.cpu_gemm";
  if (choice != "auto") {
    const auto named = cpu::parse_gemm_library(choice);
    if (!named)
      throw UserError("config: training.cpu_gemm = \"" + printable(choice) +
                      "\" is not a CPU GEMM library: one of auto, openblas, blis, onednn");
    lib = *named;
  } else if (dir.empty()) {
    chosen_by = "auto: the fixed order OpenBLAS, oneDNN, BLIS (no cache dir to keep a measured choice in)";
  } else {
    // auto, measured once per machine and kept: the libraries sum in different orders, so the
    // same machine must make the same choice on every run and resume (cached, not re-raced). The
    // key holds what the timing depends on: the CPU, each library's kernel and the threads.
    std::string key = cpu::cpu_isa().model_name + " (" + cpu::cpu_isa().best() + ") | " +
                      std::to_string(cpu::gemm_threads()) + " thread(s) |";
    for (cpu::GemmLibrary l : cpu::kGemmLibraries)
      key += std::string(" ") + cpu::gemm_library_name(l) + ":" + cpu::gemm_kernel(l).kernel;
    const std::filesystem::path file = dir / "cpu_gemm_choice.json";
    nlohmann::json cache = read_json_object(file);
    const auto cached = cache.contains(key) && cache[key].is_object() && cache[key].contains("library") &&
                                cache[key]["library"].is_string()
                            ? cpu::parse_gemm_library(cache[key]["library"].get<std::string>())
                            : std::nullopt;
    if (cached && !cpu::gemm_kernel(*cached).generic) {
      lib = *cached;
      chosen_by = "auto: measured fastest earlier, cached in " + file.string();
    } else {
      const std::vector<GemmTiming> timings = time_cpu_gemm_libraries();
      if (timings.empty()) {
        chosen_by = "auto: every library runs a generic kernel here, so the fixed order's fallback (nothing cached)";
      } else {
        const auto best = std::max_element(timings.begin(), timings.end(),
                                           [](const GemmTiming& x, const GemmTiming& y) { return x.mean_flops < y.mean_flops; });
        lib = *cpu::parse_gemm_library(best->library);
        std::string table;
        nlohmann::json gflops = nlohmann::json::object();
        for (const GemmTiming& t : timings) {
          table += (table.empty() ? "" : ", ") + t.library + " " + fmt_gflops(t.mean_flops);
          gflops[t.library] = std::round(t.mean_flops / 1e8) / 10;
        }
        cache[key] = {{"library", best->library}, {"mean_gflops_nt_nn_tn_1024", gflops}};
        const bool saved = write_json(file, cache);
        chosen_by = "auto: measured fastest now (" + table + " GFLOP/s)" +
                    (saved ? ", cached in " + file.string() : ", not cached (cannot write " + file.string() + ")");
      }
    }
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
  g.chosen_by = chosen_by;
  if (k.generic)
    spdlog::warn("cpu gemm: {} runs its generic '{}' kernel on this {} CPU (several times slower); set {} or "
                 "training.cpu_gemm = \"{}\"",
                 g.library, g.kernel, cpu::cpu_isa().best(), g.fix, cpu::gemm_library_name(cpu::auto_gemm_library()));

  // The peak is a property of (CPU, library, kernel, threads), the cache's key.
  const std::string key = g.cpu + " | " + g.library + " | " + g.kernel + " | " + std::to_string(g.threads);
  const std::filesystem::path file = dir.empty() ? std::filesystem::path() : dir / "cpu_gemm_peak.json";
  if (file.empty()) {
    // No cache: one calibration per process and key (make_plan runs per fuzz input, per test).
    static std::map<std::string, double> measured_once;
    auto [it, fresh] = measured_once.try_emplace(key, 0.0);
    if (fresh) it->second = calibrate_cpu_gemm_peak();
    g.peak_flops = it->second;
    g.peak_source = "calibrated: best of 5 1024^3 sgemm, not cached";
    return g;
  }
  nlohmann::json cache = read_json_object(file);
  // A cached peak is the best seen so far: one more short run per start can only raise it, so a
  // calibration taken while the machine was busy does not stay low forever.
  const bool cached = cache.contains(key) && cache[key].is_number() && cache[key].get<double>() > 0;
  const double measured = calibrate_cpu_gemm_peak(cached ? 1 : 5);
  g.peak_flops = cached ? std::max(cache[key].get<double>(), measured) : measured;
  g.peak_source = cached ? "best so far, cached in " + file.string() : "calibrated: best of 5 1024^3 sgemm";
  if (cached && measured <= cache[key].get<double>()) return g;
  // Best effort: a read-only home only means the next run calibrates again.
  cache[key] = g.peak_flops;
  if (!write_json(file, cache))
    spdlog::debug("cpu gemm: could not cache the peak in {}", file.string());
  else if (!cached)
    g.peak_source += ", cached in " + file.string();
  return g;
}

}  // namespace titan::train
