// BLIS through its typed API (bli_?gemm with row and column strides): BLIS picks its kernels
// at run time from cpuid ("zen3", "haswell", "skx"), which bli_arch_query_id reports. Its cblas
// layer is not used, so its symbols never compete with OpenBLAS's.
#include <blis.h>

#include "ops/cpu/gemm_impl.hpp"

namespace titan::ops::cpu {

namespace {
trans_t tr(bool t) { return t ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE; }
}  // namespace

// Row-major storage: row stride ld, column stride 1; BLIS applies the transposes itself.
void blis_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                float beta, float* C, int ldc) {
  bli_sgemm(tr(ta), tr(tb), M, N, K, &alpha, const_cast<float*>(A), lda, 1, const_cast<float*>(B), ldb, 1, &beta, C,
            ldc, 1);
}

void blis_dgemm(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda, const double* B,
                int ldb, double beta, double* C, int ldc) {
  bli_dgemm(tr(ta), tr(tb), M, N, K, &alpha, const_cast<double*>(A), lda, 1, const_cast<double*>(B), ldb, 1, &beta, C,
            ldc, 1);
}

std::string blis_arch() { return bli_arch_string(bli_arch_query_id()); }

void blis_set_threads(int threads) { bli_thread_set_num_threads(threads); }

}  // namespace titan::ops::cpu
