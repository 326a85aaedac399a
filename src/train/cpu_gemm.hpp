#pragma once
// The CPU GEMM library of a run (training.cpu_gemm) and its calibrated peak, the CPU's mfu
// denominator. The library is chosen once, before the first GEMM (ops/cpu/blas.hpp); the peak is
// the best of several short sgemm runs with the run's threads, cached per machine (CPU model,
// library, kernel, threads) in {cache dir}/cpu_gemm_peak.json: later runs time one more call
// (~30 ms instead of ~0.2 s) and keep the best, so a calibration on a busy machine recovers.
#include <string>
#include <vector>

namespace titan::train {

struct CpuGemm {
  std::string library;   // "onednn", "openblas", "blis"
  std::string kernel;    // what the library runs: "avx2", "Zen", "zen3"
  bool generic = false;  // a generic kernel on a CPU with AVX2 (warned about, with the fix)
  std::string fix;
  std::string cpu;       // cpuid's model name and widest ISA
  std::string bf16;      // how gemm_bf16 runs here
  int threads = 1;
  double peak_flops = 0;  // all threads together, FLOP/s
  std::string peak_source;  // "calibrated: ..." or "best so far, cached in <file>"
  std::string chosen_by;    // "named by training.cpu_gemm" or how auto chose (measured / cached / fixed order)
  double peak_flops_per_core() const { return peak_flops / threads; }
  std::string describe() const;  // the plan's line
};

// Where the peak cache lives ("" = no cache: calibrate every run). apps/ pass
// $XDG_CACHE_HOME/titan or ~/.cache/titan: the environment is read there, not in src/.
void set_cpu_gemm_cache_dir(const std::string& dir);

// Resolves `choice` ("auto" | "openblas" | "blis" | "onednn"), installs it for every later GEMM,
// (auto, with a cache dir: the fastest by time_cpu_gemm_libraries, measured once per machine and
// threads and kept in {cache dir}/cpu_gemm_choice.json under a flock, so the ranks of a machine and
// every later run and resume there use the same library; without one: auto_gemm_library()),
// warns in one line if its kernel is generic on this CPU, and calibrates (or reads) the peak.
// Throws UserError for an unknown name.
// `bf16` ("auto" | "native" | "widened", training.cpu_bf16_gemm) sets how bf16 GEMMs run; "native"
// on a CPU without AVX512_BF16/AMX-BF16 is a UserError.
CpuGemm select_cpu_gemm(const std::string& choice, const std::string& bf16 = "auto");

// Each library whose kernel is not generic here, timed at the Linear layers' NT, NN and TN GEMMs
// (1024^3, best of `rounds` after a warm-up), with the run's threads.
struct GemmTiming {
  std::string library;
  double best_seconds[3];  // NT, NN, TN
  double mean_flops;       // mean over the three of FLOP/s
};
std::vector<GemmTiming> time_cpu_gemm_libraries(int rounds = 3);

// The calibration itself: best of `runs` 1024^3 NT sgemm calls after a warm-up, FLOP/s.
double calibrate_cpu_gemm_peak(int runs = 5);

}  // namespace titan::train
