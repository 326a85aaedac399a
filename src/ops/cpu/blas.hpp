#pragma once
// Row-major GEMM on the CPU, for float and double, through the library chosen at run time.
//   C[M,N] = alpha * op(A) * op(B) + beta * C,  op(A) is [M,K], op(B) is [K,N]
// lda/ldb/ldc are row strides in elements, so a head's slice of a [rows, heads*head_dim]
// activation can be used in place (lda = heads*head_dim).
//
// Libraries (ops/cpu/gemm*.cpp): OpenBLAS (cblas), BLIS (its typed API, strides for the
// transposes) and oneDNN (dnnl_sgemm; it has no double GEMM, so double goes to OpenBLAS). Each
// is deterministic for a given shape and thread count; they differ from each other in summation
// order only, so a run uses one library from start to end (set_gemm_library before the first GEMM).
#include <cstdint>
#include <optional>
#include <string>

namespace titan::ops::cpu {

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc);
void gemm(bool trans_a, bool trans_b, int M, int N, int K, double alpha, const double* A, int lda, const double* B,
          int ldb, double beta, double* C, int ldc);

// bf16 x bf16 -> f32: A and B hold bf16 bit patterns, C is float, products accumulate in f32.
// On a CPU with AVX512_BF16 or AMX-BF16 and oneDNN available, a native bf16 matmul (oneDNN);
// elsewhere (AVX2) both operands are widened to f32 (exact) and go through the float gemm.
void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const std::uint16_t* A, int lda,
               const std::uint16_t* B, int ldb, float beta, float* C, int ldc);
// "onednn bf16 matmul" or "widened to f32 + <library> sgemm": what gemm_bf16 does now.
std::string gemm_bf16_path();

// Whether gemm_bf16 may run natively: AVX512_BF16 or AMX-BF16, and oneDNN JITs for it.
bool gemm_bf16_native_available();
// Native is the default only with AMX-BF16: with AVX512_BF16 alone, one VDPBF16PS per cycle does
// the FLOPs of two FMAs, and oneDNN 2.6's bf16 brgemm measured 80 GFLOP/s against 145 for its
// f32 sgemm on one core (docs/performance.md), so widening to f32 is faster there.
bool gemm_bf16_native_by_default();
// training.cpu_bf16_gemm: native or widened, the emulation whose sums are those of an f32 GEMM
// of the same bf16 values, bit for bit. Until set: gemm_bf16_native_by_default(). The CPU ops
// route GEMMs of two bf16 tensors through gemm_bf16 only when native is in effect.
void set_gemm_bf16_native(bool native);
bool gemm_bf16_native();  // in effect now: requested (or the default) and available

enum class GemmLibrary { openblas, blis, onednn };
constexpr GemmLibrary kGemmLibraries[] = {GemmLibrary::openblas, GemmLibrary::blis, GemmLibrary::onednn};

const char* gemm_library_name(GemmLibrary lib);
// "openblas" | "blis" | "onednn" -> the library; anything else -> nullopt.
std::optional<GemmLibrary> parse_gemm_library(const std::string& name);

// The library every gemm call uses from now on; until a call chooses, auto_gemm_library().
void set_gemm_library(GemmLibrary lib);
GemmLibrary gemm_library();

// What a library runs on this CPU, as the library reports it.
struct GemmKernel {
  std::string kernel;  // OpenBLAS corename ("Zen"), BLIS arch ("zen3"), oneDNN ISA ("avx2")
  // True when the kernel is a generic / pre-AVX2 one although cpuid says the CPU has AVX2: the
  // silent 4-5x slowdown this check exists for.
  bool generic = false;
  std::string fix;  // for a generic kernel: what to set so the library picks the right one
};
GemmKernel gemm_kernel(GemmLibrary lib);

// The OPENBLAS_CORETYPE that fits this CPU ("SkylakeX", "Zen", "Haswell"), or "" without AVX2.
std::string openblas_coretype_for_cpu();

// Threads the libraries use: OpenBLAS's own count (OPENBLAS_NUM_THREADS at load) is the one
// knob; BLIS and oneDNN are given the same number when selected.
int gemm_threads();

// The default library of a program that chooses none (the unit tests) and of "auto" without a
// cache dir: the first of OpenBLAS, oneDNN, BLIS whose kernel is not generic. A fixed order, not
// a start-up race, since the libraries sum in different orders and a choice by timing could
// change between a run and its resume; the trainer's measured "auto" keeps its choice in a
// per-machine cache for that reason (train/cpu_gemm.hpp).
GemmLibrary auto_gemm_library();

}  // namespace titan::ops::cpu
