// CPU GEMM libraries (ops/cpu/blas.hpp), the cpuid ISA detection they are chosen by
// (ops/cpu/cpu_isa.hpp), the calibrated peak (train/cpu_gemm.hpp) and the mfu it feeds.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ops/cpu/blas.hpp"
#include "ops/cpu/cpu_isa.hpp"
#include "test_helpers.hpp"
#include "train/cpu_gemm.hpp"
#include "train/metrics.hpp"

using namespace titan;
namespace cpu = titan::ops::cpu;

namespace {

// The first processor's "flags", "vendor_id" and "model name" lines of /proc/cpuinfo.
struct ProcCpuinfo {
  std::set<std::string> flags;
  std::string vendor, model;
  bool found = false;
};

ProcCpuinfo read_proc_cpuinfo() {
  ProcCpuinfo info;
  std::ifstream in("/proc/cpuinfo");
  auto value = [](const std::string& line) {
    const auto colon = line.find(':');
    std::string v = colon == std::string::npos ? "" : line.substr(colon + 1);
    const auto first = v.find_first_not_of(" \t");
    return first == std::string::npos ? std::string() : v.substr(first);
  };
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags", 0) == 0 && info.flags.empty()) {
      std::istringstream ss(value(line));
      for (std::string f; ss >> f;) info.flags.insert(f);
      info.found = true;
    } else if (line.rfind("vendor_id", 0) == 0 && info.vendor.empty()) {
      info.vendor = value(line);
    } else if (line.rfind("model name", 0) == 0 && info.model.empty()) {
      info.model = value(line);
    }
  }
  return info;
}

struct Case {
  bool ta, tb;
  int M, N, K;
};

// C = alpha op(A) op(B) + beta C in double, over row-major storage with leading dimensions.
template <typename T>
std::vector<double> reference(const Case& c, double alpha, const std::vector<T>& A, int lda, const std::vector<T>& B,
                              int ldb, double beta, const std::vector<T>& C0, int ldc) {
  std::vector<double> out(C0.begin(), C0.end());
  for (int i = 0; i < c.M; ++i)
    for (int j = 0; j < c.N; ++j) {
      double s = 0;
      for (int k = 0; k < c.K; ++k) {
        const double a = c.ta ? A[std::size_t(k) * lda + i] : A[std::size_t(i) * lda + k];
        const double b = c.tb ? B[std::size_t(j) * ldb + k] : B[std::size_t(k) * ldb + j];
        s += a * b;
      }
      out[std::size_t(i) * ldc + j] = alpha * s + beta * double(C0[std::size_t(i) * ldc + j]);
    }
  return out;
}

// One GEMM of every transpose combination the trainer uses (NT forward, NN grad_input, TN
// grad_weight) plus TT, with padded leading dimensions (a head's slice) and beta = 1, against
// the float64 reference; and a rerun of the same call is bit-identical.
template <typename T>
void check_library(cpu::GemmLibrary lib, double tol) {
  cpu::set_gemm_library(lib);
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(-1, 1);
  for (const Case& c : {Case{false, true, 37, 45, 70}, Case{false, false, 64, 33, 129}, Case{true, false, 50, 48, 96},
                        Case{true, true, 17, 23, 31}}) {
    const int a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K, b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
    const int lda = a_cols + 3, ldb = b_cols + 5, ldc = c.N + 2;
    std::vector<T> A(std::size_t(a_rows) * lda), B(std::size_t(b_rows) * ldb), C(std::size_t(c.M) * ldc);
    for (auto& v : A) v = T(u(rng));
    for (auto& v : B) v = T(u(rng));
    for (auto& v : C) v = T(u(rng));
    const std::vector<double> want = reference(c, 0.75, A, lda, B, ldb, 1.0, C, ldc);
    std::vector<T> got = C, again = C;
    cpu::gemm(c.ta, c.tb, c.M, c.N, c.K, T(0.75), A.data(), lda, B.data(), ldb, T(1), got.data(), ldc);
    cpu::gemm(c.ta, c.tb, c.M, c.N, c.K, T(0.75), A.data(), lda, B.data(), ldb, T(1), again.data(), ldc);
    INFO(cpu::gemm_library_name(lib) << " ta " << c.ta << " tb " << c.tb);
    double worst = 0;
    for (int i = 0; i < c.M; ++i)
      for (int j = 0; j < c.N; ++j) {
        const std::size_t at = std::size_t(i) * ldc + j;
        worst = std::max(worst, std::abs(double(got[at]) - want[at]) / (1 + std::abs(want[at])));
      }
    CHECK(worst < tol);
    // The padding between rows is never written.
    for (int i = 0; i < c.M; ++i)
      for (int j = c.N; j < ldc; ++j) CHECK(got[std::size_t(i) * ldc + j] == C[std::size_t(i) * ldc + j]);
    CHECK(std::memcmp(got.data(), again.data(), got.size() * sizeof(T)) == 0);
  }
}

std::uint16_t to_bf16(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits += 0x7fff + ((bits >> 16) & 1);  // round to nearest even (no NaNs here)
  return std::uint16_t(bits >> 16);
}
double from_bf16(std::uint16_t h) {
  const std::uint32_t bits = std::uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Restores the library the rest of the binary runs with.
struct KeepLibrary {
  cpu::GemmLibrary saved = cpu::gemm_library();
  bool saved_bf16_native = cpu::gemm_bf16_native();
  ~KeepLibrary() {
    cpu::set_gemm_library(saved);
    cpu::set_gemm_bf16_native(saved_bf16_native);
  }
};

}  // namespace

TEST_CASE("cpuid: the ISA flags match /proc/cpuinfo on this machine") {
  const ProcCpuinfo proc = read_proc_cpuinfo();
  if (!proc.found) {
    WARN("no /proc/cpuinfo flags: nothing to compare with");
    return;
  }
  const cpu::CpuIsa& isa = cpu::cpu_isa();
  CHECK(isa.vendor == proc.vendor);
  // The kernel's "model name" is the cpuid brand string (a hypervisor may shorten both alike).
  CHECK(isa.model_name == proc.model);
  // Linux lists a flag only when the OS enabled its state too, as cpu_isa does.
  CHECK(isa.avx2 == (proc.flags.count("avx2") == 1));
  CHECK(isa.fma == (proc.flags.count("fma") == 1));
  CHECK(isa.avx512f == (proc.flags.count("avx512f") == 1));
  CHECK(isa.avx512_bf16 == (proc.flags.count("avx512_bf16") == 1));
  // AMX also needs the per-process tile permission, which cpu_isa asks for.
  if (!proc.flags.count("amx_bf16")) CHECK_FALSE(isa.amx_bf16);
  CHECK(isa.os_avx == (proc.flags.count("avx") == 1));
}

TEST_CASE("cpu gemm: every library matches a float64 reference in all transpose combinations, deterministically") {
  KeepLibrary keep;
  for (cpu::GemmLibrary lib : cpu::kGemmLibraries) {
    check_library<float>(lib, 2e-6);
    check_library<double>(lib, 1e-13);
  }
}

TEST_CASE("cpu gemm: the kernel in use is not a generic one on a CPU with AVX2") {
  // The silent fallback this guards against: Debian's OpenBLAS picking Prescott (SSE3) on a CPU
  // it does not know, 4-5x slower. With OPENBLAS_CORETYPE=Prescott in-process auto moves to oneDNN
  // (the run_train re-exec is the CLI tests'); a library forced onto a generic kernel fails here.
  const cpu::GemmLibrary lib = cpu::gemm_library();
  const cpu::GemmKernel k = cpu::gemm_kernel(lib);
  INFO(cpu::gemm_library_name(lib) << " kernel " << k.kernel << " on " << cpu::cpu_isa().model_name);
  if (cpu::cpu_isa().avx2) CHECK_FALSE(k.generic);
  // auto never picks a library whose kernel is generic.
  CHECK_FALSE(cpu::gemm_kernel(cpu::auto_gemm_library()).generic);
  CHECK(cpu::parse_gemm_library("onednn") == cpu::GemmLibrary::onednn);
  CHECK_FALSE(cpu::parse_gemm_library("mkl").has_value());
}

TEST_CASE("cpu gemm: gemm_bf16 is the exact product of the bf16 values, summed in f32") {
  KeepLibrary keep;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-2, 2);
  // Widened, gemm_bf16 runs the float GEMM on the widened values; native (AVX512_BF16 or AMX
  // only) it is oneDNN's bf16 matmul. Either way only the f32 summation order differs from float64.
  const bool available = cpu::cpu_isa().avx512_bf16 || cpu::cpu_isa().amx_bf16;
  CHECK(cpu::gemm_bf16_native_available() == available);
  CHECK(cpu::gemm_bf16_native_by_default() == (available && cpu::cpu_isa().amx_bf16));
  std::vector<bool> modes{false};
  if (available) modes.push_back(true);
  for (const bool native : modes) {
  cpu::set_gemm_bf16_native(native);
  INFO("path: " << cpu::gemm_bf16_path());
  CHECK(cpu::gemm_bf16_native() == native);
  CHECK((cpu::gemm_bf16_path().find("widened to f32") != std::string::npos) == !native);
  for (const Case& c : {Case{false, true, 33, 40, 256}, Case{false, false, 24, 65, 200}, Case{true, false, 48, 31, 300}}) {
    const int a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K, b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
    const int lda = a_cols + 1, ldb = b_cols + 2, ldc = c.N;
    std::vector<std::uint16_t> A(std::size_t(a_rows) * lda), B(std::size_t(b_rows) * ldb);
    for (auto& v : A) v = to_bf16(u(rng));
    for (auto& v : B) v = to_bf16(u(rng));
    std::vector<double> Ad(A.size()), Bd(B.size());
    for (std::size_t i = 0; i < A.size(); ++i) Ad[i] = from_bf16(A[i]);
    for (std::size_t i = 0; i < B.size(); ++i) Bd[i] = from_bf16(B[i]);
    std::vector<float> C(std::size_t(c.M) * ldc, 0.5f);
    const std::vector<double> want = reference(c, 1.0, Ad, lda, Bd, ldb, 1.0, std::vector<double>(C.begin(), C.end()), ldc);
    for (cpu::GemmLibrary lib : cpu::kGemmLibraries) {
      cpu::set_gemm_library(lib);
      std::vector<float> got = C;
      cpu::gemm_bf16(c.ta, c.tb, c.M, c.N, c.K, 1.f, A.data(), lda, B.data(), ldb, 1.f, got.data(), ldc);
      double worst = 0, scale = 0;
      for (std::size_t i = 0; i < got.size(); ++i) {
        worst = std::max(worst, std::abs(double(got[i]) - want[i]));
        scale = std::max(scale, std::abs(want[i]));
      }
      INFO(cpu::gemm_library_name(lib) << " ta " << c.ta << " tb " << c.tb << " worst " << worst);
      // f32 accumulation of K products of magnitude <= 4: K * 2^-24 * the running sum, loosely.
      CHECK(worst < 1e-5 * std::max(1.0, scale));
      CHECK(worst > 0);  // f32 sums, not a float64 computation in disguise
    }
  }
  }
}

TEST_CASE("cpu gemm: training.cpu_bf16_gemm picks native or widened bf16 GEMMs, and native needs the ISA") {
  KeepLibrary keep;
  train::select_cpu_gemm("openblas", "widened");
  CHECK_FALSE(cpu::gemm_bf16_native());
  train::select_cpu_gemm("openblas", "auto");
  CHECK(cpu::gemm_bf16_native() == cpu::gemm_bf16_native_by_default());
  if (cpu::gemm_bf16_native_available()) {
    const train::CpuGemm g = train::select_cpu_gemm("openblas", "native");
    CHECK(cpu::gemm_bf16_native());
    CHECK(g.bf16.find("onednn bf16 matmul") == 0);
  } else {
    CHECK_THROWS_WITH(train::select_cpu_gemm("openblas", "native"),
                      Catch::Matchers::Contains("training.cpu_bf16_gemm = \"native\" needs a CPU with AVX512_BF16") &&
                          Catch::Matchers::Contains("\"widened\""));
  }
}

TEST_CASE("cpu gemm: the calibrated peak is cached per machine and only ever raised") {
  KeepLibrary keep;
  test::TempFile dir_marker("x", "");
  const std::string dir = std::filesystem::path(dir_marker.path()).parent_path().string() + "/cache";
  train::set_cpu_gemm_cache_dir(dir);
  const train::CpuGemm first = train::select_cpu_gemm("openblas");
  CHECK(first.library == "openblas");
  CHECK(first.peak_flops > 1e9);  // any AVX2 core does well over 1 GFLOP/s at 1024^3
  CHECK(first.peak_source.find("calibrated") == 0);
  std::ifstream in(dir + "/cpu_gemm_peak.json");
  REQUIRE(in);
  const auto cache = nlohmann::json::parse(in);
  CHECK(cache.size() == 1);
  const train::CpuGemm second = train::select_cpu_gemm("openblas");
  CHECK(second.peak_flops >= first.peak_flops);  // the best so far: one more run can only raise it
  CHECK(second.peak_source.find("best so far, cached in") == 0);
  CHECK(second.describe().find("openblas (kernel " + second.kernel) == 0);
  CHECK_THROWS_WITH(train::select_cpu_gemm("mkl"), Catch::Matchers::Contains("training.cpu_gemm") &&
                                                       Catch::Matchers::Contains("auto, openblas, blis, onednn"));
  train::set_cpu_gemm_cache_dir("");
}

TEST_CASE("cpu gemm: auto measures the libraries once per machine and keeps the choice") {
  KeepLibrary keep;
  test::TempFile dir_marker("x", "");
  const std::string dir = std::filesystem::path(dir_marker.path()).parent_path().string() + "/auto_cache";
  std::filesystem::remove_all(dir);
  // Without a cache dir: the fixed order, nothing timed.
  train::set_cpu_gemm_cache_dir("");
  const train::CpuGemm fixed = train::select_cpu_gemm("auto");
  CHECK(fixed.library == cpu::gemm_library_name(cpu::auto_gemm_library()));
  CHECK(fixed.chosen_by.find("fixed order") != std::string::npos);
  // With one: every library whose kernel is not generic is timed, the fastest wins and is cached.
  const std::vector<train::GemmTiming> timings = train::time_cpu_gemm_libraries(1);
  REQUIRE_FALSE(timings.empty());
  for (const auto& t : timings) {
    INFO(t.library);
    CHECK(t.mean_flops > 1e9);
    CHECK_FALSE(cpu::gemm_kernel(*cpu::parse_gemm_library(t.library)).generic);
  }
  train::set_cpu_gemm_cache_dir(dir);
  const train::CpuGemm first = train::select_cpu_gemm("auto");
  CHECK(first.chosen_by.find("auto: measured fastest now (") == 0);
  CHECK(cpu::gemm_library_name(cpu::gemm_library()) == first.library);
  nlohmann::json cache = nlohmann::json::parse(std::ifstream(dir + "/cpu_gemm_choice.json"));
  REQUIRE(cache.size() == 1);
  auto& entry = cache.begin().value();
  CHECK(entry["library"] == first.library);
  CHECK(entry["mean_gflops_nt_nn_tn_1024"].size() == timings.size());
  // Later runs read the choice instead of racing again: rewrite it to another usable library
  // and that one is used.
  const train::CpuGemm again = train::select_cpu_gemm("auto");
  CHECK(again.library == first.library);
  CHECK(again.chosen_by.find("auto: measured fastest earlier, cached in") == 0);
  std::string other;
  for (const auto& t : timings)
    if (t.library != first.library) other = t.library;
  if (!other.empty()) {
    entry["library"] = other;
    std::ofstream(dir + "/cpu_gemm_choice.json") << cache.dump();
    CHECK(train::select_cpu_gemm("auto").library == other);
  }
  // A library named in the config is used as named.
  CHECK(train::select_cpu_gemm("blis").chosen_by == "named by training.cpu_gemm");
  // A damaged cache is measured again, not an error.
  std::ofstream(dir + "/cpu_gemm_choice.json") << "{not json";
  CHECK(train::select_cpu_gemm("auto").chosen_by.find("auto: measured fastest now (") == 0);
  train::set_cpu_gemm_cache_dir("");
  std::filesystem::remove_all(dir);
}

TEST_CASE("metrics: mfu never reads above 100% when a step beats a low peak") {
  test::TempFile file("metrics.jsonl", "");
  {
    // 1e6 FLOPs/token at 1000 tokens/s is 1e9 FLOP/s against a "peak" of 1e8 from a busy machine.
    train::MetricsLogger logger(1e6, 1e8, file.path());
    train::StepMetrics m;
    m.step = 1;
    m.tokens = 1000;
    m.step_seconds = 1.0;
    logger.log(m);
    m.step = 2;
    m.step_seconds = 2.0;  // half the rate of step 1: 50% of the raised peak
    logger.log(m);
  }
  std::ifstream in(file.path());
  std::string line;
  REQUIRE(std::getline(in, line));
  CHECK(nlohmann::json::parse(line)["mfu"].get<double>() == Approx(100.0));
  REQUIRE(std::getline(in, line));
  CHECK(nlohmann::json::parse(line)["mfu"].get<double>() == Approx(50.0));
}
