// Fused softmax cross-entropy over the vocabulary (launchers in cross_entropy.hpp).
//
// Math, per row n with target t (logits x, f32 arithmetic):
//   lse = log(sum_j exp(x_j)),  loss = lse - x_t
//   dx_j = (exp(x_j - lse) - [j == t]) * g      (= (softmax - onehot) * g, g = dloss / valid rows)
// Rows with t == ignore_index: loss 0, lse 0, dx 0 (their logits are never read in forward).
//
// Layout: logits / dlogits [N, V] row-major (f32 or bf16), targets int64 [N], loss_rows and
// lse_rows f32 [N]. One block per row (grid-stride over rows).
// Forward reads each row once with an online max/sum: every thread keeps (m, s) = (running max,
// sum of exp(x - m)) over its elements, processing one 16-byte vector (VEC = 16 / sizeof(T)
// elements) at a time: m' = max(m, max(vector)), s = s * exp(m - m') + sum exp(x - m'). The
// block then merges the pairs with (m, s) + (m2, s2) -> (M, s * exp(m - M) + s2 * exp(m2 - M))
// (a warp butterfly, then the per-warp results through shared memory); the merge is symmetric,
// so the result is deterministic. Rows start at arbitrary alignment (V need not be a multiple of
// VEC): each row is split into a scalar head up to the first 16-byte boundary, the vector body,
// and a scalar tail. -inf logits are exact zeros of the sum (an all -inf row gives lse = -inf);
// a NaN logit makes s, hence lse and loss, NaN.
// Backward recomputes exp(x - lse) from the saved lse in one read + one write of the row (same
// head/body/tail split; the vector path needs logits and dlogits equally misaligned mod 16 bytes,
// else it is scalar). Each element is read and written by the same thread: in-place is allowed.
#include <cstring>

#include "common.cuh"
#include "cross_entropy.hpp"

namespace titan::cuda {
namespace {

__device__ unsigned int g_target_out_of_range = 0;

// exp(m_old - m_new) with equal maxima (both -inf or both +inf) giving 1 instead of NaN.
__device__ __forceinline__ float rescale(float m_old, float m_new) {
  return m_old == m_new ? 1.0f : expf(m_old - m_new);
}
// exp(x - m) where m >= x unless x is NaN; with m == -inf every x seen is -inf (term 0) or NaN.
__device__ __forceinline__ float exp_shift(float x, float m) {
  return m == -INFINITY ? (x != x ? x : 0.0f) : expf(x - m);
}

template <int N>
__device__ __forceinline__ void online_update(float& m, float& s, const float (&x)[N]) {
  float cm = x[0];
#pragma unroll
  for (int k = 1; k < N; ++k) cm = fmaxf(cm, x[k]);
  if (cm > m) {
    s *= rescale(m, cm);
    m = cm;
  }
#pragma unroll
  for (int k = 0; k < N; ++k) s += exp_shift(x[k], m);
}

__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  const float mm = fmaxf(m, m2);
  s = s * rescale(m, mm) + s2 * rescale(m2, mm);
  m = mm;
}

// Merges (m, s) over the block; every thread gets the same result. sm/ss: 32 floats each.
__device__ __forceinline__ void block_merge(float& m, float& s, float* sm, float* ss) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  __syncthreads();  // sm/ss may still be read by the previous row
  if (lane == 0) {
    sm[warp] = m;
    ss[warp] = s;
  }
  __syncthreads();
  m = lane < warps ? sm[lane] : -INFINITY;
  s = lane < warps ? ss[lane] : 0.0f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
}

// Elements before the first VEC-aligned one in `row` (at most V).
template <class T, int VEC>
__device__ __forceinline__ std::int64_t head_of(const T* row, std::int64_t V) {
  if (VEC == 1) return 0;
  const std::int64_t mis = static_cast<std::int64_t>((reinterpret_cast<std::uintptr_t>(row) / sizeof(T)) % VEC);
  const std::int64_t h = mis ? VEC - mis : 0;
  return h < V ? h : V;
}

template <class T, int VEC>
__global__ void cross_entropy_forward_kernel(const T* __restrict__ logits, const std::int64_t* __restrict__ targets,
                                             std::int64_t N, std::int64_t V, std::int64_t ignore_index,
                                             float* __restrict__ loss_rows, float* __restrict__ lse_rows) {
  __shared__ float sm[32], ss[32];
  for (std::int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const std::int64_t t = targets[n];
    if (t == ignore_index) {  // uniform over the block
      if (threadIdx.x == 0) {
        loss_rows[n] = 0.0f;
        lse_rows[n] = 0.0f;
      }
      continue;
    }
    const T* row = logits + n * V;
    float m = -INFINITY, s = 0.0f;
    const std::int64_t head = head_of<T, VEC>(row, V);
    const std::int64_t nvec = (V - head) / VEC;
    for (std::int64_t j = threadIdx.x; j < head; j += blockDim.x) {
      const float x[1] = {to_f32(row[j])};
      online_update<1>(m, s, x);
    }
    const T* body = row + head;
    for (std::int64_t v = threadIdx.x; v < nvec; v += blockDim.x) {
      float x[VEC];
      load_f32<T, VEC>(body + v * VEC, x);
      online_update<VEC>(m, s, x);
    }
    for (std::int64_t j = head + nvec * VEC + threadIdx.x; j < V; j += blockDim.x) {
      const float x[1] = {to_f32(row[j])};
      online_update<1>(m, s, x);
    }
    block_merge(m, s, sm, ss);
    if (threadIdx.x == 0) {
      const float lse = m + logf(s);
      lse_rows[n] = lse;
      const bool in_range = t >= 0 && t < V;
      if (!in_range) g_target_out_of_range = 1u;
      loss_rows[n] = in_range ? lse - to_f32(row[t]) : NAN;
    }
  }
}

template <class T, int VEC>
__global__ void cross_entropy_backward_kernel(const T* logits, const std::int64_t* __restrict__ targets,
                                              const float* __restrict__ lse_rows, double dloss,
                                              const double* __restrict__ valid_rows, T* dlogits, std::int64_t N,
                                              std::int64_t V, std::int64_t ignore_index) {
  const double count = *valid_rows;
  const float g = count > 0 ? static_cast<float>(dloss / count) : 0.0f;
  for (std::int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const std::int64_t t = targets[n];
    const T* row = logits + n * V;
    T* drow = dlogits + n * V;
    const std::int64_t head = head_of<T, VEC>(row, V);
    const std::int64_t nvec = (V - head) / VEC;
    const std::int64_t tail = head + nvec * VEC;
    if (t == ignore_index) {
      const float z[1] = {0.0f};
      float zv[VEC];
#pragma unroll
      for (int k = 0; k < VEC; ++k) zv[k] = 0.0f;
      for (std::int64_t j = threadIdx.x; j < head; j += blockDim.x) store_f32<T, 1>(drow + j, z);
      for (std::int64_t v = threadIdx.x; v < nvec; v += blockDim.x) store_f32<T, VEC>(drow + head + v * VEC, zv);
      for (std::int64_t j = tail + threadIdx.x; j < V; j += blockDim.x) store_f32<T, 1>(drow + j, z);
      continue;
    }
    const float lse = (t >= 0 && t < V) ? lse_rows[n] : NAN;
    for (std::int64_t j = threadIdx.x; j < head; j += blockDim.x) {
      const float d[1] = {(expf(to_f32(row[j]) - lse) - (j == t ? 1.0f : 0.0f)) * g};
      store_f32<T, 1>(drow + j, d);
    }
    for (std::int64_t v = threadIdx.x; v < nvec; v += blockDim.x) {
      const std::int64_t j0 = head + v * VEC;
      float x[VEC];
      load_f32<T, VEC>(row + j0, x);
#pragma unroll
      for (int k = 0; k < VEC; ++k) x[k] = (expf(x[k] - lse) - (j0 + k == t ? 1.0f : 0.0f)) * g;
      store_f32<T, VEC>(drow + j0, x);
    }
    for (std::int64_t j = tail + threadIdx.x; j < V; j += blockDim.x) {
      const float d[1] = {(expf(to_f32(row[j]) - lse) - (j == t ? 1.0f : 0.0f)) * g};
      store_f32<T, 1>(drow + j, d);
    }
  }
}

constexpr int kMeanThreads = 1024;

__global__ void cross_entropy_mean_kernel(const float* __restrict__ loss_rows, const std::int64_t* __restrict__ targets,
                                          std::int64_t N, std::int64_t ignore_index, float* loss, double* valid_rows) {
  __shared__ double sum[kMeanThreads], count[kMeanThreads];
  double s = 0, c = 0;
  for (std::int64_t n = threadIdx.x; n < N; n += kMeanThreads)
    if (targets[n] != ignore_index) {
      s += loss_rows[n];
      c += 1;
    }
  sum[threadIdx.x] = s;
  count[threadIdx.x] = c;
  __syncthreads();
  for (int half = kMeanThreads / 2; half > 0; half >>= 1) {
    if (threadIdx.x < half) {
      sum[threadIdx.x] += sum[threadIdx.x + half];
      count[threadIdx.x] += count[threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    *valid_rows = count[0];
    *loss = count[0] > 0 ? static_cast<float>(sum[0] / count[0]) : 0.0f;
  }
}

__global__ void take_target_flag_kernel(double* out) {
  if (g_target_out_of_range) *out += 2.0;
  g_target_out_of_range = 0u;
}

int threads_for(std::int64_t items) {
  std::int64_t t = (items + 31) / 32 * 32;
  if (t < 32) t = 32;
  if (t > 512) t = 512;
  return static_cast<int>(t);
}

unsigned row_grid(std::int64_t rows) {
  const std::int64_t cap = 1LL << 30;
  return static_cast<unsigned>(rows < cap ? rows : cap);
}

}  // namespace

void cross_entropy_forward(const void* logits, const std::int64_t* targets, std::int64_t N, std::int64_t V,
                           std::int64_t ignore_index, float* loss_rows, float* lse_rows, DType dtype) {
  if (N < 0 || V < 0) throw_usage_error("cross_entropy_forward: negative size");
  if (N == 0) return;
  if (V == 0) throw_usage_error("cross_entropy_forward: V must be positive");
  dispatch_float(dtype, "cross_entropy_forward", [&](auto tag) {
    using T = decltype(tag);
    constexpr int VEC = 16 / sizeof(T);
    cross_entropy_forward_kernel<T, VEC><<<row_grid(N), threads_for((V + VEC - 1) / VEC), 0, compute_stream()>>>(
        static_cast<const T*>(logits), targets, N, V, ignore_index, loss_rows, lse_rows);
    TITAN_CUDA_LAUNCH_CHECK();
  });
}

void cross_entropy_mean(const float* loss_rows, const std::int64_t* targets, std::int64_t N, std::int64_t ignore_index,
                        float* loss, double* valid_rows) {
  if (N < 0) throw_usage_error("cross_entropy_mean: negative size");
  cross_entropy_mean_kernel<<<1, kMeanThreads, 0, compute_stream()>>>(loss_rows, targets, N, ignore_index, loss, valid_rows);
  TITAN_CUDA_LAUNCH_CHECK();
}

void cross_entropy_backward(const void* logits, const std::int64_t* targets, const float* lse_rows, double dloss,
                            const double* valid_rows, void* dlogits, std::int64_t N, std::int64_t V,
                            std::int64_t ignore_index, DType dtype) {
  if (N < 0 || V < 0) throw_usage_error("cross_entropy_backward: negative size");
  if (N == 0) return;
  if (V == 0) throw_usage_error("cross_entropy_backward: V must be positive");
  dispatch_float(dtype, "cross_entropy_backward", [&](auto tag) {
    using T = decltype(tag);
    constexpr int VEC = 16 / sizeof(T);
    const T* lp = static_cast<const T*>(logits);
    T* dp = static_cast<T*>(dlogits);
    const bool same_phase =
        (reinterpret_cast<std::uintptr_t>(logits) & 15u) == (reinterpret_cast<std::uintptr_t>(dlogits) & 15u);
    if (same_phase)
      cross_entropy_backward_kernel<T, VEC><<<row_grid(N), threads_for((V + VEC - 1) / VEC), 0, compute_stream()>>>(
          lp, targets, lse_rows, dloss, valid_rows, dp, N, V, ignore_index);
    else
      cross_entropy_backward_kernel<T, 1><<<row_grid(N), threads_for(V), 0, compute_stream()>>>(
          lp, targets, lse_rows, dloss, valid_rows, dp, N, V, ignore_index);
    TITAN_CUDA_LAUNCH_CHECK();
  });
}

void cross_entropy_take_out_of_range_async(double* out) {
  take_target_flag_kernel<<<1, 1, 0, compute_stream()>>>(out);
  TITAN_CUDA_LAUNCH_CHECK();
}

}  // namespace titan::cuda
