// Token embedding gather and its deterministic backward (launchers in embedding.hpp).
//
// Math: out[i, :] = weight[tok_i, :];  dweight[v, :] += sum_{i : tok_i == v} dy[i, :].
// Layout: weight [V, D] (f32 or bf16), out and dy [n_tokens, D] in the same dtype, tokens [n_tokens]
// int32 or int64, dweight [V, D] f32, all contiguous row-major.
//
// Forward: one 128-thread block per token (grid-stride over tokens) copies the row's bytes (no
// conversion: same dtype), 16 bytes per access when D * sizeof(T) is a multiple of 16 and both
// pointers are 16-byte aligned. A token outside [0, V) is not read: its out row becomes zeros and
// a device flag is raised (embedding_take_out_of_range_async takes and clears it).
//
// Backward, deterministic without float atomics:
//   1. keys[i] = tok_i (or V for an out-of-range token, which also raises the flag), vals[i] = i;
//   2. cub::DeviceRadixSort::SortPairs on the low ceil(log2(V + 1)) bits: a stable sort, so equal
//      tokens keep increasing i;
//   3. grid (n_tokens / 8, column tiles): block (b, t) scans the sorted positions j in [8b, 8b + 8);
//      for each j that starts a run of equal keys (j == 0 or keys[j - 1] != keys[j]) with a key
//      < V, its threads (4 columns each when aligned, else 1) add the run's dy rows in sorted
//      (= increasing i) order onto the current dweight values: dweight[v] + dy[i0] + dy[i1] + ...,
//      the CPU reference's order. A run that starts in the block's range is finished by it even if it
//      extends past the range.
// Each (token, column) is written by exactly one thread, so the result is bitwise reproducible.
// A very frequent token is summed serially by its blocks (one per column tile of 128 * 4
// columns), so a batch dominated by one token id (e.g. padding) is the slow case.
#include <cub/device/device_radix_sort.cuh>

#include <cstring>

#include "common.cuh"
#include "embedding.hpp"

namespace titan::cuda {
namespace {

__device__ unsigned int g_out_of_range = 0;

// Copies rows of `row_units` units of type U (the row's bytes, U = uint4 on the vector path).
template <class U, class Tok>
__global__ void embedding_forward_kernel(const U* __restrict__ weight, const Tok* __restrict__ tokens,
                                         U* __restrict__ out, std::int64_t n_tokens, std::int64_t V,
                                         std::int64_t row_units) {
  for (std::int64_t i = blockIdx.x; i < n_tokens; i += gridDim.x) {
    const std::int64_t tok = static_cast<std::int64_t>(tokens[i]);
    U* o = out + i * row_units;
    if (tok < 0 || tok >= V) {
      if (threadIdx.x == 0) g_out_of_range = 1u;
      U zero;
      memset(&zero, 0, sizeof zero);
      for (std::int64_t c = threadIdx.x; c < row_units; c += blockDim.x) o[c] = zero;
      continue;
    }
    const U* w = weight + tok * row_units;
    for (std::int64_t c = threadIdx.x; c < row_units; c += blockDim.x) o[c] = w[c];
  }
}

template <class Tok>
__global__ void embedding_keys_kernel(const Tok* __restrict__ tokens, unsigned* __restrict__ keys,
                                      unsigned* __restrict__ vals, std::int64_t n_tokens, std::int64_t V) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_tokens;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t tok = static_cast<std::int64_t>(tokens[i]);
    const bool ok = tok >= 0 && tok < V;
    if (!ok) g_out_of_range = 1u;
    keys[i] = static_cast<unsigned>(ok ? tok : V);
    vals[i] = static_cast<unsigned>(i);
  }
}

constexpr int kBackwardThreads = 128;
constexpr std::int64_t kPositionsPerBlock = 8;  // sorted positions scanned by one block

template <class T, int VEC>
__global__ void embedding_segment_sum_kernel(const T* __restrict__ dy, const unsigned* __restrict__ keys,
                                             const unsigned* __restrict__ vals, float* __restrict__ dweight,
                                             std::int64_t n_tokens, std::int64_t V, std::int64_t D) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (c * VEC >= D) return;
  const std::int64_t j0 = static_cast<std::int64_t>(blockIdx.x) * kPositionsPerBlock;
  const std::int64_t j1 = j0 + kPositionsPerBlock < n_tokens ? j0 + kPositionsPerBlock : n_tokens;
  for (std::int64_t j = j0; j < j1; ++j) {
    const unsigned key = keys[j];
    if (static_cast<std::int64_t>(key) >= V) break;  // out-of-range tokens (sorted last)
    if (j > 0 && keys[j - 1] == key) continue;       // not the first of its run
    float* dst = dweight + static_cast<std::int64_t>(key) * D + c * VEC;
    float acc[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) acc[k] = dst[k];
    for (std::int64_t r = j; r < n_tokens && keys[r] == key; ++r) {
      float v[VEC];
      load_f32<T, VEC>(dy + static_cast<std::int64_t>(vals[r]) * D + c * VEC, v);
#pragma unroll
      for (int k = 0; k < VEC; ++k) acc[k] += v[k];
    }
#pragma unroll
    for (int k = 0; k < VEC; ++k) dst[k] = acc[k];
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

template <class F>
void dispatch_token(DType token_dtype, const char* op, F&& f) {
  if (token_dtype == DType::i32) f(std::int32_t{});
  else if (token_dtype == DType::i64) f(std::int64_t{});
  else throw_usage_error(std::string(op) + ": token dtype " + std::string(dtype_name(token_dtype)) +
                         " is not supported (int32, int64)");
}

template <class U, class Tok>
void launch_forward(const void* weight, const void* tokens, void* out, std::int64_t n_tokens, std::int64_t V,
                    std::int64_t row_units) {
  const std::int64_t cap = 1LL << 30;
  embedding_forward_kernel<U, Tok><<<static_cast<unsigned>(n_tokens < cap ? n_tokens : cap), 128, 0,
                                     compute_stream()>>>(static_cast<const U*>(weight), static_cast<const Tok*>(tokens),
                                                         static_cast<U*>(out), n_tokens, V, row_units);
  TITAN_CUDA_LAUNCH_CHECK();
}

}  // namespace

void embedding_forward(const void* weight, const void* tokens, DType token_dtype, void* out, std::int64_t n_tokens,
                       std::int64_t V, std::int64_t D, DType dtype) {
  if (n_tokens < 0 || V < 0 || D < 0) throw_usage_error("embedding_forward: negative size");
  if (n_tokens == 0 || D == 0) return;
  dispatch_float(dtype, "embedding_forward", [&](auto tag) {
    using T = decltype(tag);
    dispatch_token(token_dtype, "embedding_forward", [&](auto tok_tag) {
      using Tok = decltype(tok_tag);
      const std::int64_t row_bytes = D * static_cast<std::int64_t>(sizeof(T));
      if (row_bytes % 16 == 0 && aligned16(weight) && aligned16(out))
        launch_forward<uint4, Tok>(weight, tokens, out, n_tokens, V, row_bytes / 16);
      else
        launch_forward<T, Tok>(weight, tokens, out, n_tokens, V, D);
    });
  });
}

void embedding_backward(const void* dy, const void* tokens, DType token_dtype, float* dweight, std::int64_t n_tokens,
                        std::int64_t V, std::int64_t D, DType dtype) {
  if (n_tokens < 0 || V < 0 || D < 0) throw_usage_error("embedding_backward: negative size");
  if (n_tokens == 0 || D == 0) return;
  if (V >= 0x7fffffffLL || n_tokens > 0x7fffffffLL)
    throw_usage_error("embedding_backward: V and n_tokens must be below 2^31");
  dispatch_float(dtype, "embedding_backward", [&](auto tag) {
    using T = decltype(tag);
    dispatch_token(token_dtype, "embedding_backward", [&](auto tok_tag) {
      using Tok = decltype(tok_tag);
      cudaStream_t stream = compute_stream();
      const int n = static_cast<int>(n_tokens);
      const std::size_t key_bytes = static_cast<std::size_t>(n) * sizeof(unsigned);
      unsigned* keys_in = static_cast<unsigned*>(allocate(key_bytes));
      unsigned* keys_out = static_cast<unsigned*>(allocate(key_bytes));
      unsigned* vals_in = static_cast<unsigned*>(allocate(key_bytes));
      unsigned* vals_out = static_cast<unsigned*>(allocate(key_bytes));

      embedding_keys_kernel<Tok><<<grid_for(n_tokens, 256), 256, 0, stream>>>(static_cast<const Tok*>(tokens), keys_in,
                                                                             vals_in, n_tokens, V);
      TITAN_CUDA_LAUNCH_CHECK();

      int end_bit = 1;  // enough bits for keys 0..V
      while (end_bit < 32 && (static_cast<std::uint64_t>(V) >> end_bit) != 0) ++end_bit;
      std::size_t temp_bytes = 0;
      TITAN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys_out, vals_in, vals_out, n, 0,
                                                       end_bit, stream));
      void* temp = allocate(temp_bytes);
      TITAN_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out, vals_in, vals_out, n, 0,
                                                       end_bit, stream));

      const bool vec = D % 4 == 0 && aligned16(dy) && aligned16(dweight);
      const int vec_width = vec ? 4 : 1;
      const std::int64_t chunks = D / vec_width;
      const dim3 grid(static_cast<unsigned>((n_tokens + kPositionsPerBlock - 1) / kPositionsPerBlock),
                      static_cast<unsigned>((chunks + kBackwardThreads - 1) / kBackwardThreads));
      const T* dyp = static_cast<const T*>(dy);
      if (vec)
        embedding_segment_sum_kernel<T, 4><<<grid, kBackwardThreads, 0, stream>>>(dyp, keys_out, vals_out, dweight,
                                                                                 n_tokens, V, D);
      else
        embedding_segment_sum_kernel<T, 1><<<grid, kBackwardThreads, 0, stream>>>(dyp, keys_out, vals_out, dweight,
                                                                                 n_tokens, V, D);
      TITAN_CUDA_LAUNCH_CHECK();

      deallocate(temp, temp_bytes);
      deallocate(vals_out, key_bytes);
      deallocate(vals_in, key_bytes);
      deallocate(keys_out, key_bytes);
      deallocate(keys_in, key_bytes);
    });
  });
}

namespace {
__global__ void take_out_of_range_kernel(double* out) {
  *out = g_out_of_range ? 1.0 : 0.0;
  g_out_of_range = 0u;
}
}  // namespace

void embedding_take_out_of_range_async(double* out) {
  take_out_of_range_kernel<<<1, 1, 0, compute_stream()>>>(out);
  TITAN_CUDA_LAUNCH_CHECK();
}

}  // namespace titan::cuda
