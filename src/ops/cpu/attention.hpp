#pragma once
// Causal scaled-dot-product attention with grouped-query heads on the CPU, flash-attention style.
//
// Layout: q [B, S, H, D], k and v [B, S, KV, D], out [B, S, H, D]; query head h reads kv head
// h / (H / KV) (TorchTitan's repeat_kv). For each (b, h):
//   P = softmax(scale * Q K^T + causal mask),  O = P V,  lse_i = log sum_{j<=i} exp(scale q_i.k_j)
// Work goes in tiles of kAttnQBlock query rows x kAttnKBlock keys, so one tile's scores stay in
// L2 whatever S is (the whole-row blocks this replaced spilled to memory at S = 8192):
//  - forward: online softmax over the key tiles of a query block (running max m and sum l per
//    row; when m grows, l and the row's output accumulator are rescaled by exp(m_old - m_new)),
//    the output normalised by l once at the end;
//  - causal: key tiles start only below or on the diagonal and the last one is cut at the query
//    block's end, so nothing above the diagonal is computed except inside the diagonal tile,
//    where columns past each row's own position are zeroed;
//  - backward (flash attention 2): P recomputed per tile from the saved lse, then
//      dV += P^T dO,  dP = dO V^T,  dS = P * (dP - rowsum(dO * O)),  dQ += scale dS K,  dK += scale dS^T Q
//    with dQ accumulated in a query-block buffer; no buffer is O(S^2) or O(S) per row.
// The tile GEMMs go through cpu::gemm with row strides H*D / KV*D, so no head is copied out. exp
// is fast_math's (8-lane AVX2 for float, std::exp for the float64 reference instantiation, which
// runs the same algorithm). Everything runs in a fixed order: reruns are bit-identical. The
// (batch, kv head) units run on the pool's threads (ops/cpu/threads.hpp); each is computed whole by
// one thread, so any thread count gives the same bits.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "ops/cpu/attention_tile_gemm.hpp"
#include "ops/cpu/blas.hpp"
#include "ops/cpu/fast_math.hpp"
#include "ops/cpu/threads.hpp"

namespace titan::ops::cpu {

// 128 x 256 float scores = 128 KB: in L2 with the packed K/V tiles on any x86 core of the last
// decade. Of 32/64/128 query rows x 128/256/512 keys (S = 2048, D = 16 and 128, one core) the
// 128-row blocks were fastest in backward (~10%: each packed key tile serves more rows) and all
// were within noise in forward.
constexpr std::int64_t kAttnQBlock = 128;
constexpr std::int64_t kAttnKBlock = 256;
static_assert(kAttnKBlock % 16 == 0, "key tiles start on a 16-column panel of the packed K^T / V^T");

namespace attention_detail {

// Keys query row i may see inside the key tile [j0, j0 + nk): 0 when the tile starts past i.
inline std::int64_t visible(std::int64_t i, std::int64_t j0, std::int64_t nk) {
  return std::clamp<std::int64_t>(i + 1 - j0, 0, nk);
}

// The six tile products of one (query block, key tile) pair, in the layout each backend reads.
// Generic (float64, the reference, and builds without AVX2): cpu::gemm on the tensors in place.
template <class T, class = void>
struct TileProducts {
  // cpu::gemm is the GEMM library's, with its own threads: the (b, kv head) units run one after
  // another rather than calling it from several pool threads at once.
  static constexpr bool kPoolThreads = false;
  std::int64_t D = 0, ldq = 0, ldk = 0;
  const T *k = nullptr, *v = nullptr, *q = nullptr, *dout = nullptr;
  void set_kv(const T* k_head, const T* v_head, std::int64_t ld, std::int64_t, std::int64_t head_dim, bool) {
    k = k_head, v = v_head, ldk = ld, D = head_dim;
  }
  void set_q(const T* q_blk, const T* do_blk, std::int64_t ld, std::int64_t) { q = q_blk, dout = do_blk, ldq = ld; }
  // C[n, nk] = alpha * Q K[j0:]^T and dO V[j0:]^T
  void qk(std::int64_t n, std::int64_t j0, std::int64_t nk, T alpha, T* C) const {
    gemm(false, true, int(n), int(nk), int(D), alpha, q, int(ldq), k + j0 * ldk, int(ldk), T(0), C, int(nk));
  }
  void dov(std::int64_t n, std::int64_t j0, std::int64_t nk, T* C) const {
    gemm(false, true, int(n), int(nk), int(D), T(1), dout, int(ldq), v + j0 * ldk, int(ldk), T(0), C, int(nk));
  }
  // acc[n, D] += alpha * P V[j0:] and alpha * dS K[j0:]   (P, dS [n, nk])
  void pv(std::int64_t n, std::int64_t j0, std::int64_t nk, const T* P, T* acc) const {
    gemm(false, false, int(n), int(D), int(nk), T(1), P, int(nk), v + j0 * ldk, int(ldk), T(1), acc, int(D));
  }
  void dsk(std::int64_t n, std::int64_t j0, std::int64_t nk, T alpha, const T* dS, T* acc) const {
    gemm(false, false, int(n), int(D), int(nk), alpha, dS, int(nk), k + j0 * ldk, int(ldk), T(1), acc, int(D));
  }
  // out[nk, D] (rows ldk apart) += alpha * P^T dO and alpha * dS^T Q
  void ptdo(std::int64_t n, std::int64_t nk, const T* P, T* out, std::int64_t ld_out) const {
    gemm(true, false, int(nk), int(D), int(n), T(1), P, int(nk), dout, int(ldq), T(1), out, int(ld_out));
  }
  void dstq(std::int64_t n, std::int64_t nk, T alpha, const T* dS, T* out, std::int64_t ld_out) const {
    gemm(true, false, int(nk), int(D), int(n), alpha, dS, int(nk), q, int(ldq), T(1), out, int(ld_out));
  }
};

#ifdef TITAN_ATTENTION_TILE_GEMM
// float with AVX2: attention_tile's kernel on operands packed so that every B streams contiguous
// 64-byte rows. Per kv head (once, shared by its query group): K^T and V^T in 16-key panels for
// Q K^T and dO V^T, V and K in 16-column panels for P V and dS K. Per query block: Q and dO
// copied to contiguous rows (their own rows are H*D floats apart) as the A of Q K^T and dO V^T,
// and in 16-column panels as the B of dS^T Q and P^T dO (rows D floats apart still share L1
// sets at D = 128: 5-10% of backward there).
template <class T>
struct TileProducts<T, std::enable_if_t<std::is_same_v<T, float>>> {
  static constexpr bool kPoolThreads = true;  // its tile GEMMs are titan.cpp's own, single-threaded
  static constexpr std::int64_t P16 = attention_tile::kCols;
  std::int64_t D = 0, S = 0, rows = 0;
  std::vector<float> kt, vt, kc, vc, qc, doc, qp, dop;
  void set_kv(const float* k, const float* v, std::int64_t ld, std::int64_t seq, std::int64_t head_dim, bool backward) {
    using namespace attention_tile;
    D = head_dim, S = seq;
    kt.resize(size_t(panels_size(S, D))), pack_panels(k, ld, S, D, kt.data());
    (backward ? kc : vc).resize(size_t(col_panels_size(S, D)));
    pack_col_panels(backward ? k : v, ld, S, D, (backward ? kc : vc).data());
    if (backward) vt.resize(size_t(panels_size(S, D))), pack_panels(v, ld, S, D, vt.data());
  }
  void set_q(const float* q, const float* dout, std::int64_t ld, std::int64_t n) {
    rows = n;
    qc.resize(size_t(n * D));
    for (std::int64_t r = 0; r < n; ++r) std::copy_n(q + r * ld, D, qc.data() + r * D);
    if (dout) {  // backward: dO as an A too, Q and dO as the B of dS^T Q and P^T dO
      doc.resize(size_t(n * D));
      for (std::int64_t r = 0; r < n; ++r) std::copy_n(dout + r * ld, D, doc.data() + r * D);
      qp.resize(size_t(attention_tile::col_panels_size(n, D))), dop.resize(qp.size());
      attention_tile::pack_col_panels(q, ld, n, D, qp.data());
      attention_tile::pack_col_panels(dout, ld, n, D, dop.data());
    }
  }
  void qk(std::int64_t n, std::int64_t j0, std::int64_t nk, float alpha, float* C) const {
    attention_tile::gemm<false>(n, nk, D, alpha, qc.data(), D, 1, kt.data() + j0 * D, P16, P16 * D, C, nk);
  }
  void dov(std::int64_t n, std::int64_t j0, std::int64_t nk, float* C) const {
    attention_tile::gemm<false>(n, nk, D, 1.0f, doc.data(), D, 1, vt.data() + j0 * D, P16, P16 * D, C, nk);
  }
  void pv(std::int64_t n, std::int64_t j0, std::int64_t nk, const float* P, float* acc) const {
    attention_tile::gemm<true>(n, D, nk, 1.0f, P, nk, 1, vc.data() + j0 * P16, P16, P16 * S, acc, D);
  }
  void dsk(std::int64_t n, std::int64_t j0, std::int64_t nk, float alpha, const float* dS, float* acc) const {
    attention_tile::gemm<true>(n, D, nk, alpha, dS, nk, 1, kc.data() + j0 * P16, P16, P16 * S, acc, D);
  }
  void ptdo(std::int64_t n, std::int64_t nk, const float* P, float* out, std::int64_t ldk) const {
    attention_tile::gemm<true>(nk, D, n, 1.0f, P, 1, nk, dop.data(), P16, P16 * rows, out, ldk);
  }
  void dstq(std::int64_t n, std::int64_t nk, float alpha, const float* dS, float* out, std::int64_t ldk) const {
    attention_tile::gemm<true>(nk, D, n, alpha, dS, 1, nk, qp.data(), P16, P16 * rows, out, ldk);
  }
};
#endif

}  // namespace attention_detail

template <class T>
void attention_forward(const T* q, const T* k, const T* v, T* out, float* lse, std::int64_t B, std::int64_t S,
                       std::int64_t H, std::int64_t KV, std::int64_t D) {
  using namespace attention_detail;
  const T scale = static_cast<T>(1.0 / std::sqrt(double(D)));
  const std::int64_t group = H / KV, ldq = H * D, ldk = KV * D;
  // One unit per (batch, kv head): its query heads share the prepared kv head, and it writes only
  // their rows of out and lse. Each pool thread keeps its scratch between calls.
  auto unit = [&](std::int64_t u) {
    struct Scratch {
      std::vector<T> scores = std::vector<T>(static_cast<size_t>(kAttnQBlock * kAttnKBlock)), acc, m;
      std::vector<double> l;  // a row's sum over up to S terms: double keeps it exact enough
      TileProducts<T> tp;
    };
    static thread_local Scratch sc;
    sc.acc.resize(static_cast<size_t>(kAttnQBlock * D)), sc.m.resize(kAttnQBlock), sc.l.resize(kAttnQBlock);
    auto &scores = sc.scores, &acc = sc.acc, &m = sc.m;
    auto& l = sc.l;
    TileProducts<T>& tp = sc.tp;
    const std::int64_t b = u / KV, g = u % KV;
    tp.set_kv(k + (b * S * KV + g) * D, v + (b * S * KV + g) * D, ldk, S, D, false);
    for (std::int64_t h = g * group; h < (g + 1) * group; ++h) {
      const T* qh = q + (b * S * H + h) * D;
      T* oh = out + (b * S * H + h) * D;
      float* lse_h = lse + (b * H + h) * S;
      for (std::int64_t i0 = 0; i0 < S; i0 += kAttnQBlock) {
        const std::int64_t i1 = std::min(S, i0 + kAttnQBlock), n = i1 - i0;
        tp.set_q(qh + i0 * ldq, nullptr, ldq, n);
        std::fill(acc.begin(), acc.begin() + n * D, T(0));
        std::fill(m.begin(), m.end(), -std::numeric_limits<T>::infinity());
        std::fill(l.begin(), l.end(), 0.0);
        for (std::int64_t j0 = 0; j0 < i1; j0 += kAttnKBlock) {
          const std::int64_t nk = std::min(i1, j0 + kAttnKBlock) - j0;
          tp.qk(n, j0, nk, scale, scores.data());
          for (std::int64_t r = 0; r < n; ++r) {
            T* row = scores.data() + r * nk;
            const std::int64_t vis = visible(i0 + r, j0, nk);
            std::fill(row + vis, row + nk, T(0));
            if (vis == 0) continue;
            const T m_new = std::max(m[r], row_max(row, vis));
            const double sum = exp_shift_sum(row, vis, m_new);
            if (m_new != m[r] && l[r] != 0) {  // the running max grew: rescale what came before
              const T alpha = exp_kernel(m[r] - m_new);
              l[r] *= alpha;
              T* a = acc.data() + r * D;
#pragma omp simd
              for (std::int64_t c = 0; c < D; ++c) a[c] *= alpha;
            }
            l[r] += sum;
            m[r] = m_new;
          }
          tp.pv(n, j0, nk, scores.data(), acc.data());
        }
        for (std::int64_t r = 0; r < n; ++r) {
          const T inv = static_cast<T>(1.0 / l[r]);
          const T* a = acc.data() + r * D;
          T* o = oh + (i0 + r) * ldq;
#pragma omp simd
          for (std::int64_t c = 0; c < D; ++c) o[c] = a[c] * inv;
          lse_h[i0 + r] = static_cast<float>(double(m[r]) + std::log(l[r]));
        }
      }
    }
  };
  if constexpr (TileProducts<T>::kPoolThreads) {
    parallel_for(B * KV, unit);
  } else {
    for (std::int64_t u = 0; u < B * KV; ++u) unit(u);
  }
}

// dq, dk and dv are overwritten (a kv head's gradients are summed over its query group).
template <class T>
void attention_backward(const T* dout, const T* q, const T* k, const T* v, const T* out, const float* lse, T* dq,
                        T* dk, T* dv, std::int64_t B, std::int64_t S, std::int64_t H, std::int64_t KV, std::int64_t D) {
  using namespace attention_detail;
  const T scale = static_cast<T>(1.0 / std::sqrt(double(D)));
  const std::int64_t group = H / KV, ldq = H * D, ldk = KV * D;
  std::fill(dk, dk + B * S * KV * D, T(0));
  std::fill(dv, dv + B * S * KV * D, T(0));
  // One unit per (batch, kv head), as in forward: it owns that kv head's rows of dk and dv (summed
  // over its query heads in their fixed order) and its query heads' rows of dq.
  auto unit = [&](std::int64_t u) {
    struct Scratch {
      std::vector<T> p = std::vector<T>(static_cast<size_t>(kAttnQBlock * kAttnKBlock)), dp = p, dq_acc, delta;
      TileProducts<T> tp;
    };
    static thread_local Scratch sc;
    sc.dq_acc.resize(static_cast<size_t>(kAttnQBlock * D)), sc.delta.resize(kAttnQBlock);
    auto &p = sc.p, &dp = sc.dp, &dq_acc = sc.dq_acc, &delta = sc.delta;
    TileProducts<T>& tp = sc.tp;
    const std::int64_t b = u / KV, g = u % KV, koff = (b * S * KV + g) * D;
    tp.set_kv(k + koff, v + koff, ldk, S, D, true);
    for (std::int64_t h = g * group; h < (g + 1) * group; ++h) {
      const std::int64_t qoff = (b * S * H + h) * D;
      const float* lse_h = lse + (b * H + h) * S;
      for (std::int64_t i0 = 0; i0 < S; i0 += kAttnQBlock) {
        const std::int64_t i1 = std::min(S, i0 + kAttnQBlock), n = i1 - i0;
        const T* do_blk = dout + qoff + i0 * ldq;
        tp.set_q(q + qoff + i0 * ldq, do_blk, ldq, n);
        for (std::int64_t r = 0; r < n; ++r) {  // delta_i = dO_i . O_i
          const T* o_row = out + qoff + (i0 + r) * ldq;
          const T* do_row = do_blk + r * ldq;
          T d = 0;
#pragma omp simd reduction(+ : d)
          for (std::int64_t c = 0; c < D; ++c) d += do_row[c] * o_row[c];
          delta[r] = d;
        }
        std::fill(dq_acc.begin(), dq_acc.begin() + n * D, T(0));
        for (std::int64_t j0 = 0; j0 < i1; j0 += kAttnKBlock) {
          const std::int64_t nk = std::min(i1, j0 + kAttnKBlock) - j0;
          tp.qk(n, j0, nk, scale, p.data());  // P for this tile from the saved log-sum-exp
          for (std::int64_t r = 0; r < n; ++r) {
            T* row = p.data() + r * nk;
            const std::int64_t vis = visible(i0 + r, j0, nk);
            exp_shift_scale(row, row, vis, static_cast<T>(lse_h[i0 + r]), T(1));
            std::fill(row + vis, row + nk, T(0));
          }
          tp.ptdo(n, nk, p.data(), dv + koff + j0 * ldk, ldk);
          tp.dov(n, j0, nk, dp.data());
          for (std::int64_t r = 0; r < n; ++r) {
            T* dpr = dp.data() + r * nk;
            const T* pr = p.data() + r * nk;
            const T dr = delta[r];
#pragma omp simd
            for (std::int64_t j = 0; j < nk; ++j) dpr[j] = pr[j] * (dpr[j] - dr);
          }
          tp.dsk(n, j0, nk, scale, dp.data(), dq_acc.data());
          tp.dstq(n, nk, scale, dp.data(), dk + koff + j0 * ldk, ldk);
        }
        for (std::int64_t r = 0; r < n; ++r) std::copy_n(dq_acc.data() + r * D, D, dq + qoff + (i0 + r) * ldq);
      }
    }
  };
  if constexpr (TileProducts<T>::kPoolThreads) {
    parallel_for(B * KV, unit);
  } else {
    for (std::int64_t u = 0; u < B * KV; ++u) unit(u);
  }
}

}  // namespace titan::ops::cpu
