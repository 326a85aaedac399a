// Causal flash attention (forward and backward) with grouped-query heads (attention.hpp).
//
// Math (per batch b and query head h, kv head g = h / (H/KV), scale = 1/sqrt(D)):
//   s_ij = scale q_i.k_j for j <= i (keys j > i are masked),  lse_i = log sum_{j<=i} exp(s_ij),
//   P_ij = exp(s_ij - lse_i),  O = P V.
// Forward (online softmax): a thread block owns a tile of query rows and walks the key tiles
// 0..diagonal; per row it keeps the running max m, the running sum l of exp(s - m) and the
// unnormalized O. A new tile with max m' rescales l and O by exp(m - m'); at the end O /= l and
// lse = m + log l. Exponentials are exp2 of log2e-prefolded scores. Only lse is saved.
// Backward (P recomputed tile by tile from lse, never stored):
//   Delta_i = dO_i . O_i                                    (kernel attn_delta, f32 scratch [B,H,S])
//   dV_j = sum_i P_ij dO_i,  dP_ij = dO_i . v_j,  dS_ij = P_ij (dP_ij - Delta_i),
//   dQ_i = scale sum_j dS_ij k_j,  dK_j = scale sum_i dS_ij q_i,
// with dK/dV of kv head g summed over the query heads of its group. Deterministic, no atomics:
//   * dK/dV kernel: one block per (b, g, key tile); it loops over the group's query heads and the
//     query tiles at or below the diagonal (i >= j), accumulating dK, dV in registers;
//   * dQ kernel: one block per (b, h, query tile); it loops over the key tiles 0..diagonal.
//   S and dP are thus computed twice (7 tile GEMMs instead of FlashAttention-2's 5 with f32
//   atomics for dQ): the price of determinism.
// Masked work is skipped: query tile m only visits key tiles up to its diagonal, and only the
// tiles that straddle the diagonal (or the end of the sequence) evaluate the mask.
//
// Memory layout: q/out/dq rows are [b, s] with row stride H*D and head column offset h*D; k/v/dk/
// dv likewise with KV*D and g*D, so heads are read in place (no transposes). lse and Delta are
// [B, H, S] f32. Blocks whose rows run past S zero-fill their shared tiles (and give invalid query
// rows lse = +inf, so their P is exactly 0) and never store those rows.
//
// Two implementations:
//  * Tensor cores (bf16 inputs, sm_80+, 16-byte aligned pointers): 4 warps per block, each warp
//    owning 16 rows of the tile; mma.sync.m16n8k16 bf16 x bf16 -> f32 via inline PTX, operands
//    fetched from shared memory with ldmatrix (.trans where the smem tile is the GEMM's k-major
//    side, e.g. V in P V), tiles brought in by cp.async (zero-fill past S) and double-buffered so
//    the next tile loads while this one is computed. Shared tiles are [rows][D + 8] bf16: the
//    16-byte pad makes the 8 row addresses of every ldmatrix hit distinct banks. The f32
//    accumulator fragment of S (rows g, g+8; columns 2t, 2t+1 of each n8 tile, t = lane % 4)
//    is, after rounding to bf16, exactly the A fragment of the next GEMM (P V, dS K, P^T dO, ...),
//    so P and dS never touch shared memory; row max/sum reduce over the 4 lanes of a quad.
//      forward : 64 query rows x 64-key tiles; Q fragments stay in registers; K, V double-buffered.
//      dQ      : 64 query rows x 32-key tiles; Q and dO fragments in registers.
//      dK/dV   : 64 keys (16 per warp) x 32-query tiles; S^T = K Q^T and dP^T = V dO^T are formed
//                directly, so P^T and dS^T are A fragments for dV += P^T dO and dK += dS^T Q.
//    P and dS are rounded to bf16 before their GEMMs (as FlashAttention-2); l, Delta, and every
//    accumulator stay f32.
//  * CUDA cores (f32 inputs, or bf16 when forced / unaligned): 256 threads as 16 x 16, each thread
//    owning a (T/16) x (T/16) micro-tile of a T x T score tile (rows ty + 16 i, cols tx + 16 j,
//    T = 64 for D <= 64, 32 for D = 128 to fit sm_89's 99 KiB) and (T/16) x (D/16) of the output
//    accumulators; tiles are converted to f32 in shared memory with row stride D + 1 (odd, so
//    column walks are conflict-free); P and dS go through a shared T x (T+1) tile. Same loops,
//    same block ownership (so also deterministic), full f32 arithmetic.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "attention.hpp"
#include "common.cuh"
#include "cudnn_attention.hpp"

namespace titan::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ------------------------------------------------------------------------------------------------
// Small device helpers
// ------------------------------------------------------------------------------------------------

__device__ __forceinline__ unsigned smem_u32(const void* p) { return static_cast<unsigned>(__cvta_generic_to_shared(p)); }

// 16-byte global -> shared copy; `valid` false writes 16 zero bytes (src-size 0 reads nothing).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned n = valid ? 16u : 0u;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)),
               "l"(__cvta_generic_to_global(gmem)), "r"(n)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 b16 matrices; lane l gives the row address for matrix l / 8 (row l % 8). Register i
// holds matrix i: (row l/4, cols 2(l%4), +1), or with .trans (rows 2(l%4), +1, col l/4).
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

// c (16x8 f32) += a (16x16 bf16, row-major fragment) * b (16x8 bf16, column-major fragment).
__device__ __forceinline__ void mma_bf16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // never launched: the host only picks the tensor-core kernels on sm_80+
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// Two floats -> one register of two bf16 (`lo` in the low half: the lower column index).
__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  unsigned r;
  memcpy(&r, &v, sizeof r);
  return r;
}

// The A fragment (16 rows x 16 k) for k-step kk from accumulator fragments of n8 tiles 2kk, 2kk+1.
template <int N>
__device__ __forceinline__ void acc_to_a(unsigned (&a)[4], const float (&c)[N][4], int kk) {
  a[0] = pack_bf16(c[2 * kk][0], c[2 * kk][1]);          // row g,   k 2t..2t+1
  a[1] = pack_bf16(c[2 * kk][2], c[2 * kk][3]);          // row g+8, k 2t..2t+1
  a[2] = pack_bf16(c[2 * kk + 1][0], c[2 * kk + 1][1]);  // row g,   k 8+2t..
  a[3] = pack_bf16(c[2 * kk + 1][2], c[2 * kk + 1][3]);  // row g+8, k 8+2t..
}

// Loads rows [row0, row0 + R) x D of a row-major matrix (row stride `rs` elements, `base` already
// at the head's column) into shared memory with row stride D + 8; rows >= S are zero-filled.
template <int R, int D, int NT>
__device__ __forceinline__ void load_tile_async(bf16* smem, const bf16* base, std::int64_t rs, int row0, int S,
                                                int tid) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  constexpr int LD = D + 8;
  for (int c = tid; c < R * kChunks; c += NT) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    const int gr = row0 + r;
    const bool ok = gr < S;
    cp_async16(smem + r * LD + col, base + (ok ? gr : 0) * rs + col, ok);
  }
}

// A fragment (16 rows x 16 k) of a row-major [row][k] shared tile: rows r0.., k columns k0...
template <int LD>
__device__ __forceinline__ void load_a(unsigned (&a)[4], const bf16* tile, int r0, int k0, int lane) {
  ldmatrix_x4(a, tile + (r0 + (lane & 15)) * LD + k0 + (lane >> 4) * 8);
}
// B fragments for two n8 tiles (n0.., n0+8..) x 16 k of a shared tile stored [n][k] (the GEMM's
// B^T row-major, e.g. K for Q K^T): b[0], b[1] for n-tile n0, b[2], b[3] for n-tile n0 + 8.
template <int LD>
__device__ __forceinline__ void load_b_nk(unsigned (&b)[4], const bf16* tile, int n0, int k0, int lane) {
  ldmatrix_x4(b, tile + (n0 + (lane >> 4) * 8 + (lane & 7)) * LD + k0 + ((lane >> 3) & 1) * 8);
}
// The same for a shared tile stored [k][n] (e.g. V for P V): transposing ldmatrix.
template <int LD>
__device__ __forceinline__ void load_b_kn(unsigned (&b)[4], const bf16* tile, int k0, int n0, int lane) {
  ldmatrix_x4_trans(b, tile + (k0 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LD + n0 + (lane >> 4) * 8);
}

// c[NT8][4] (16 x 8*NT8) = A (16 x 16*KS, fragments a[KS]) * B^T where B is a shared tile stored
// [n][k] (rows n0.. of it). c is accumulated into.
template <int KS, int NT8, int LD>
__device__ __forceinline__ void mma_a_regs_b_nk(float (&c)[NT8][4], const unsigned (&a)[KS][4], const bf16* tile,
                                                int lane) {
#pragma unroll
  for (int kk = 0; kk < KS; ++kk)
#pragma unroll
    for (int np = 0; np < NT8 / 2; ++np) {
      unsigned b[4];
      load_b_nk<LD>(b, tile, np * 16, kk * 16, lane);
      mma_bf16(c[2 * np], a[kk], b[0], b[1]);
      mma_bf16(c[2 * np + 1], a[kk], b[2], b[3]);
    }
}
// acc[DT][4] (16 x D) += P (16 x 16*KS, accumulator fragments p[2*KS][4]) * V, V a shared tile
// stored [k][d] (row stride LD, DT = D / 8 n8 tiles).
template <int KS, int DT, int LD>
__device__ __forceinline__ void mma_p_b_kn(float (&acc)[DT][4], const float (&p)[2 * KS][4], const bf16* tile,
                                           int lane) {
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
    unsigned a[4];
    acc_to_a(a, p, kk);
#pragma unroll
    for (int dp = 0; dp < DT / 2; ++dp) {
      unsigned b[4];
      load_b_kn<LD>(b, tile, kk * 16, dp * 16, lane);
      mma_bf16(acc[2 * dp], a, b[0], b[1]);
      mma_bf16(acc[2 * dp + 1], a, b[2], b[3]);
    }
  }
}

template <class K>
void set_smem_limit(K* kernel, int bytes) {
  TITAN_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

// ------------------------------------------------------------------------------------------------
// Tensor-core kernels (bf16)
// ------------------------------------------------------------------------------------------------

constexpr int kMmaThreads = 128;  // 4 warps

template <int D>
struct MmaFwd {
  static constexpr int BM = 64, BN = 64, LD = D + 8;
  static constexpr int smem_bytes = (BM + 4 * BN) * LD * int(sizeof(bf16));  // Q + 2 x (K, V)
};

template <int D>
__global__ void __launch_bounds__(kMmaThreads) attn_fwd_mma(const bf16* __restrict__ q, const bf16* __restrict__ k,
                                                            const bf16* __restrict__ v, bf16* __restrict__ out,
                                                            float* __restrict__ lse, int S, int H, int KV,
                                                            float scale, float scale_log2) {
  using Cfg = MmaFwd<D>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, LD = Cfg::LD, KS = D / 16, DT = D / 8, NT8 = BN / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sQ = reinterpret_cast<bf16*>(smem_raw);
  bf16* sK = sQ + BM * LD;      // [2][BN][LD]
  bf16* sV = sK + 2 * BN * LD;  // [2][BN][LD]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int mb = int(gridDim.x) - 1 - int(blockIdx.x);  // longest rows first
  const int h = blockIdx.y, b = blockIdx.z, g = h / (H / KV);
  const int m0 = mb * BM;
  const std::int64_t q_rs = std::int64_t(H) * D, kv_rs = std::int64_t(KV) * D;
  const bf16* qb = q + std::int64_t(b) * S * q_rs + std::int64_t(h) * D;
  const bf16* kb = k + std::int64_t(b) * S * kv_rs + std::int64_t(g) * D;
  const bf16* vb = v + std::int64_t(b) * S * kv_rs + std::int64_t(g) * D;

  load_tile_async<BM, D, kMmaThreads>(sQ, qb, q_rs, m0, S, tid);
  load_tile_async<BN, D, kMmaThreads>(sK, kb, kv_rs, 0, S, tid);
  load_tile_async<BN, D, kMmaThreads>(sV, vb, kv_rs, 0, S, tid);
  cp_async_commit();

  const int n_tiles = mb + 1;  // BM == BN: key tiles 0..mb, the last one on the diagonal
  const int r_lo = m0 + warp * 16 + (lane >> 2);  // this thread's rows: r_lo, r_lo + 8
  const int c_in = 2 * (lane & 3);                // its columns in an n8 tile: c_in, c_in + 1
  unsigned qf[KS][4];
  float o[DT][4];
#pragma unroll
  for (int i = 0; i < DT; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};

  for (int n = 0; n < n_tiles; ++n) {
    const int buf = n & 1;
    if (n + 1 < n_tiles) {
      load_tile_async<BN, D, kMmaThreads>(sK + (buf ^ 1) * BN * LD, kb, kv_rs, (n + 1) * BN, S, tid);
      load_tile_async<BN, D, kMmaThreads>(sV + (buf ^ 1) * BN * LD, vb, kv_rs, (n + 1) * BN, S, tid);
    }
    cp_async_commit();
    cp_async_wait<1>();  // everything but the prefetch just issued has landed
    __syncthreads();
    if (n == 0) {
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) load_a<LD>(qf[kk], sQ, warp * 16, kk * 16, lane);
    }
    const bf16* cK = sK + buf * BN * LD;
    const bf16* cV = sV + buf * BN * LD;

    float s[NT8][4];
#pragma unroll
    for (int i = 0; i < NT8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
    mma_a_regs_b_nk<KS, NT8, LD>(s, qf, cK, lane);

    if (n == mb) {  // the diagonal tile: keys past the row are masked (so are keys >= S)
#pragma unroll
      for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (n * BN + nt * 8 + c_in + (e & 1) > r_lo + (e >> 1) * 8) s[nt][e] = -INFINITY;
    }
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      float mx = row_max[hf];
#pragma unroll
      for (int nt = 0; nt < NT8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * hf], s[nt][2 * hf + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float shift = mx == -INFINITY ? 0.f : mx * scale_log2;
      const float alpha = exp2f(row_max[hf] * scale_log2 - shift);
      row_max[hf] = mx;
      float sum = 0.f;
#pragma unroll
      for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
        for (int e = 2 * hf; e < 2 * hf + 2; ++e) {
          const float p = exp2f(fmaf(s[nt][e], scale_log2, -shift));
          s[nt][e] = p;
          sum += p;
        }
      row_sum[hf] = row_sum[hf] * alpha + sum;  // partial over this lane's columns
#pragma unroll
      for (int dt = 0; dt < DT; ++dt) {
        o[dt][2 * hf] *= alpha;
        o[dt][2 * hf + 1] *= alpha;
      }
    }
    mma_p_b_kn<BN / 16, DT, LD>(o, s, cV, lane);
    __syncthreads();  // the next iteration's prefetch overwrites this buffer
  }

#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    float l = row_sum[hf];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int row = r_lo + hf * 8;
    if (row < S) {
      const float inv = 1.f / l;
      bf16* orow = out + (std::int64_t(b) * S + row) * q_rs + std::int64_t(h) * D;
#pragma unroll
      for (int dt = 0; dt < DT; ++dt)
        *reinterpret_cast<__nv_bfloat162*>(orow + dt * 8 + c_in) =
            __floats2bfloat162_rn(o[dt][2 * hf] * inv, o[dt][2 * hf + 1] * inv);
      if ((lane & 3) == 0) lse[(std::int64_t(b) * H + h) * S + row] = row_max[hf] * scale + logf(l);
    }
  }
}

template <int D>
struct MmaDq {
  static constexpr int BM = 64, BN = 32, LD = D + 8;
  static constexpr int smem_bytes = (2 * BM + 4 * BN) * LD * int(sizeof(bf16));  // Q, dO + 2 x (K, V)
};

template <int D>
__global__ void __launch_bounds__(kMmaThreads)
    attn_bwd_dq_mma(const bf16* __restrict__ dout, const bf16* __restrict__ q, const bf16* __restrict__ k,
                    const bf16* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ delta,
                    bf16* __restrict__ dq, int S, int H, int KV, float scale, float scale_log2) {
  using Cfg = MmaDq<D>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, LD = Cfg::LD, KS = D / 16, DT = D / 8, NT8 = BN / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sQ = reinterpret_cast<bf16*>(smem_raw);
  bf16* sdO = sQ + BM * LD;
  bf16* sK = sdO + BM * LD;     // [2][BN][LD]
  bf16* sV = sK + 2 * BN * LD;  // [2][BN][LD]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int mb = int(gridDim.x) - 1 - int(blockIdx.x);
  const int h = blockIdx.y, b = blockIdx.z, g = h / (H / KV);
  const int m0 = mb * BM;
  const std::int64_t q_rs = std::int64_t(H) * D, kv_rs = std::int64_t(KV) * D;
  const std::int64_t q_off = std::int64_t(b) * S * q_rs + std::int64_t(h) * D;
  const bf16* kb = k + std::int64_t(b) * S * kv_rs + std::int64_t(g) * D;
  const bf16* vb = v + std::int64_t(b) * S * kv_rs + std::int64_t(g) * D;

  load_tile_async<BM, D, kMmaThreads>(sQ, q + q_off, q_rs, m0, S, tid);
  load_tile_async<BM, D, kMmaThreads>(sdO, dout + q_off, q_rs, m0, S, tid);
  load_tile_async<BN, D, kMmaThreads>(sK, kb, kv_rs, 0, S, tid);
  load_tile_async<BN, D, kMmaThreads>(sV, vb, kv_rs, 0, S, tid);
  cp_async_commit();

  const int r_lo = m0 + warp * 16 + (lane >> 2);
  const int c_in = 2 * (lane & 3);
  float lse2[2], dlt[2];  // per row: lse in log2 units (+inf past S: P = 0), Delta
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int row = r_lo + hf * 8;
    const std::int64_t idx = (std::int64_t(b) * H + h) * S + row;
    lse2[hf] = row < S ? lse[idx] * kLog2e : INFINITY;
    dlt[hf] = row < S ? delta[idx] : 0.f;
  }
  const int n_tiles = (min(m0 + BM, S) + BN - 1) / BN;
  unsigned qf[KS][4], df[KS][4];
  float acc[DT][4];
#pragma unroll
  for (int i = 0; i < DT; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;

  for (int n = 0; n < n_tiles; ++n) {
    const int buf = n & 1;
    if (n + 1 < n_tiles) {
      load_tile_async<BN, D, kMmaThreads>(sK + (buf ^ 1) * BN * LD, kb, kv_rs, (n + 1) * BN, S, tid);
      load_tile_async<BN, D, kMmaThreads>(sV + (buf ^ 1) * BN * LD, vb, kv_rs, (n + 1) * BN, S, tid);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (n == 0) {
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) {
        load_a<LD>(qf[kk], sQ, warp * 16, kk * 16, lane);
        load_a<LD>(df[kk], sdO, warp * 16, kk * 16, lane);
      }
    }
    const bf16* cK = sK + buf * BN * LD;
    const bf16* cV = sV + buf * BN * LD;
    float s[NT8][4], dp[NT8][4];
#pragma unroll
    for (int i = 0; i < NT8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = dp[i][0] = dp[i][1] = dp[i][2] = dp[i][3] = 0.f;
    mma_a_regs_b_nk<KS, NT8, LD>(s, qf, cK, lane);   // S = Q K^T
    mma_a_regs_b_nk<KS, NT8, LD>(dp, df, cV, lane);  // dP = dO V^T
    const bool need_mask = n * BN + BN - 1 > m0;
#pragma unroll
    for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float p = exp2f(fmaf(s[nt][e], scale_log2, -lse2[e >> 1]));
        if (need_mask && n * BN + nt * 8 + c_in + (e & 1) > r_lo + (e >> 1) * 8) p = 0.f;
        s[nt][e] = p * (dp[nt][e] - dlt[e >> 1]);  // dS
      }
    mma_p_b_kn<BN / 16, DT, LD>(acc, s, cK, lane);  // dQ += dS K
    __syncthreads();
  }

#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int row = r_lo + hf * 8;
    if (row < S) {
      bf16* drow = dq + q_off + std::int64_t(row) * q_rs;
#pragma unroll
      for (int dt = 0; dt < DT; ++dt)
        *reinterpret_cast<__nv_bfloat162*>(drow + dt * 8 + c_in) =
            __floats2bfloat162_rn(acc[dt][2 * hf] * scale, acc[dt][2 * hf + 1] * scale);
    }
  }
}

template <int D>
struct MmaDkdv {
  static constexpr int BN = 64, BM = 32, LD = D + 8;  // BN keys per block, BM queries per tile
  static constexpr int smem_bytes = (2 * BN + 4 * BM) * LD * int(sizeof(bf16)) + 4 * BM * int(sizeof(float));
};

template <int D>
__global__ void __launch_bounds__(kMmaThreads)
    attn_bwd_dkdv_mma(const bf16* __restrict__ dout, const bf16* __restrict__ q, const bf16* __restrict__ k,
                      const bf16* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ delta,
                      bf16* __restrict__ dk, bf16* __restrict__ dv, int S, int H, int KV, float scale,
                      float scale_log2) {
  using Cfg = MmaDkdv<D>;
  constexpr int BN = Cfg::BN, BM = Cfg::BM, LD = Cfg::LD, KS = D / 16, DT = D / 8, NT8 = BM / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sK = reinterpret_cast<bf16*>(smem_raw);
  bf16* sV = sK + BN * LD;
  bf16* sQ = sV + BN * LD;      // [2][BM][LD]
  bf16* sdO = sQ + 2 * BM * LD;  // [2][BM][LD]
  float* sL = reinterpret_cast<float*>(sdO + 2 * BM * LD);  // [2][BM] lse * log2e (+inf past S)
  float* sDl = sL + 2 * BM;                                 // [2][BM] Delta (0 past S)

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int nb = blockIdx.x;  // key tile; tile 0 has the most work and starts first
  const int g = blockIdx.y, b = blockIdx.z, G = H / KV;
  const int n0 = nb * BN;
  const std::int64_t q_rs = std::int64_t(H) * D, kv_rs = std::int64_t(KV) * D;
  const std::int64_t kv_off = std::int64_t(b) * S * kv_rs + std::int64_t(g) * D;
  const int m_first = n0 / BM, m_tiles = (S + BM - 1) / BM, per_head = m_tiles - m_first;
  const int total = G * per_head;

  auto load_query_tile = [&](int it, int buf) {
    const int h = g * G + it / per_head, i0 = (m_first + it % per_head) * BM;
    const std::int64_t q_off = std::int64_t(b) * S * q_rs + std::int64_t(h) * D;
    load_tile_async<BM, D, kMmaThreads>(sQ + buf * BM * LD, q + q_off, q_rs, i0, S, tid);
    load_tile_async<BM, D, kMmaThreads>(sdO + buf * BM * LD, dout + q_off, q_rs, i0, S, tid);
    if (tid < BM) {
      const int i = i0 + tid;
      const std::int64_t idx = (std::int64_t(b) * H + h) * S + i;
      sL[buf * BM + tid] = i < S ? lse[idx] * kLog2e : INFINITY;
      sDl[buf * BM + tid] = i < S ? delta[idx] : 0.f;
    }
  };

  load_tile_async<BN, D, kMmaThreads>(sK, k + kv_off, kv_rs, n0, S, tid);
  load_tile_async<BN, D, kMmaThreads>(sV, v + kv_off, kv_rs, n0, S, tid);
  load_query_tile(0, 0);
  cp_async_commit();

  const int kr_lo = n0 + warp * 16 + (lane >> 2);  // this thread's keys: kr_lo, kr_lo + 8
  const int c_in = 2 * (lane & 3);
  float dka[DT][4], dva[DT][4];
#pragma unroll
  for (int i = 0; i < DT; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) dka[i][e] = dva[i][e] = 0.f;

  for (int it = 0; it < total; ++it) {
    const int buf = it & 1;
    if (it + 1 < total) load_query_tile(it + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const int i0 = (m_first + it % per_head) * BM;
    const bf16* cQ = sQ + buf * BM * LD;
    const bf16* cdO = sdO + buf * BM * LD;
    const float* cL = sL + buf * BM;
    const float* cDl = sDl + buf * BM;

    float st[NT8][4], dpt[NT8][4];  // S^T, dP^T: rows = this warp's 16 keys, cols = BM queries
#pragma unroll
    for (int i = 0; i < NT8; ++i)
#pragma unroll
      for (int e = 0; e < 4; ++e) st[i][e] = dpt[i][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
      unsigned ka[4], va[4];
      load_a<LD>(ka, sK, warp * 16, kk * 16, lane);
      load_a<LD>(va, sV, warp * 16, kk * 16, lane);
#pragma unroll
      for (int np = 0; np < NT8 / 2; ++np) {
        unsigned bq[4], bo[4];
        load_b_nk<LD>(bq, cQ, np * 16, kk * 16, lane);
        load_b_nk<LD>(bo, cdO, np * 16, kk * 16, lane);
        mma_bf16(st[2 * np], ka, bq[0], bq[1]);
        mma_bf16(st[2 * np + 1], ka, bq[2], bq[3]);
        mma_bf16(dpt[2 * np], va, bo[0], bo[1]);
        mma_bf16(dpt[2 * np + 1], va, bo[2], bo[3]);
      }
    }
    const bool need_mask = i0 < n0 + BN;  // some query i < some key j in this pair of tiles
#pragma unroll
    for (int nt = 0; nt < NT8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = nt * 8 + c_in + (e & 1);
        float p = exp2f(fmaf(st[nt][e], scale_log2, -cL[c]));
        if (need_mask && i0 + c < kr_lo + (e >> 1) * 8) p = 0.f;
        st[nt][e] = p;                         // P^T
        dpt[nt][e] = p * (dpt[nt][e] - cDl[c]);  // dS^T
      }
    mma_p_b_kn<BM / 16, DT, LD>(dva, st, cdO, lane);  // dV += P^T dO
    mma_p_b_kn<BM / 16, DT, LD>(dka, dpt, cQ, lane);  // dK += dS^T Q
    __syncthreads();
  }

#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int row = kr_lo + hf * 8;
    if (row < S) {
      bf16* krow = dk + kv_off + std::int64_t(row) * kv_rs;
      bf16* vrow = dv + kv_off + std::int64_t(row) * kv_rs;
#pragma unroll
      for (int dt = 0; dt < DT; ++dt) {
        *reinterpret_cast<__nv_bfloat162*>(krow + dt * 8 + c_in) =
            __floats2bfloat162_rn(dka[dt][2 * hf] * scale, dka[dt][2 * hf + 1] * scale);
        *reinterpret_cast<__nv_bfloat162*>(vrow + dt * 8 + c_in) =
            __floats2bfloat162_rn(dva[dt][2 * hf], dva[dt][2 * hf + 1]);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// CUDA-core kernels (f32, and bf16 as a fallback)
// ------------------------------------------------------------------------------------------------

constexpr int kSimtThreads = 256;  // 16 x 16: tx = tid % 16 (columns), ty = tid / 16 (rows)

template <int D>
struct Simt {
  static constexpr int T = D <= 64 ? 64 : 32;  // square score tile
  static constexpr int LD = D + 1, LP = T + 1, MI = T / 16, DJ = D / 16;
  static constexpr int fwd_smem = (3 * T * LD + T * LP) * int(sizeof(float));            // Q, K, V, P
  static constexpr int bwd_smem = (4 * T * LD + T * LP + 2 * T) * int(sizeof(float));    // Q, dO, K, V, P/dS, lse, Delta
};

// Rows [row0, row0 + R) x D -> f32 shared tile with row stride D + 1; rows >= S are zero.
template <class T, int R, int D>
__device__ __forceinline__ void load_tile_f32(float* smem, const T* base, std::int64_t rs, int row0, int S, int tid) {
  for (int idx = tid; idx < R * D; idx += kSimtThreads) {
    const int r = idx / D, c = idx % D, gr = row0 + r;
    smem[r * (D + 1) + c] = gr < S ? to_f32(base[std::int64_t(gr) * rs + c]) : 0.f;
  }
}

// acc[i][j] += sum_k A(ty + 16 i, k) B(k, tx + 16 j), A(r, k) = A[r*a_rs + k*a_ks], B(k, c) = B[k*b_ks + c*b_cs].
template <int MI, int NJ, int K>
__device__ __forceinline__ void simt_mm(float (&acc)[MI][NJ], const float* A, int a_rs, int a_ks, const float* Bm,
                                        int b_ks, int b_cs, int ty, int tx) {
#pragma unroll 4
  for (int kk = 0; kk < K; ++kk) {
    float a[MI], bv[NJ];
#pragma unroll
    for (int i = 0; i < MI; ++i) a[i] = A[(ty + 16 * i) * a_rs + kk * a_ks];
#pragma unroll
    for (int j = 0; j < NJ; ++j) bv[j] = Bm[kk * b_ks + (tx + 16 * j) * b_cs];
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
      for (int j = 0; j < NJ; ++j) acc[i][j] = fmaf(a[i], bv[j], acc[i][j]);
  }
}


template <class T, int D>
__global__ void __launch_bounds__(kSimtThreads) attn_fwd_simt(const T* __restrict__ q, const T* __restrict__ k,
                                                              const T* __restrict__ v, T* __restrict__ out,
                                                              float* __restrict__ lse, int S, int H, int KV,
                                                              float scale_log2) {
  using Cfg = Simt<D>;
  constexpr int TS = Cfg::T, LD = Cfg::LD, LP = Cfg::LP, MI = Cfg::MI, DJ = Cfg::DJ;
  extern __shared__ float smem_f[];
  float* sQ = smem_f;
  float* sK = sQ + TS * LD;
  float* sV = sK + TS * LD;
  float* sP = sV + TS * LD;
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int mb = int(gridDim.x) - 1 - int(blockIdx.x);
  const int h = blockIdx.y, b = blockIdx.z, g = h / (H / KV);
  const int m0 = mb * TS;
  const std::int64_t q_rs = std::int64_t(H) * D, kv_rs = std::int64_t(KV) * D;
  const std::int64_t q_off = std::int64_t(b) * S * q_rs + std::int64_t(h) * D;
  const T* kb = k + std::int64_t(b) * S * kv_rs + std::int64_t(g) * D;
  const T* vb = v + std::int64_t(b) * S * kv_rs + std::int64_t(g) * D;

  load_tile_f32<T, TS, D>(sQ, q + q_off, q_rs, m0, S, tid);
  float o[MI][DJ] = {};
  float mrow[MI], lrow[MI];  // running max (log2 units) and sum per row
#pragma unroll
  for (int i = 0; i < MI; ++i) mrow[i] = -INFINITY, lrow[i] = 0.f;

  for (int n = 0; n <= mb; ++n) {
    __syncthreads();  // the previous tile's K, V, P are no longer read
    load_tile_f32<T, TS, D>(sK, kb, kv_rs, n * TS, S, tid);
    load_tile_f32<T, TS, D>(sV, vb, kv_rs, n * TS, S, tid);
    __syncthreads();
    float s[MI][MI] = {};
    simt_mm<MI, MI, D>(s, sQ, LD, 1, sK, 1, LD, ty, tx);  // Q K^T
#pragma unroll
    for (int i = 0; i < MI; ++i) {
      const int row = m0 + ty + 16 * i;
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < MI; ++j) {
        s[i][j] *= scale_log2;
        if (n == mb && n * TS + tx + 16 * j > row) s[i][j] = -INFINITY;
        mx = fmaxf(mx, s[i][j]);
      }
      const float m_new = fmaxf(mrow[i], warp_max<16>(mx));  // over the 16 lanes of a row
      const float shift = m_new == -INFINITY ? 0.f : m_new;
      const float alpha = exp2f(mrow[i] - shift);
      mrow[i] = m_new;
      float sum = 0.f;
#pragma unroll
      for (int j = 0; j < MI; ++j) {
        const float p = exp2f(s[i][j] - shift);
        sum += p;
        sP[(ty + 16 * i) * LP + tx + 16 * j] = p;
      }
      lrow[i] = lrow[i] * alpha + warp_sum<16>(sum);
#pragma unroll
      for (int j = 0; j < DJ; ++j) o[i][j] *= alpha;
    }
    __syncthreads();
    simt_mm<MI, DJ, TS>(o, sP, LP, 1, sV, LD, 1, ty, tx);  // O += P V
  }

#pragma unroll
  for (int i = 0; i < MI; ++i) {
    const int row = m0 + ty + 16 * i;
    if (row < S) {
      const float inv = 1.f / lrow[i];
      T* orow = out + q_off + std::int64_t(row) * q_rs;
#pragma unroll
      for (int j = 0; j < DJ; ++j) orow[tx + 16 * j] = from_f32<T>(o[i][j] * inv);
      if (tx == 0) lse[(std::int64_t(b) * H + h) * S + row] = mrow[i] * kLn2 + logf(lrow[i]);
    }
  }
}

template <class T, int D>
__global__ void __launch_bounds__(kSimtThreads)
    attn_bwd_dq_simt(const T* __restrict__ dout, const T* __restrict__ q, const T* __restrict__ k,
                     const T* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ delta,
                     T* __restrict__ dq, int S, int H, int KV, float scale, float scale_log2) {
  using Cfg = Simt<D>;
  constexpr int TS = Cfg::T, LD = Cfg::LD, LP = Cfg::LP, MI = Cfg::MI, DJ = Cfg::DJ;
  extern __shared__ float smem_f[];
  float* sQ = smem_f;
  float* sdO = sQ + TS * LD;
  float* sK = sdO + TS * LD;
  float* sV = sK + TS * LD;
  float* sS = sV + TS * LD;
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int mb = int(gridDim.x) - 1 - int(blockIdx.x);
  const int h = blockIdx.y, b = blockIdx.z, g = h / (H / KV);
  const int m0 = mb * TS;
  const std::int64_t q_rs = std::int64_t(H) * D, kv_rs = std::int64_t(KV) * D;
  const std::int64_t q_off = std::int64_t(b) * S * q_rs + std::int64_t(h) * D;
  const T* kb = k + std::int64_t(b) * S * kv_rs + std::int64_t(g) * D;
  const T* vb = v + std::int64_t(b) * S * kv_rs + std::int64_t(g) * D;

  load_tile_f32<T, TS, D>(sQ, q + q_off, q_rs, m0, S, tid);
  load_tile_f32<T, TS, D>(sdO, dout + q_off, q_rs, m0, S, tid);
  float lse2[MI], dlt[MI];
#pragma unroll
  for (int i = 0; i < MI; ++i) {
    const int row = m0 + ty + 16 * i;
    const std::int64_t idx = (std::int64_t(b) * H + h) * S + row;
    lse2[i] = row < S ? lse[idx] * kLog2e : INFINITY;
    dlt[i] = row < S ? delta[idx] : 0.f;
  }
  float acc[MI][DJ] = {};
  for (int n = 0; n <= mb; ++n) {
    __syncthreads();
    load_tile_f32<T, TS, D>(sK, kb, kv_rs, n * TS, S, tid);
    load_tile_f32<T, TS, D>(sV, vb, kv_rs, n * TS, S, tid);
    __syncthreads();
    float s[MI][MI] = {}, dp[MI][MI] = {};
    simt_mm<MI, MI, D>(s, sQ, LD, 1, sK, 1, LD, ty, tx);    // Q K^T
    simt_mm<MI, MI, D>(dp, sdO, LD, 1, sV, 1, LD, ty, tx);  // dO V^T
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
      for (int j = 0; j < MI; ++j) {
        float p = exp2f(fmaf(s[i][j], scale_log2, -lse2[i]));
        if (n == mb && n * TS + tx + 16 * j > m0 + ty + 16 * i) p = 0.f;
        sS[(ty + 16 * i) * LP + tx + 16 * j] = p * (dp[i][j] - dlt[i]);
      }
    __syncthreads();
    simt_mm<MI, DJ, TS>(acc, sS, LP, 1, sK, LD, 1, ty, tx);  // dQ += dS K
  }
#pragma unroll
  for (int i = 0; i < MI; ++i) {
    const int row = m0 + ty + 16 * i;
    if (row < S) {
      T* drow = dq + q_off + std::int64_t(row) * q_rs;
#pragma unroll
      for (int j = 0; j < DJ; ++j) drow[tx + 16 * j] = from_f32<T>(acc[i][j] * scale);
    }
  }
}

template <class T, int D>
__global__ void __launch_bounds__(kSimtThreads)
    attn_bwd_dkdv_simt(const T* __restrict__ dout, const T* __restrict__ q, const T* __restrict__ k,
                       const T* __restrict__ v, const float* __restrict__ lse, const float* __restrict__ delta,
                       T* __restrict__ dk, T* __restrict__ dv, int S, int H, int KV, float scale, float scale_log2) {
  using Cfg = Simt<D>;
  constexpr int TS = Cfg::T, LD = Cfg::LD, LP = Cfg::LP, MI = Cfg::MI, DJ = Cfg::DJ;
  extern __shared__ float smem_f[];
  float* sK = smem_f;
  float* sV = sK + TS * LD;
  float* sQ = sV + TS * LD;
  float* sdO = sQ + TS * LD;
  float* sP = sdO + TS * LD;
  float* sL = sP + TS * LP;
  float* sDl = sL + TS;
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int nb = blockIdx.x;
  const int g = blockIdx.y, b = blockIdx.z, G = H / KV;
  const int n0 = nb * TS;
  const int m_tiles = (S + TS - 1) / TS;
  const std::int64_t q_rs = std::int64_t(H) * D, kv_rs = std::int64_t(KV) * D;
  const std::int64_t kv_off = std::int64_t(b) * S * kv_rs + std::int64_t(g) * D;

  load_tile_f32<T, TS, D>(sK, k + kv_off, kv_rs, n0, S, tid);
  load_tile_f32<T, TS, D>(sV, v + kv_off, kv_rs, n0, S, tid);
  float dka[MI][DJ] = {}, dva[MI][DJ] = {};
  for (int hh = 0; hh < G; ++hh) {
    const int h = g * G + hh;
    const std::int64_t q_off = std::int64_t(b) * S * q_rs + std::int64_t(h) * D;
    for (int m = nb; m < m_tiles; ++m) {  // query tiles at or below the diagonal
      const int i0 = m * TS;
      __syncthreads();
      load_tile_f32<T, TS, D>(sQ, q + q_off, q_rs, i0, S, tid);
      load_tile_f32<T, TS, D>(sdO, dout + q_off, q_rs, i0, S, tid);
      if (tid < TS) {
        const int i = i0 + tid;
        const std::int64_t idx = (std::int64_t(b) * H + h) * S + i;
        sL[tid] = i < S ? lse[idx] * kLog2e : INFINITY;
        sDl[tid] = i < S ? delta[idx] : 0.f;
      }
      __syncthreads();
      float st[MI][MI] = {}, dpt[MI][MI] = {};  // rows: keys ty + 16 i; cols: queries tx + 16 j
      simt_mm<MI, MI, D>(st, sK, LD, 1, sQ, 1, LD, ty, tx);    // K Q^T
      simt_mm<MI, MI, D>(dpt, sV, LD, 1, sdO, 1, LD, ty, tx);  // V dO^T
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < MI; ++j) {
          const int c = tx + 16 * j;
          float p = exp2f(fmaf(st[i][j], scale_log2, -sL[c]));
          if (m == nb && i0 + c < n0 + ty + 16 * i) p = 0.f;
          st[i][j] = p;
          sP[(ty + 16 * i) * LP + c] = p;
        }
      __syncthreads();
      simt_mm<MI, DJ, TS>(dva, sP, LP, 1, sdO, LD, 1, ty, tx);  // dV += P^T dO
      __syncthreads();
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < MI; ++j) {
          const int c = tx + 16 * j;
          sP[(ty + 16 * i) * LP + c] = st[i][j] * (dpt[i][j] - sDl[c]);
        }
      __syncthreads();
      simt_mm<MI, DJ, TS>(dka, sP, LP, 1, sQ, LD, 1, ty, tx);  // dK += dS^T Q
    }
  }
#pragma unroll
  for (int i = 0; i < MI; ++i) {
    const int row = n0 + ty + 16 * i;
    if (row < S) {
      T* krow = dk + kv_off + std::int64_t(row) * kv_rs;
      T* vrow = dv + kv_off + std::int64_t(row) * kv_rs;
#pragma unroll
      for (int j = 0; j < DJ; ++j) {
        krow[tx + 16 * j] = from_f32<T>(dka[i][j] * scale);
        vrow[tx + 16 * j] = from_f32<T>(dva[i][j]);
      }
    }
  }
}

// Delta[b, h, s] = sum_d dO[b, s, h, d] O[b, s, h, d]: one warp per (b, s, h) row.
template <class T>
__global__ void attn_delta(const T* __restrict__ dout, const T* __restrict__ out, float* __restrict__ delta,
                           std::int64_t rows, int S, int H, int D) {
  const int lane = threadIdx.x & 31;
  const std::int64_t warps = std::int64_t(gridDim.x) * (blockDim.x >> 5);
  for (std::int64_t r = std::int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    const T* a = dout + r * D;
    const T* o = out + r * D;
    float acc = 0.f;
    for (int d = lane; d < D; d += 32) acc = fmaf(to_f32(a[d]), to_f32(o[d]), acc);
    acc = warp_sum(acc);
    if (lane == 0) {
      const std::int64_t h = r % H, bs = r / H, s = bs % S, b = bs / S;
      delta[(b * H + h) * S + s] = acc;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Host side
// ------------------------------------------------------------------------------------------------

bool g_force_simt = false;
AttentionImpl g_impl = AttentionImpl::automatic;
bool g_deterministic = false;  // cuDNN's deterministic backward (titan.cpp's kernels always are)

struct Shape {
  int B, S, H, KV, D;
};

Shape check_shape(const char* op, std::int64_t B, std::int64_t S, std::int64_t H, std::int64_t KV, std::int64_t D) {
  const std::string where = std::string("cuda::") + op + ": ";
  if (B < 0 || S < 0 || H <= 0 || KV <= 0)
    throw_usage_error(where + "needs B, S >= 0 and H, KV > 0 (got B=" + std::to_string(B) + ", S=" + std::to_string(S) +
                      ", H=" + std::to_string(H) + ", KV=" + std::to_string(KV) + ")");
  if (H % KV != 0)
    throw_usage_error(where + "the number of query heads (" + std::to_string(H) +
                      ") must be a multiple of the number of kv heads (" + std::to_string(KV) + ")");
  if (D != 16 && D != 32 && D != 64 && D != 128)
    throw_usage_error(where + "head dim " + std::to_string(D) + " is not supported (16, 32, 64, 128)");
  if (B > 65535 || H > 65535 || S > (std::int64_t(1) << 30))
    throw_usage_error(where + "B and H must be at most 65535 and S at most 2^30 (got B=" + std::to_string(B) +
                      ", H=" + std::to_string(H) + ", S=" + std::to_string(S) + ")");
  return Shape{int(B), int(S), int(H), int(KV), int(D)};
}

template <class F>
void dispatch_head_dim(int D, F&& f) {
  switch (D) {
    case 16: f(std::integral_constant<int, 16>{}); break;
    case 32: f(std::integral_constant<int, 32>{}); break;
    case 64: f(std::integral_constant<int, 64>{}); break;
    default: f(std::integral_constant<int, 128>{}); break;  // check_shape allowed only these
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

// Tensor cores for bf16 on sm_80+ with 16-byte aligned tensors (cp.async moves 16-byte chunks).
bool use_tensor_cores(DType dtype, std::initializer_list<const void*> ptrs) {
  if (dtype != DType::bf16 || g_force_simt) return false;
  static const int major = [] {
    int dev = 0, m = 0;
    TITAN_CUDA_CHECK(cudaGetDevice(&dev));
    TITAN_CUDA_CHECK(cudaDeviceGetAttribute(&m, cudaDevAttrComputeCapabilityMajor, dev));
    return m;
  }();
  if (major < 8) return false;
  for (const void* p : ptrs)
    if (!aligned16(p)) return false;
  return true;
}

struct Scales {
  float scale, scale_log2;
};
Scales scales_for(int D) {
  const float scale = static_cast<float>(1.0 / std::sqrt(double(D)));  // as the CPU op: float(1/sqrt(D))
  return Scales{scale, scale * kLog2e};
}

// Why this call does not take cuDNN's fused attention ("" when it does): f32, forced SIMT,
// attention set to titan, a misaligned tensor, or a shape cuDNN builds no plan for.
std::string cudnn_refusal(const Shape& sh, DType dtype, bool backward, std::initializer_list<const void*> ptrs) {
  if (g_force_simt || g_impl == AttentionImpl::titan) return "titan.cpp's kernels were asked for";
  if (dtype != DType::bf16) return "cuDNN's fused attention is bf16 only here";
  for (const void* p : ptrs)
    if (!aligned16(p)) return "a tensor is not 16-byte aligned";
  return cudnn_attention_unsupported(sh.B, sh.S, sh.H, sh.KV, sh.D, backward, g_deterministic);
}

// Whether the pass goes to cuDNN. With AttentionImpl::cudnn a refusal is an error naming cuDNN's
// reason, instead of a quiet switch to titan.cpp's kernels; so is a plan cuDNN refused to run
// (asked again after a failed call, the refusal is the failure cuDNN reported).
bool take_cudnn(const char* op, const Shape& sh, DType dtype, bool backward, std::initializer_list<const void*> ptrs) {
  const std::string why = cudnn_refusal(sh, dtype, backward, ptrs);
  if (why.empty()) return true;
  if (g_impl == AttentionImpl::cudnn && !g_force_simt)
    throw std::runtime_error(std::string("cuda::") + op + ": cuDNN attention was required but " + why);
  return false;
}

}  // namespace

void attention_force_simt(bool on) { g_force_simt = on; }

void set_attention_impl(AttentionImpl impl) { g_impl = impl; }

AttentionImpl attention_impl_named(const std::string& name) {
  if (name == "auto") return AttentionImpl::automatic;
  if (name == "cudnn") return AttentionImpl::cudnn;
  if (name == "titan") return AttentionImpl::titan;
  throw_usage_error("cuda::attention_impl_named: expects auto, cudnn or titan, got '" + name + "'");
}

void set_attention_deterministic(bool on) { g_deterministic = on; }

std::string attention_implementation(std::int64_t B, std::int64_t S, std::int64_t H, std::int64_t KV, std::int64_t D,
                                     DType dtype) {
  const Shape sh = check_shape("attention_implementation", B, S, H, KV, D);
  const std::string titan = dtype == DType::bf16 && !g_force_simt ? "titan.cpp's mma.sync flash attention"
                                                                  : "titan.cpp's CUDA-core flash attention";
  if (g_force_simt || g_impl == AttentionImpl::titan) return titan;
  const std::string fwd = cudnn_refusal(sh, dtype, false, {});
  const std::string bwd = cudnn_refusal(sh, dtype, true, {});
  if (fwd.empty() && bwd.empty()) return cudnn_description() + " fused flash attention (forward and backward)";
  if (fwd.empty()) return cudnn_description() + " fused flash attention forward, " + titan + " backward (cuDNN: " + bwd + ")";
  if (bwd.empty()) return titan + " forward (cuDNN: " + fwd + "), " + cudnn_description() + " fused flash attention backward";
  return titan + " (cuDNN: " + fwd + ")";
}

void attention_forward(const void* q, const void* k, const void* v, void* out, float* lse, std::int64_t B,
                       std::int64_t S, std::int64_t H, std::int64_t KV, std::int64_t D, DType dtype) {
  const Shape sh = check_shape("attention_forward", B, S, H, KV, D);
  dispatch_float(dtype, "cuda::attention_forward", [](auto) {});  // throws for dtypes other than f32, bf16
  if (sh.B == 0 || sh.S == 0) return;
  if (take_cudnn("attention_forward", sh, dtype, false, {q, k, v, out, lse})) {
    if (cudnn_attention_forward(q, k, v, out, lse, B, S, H, KV, D)) return;
    take_cudnn("attention_forward", sh, dtype, false, {});  // cuDNN refused to run: its reason is kept
  }
  const Scales sc = scales_for(sh.D);
  cudaStream_t stream = compute_stream();
  const bool tc = use_tensor_cores(dtype, {q, k, v, out});
  dispatch_head_dim(sh.D, [&](auto dc) {
    constexpr int Dv = decltype(dc)::value;
    if (tc) {
      using Cfg = MmaFwd<Dv>;
      static const bool once = (set_smem_limit(attn_fwd_mma<Dv>, Cfg::smem_bytes), true);
      (void)once;
      const dim3 grid((sh.S + Cfg::BM - 1) / Cfg::BM, sh.H, sh.B);
      attn_fwd_mma<Dv><<<grid, kMmaThreads, Cfg::smem_bytes, stream>>>(
          static_cast<const bf16*>(q), static_cast<const bf16*>(k), static_cast<const bf16*>(v),
          static_cast<bf16*>(out), lse, sh.S, sh.H, sh.KV, sc.scale, sc.scale_log2);
      TITAN_CUDA_LAUNCH_CHECK();
      return;
    }
    dispatch_float(dtype, "cuda::attention_forward", [&](auto tag) {
      using T = decltype(tag);
      using Cfg = Simt<Dv>;
      static const bool once = (set_smem_limit(attn_fwd_simt<T, Dv>, Cfg::fwd_smem), true);
      (void)once;
      const dim3 grid((sh.S + Cfg::T - 1) / Cfg::T, sh.H, sh.B);
      attn_fwd_simt<T, Dv><<<grid, kSimtThreads, Cfg::fwd_smem, stream>>>(
          static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), static_cast<T*>(out), lse,
          sh.S, sh.H, sh.KV, sc.scale_log2);
      TITAN_CUDA_LAUNCH_CHECK();
    });
  });
}

void attention_backward(const void* dout, const void* q, const void* k, const void* v, const void* out,
                        const float* lse, void* dq, void* dk, void* dv, std::int64_t B, std::int64_t S,
                        std::int64_t H, std::int64_t KV, std::int64_t D, DType dtype) {
  const Shape sh = check_shape("attention_backward", B, S, H, KV, D);
  dispatch_float(dtype, "cuda::attention_backward", [](auto) {});
  if (sh.B == 0 || sh.S == 0) return;
  if (take_cudnn("attention_backward", sh, dtype, true, {dout, q, k, v, out, lse, dq, dk, dv})) {
    if (cudnn_attention_backward(dout, q, k, v, out, lse, dq, dk, dv, B, S, H, KV, D, g_deterministic)) return;
    take_cudnn("attention_backward", sh, dtype, true, {});
  }
  const Scales sc = scales_for(sh.D);
  cudaStream_t stream = compute_stream();
  const std::int64_t rows = std::int64_t(sh.B) * sh.S * sh.H;
  const std::size_t delta_bytes = std::size_t(rows) * sizeof(float);
  float* delta = static_cast<float*>(allocate(delta_bytes));
  try {
    dispatch_float(dtype, "cuda::attention_backward", [&](auto tag) {
      using T = decltype(tag);
      constexpr int threads = 256;
      attn_delta<T><<<grid_for(rows * 32, threads), threads, 0, stream>>>(
          static_cast<const T*>(dout), static_cast<const T*>(out), delta, rows, sh.S, sh.H, sh.D);
      TITAN_CUDA_LAUNCH_CHECK();
    });
    const bool tc = use_tensor_cores(dtype, {dout, q, k, v, dq, dk, dv});
    dispatch_head_dim(sh.D, [&](auto dc) {
      constexpr int Dv = decltype(dc)::value;
      if (tc) {
        using Cq = MmaDq<Dv>;
        using Ck = MmaDkdv<Dv>;
        static const bool once = (set_smem_limit(attn_bwd_dq_mma<Dv>, Cq::smem_bytes),
                                  set_smem_limit(attn_bwd_dkdv_mma<Dv>, Ck::smem_bytes), true);
        (void)once;
        const auto* dob = static_cast<const bf16*>(dout);
        const auto* qb = static_cast<const bf16*>(q);
        const auto* kb = static_cast<const bf16*>(k);
        const auto* vb = static_cast<const bf16*>(v);
        const dim3 grid_kv((sh.S + Ck::BN - 1) / Ck::BN, sh.KV, sh.B);
        attn_bwd_dkdv_mma<Dv><<<grid_kv, kMmaThreads, Ck::smem_bytes, stream>>>(
            dob, qb, kb, vb, lse, delta, static_cast<bf16*>(dk), static_cast<bf16*>(dv), sh.S, sh.H, sh.KV, sc.scale,
            sc.scale_log2);
        TITAN_CUDA_LAUNCH_CHECK();
        const dim3 grid_q((sh.S + Cq::BM - 1) / Cq::BM, sh.H, sh.B);
        attn_bwd_dq_mma<Dv><<<grid_q, kMmaThreads, Cq::smem_bytes, stream>>>(
            dob, qb, kb, vb, lse, delta, static_cast<bf16*>(dq), sh.S, sh.H, sh.KV, sc.scale, sc.scale_log2);
        TITAN_CUDA_LAUNCH_CHECK();
        return;
      }
      dispatch_float(dtype, "cuda::attention_backward", [&](auto tag) {
        using T = decltype(tag);
        using Cfg = Simt<Dv>;
        static const bool once = (set_smem_limit(attn_bwd_dq_simt<T, Dv>, Cfg::bwd_smem),
                                  set_smem_limit(attn_bwd_dkdv_simt<T, Dv>, Cfg::bwd_smem), true);
        (void)once;
        const auto* dob = static_cast<const T*>(dout);
        const auto* qb = static_cast<const T*>(q);
        const auto* kb = static_cast<const T*>(k);
        const auto* vb = static_cast<const T*>(v);
        const int tiles = (sh.S + Cfg::T - 1) / Cfg::T;
        attn_bwd_dkdv_simt<T, Dv><<<dim3(tiles, sh.KV, sh.B), kSimtThreads, Cfg::bwd_smem, stream>>>(
            dob, qb, kb, vb, lse, delta, static_cast<T*>(dk), static_cast<T*>(dv), sh.S, sh.H, sh.KV, sc.scale,
            sc.scale_log2);
        TITAN_CUDA_LAUNCH_CHECK();
        attn_bwd_dq_simt<T, Dv><<<dim3(tiles, sh.H, sh.B), kSimtThreads, Cfg::bwd_smem, stream>>>(
            dob, qb, kb, vb, lse, delta, static_cast<T*>(dq), sh.S, sh.H, sh.KV, sc.scale, sc.scale_log2);
        TITAN_CUDA_LAUNCH_CHECK();
      });
    });
  } catch (...) {
    deallocate(delta, delta_bytes);
    throw;
  }
  deallocate(delta, delta_bytes);  // stream-ordered: freed after the kernels that read it
}

}  // namespace titan::cuda
