// CPU GEMM dispatch and the OpenBLAS implementation (the BLIS and oneDNN ones are in
// gemm_blis.cpp and gemm_onednn.cpp).
#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <vector>

#include "ops/cpu/blas.hpp"
#include "ops/cpu/cpu_isa.hpp"
#include "ops/cpu/gemm_impl.hpp"

namespace titan::ops::cpu {

namespace {

// -1 until the first gemm or set_gemm_library: then auto_gemm_library(), so every program (the
// unit tests too) runs the same default as the trainer.
std::atomic<int> g_library{-1};
// training.cpu_bf16_gemm: -1 until set, then 0 (widened) or 1 (native).
std::atomic<int> g_bf16_native_requested{-1};

GemmLibrary current() {
  int v = g_library.load(std::memory_order_relaxed);
  if (v < 0) {
    set_gemm_library(auto_gemm_library());
    v = g_library.load();
  }
  return GemmLibrary(v);
}

CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

void openblas_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                    int ldb, float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void openblas_set_threads(int threads) { openblas_set_num_threads(threads); }

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc) {
  switch (current()) {
    case GemmLibrary::blis: return blis_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    case GemmLibrary::onednn: return onednn_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    case GemmLibrary::openblas: break;
  }
  openblas_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda, const double* B, int ldb,
          double beta, double* C, int ldc) {
  if (current() == GemmLibrary::blis)
    return blis_dgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_bf16(bool ta, bool tb, int M, int N, int K, float alpha, const std::uint16_t* A, int lda,
               const std::uint16_t* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (gemm_bf16_native() && onednn_gemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
  // Widening is exact (bf16 is the top half of an f32), so this is an f32 GEMM of the same values.
  const int a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
  std::vector<float> a(std::size_t(a_rows) * std::size_t(a_cols)), b(std::size_t(b_rows) * std::size_t(b_cols));
  auto widen = [](const std::uint16_t* src, int rows, int cols, int ld, float* dst) {
    for (int r = 0; r < rows; ++r) {
      const std::uint16_t* s = src + std::size_t(r) * std::size_t(ld);
      float* d = dst + std::size_t(r) * std::size_t(cols);
#pragma omp simd
      for (int c = 0; c < cols; ++c) {
        const std::uint32_t bits = std::uint32_t(s[c]) << 16;
        float f;
        __builtin_memcpy(&f, &bits, 4);
        d[c] = f;
      }
    }
  };
  if (K > 0) {
    widen(A, a_rows, a_cols, lda, a.data());
    widen(B, b_rows, b_cols, ldb, b.data());
  }
  gemm(ta, tb, M, N, K, alpha, a.data(), std::max(a_cols, 1), b.data(), std::max(b_cols, 1), beta, C, ldc);
}

std::string gemm_bf16_path() {
  if (gemm_bf16_native()) return "onednn bf16 matmul, f32 accumulation";
  return std::string("widened to f32 + ") + gemm_library_name(gemm_library()) + " sgemm" +
         (gemm_bf16_native_available() ? " (native available: training.cpu_bf16_gemm = \"native\")"
                                        : " (no AVX512_BF16/AMX)");
}

bool gemm_bf16_native_available() { return onednn_bf16_native(); }
bool gemm_bf16_native_by_default() { return cpu_isa().amx_bf16 && onednn_bf16_native(); }
void set_gemm_bf16_native(bool native) { g_bf16_native_requested.store(native ? 1 : 0); }
bool gemm_bf16_native() {
  const int requested = g_bf16_native_requested.load(std::memory_order_relaxed);
  return (requested < 0 ? gemm_bf16_native_by_default() : requested == 1) && onednn_bf16_native();
}

const char* gemm_library_name(GemmLibrary lib) {
  switch (lib) {
    case GemmLibrary::openblas: return "openblas";
    case GemmLibrary::blis: return "blis";
    case GemmLibrary::onednn: return "onednn";
  }
  return "?";
}

std::optional<GemmLibrary> parse_gemm_library(const std::string& name) {
  for (GemmLibrary lib : kGemmLibraries)
    if (name == gemm_library_name(lib)) return lib;
  return std::nullopt;
}

void set_gemm_library(GemmLibrary lib) {
  const int threads = gemm_threads();
  if (lib == GemmLibrary::blis) blis_set_threads(threads);
  // oneDNN also runs the native bf16 GEMMs whatever the f32 library is.
  onednn_set_threads(threads);
  g_library.store(int(lib));
}

GemmLibrary gemm_library() { return current(); }

int gemm_threads() { return std::max(1, openblas_get_num_threads()); }

std::string openblas_coretype_for_cpu() {
  const CpuIsa& isa = cpu_isa();
  if (!isa.avx2) return "";
  if (isa.vendor == "AuthenticAMD" || isa.vendor == "HygonGenuine") return "Zen";
  if (isa.avx512f) return "SkylakeX";
  return "Haswell";
}

GemmKernel gemm_kernel(GemmLibrary lib) {
  GemmKernel k;
  const bool avx2 = cpu_isa().avx2;
  switch (lib) {
    case GemmLibrary::openblas: {
      k.kernel = openblas_get_corename();
      // OpenBLAS's x86 cores with AVX2 kernels; anything else on an AVX2 CPU is a fallback.
      static const char* const kAvx2Cores[] = {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"};
      const std::string core = lower(k.kernel);
      k.generic = avx2 && std::none_of(std::begin(kAvx2Cores), std::end(kAvx2Cores),
                                       [&](const char* c) { return core == c; });
      if (k.generic) k.fix = "OPENBLAS_CORETYPE=" + openblas_coretype_for_cpu();
      break;
    }
    case GemmLibrary::blis: {
      k.kernel = blis_arch();
      static const char* const kAvx2Archs[] = {"haswell", "zen", "zen2", "zen3", "zen4", "skx", "knl"};
      k.generic = avx2 && std::none_of(std::begin(kAvx2Archs), std::end(kAvx2Archs),
                                       [&](const char* c) { return k.kernel == c; });
      if (k.generic) k.fix = "unset BLIS_ARCH_TYPE (or set it to haswell)";
      break;
    }
    case GemmLibrary::onednn: {
      bool has_avx2_isa = false;
      k.kernel = onednn_isa(&has_avx2_isa);
      k.generic = avx2 && !has_avx2_isa;
      if (k.generic) k.fix = "unset DNNL_MAX_CPU_ISA / ONEDNN_MAX_CPU_ISA";
      break;
    }
  }
  return k;
}

GemmLibrary auto_gemm_library() {
  for (GemmLibrary lib : {GemmLibrary::openblas, GemmLibrary::onednn, GemmLibrary::blis})
    if (!gemm_kernel(lib).generic) return lib;
  return GemmLibrary::openblas;
}

}  // namespace titan::ops::cpu
