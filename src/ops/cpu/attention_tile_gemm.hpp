#pragma once
// The small GEMMs of one attention tile (at most 128 x 256 x head_dim), float32, AVX2 + FMA.
// Through BLAS these tiles spent ~35% of their time outside the FMA kernel (packing both
// operands, a separate pass zeroing C for beta = 0, per-call set-up): at head_dim 16 a tile has
// too little work to pay for it. Here one register-blocked kernel covers all six products:
//   C[M, N] (= or +=) alpha * sum_k A(i, k) * B[k * ldb + j],   A(i, k) = A[i * a_rs + k * a_cs]
// With (a_rs, a_cs) = (lda, 1) it is A * B, with (1, lda) it is A^T * B, so P^T dO and dS^T Q
// need no transpose; Q K^T and dO V^T read K^T / V^T packed once per kv head (pack_panels).
// Register block: 6 rows x 16 columns = 12 ymm accumulators, one broadcast of A and two loads of
// B per k, 12 FMAs (AVX-512: 12 rows x 16 columns in zmm). The k loop runs in order, so results
// do not depend on the call pattern or on which of the two kernels runs.
#include <algorithm>
#include <cstdint>

#include "ops/cpu/cpu_isa.hpp"
#include "ops/cpu/fast_math.hpp"  // TITAN_AVX512_TARGET

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define TITAN_ATTENTION_TILE_GEMM 1
#endif

namespace titan::ops::cpu::attention_tile {

constexpr int kRows = 6, kCols = 16;

// Floats pack_panels writes for `rows` rows of `cols` columns.
inline std::int64_t panels_size(std::int64_t rows, std::int64_t cols) {
  return (rows + kCols - 1) / kCols * kCols * cols;
}

// in [rows, cols] (row stride ld_in) transposed into column panels of kCols: panel p holds
// in[p*16 .. p*16+15][0 .. cols) as cols x 16 contiguous floats, zero past `rows`. So a
// 16-column block of in^T is one contiguous stream (a strided one, S floats apart, would map every
// row to the same L1 set at S = 8192). Done once per kv head, not per tile.
inline void pack_panels(const float* in, std::int64_t ld_in, std::int64_t rows, std::int64_t cols, float* out) {
  for (std::int64_t p = 0; p < rows; p += kCols) {
    float* panel = out + p * cols;
    const std::int64_t n = std::min<std::int64_t>(kCols, rows - p);
    for (std::int64_t c = 0; c < cols; ++c)
      for (std::int64_t jj = 0; jj < kCols; ++jj) panel[c * kCols + jj] = jj < n ? in[(p + jj) * ld_in + c] : 0.0f;
  }
}

// in [rows, cols] (row stride ld_in) split into column panels of kCols: panel p holds columns
// p*16 .. p*16+15 of every row as rows x 16 contiguous floats (zero past `cols`), panels
// rows * 16 floats apart. As the B of A * B the kernel then streams 64 contiguous bytes per k,
// where the rows of V or K themselves (KV*D floats apart, a power of two) would all fall in a
// few L1 sets.
inline std::int64_t col_panels_size(std::int64_t rows, std::int64_t cols) {
  return (cols + kCols - 1) / kCols * kCols * rows;
}
inline void pack_col_panels(const float* in, std::int64_t ld_in, std::int64_t rows, std::int64_t cols, float* out) {
  for (std::int64_t c0 = 0; c0 < cols; c0 += kCols) {
    float* panel = out + c0 * rows;
    const std::int64_t n = std::min<std::int64_t>(kCols, cols - c0);
    for (std::int64_t j = 0; j < rows; ++j)
      for (std::int64_t cc = 0; cc < kCols; ++cc) panel[j * kCols + cc] = cc < n ? in[j * ld_in + c0 + cc] : 0.0f;
  }
}

#ifdef TITAN_ATTENTION_TILE_GEMM

template <int MR, bool Accumulate, bool Masked>
inline void micro_kernel(std::int64_t K, float alpha, const float* A, std::int64_t a_rs, std::int64_t a_cs,
                         const float* B, std::int64_t ldb, float* C, std::int64_t ldc, __m256i mask0, __m256i mask1) {
  __m256 c0[MR], c1[MR];
  for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm256_setzero_ps();
  for (std::int64_t k = 0; k < K; ++k) {
    const float* b = B + k * ldb;
    const __m256 b0 = Masked ? _mm256_maskload_ps(b, mask0) : _mm256_loadu_ps(b);
    const __m256 b1 = Masked ? _mm256_maskload_ps(b + 8, mask1) : _mm256_loadu_ps(b + 8);
    const float* a = A + k * a_cs;
    for (int i = 0; i < MR; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i * a_rs);
      c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
    }
  }
  const __m256 al = _mm256_set1_ps(alpha);
  for (int i = 0; i < MR; ++i) {
    float* c = C + i * ldc;
    if constexpr (Masked) {
      __m256 r0 = _mm256_mul_ps(al, c0[i]), r1 = _mm256_mul_ps(al, c1[i]);
      if constexpr (Accumulate) {
        r0 = _mm256_add_ps(_mm256_maskload_ps(c, mask0), r0);
        r1 = _mm256_add_ps(_mm256_maskload_ps(c + 8, mask1), r1);
      }
      _mm256_maskstore_ps(c, mask0, r0);
      _mm256_maskstore_ps(c + 8, mask1, r1);
    } else if constexpr (Accumulate) {
      _mm256_storeu_ps(c, _mm256_fmadd_ps(al, c0[i], _mm256_loadu_ps(c)));
      _mm256_storeu_ps(c + 8, _mm256_fmadd_ps(al, c1[i], _mm256_loadu_ps(c + 8)));
    } else {
      _mm256_storeu_ps(c, _mm256_mul_ps(al, c0[i]));
      _mm256_storeu_ps(c + 8, _mm256_mul_ps(al, c1[i]));
    }
  }
}

template <bool Accumulate, bool Masked>
inline void row_block(int mr, std::int64_t K, float alpha, const float* A, std::int64_t a_rs, std::int64_t a_cs,
                      const float* B, std::int64_t ldb, float* C, std::int64_t ldc, __m256i m0, __m256i m1) {
  switch (mr) {
    case 6: micro_kernel<6, Accumulate, Masked>(K, alpha, A, a_rs, a_cs, B, ldb, C, ldc, m0, m1); break;
    case 5: micro_kernel<5, Accumulate, Masked>(K, alpha, A, a_rs, a_cs, B, ldb, C, ldc, m0, m1); break;
    case 4: micro_kernel<4, Accumulate, Masked>(K, alpha, A, a_rs, a_cs, B, ldb, C, ldc, m0, m1); break;
    case 3: micro_kernel<3, Accumulate, Masked>(K, alpha, A, a_rs, a_cs, B, ldb, C, ldc, m0, m1); break;
    case 2: micro_kernel<2, Accumulate, Masked>(K, alpha, A, a_rs, a_cs, B, ldb, C, ldc, m0, m1); break;
    default: micro_kernel<1, Accumulate, Masked>(K, alpha, A, a_rs, a_cs, B, ldb, C, ldc, m0, m1); break;
  }
}

// AVX-512: the same 16-column blocks, one zmm per row, 12 rows per block (12 accumulators, one
// load of B and 12 broadcasts per k). Each C element is the same chain of FMAs over k in the same
// order, and alpha and the accumulate are applied as the AVX2 kernel applies them (fused for
// whole 16-column blocks, multiply-then-add for a partial one), so both ISAs give the same bits.
constexpr int kRows512 = 12;

template <int MR, bool Accumulate, bool Masked>
TITAN_AVX512_TARGET inline void micro_kernel_512(std::int64_t K, float alpha, const float* A, std::int64_t a_rs,
                                                 std::int64_t a_cs, const float* B, std::int64_t ldb, float* C,
                                                 std::int64_t ldc, __mmask16 mask) {
  __m512 c[MR];
  for (int i = 0; i < MR; ++i) c[i] = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < K; ++k) {
    const float* b = B + k * ldb;
    const __m512 bv = Masked ? _mm512_maskz_loadu_ps(mask, b) : _mm512_loadu_ps(b);
    const float* a = A + k * a_cs;
    for (int i = 0; i < MR; ++i) c[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i * a_rs]), bv, c[i]);
  }
  const __m512 al = _mm512_set1_ps(alpha);
  for (int i = 0; i < MR; ++i) {
    float* ci = C + i * ldc;
    if constexpr (Masked) {
      __m512 r = _mm512_mul_ps(al, c[i]);
      if constexpr (Accumulate) r = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, ci), r);
      _mm512_mask_storeu_ps(ci, mask, r);
    } else if constexpr (Accumulate) {
      _mm512_storeu_ps(ci, _mm512_fmadd_ps(al, c[i], _mm512_loadu_ps(ci)));
    } else {
      _mm512_storeu_ps(ci, _mm512_mul_ps(al, c[i]));
    }
  }
}

template <bool Accumulate, bool Masked, int MR = kRows512>
TITAN_AVX512_TARGET inline void row_block_512(int mr, std::int64_t K, float alpha, const float* A, std::int64_t a_rs,
                                              std::int64_t a_cs, const float* B, std::int64_t ldb, float* C,
                                              std::int64_t ldc, __mmask16 mask) {
  if constexpr (MR == 1) {
    micro_kernel_512<1, Accumulate, Masked>(K, alpha, A, a_rs, a_cs, B, ldb, C, ldc, mask);
  } else {
    if (mr == MR) return micro_kernel_512<MR, Accumulate, Masked>(K, alpha, A, a_rs, a_cs, B, ldb, C, ldc, mask);
    row_block_512<Accumulate, Masked, MR - 1>(mr, K, alpha, A, a_rs, a_cs, B, ldb, C, ldc, mask);
  }
}

// Two whole 16-column panels at once (b and b + b_ps), 8 rows: 16 accumulators, two loads of B
// and 8 broadcasts per 16 FMAs, so the FMA units rather than the loads set the pace.
constexpr int kRows512x2 = 8;
template <int MR, bool Accumulate>
TITAN_AVX512_TARGET inline void micro_kernel_512x2(std::int64_t K, float alpha, const float* A, std::int64_t a_rs,
                                                   std::int64_t a_cs, const float* B, std::int64_t ldb,
                                                   std::int64_t b_ps, float* C, std::int64_t ldc) {
  __m512 c0[MR], c1[MR];
  for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < K; ++k) {
    const __m512 b0 = _mm512_loadu_ps(B + k * ldb), b1 = _mm512_loadu_ps(B + b_ps + k * ldb);
    const float* a = A + k * a_cs;
    for (int i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i * a_rs]);
      c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
    }
  }
  const __m512 al = _mm512_set1_ps(alpha);
  for (int i = 0; i < MR; ++i) {
    float* ci = C + i * ldc;
    if constexpr (Accumulate) {
      _mm512_storeu_ps(ci, _mm512_fmadd_ps(al, c0[i], _mm512_loadu_ps(ci)));
      _mm512_storeu_ps(ci + kCols, _mm512_fmadd_ps(al, c1[i], _mm512_loadu_ps(ci + kCols)));
    } else {
      _mm512_storeu_ps(ci, _mm512_mul_ps(al, c0[i]));
      _mm512_storeu_ps(ci + kCols, _mm512_mul_ps(al, c1[i]));
    }
  }
}

template <bool Accumulate, int MR = kRows512x2>
TITAN_AVX512_TARGET inline void row_block_512x2(int mr, std::int64_t K, float alpha, const float* A, std::int64_t a_rs,
                                                std::int64_t a_cs, const float* B, std::int64_t ldb, std::int64_t b_ps,
                                                float* C, std::int64_t ldc) {
  if constexpr (MR == 1) {
    micro_kernel_512x2<1, Accumulate>(K, alpha, A, a_rs, a_cs, B, ldb, b_ps, C, ldc);
  } else {
    if (mr == MR) return micro_kernel_512x2<MR, Accumulate>(K, alpha, A, a_rs, a_cs, B, ldb, b_ps, C, ldc);
    row_block_512x2<Accumulate, MR - 1>(mr, K, alpha, A, a_rs, a_cs, B, ldb, b_ps, C, ldc);
  }
}

template <bool Accumulate>
TITAN_AVX512_TARGET void gemm_512(std::int64_t M, std::int64_t N, std::int64_t K, float alpha, const float* A,
                                  std::int64_t a_rs, std::int64_t a_cs, const float* B, std::int64_t ldb,
                                  std::int64_t b_ps, float* C, std::int64_t ldc) {
  std::int64_t j = 0;
  for (; j + 2 * kCols <= N; j += 2 * kCols)
    for (std::int64_t i = 0; i < M; i += kRows512x2)
      row_block_512x2<Accumulate>(int(std::min<std::int64_t>(kRows512x2, M - i)), K, alpha, A + i * a_rs, a_rs, a_cs,
                                  B + j / kCols * b_ps, ldb, b_ps, C + i * ldc + j, ldc);
  for (; j < N; j += kCols) {
    const int nr = int(std::min<std::int64_t>(kCols, N - j));
    const __mmask16 mask = __mmask16((1u << nr) - 1u);
    for (std::int64_t i = 0; i < M; i += kRows512) {
      const int mr = int(std::min<std::int64_t>(kRows512, M - i));
      const float* a = A + i * a_rs;
      float* c = C + i * ldc + j;
      const float* b = B + j / kCols * b_ps;
      if (nr == kCols) row_block_512<Accumulate, false>(mr, K, alpha, a, a_rs, a_cs, b, ldb, c, ldc, mask);
      else row_block_512<Accumulate, true>(mr, K, alpha, a, a_rs, a_cs, b, ldb, c, ldc, mask);
    }
  }
}

// Column blocks outside, row blocks inside: a K x 16 panel of B (<= 16 KB) stays in L1 while
// every row block of A streams past it.
// Columns j .. j+15 of B start at B + (j / 16) * b_ps, rows ldb apart: b_ps = 16 for a plain
// row-major B, (16, 16 * K) for pack_panels' layout, (16, 16 * rows) for pack_col_panels'.
// On a CPU (and OS) with AVX-512F the zmm kernel above runs, with the same results.
template <bool Accumulate>
void gemm(std::int64_t M, std::int64_t N, std::int64_t K, float alpha, const float* A, std::int64_t a_rs,
          std::int64_t a_cs, const float* B, std::int64_t ldb, std::int64_t b_ps, float* C, std::int64_t ldc) {
  if (use_avx512()) return gemm_512<Accumulate>(M, N, K, alpha, A, a_rs, a_cs, B, ldb, b_ps, C, ldc);
  for (std::int64_t j = 0; j < N; j += kCols) {
    const int nr = int(std::min<std::int64_t>(kCols, N - j));
    alignas(32) std::int32_t lanes[kCols];
    for (int c = 0; c < kCols; ++c) lanes[c] = c < nr ? -1 : 0;
    const __m256i m0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
    const __m256i m1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes + 8));
    for (std::int64_t i = 0; i < M; i += kRows) {
      const int mr = int(std::min<std::int64_t>(kRows, M - i));
      const float* a = A + i * a_rs;
      float* c = C + i * ldc + j;
      const float* b = B + j / kCols * b_ps;
      if (nr == kCols) row_block<Accumulate, false>(mr, K, alpha, a, a_rs, a_cs, b, ldb, c, ldc, m0, m1);
      else row_block<Accumulate, true>(mr, K, alpha, a, a_rs, a_cs, b, ldb, c, ldc, m0, m1);
    }
  }
}

#endif  // TITAN_ATTENTION_TILE_GEMM

}  // namespace titan::ops::cpu::attention_tile
