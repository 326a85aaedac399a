// oneDNN: dnnl_sgemm (row-major, 'N'/'T' flags) for float; a bf16 matmul primitive (bf16
// sources, f32 destination and accumulation) where the CPU has AVX512_BF16 or AMX-BF16.
// oneDNN JIT-compiles its kernels for the ISA dnnl_get_effective_cpu_isa reports.
#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <mutex>
#include <stdexcept>
#include <string>

#include "ops/cpu/cpu_isa.hpp"
#include "ops/cpu/gemm_impl.hpp"

namespace titan::ops::cpu {

void onednn_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                  int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  const dnnl_status_t s = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (s != dnnl_success)
    throw std::runtime_error("onednn: dnnl_sgemm failed (status " + std::to_string(int(s)) + ") for M=" +
                             std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
                             "; set training.cpu_gemm = \"openblas\"");
}

std::string onednn_isa(bool* avx2_or_better) {
  const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  // The enum's values are bit masks that contain their predecessors' bits (dnnl_types.h).
  *avx2_or_better = (unsigned(isa) & unsigned(dnnl_cpu_isa_avx2)) == unsigned(dnnl_cpu_isa_avx2);
  switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "isa 0x" + std::to_string(unsigned(isa));
  }
}

// This Debian oneDNN runs its threads on OpenMP (DNNL_CPU_THREADING_RUNTIME = OMP), which sizes
// them from omp_get_max_threads(). libgomp comes with libdnnl, so its setter is found at run
// time rather than linking libtitan against OpenMP (whose -fopenmp would switch on every
// `#pragma omp` of the CPU kernels, which are meant as simd hints only).
void onednn_set_threads(int threads) {
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"))) set(threads);
}

bool onednn_bf16_native() {
  static const bool native = [] {
    const CpuIsa& isa = cpu_isa();
    if (!isa.avx512_bf16 && !isa.amx_bf16) return false;
    const unsigned eff = unsigned(dnnl_get_effective_cpu_isa());
    return (eff & unsigned(dnnl_cpu_isa_avx512_core_bf16)) == unsigned(dnnl_cpu_isa_avx512_core_bf16);
  }();
  return native;
}

bool onednn_gemm_bf16(bool ta, bool tb, int M, int N, int K, float alpha, const std::uint16_t* A, int lda,
                      const std::uint16_t* B, int ldb, float beta, float* C, int ldc) {
  using dnnl::memory;
  using tag = memory::dims;
  try {
    static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    // op(A) is [M, K]: row-major storage gives strides {lda, 1}, its transpose {1, lda}.
    const memory::desc a_md({M, K}, memory::data_type::bf16, ta ? tag{1, lda} : tag{lda, 1});
    const memory::desc b_md({K, N}, memory::data_type::bf16, tb ? tag{1, ldb} : tag{ldb, 1});
    const memory::desc c_md({M, N}, memory::data_type::f32, tag{ldc, 1});
    dnnl::primitive_attr attr;
    if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
    if (beta != 0.0f) {
      dnnl::post_ops po;
      po.append_sum(beta);
      attr.set_post_ops(po);
    }
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine);
    // Creation is cached by oneDNN's primitive cache, keyed by the descriptor.
    const dnnl::matmul prim(pd);
    memory a_mem(a_md, engine, const_cast<std::uint16_t*>(A)), b_mem(b_md, engine, const_cast<std::uint16_t*>(B)),
        c_mem(c_md, engine, C);
    static std::mutex stream_mutex;
    std::lock_guard<std::mutex> lock(stream_mutex);
    static dnnl::stream stream(engine);
    prim.execute(stream, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}});
    stream.wait();
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

}  // namespace titan::ops::cpu
