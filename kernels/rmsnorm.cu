// RMSNorm over the last dimension, forward and backward (launchers in rmsnorm.hpp).
//
// Math (rows of length D, all arithmetic in f32, inputs f32 or bf16 rounded once on store):
//   rstd = 1 / sqrt(mean(x^2) + eps),   y = (x * rstd) * w
// Backward, with n = x * rstd and g = dy * w:
//   dx = rstd * (g - n * mean(g * n)),   dw += sum_rows dy * n
//
// Layout: x, y, dy, dx are [rows, D] row-major; w is [D]; rstd is f32 [rows]; dw_accum f32 [D].
// Forward: one block per row (grid-stride over rows). Thread t owns the "chunks" c = t, t + T, ...
// of VEC consecutive elements (VEC = 16 bytes / sizeof(T) when D*sizeof(T) is a multiple of 16
// and every pointer is 16-byte aligned, else 1); pass 1 reduces sum(x^2) over the block, pass 2
// re-reads the row (L1/L2 hits) and writes y.
// Fused residual (h = x + residual feeding the norm, a Llama block's ffn_norm): pass 1 reads x and
// residual, stores h = round(x + residual) and sums its squares; pass 2 recomputes h from x and
// residual rather than reading h back (loads through the read-only path may not see this
// kernel's own stores). The backward's dx_add is added after rounding the norm's gradient to the
// storage dtype, with __fadd_rn (never contracted into an FMA), so both are the bits of a
// separate add.
// Backward: G blocks (G = ceil(rows / rows_per_block) <= 512), block b handles the contiguous rows
// [b * rpb, (b + 1) * rpb). Because a thread owns the same columns for every row, it accumulates
// its columns' dw partials privately (no synchronization) in shared memory (D <= 10240) or else
// directly in its block's row of the global scratch. The accumulator of block b is stored
// column-permuted as acc[k * (D / VEC) + c] for column c * VEC + k (bank-conflict free), copied
// to scratch[b, :] in the same order. A second kernel then adds, for every column, the G partials
// to dw_accum in fixed order b = 0, 1, ..., G-1: bitwise reproducible, no float atomics.
#include <cstring>

#include "common.cuh"
#include "rmsnorm.hpp"

namespace titan::cuda {
namespace {

constexpr int kMaxThreads = 512;
constexpr std::int64_t kMaxBackwardBlocks = 512;
constexpr std::int64_t kSmemAccMaxD = 10240;  // f32 accumulator row in shared memory up to 40 KiB

// v = x (+ residual, rounded to T) for one chunk.
template <class T, int VEC>
__device__ __forceinline__ void load_input(const T* __restrict__ x, const T* __restrict__ residual, std::int64_t at,
                                           float (&v)[VEC]) {
  load_f32<T, VEC>(x + at, v);
  if (residual) {
    float r[VEC];
    load_f32<T, VEC>(residual + at, r);
#pragma unroll
    for (int k = 0; k < VEC; ++k) v[k] = to_f32(from_f32<T>(__fadd_rn(v[k], r[k])));
  }
}

template <class T, int VEC>
__global__ void rmsnorm_forward_kernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                                       float* __restrict__ rstd, std::int64_t rows, std::int64_t D, float eps,
                                       const T* __restrict__ residual, T* __restrict__ h) {
  __shared__ float scratch[32];
  const std::int64_t chunks = D / VEC;
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * D;
    float ss = 0.f;
    const T* rr = residual ? residual + r * D : nullptr;
    for (std::int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      float v[VEC];
      load_input<T, VEC>(xr, rr, c * VEC, v);
      if (h) store_f32<T, VEC>(h + r * D + c * VEC, v);
#pragma unroll
      for (int k = 0; k < VEC; ++k) ss += v[k] * v[k];
    }
    ss = block_sum(ss, scratch);
    const float rs = 1.0f / sqrtf(ss / static_cast<float>(D) + eps);
    if (threadIdx.x == 0) rstd[r] = rs;
    T* yr = y + r * D;
    for (std::int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      float v[VEC], wv[VEC], o[VEC];
      load_input<T, VEC>(xr, rr, c * VEC, v);
      load_f32<T, VEC>(w + c * VEC, wv);
#pragma unroll
      for (int k = 0; k < VEC; ++k) o[k] = v[k] * rs * wv[k];
      store_f32<T, VEC>(yr + c * VEC, o);
    }
  }
}

// partial: [gridDim.x, D] f32, row b holding block b's column sums (permuted, see top).
template <class T, int VEC>
__global__ void rmsnorm_backward_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ w,
                                        const float* __restrict__ rstd, T* dx, float* __restrict__ partial,
                                        std::int64_t rows, std::int64_t D, std::int64_t rows_per_block, bool smem_acc,
                                        const T* dx_add) {
  extern __shared__ float smem[];
  __shared__ float scratch[32];
  const std::int64_t chunks = D / VEC;
  float* block_partial = partial + static_cast<std::int64_t>(blockIdx.x) * D;
  float* acc = smem_acc ? smem : block_partial;
  for (std::int64_t c = threadIdx.x; c < chunks; c += blockDim.x)
#pragma unroll
    for (int k = 0; k < VEC; ++k) acc[k * chunks + c] = 0.f;

  const std::int64_t r0 = static_cast<std::int64_t>(blockIdx.x) * rows_per_block;
  const std::int64_t r1 = r0 + rows_per_block < rows ? r0 + rows_per_block : rows;
  const float inv_d = 1.0f / static_cast<float>(D);
  for (std::int64_t r = r0; r < r1; ++r) {
    const T* dyr = dy + r * D;
    const T* xr = x + r * D;
    const float rs = rstd[r];
    float dot = 0.f;  // sum g * n
    for (std::int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      float g[VEC], xv[VEC], wv[VEC];
      load_f32<T, VEC>(dyr + c * VEC, g);
      load_f32<T, VEC>(xr + c * VEC, xv);
      load_f32<T, VEC>(w + c * VEC, wv);
#pragma unroll
      for (int k = 0; k < VEC; ++k) dot += g[k] * wv[k] * (xv[k] * rs);
    }
    const float mean_dot = block_sum(dot, scratch) * inv_d;
    T* dxr = dx + r * D;
    for (std::int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      float g[VEC], xv[VEC], wv[VEC], o[VEC];
      load_f32<T, VEC>(dyr + c * VEC, g);
      load_f32<T, VEC>(xr + c * VEC, xv);
      load_f32<T, VEC>(w + c * VEC, wv);
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const float n = xv[k] * rs;
        o[k] = rs * (g[k] * wv[k] - n * mean_dot);
        acc[k * chunks + c] += g[k] * n;
      }
      if (dx_add) {
        float a[VEC];
        load_f32<T, VEC>(dx_add + r * D + c * VEC, a);
#pragma unroll
        for (int k = 0; k < VEC; ++k) o[k] = __fadd_rn(to_f32(from_f32<T>(o[k])), a[k]);
      }
      store_f32<T, VEC>(dxr + c * VEC, o);
    }
  }
  if (smem_acc)  // each thread copies the entries it owns: no barrier needed
    for (std::int64_t c = threadIdx.x; c < chunks; c += blockDim.x)
#pragma unroll
      for (int k = 0; k < VEC; ++k) block_partial[k * chunks + c] = acc[k * chunks + c];
}

// dw[c * vec + k] += sum_b partial[b, k * chunks + c], b in increasing order; threads walk the
// permuted index p so the partial reads are coalesced.
__global__ void rmsnorm_dw_reduce_kernel(const float* __restrict__ partial, float* __restrict__ dw, std::int64_t blocks,
                                         std::int64_t D, int vec) {
  const std::int64_t chunks = D / vec;
  for (std::int64_t p = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < D;
       p += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t k = p / chunks, c = p - k * chunks;
    const std::int64_t d = c * vec + k;
    float s = dw[d];
    for (std::int64_t b = 0; b < blocks; ++b) s += partial[b * D + p];
    dw[d] = s;
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

int threads_for(std::int64_t chunks) {
  std::int64_t t = (chunks + 31) / 32 * 32;
  if (t < 32) t = 32;
  if (t > kMaxThreads) t = kMaxThreads;
  return static_cast<int>(t);
}

unsigned row_grid(std::int64_t rows) {
  const std::int64_t cap = 1LL << 30;
  return static_cast<unsigned>(rows < cap ? rows : cap);
}

}  // namespace

void rmsnorm_forward(const void* x, const void* w, void* y, float* rstd, std::int64_t rows, std::int64_t D, double eps,
                     DType dtype, const void* residual, void* h) {
  if (!residual != !h) throw_usage_error("rmsnorm_forward: a residual needs its h output, and h its residual");
  if (rows < 0 || D < 0) throw_usage_error("rmsnorm_forward: negative size");
  if (rows == 0) return;
  if (D == 0) throw_usage_error("rmsnorm_forward: D must be positive");
  dispatch_float(dtype, "rmsnorm_forward", [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = 16 / sizeof(T);
    const bool vec = D % V == 0 && aligned16(x) && aligned16(w) && aligned16(y) && aligned16(residual) && aligned16(h);
    const T* xp = static_cast<const T*>(x);
    const T* wp = static_cast<const T*>(w);
    const T* rp = static_cast<const T*>(residual);
    T* yp = static_cast<T*>(y);
    T* hp = static_cast<T*>(h);
    if (vec) {
      rmsnorm_forward_kernel<T, V><<<row_grid(rows), threads_for(D / V), 0, compute_stream()>>>(
          xp, wp, yp, rstd, rows, D, static_cast<float>(eps), rp, hp);
    } else {
      rmsnorm_forward_kernel<T, 1><<<row_grid(rows), threads_for(D), 0, compute_stream()>>>(
          xp, wp, yp, rstd, rows, D, static_cast<float>(eps), rp, hp);
    }
    TITAN_CUDA_LAUNCH_CHECK();
  });
}

void rmsnorm_backward(const void* dy, const void* x, const void* w, const float* rstd, void* dx, float* dw_accum,
                      std::int64_t rows, std::int64_t D, DType dtype, const void* dx_add) {
  if (rows < 0 || D < 0) throw_usage_error("rmsnorm_backward: negative size");
  if (rows == 0) return;
  if (D == 0) throw_usage_error("rmsnorm_backward: D must be positive");
  dispatch_float(dtype, "rmsnorm_backward", [&](auto tag) {
    using T = decltype(tag);
    constexpr int V = 16 / sizeof(T);
    const bool vec = D % V == 0 && aligned16(dy) && aligned16(x) && aligned16(w) && aligned16(dx) && aligned16(dx_add);
    const int vec_width = vec ? V : 1;

    const std::int64_t target_blocks = rows < kMaxBackwardBlocks ? rows : kMaxBackwardBlocks;
    const std::int64_t rows_per_block = (rows + target_blocks - 1) / target_blocks;
    const std::int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;  // every block has >= 1 row
    const bool smem_acc = D <= kSmemAccMaxD;
    const std::size_t smem_bytes = smem_acc ? static_cast<std::size_t>(D) * sizeof(float) : 0;
    const std::size_t partial_bytes = static_cast<std::size_t>(blocks * D) * sizeof(float);
    float* partial = static_cast<float*>(allocate(partial_bytes));

    const T* dyp = static_cast<const T*>(dy);
    const T* xp = static_cast<const T*>(x);
    const T* wp = static_cast<const T*>(w);
    T* dxp = static_cast<T*>(dx);
    const T* addp = static_cast<const T*>(dx_add);
    if (vec) {
      rmsnorm_backward_kernel<T, V><<<static_cast<unsigned>(blocks), threads_for(D / V), smem_bytes, compute_stream()>>>(
          dyp, xp, wp, rstd, dxp, partial, rows, D, rows_per_block, smem_acc, addp);
    } else {
      rmsnorm_backward_kernel<T, 1><<<static_cast<unsigned>(blocks), threads_for(D), smem_bytes, compute_stream()>>>(
          dyp, xp, wp, rstd, dxp, partial, rows, D, rows_per_block, smem_acc, addp);
    }
    TITAN_CUDA_LAUNCH_CHECK();
    rmsnorm_dw_reduce_kernel<<<grid_for(D, 256), 256, 0, compute_stream()>>>(partial, dw_accum, blocks, D, vec_width);
    TITAN_CUDA_LAUNCH_CHECK();
    deallocate(partial, partial_bytes);
  });
}

}  // namespace titan::cuda
