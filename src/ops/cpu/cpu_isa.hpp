#pragma once
// What the x86 CPU this process runs on can execute, from cpuid, with the OS checks that make an
// instruction set usable: AVX needs the OS to save YMM state (XGETBV, XCR0 bits 1-2), AVX-512 the
// opmask and ZMM state too (bits 5-7), and AMX the tile state (bits 17-18) plus, on Linux, a
// per-process permission (arch_prctl ARCH_REQ_XCOMP_PERM) before the first tile instruction.
// A flag here is true only when both the CPU and the OS allow it. Non-x86 builds report nothing.
#include <string>

namespace titan::ops::cpu {

struct CpuIsa {
  std::string vendor;      // "GenuineIntel", "AuthenticAMD"
  std::string model_name;  // the brand string, "AMD EPYC 7B13 64-Core Processor"
  bool avx2 = false, fma = false;
  bool avx512f = false, avx512_bf16 = false;
  bool amx_bf16 = false;  // AMX-BF16 and AMX-TILE, with Linux's tile permission granted
  // The OS-state halves of the above, for the report: XCR0 enables YMM / ZMM / tile state.
  bool os_avx = false, os_avx512 = false, os_amx = false;
  // "avx512_bf16", "avx2", "sse" ...: the widest ISA the flags above allow, for one-line reports.
  std::string best() const;
};

// Detected once (the first call asks Linux for AMX tile permission where the CPU has AMX).
const CpuIsa& cpu_isa();

// Whether the hand-vectorised float32 kernels (attention's tile GEMMs, the exp rows) take their
// AVX-512 path: cpu_isa().avx512f, unless a test switched it off to compare with the AVX2 path
// (the two give the same bits: the same operations per element, sums in the same lane order).
bool use_avx512();
void set_avx512_enabled(bool enabled);

}  // namespace titan::ops::cpu
