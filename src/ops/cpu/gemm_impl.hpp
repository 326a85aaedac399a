#pragma once
// The per-library halves of ops/cpu/blas.hpp's dispatch (gemm.cpp, gemm_blis.cpp,
// gemm_onednn.cpp); nothing outside those files calls these.
#include <cstdint>
#include <string>

namespace titan::ops::cpu {

void openblas_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                    int ldb, float beta, float* C, int ldc);
void openblas_set_threads(int threads);

void blis_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                float beta, float* C, int ldc);
void blis_dgemm(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda, const double* B,
                int ldb, double beta, double* C, int ldc);
std::string blis_arch();
void blis_set_threads(int threads);

void onednn_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                  int ldb, float beta, float* C, int ldc);
// oneDNN's effective ISA ("avx2", "avx512_core_bf16"); *avx2_or_better says whether it is >= AVX2.
std::string onednn_isa(bool* avx2_or_better);
void onednn_set_threads(int threads);
// Whether gemm_bf16 runs natively here (the CPU has AVX512_BF16 or AMX-BF16 and oneDNN uses it).
bool onednn_bf16_native();
// A bf16 matmul through oneDNN; false if oneDNN has no implementation for it (caller widens).
bool onednn_gemm_bf16(bool ta, bool tb, int M, int N, int K, float alpha, const std::uint16_t* A, int lda,
                      const std::uint16_t* B, int ldb, float beta, float* C, int ldc);

}  // namespace titan::ops::cpu
