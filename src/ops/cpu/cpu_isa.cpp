#include "ops/cpu/cpu_isa.hpp"

#include <atomic>

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define TITAN_X86 1
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace titan::ops::cpu {

namespace {

#ifdef TITAN_X86
struct Regs {
  std::uint32_t a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(std::uint32_t leaf, std::uint32_t sub = 0) {
  Regs r;
  __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
  return r;
}

bool bit(std::uint32_t v, int i) { return (v >> i) & 1u; }

// XCR0 via XGETBV (only legal when cpuid reports OSXSAVE).
std::uint64_t xcr0() {
  std::uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (std::uint64_t(hi) << 32) | lo;
}

// Linux gates AMX tile data (XSTATE component 18) behind a per-process request (kernel 5.16+).
bool request_amx_permission() {
#if defined(__linux__) && defined(SYS_arch_prctl)
  constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

CpuIsa detect() {
  CpuIsa isa;
  const Regs v = cpuid(0);
  char vendor[13] = {};
  std::memcpy(vendor + 0, &v.b, 4);
  std::memcpy(vendor + 4, &v.d, 4);
  std::memcpy(vendor + 8, &v.c, 4);
  isa.vendor = vendor;
  const std::uint32_t max_leaf = v.a;

  if (cpuid(0x80000000u).a >= 0x80000004u) {
    char brand[49] = {};
    for (std::uint32_t i = 0; i < 3; ++i) {
      const Regs r = cpuid(0x80000002u + i);
      std::memcpy(brand + 16 * i + 0, &r.a, 4);
      std::memcpy(brand + 16 * i + 4, &r.b, 4);
      std::memcpy(brand + 16 * i + 8, &r.c, 4);
      std::memcpy(brand + 16 * i + 12, &r.d, 4);
    }
    std::string s = brand;
    const auto first = s.find_first_not_of(' ');
    const auto last = s.find_last_not_of(' ');
    isa.model_name = first == std::string::npos ? "" : s.substr(first, last - first + 1);
  }
  if (max_leaf < 1) return isa;

  const Regs l1 = cpuid(1);
  const bool osxsave = bit(l1.c, 27), avx = bit(l1.c, 28);
  const std::uint64_t x = osxsave ? xcr0() : 0;
  isa.os_avx = osxsave && (x & 0x6) == 0x6;             // SSE + YMM state
  isa.os_avx512 = isa.os_avx && (x & 0xe0) == 0xe0;     // opmask, ZMM_Hi256, Hi16_ZMM
  isa.os_amx = osxsave && (x & 0x60000) == 0x60000;     // XTILECFG + XTILEDATA
  isa.fma = isa.os_avx && avx && bit(l1.c, 12);
  if (max_leaf < 7) return isa;

  const Regs l7 = cpuid(7, 0);
  isa.avx2 = isa.os_avx && avx && bit(l7.b, 5);
  isa.avx512f = isa.os_avx512 && bit(l7.b, 16);
  if (l7.a >= 1) isa.avx512_bf16 = isa.avx512f && bit(cpuid(7, 1).a, 5);
  const bool amx_bf16 = bit(l7.d, 22), amx_tile = bit(l7.d, 24);
  if (isa.os_amx && amx_bf16 && amx_tile) isa.amx_bf16 = request_amx_permission();
  return isa;
}
#else
CpuIsa detect() { return {}; }
#endif

}  // namespace

std::string CpuIsa::best() const {
  if (amx_bf16) return "amx_bf16";
  if (avx512_bf16) return "avx512_bf16";
  if (avx512f) return "avx512f";
  if (avx2 && fma) return "avx2_fma";
  if (avx2) return "avx2";
  return "sse";
}

const CpuIsa& cpu_isa() {
  static const CpuIsa isa = detect();
  return isa;
}

namespace {
std::atomic<bool> g_avx512_enabled{true};
}  // namespace

bool use_avx512() {
  static const bool available = cpu_isa().avx512f;
  return available && g_avx512_enabled.load(std::memory_order_relaxed);
}

void set_avx512_enabled(bool enabled) { g_avx512_enabled.store(enabled); }

}  // namespace titan::ops::cpu
