#pragma once
// cuBLASLt GEMMs on the compute stream (plain C++: src/ includes this without CUDA headers).
//
// Every matrix here is row-major, as titan's tensors are. cuBLASLt is column-major, so a call
// computes C^T = op(B)^T op(A)^T: a row-major X with row stride ld is, read column-major, X^T
// with the same leading dimension, which turns each operand into the transpose cuBLASLt needs
// with no copy. Descriptors (matmul desc, the four layouts, preference) and the heuristic's
// chosen algorithm are built once per problem key (shape, dtypes, transposes, leading dims,
// batch strides, pointer-alignment class, fp8 scaling and accumulation) and reused; one
// cublasLt handle and one 32 MiB workspace per process.
#include <cstdint>

#include "core/dtype.hpp"

namespace titan::cuda {

// Row-major C[b] (M x N) = alpha * op(A[b]) * op(B[b]) + beta * C[b], b in [0, batch).
// op(A) is M x K (A stored K x M when trans_a), op(B) is K x N (B stored N x K when trans_b).
// lda/ldb/ldc are the row strides (elements) of the stored row-major matrices; stride_* the
// element distance between batch items (ignored when batch == 1; 0 broadcasts A or B).
// a/b dtypes: f32 or bf16 (the same); c: f32 or bf16 (f32 inputs need an f32 output). Compute
// is f32 (CUBLAS_COMPUTE_32F: no TF32 for f32 inputs). beta == 0: C is not read (may hold NaN).
// Throws std::invalid_argument for bad arguments, std::runtime_error for cuBLASLt failures.
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha, const void* A,
          DType a_dtype, std::int64_t lda, std::int64_t stride_a, const void* B, DType b_dtype, std::int64_t ldb,
          std::int64_t stride_b, float beta, void* C, DType c_dtype, std::int64_t ldc, std::int64_t stride_c,
          std::int64_t batch);

enum class Fp8Scaling { tensorwise, rowwise };

// FP8 C (M x N, row-major, ldc = N) = (A * a_scale_inv) (B * b_scale_inv)^T, with A [M, K] and
// B [N, K] both row-major, K contiguous (the TN layout cuBLASLt's fp8 path requires: in the
// model y = x W^T; the backward GEMMs take the transposed copies that cast_to_fp8 writes).
// a/b dtypes: f8e4m3 or f8e5m2, not both e5m2. C: f32 or bf16. Compute f32.
// tensorwise: a_scale_inv and b_scale_inv each point to one device f32.
// rowwise:    a_scale_inv [M] and b_scale_inv [N] device f32 vectors (cuBLASLt outer-vector
//             scaling: C[m, n] = a_scale_inv[m] b_scale_inv[n] sum_k A[m, k] B[n, k]); needs
//             cuBLASLt >= 12.9 on sm_90 (std::runtime_error where cuBLASLt has no kernel).
// fast_accum: CUBLASLT_MATMUL_DESC_FAST_ACCUM (torchao: forward yes, gradient GEMMs no).
// Requirements (std::invalid_argument otherwise): K and N multiples of 16; A, B, C 16-byte
// aligned; scale pointers non-null (rowwise vectors 16-byte aligned). M is free.
void gemm_fp8(std::int64_t M, std::int64_t N, std::int64_t K, const void* A, DType a_dtype, const float* a_scale_inv,
              const void* B, DType b_dtype, const float* b_scale_inv, void* C, DType c_dtype, Fp8Scaling scaling,
              bool fast_accum);

}  // namespace titan::cuda
