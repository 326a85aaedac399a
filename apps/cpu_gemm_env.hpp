#pragma once
// The environment side of the CPU GEMM choice (src/ reads no environment, DESIGN.md section 1):
//   * OpenBLAS reads OPENBLAS_CORETYPE only while it loads, before main. If it picked a generic
//     kernel (Prescott, Core2, ...) on a CPU that cpuid says has AVX2 / AVX-512, the program
//     re-executes itself once with OPENBLAS_CORETYPE set to the core that fits (Haswell, Zen,
//     SkylakeX); TITAN_OPENBLAS_REEXEC marks the second start (it holds the kernel it replaced),
//     so a library that still refuses cannot loop. Call before MPI_Init: exec keeps the pid.
//   * Where the calibrated GEMM peak is cached: $XDG_CACHE_HOME/titan, else ~/.cache/titan.
//   * The CPU thread count's default: OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, else the cores of
//     the process's affinity mask divided among the ranks of the node.
#include <spdlog/spdlog.h>

#include <sched.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <unistd.h>

#include "ops/cpu/blas.hpp"
#include "ops/cpu/cpu_isa.hpp"
#include "ops/cpu/threads.hpp"
#include "train/cpu_gemm.hpp"

namespace titan::apps {

// Re-executes (does not return) when OpenBLAS runs a generic kernel that an environment variable
// can fix; otherwise returns what happened, for report_openblas_kernel once logging is up.
inline std::string ensure_openblas_kernel(char** argv) {
  namespace cpu = ops::cpu;
  const char* replaced = std::getenv("TITAN_OPENBLAS_REEXEC");
  const cpu::GemmKernel k = cpu::gemm_kernel(cpu::GemmLibrary::openblas);
  if (replaced) {
    unsetenv("TITAN_OPENBLAS_REEXEC");  // children (mpirun's, a shell's) start from scratch
    return std::string("OpenBLAS picked its generic '") + replaced + "' kernel on this " + cpu::cpu_isa().best() +
           " CPU; restarted with OPENBLAS_CORETYPE=" + cpu::openblas_coretype_for_cpu() + " (kernel now " + k.kernel + ")";
  }
  if (!k.generic) return "";
  const std::string core = cpu::openblas_coretype_for_cpu();
  setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
  setenv("TITAN_OPENBLAS_REEXEC", k.kernel.c_str(), 1);
  execv("/proc/self/exe", argv);
  unsetenv("TITAN_OPENBLAS_REEXEC");  // exec failed: carry on; select_cpu_gemm warns if it matters
  return "";
}

// One info line after a re-exec; a kernel still generic is warned about by select_cpu_gemm.
inline void report_openblas_kernel(const std::string& note) {
  if (!note.empty()) spdlog::info("cpu gemm: {}", note);
}

// training.cpu_threads (`requested`, 0 = auto) resolved against the environment and installed for
// the GEMM libraries and the pool (ops/cpu/threads.hpp) before the GEMM library is chosen (its
// measurement and peak are per thread count). Returns the log line.
inline std::string apply_cpu_threads(std::int64_t requested, int local_ranks) {
  int n = 0;
  std::string why;
  auto env_threads = [](const char* name) {
    const char* v = std::getenv(name);
    char* end = nullptr;
    const long n = v && *v ? std::strtol(v, &end, 10) : 0;
    return end && *end == '\0' && n > 0 && n < 4096 ? int(n) : 0;
  };
  if (requested > 0) {
    n = int(std::min<std::int64_t>(requested, 4096));
    why = "training.cpu_threads";
  } else if (const int e = env_threads("OPENBLAS_NUM_THREADS")) {
    n = e, why = "OPENBLAS_NUM_THREADS";
  } else if (const int o = env_threads("OMP_NUM_THREADS")) {
    n = o, why = "OMP_NUM_THREADS";
  } else {
    cpu_set_t set;
    CPU_ZERO(&set);
    const int cores = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
    const int ranks = std::max(1, local_ranks);
    n = std::max(1, cores / ranks);
    why = std::to_string(cores) + " core(s) this rank may run on / " + std::to_string(ranks) + " rank(s) on this node";
  }
  ops::cpu::set_cpu_threads(n);
  return "cpu threads: " + std::to_string(n) + " per rank (" + why + "; training.cpu_threads overrides)";
}

inline void set_cpu_gemm_cache_from_environment() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  if (xdg && *xdg) train::set_cpu_gemm_cache_dir(std::string(xdg) + "/titan");
  else if (home && *home) train::set_cpu_gemm_cache_dir(std::string(home) + "/.cache/titan");
}

}  // namespace titan::apps
