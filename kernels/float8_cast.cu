// Float8 quantization kernels (float8_cast.hpp), torchao's dynamic scaling, bit-identical to the
// CPU reference (src/ops/cpu/float8.hpp, src/core/dtype.cpp).
//
// Math, per scale group G (the tensor, a row or a column of x [rows, cols], row-major):
//   amax_G  = max_{i in G} |x_i|                     NaN if any x_i is NaN (torch.max semantics)
//   scale_G = float32( float64(fmax) / max(float64(amax_G), 1e-12) )     fmax = 448 | 57344
//             round_to_power_of_2: scale_G = 2^floor(log2(scale_G))
//   q_i     = f8( float32(x_i) * scale_G )           f32 multiply rounded once, then RNE to f8
//                                                    with |v| > fmax -> fmax (inf too), NaN kept
// and the GEMM consumes scale_inv = 1.0f / scale (dequantized value = q * scale_inv).
//
// Exactness notes (why each step matches the CPU bit for bit):
//  - amax works on the bit patterns: for non-negative floats the IEEE order is the unsigned
//    integer order of the bits, and |NaN| (sign cleared) lies above +inf, so an unsigned max
//    (warp reduce, atomicMax across blocks) is exactly max|x| with NaN propagation. Max is
//    order-independent, so the result does not depend on the reduction tree.
//  - amax -> scale: the same f64 clamp and division (IEEE in CUDA without fast-math), one
//    rounding to f32. The power-of-2 floor takes log2 in f64 and rounds it to f32: that is the
//    correctly rounded log2f, which is what glibc's log2f returns where it matters (just below a
//    power of two the log term is tiny and glibc evaluates it in f64 before one final rounding);
//    the power of two is then built from its exponent bits (exact; the reachable range is
//    2^-120 .. 2^56).
//  - cast: x * scale with __fmul_rn (never fused), then the same integer rounding that
//    titan::f32_to_f8e4m3 / f32_to_f8e5m2 use (encode_f8 below mirrors f32_to_f8_bits line by
//    line). A NaN product gets the CPU's NaN sign: x's sign if x is NaN, else the scale's if the
//    scale is NaN, else negative (inf * 0: x86's default NaN is negative); GPUs would otherwise
//    produce a canonical positive NaN. NaN payload: 0x7F (e4m3) / 0x7E (e5m2) as on the CPU.
//
// Layout of the fused cast + transpose: a block takes a 64 x 64 tile of x, casts it (writing
// the row-major output directly: 32 contiguous bytes per warp) into a shared byte tile, then
// writes the tile's columns as rows of out_t [cols, rows] (again 32 contiguous bytes per warp;
// the tile row pitch of 68 bytes makes a warp's column read conflict-free). With per_column
// scales, out_t is the row-scaled operand of a TN GEMM (its row c has scale[c]). The byte
// transpose (g) uses the same tiling without the cast.
#include "float8_cast.hpp"

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>

#include "common.cuh"

namespace titan::cuda {

namespace {

// ---- exact float -> float8 (host and device: the same code the CPU reference runs) ----------

__host__ __device__ __forceinline__ std::uint32_t bits_of(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
#endif
}
__host__ __device__ __forceinline__ float float_of(std::uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, 4);
  return x;
#endif
}

template <bool kE4M3>
struct F8Format;
template <>
struct F8Format<true> {  // e4m3fn
  static constexpr int kManBits = 3, kBias = 7;
  static constexpr float kMax = 448.0f;
  static constexpr float kMinNormal = 0.015625f;     // 2^-6
  static constexpr float kSubnormalScale = 512.0f;   // 2^(kManBits + 6)
  static constexpr std::uint8_t kNan = 0x7F;
};
template <>
struct F8Format<false> {  // e5m2
  static constexpr int kManBits = 2, kBias = 15;
  static constexpr float kMax = 57344.0f;
  static constexpr float kMinNormal = 6.103515625e-05f;  // 2^-14
  static constexpr float kSubnormalScale = 65536.0f;     // 2^(kManBits + 14)
  static constexpr std::uint8_t kNan = 0x7E;
};

// Mirrors titan's f32_to_f8_bits: saturate, subnormals rounded by the FPU (exact scaling,
// rint = ties to even), normals rounded on the bits (carry into the exponent is intended).
template <bool kE4M3>
__host__ __device__ __forceinline__ std::uint8_t encode_f8(float x) {
  using F = F8Format<kE4M3>;
  const std::uint32_t u = bits_of(x);
  const std::uint8_t sign = static_cast<std::uint8_t>((u >> 24) & 0x80);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return sign | F::kNan;
  float a = float_of(u & 0x7FFFFFFFu);
  if (a > F::kMax) a = F::kMax;
  if (a < F::kMinNormal) {
    const float m = rintf(a * F::kSubnormalScale);  // a * 2^k is exact; < 2^kManBits + 1
    return sign | static_cast<std::uint8_t>(m);
  }
  std::uint32_t b = bits_of(a);
  constexpr int kDrop = 23 - F::kManBits;
  b += ((1u << (kDrop - 1)) - 1) + ((b >> kDrop) & 1u);
  return sign | static_cast<std::uint8_t>((b >> kDrop) - (static_cast<std::uint32_t>(127 - F::kBias) << F::kManBits));
}

// f8(x * scale) with the CPU's NaN sign (see the top of the file).
template <bool kE4M3>
__device__ __forceinline__ std::uint8_t cast_scaled(float x, float scale) {
  const float p = __fmul_rn(x, scale);
  if (isnan(p)) {
    const std::uint32_t ux = __float_as_uint(x), us = __float_as_uint(scale);
    const bool neg = isnan(x) ? (ux >> 31) != 0 : isnan(scale) ? (us >> 31) != 0 : true;
    return static_cast<std::uint8_t>((neg ? 0x80 : 0) | F8Format<kE4M3>::kNan);
  }
  return encode_f8<kE4M3>(p);
}

// ---- loads -----------------------------------------------------------------------------------

// |x| as the bits of a non-negative float (NaN stays above +inf).
__device__ __forceinline__ std::uint32_t abs_bits(float v) { return __float_as_uint(v) & 0x7FFFFFFFu; }
__device__ __forceinline__ std::uint32_t abs_bits(__nv_bfloat16 v) { return abs_bits(__bfloat162float(v)); }

// Max of |element| over one 32-bit word of packed elements (1 float or 2 bf16).
template <class T>
__device__ __forceinline__ std::uint32_t word_abs_max(std::uint32_t w);
template <>
__device__ __forceinline__ std::uint32_t word_abs_max<float>(std::uint32_t w) { return w & 0x7FFFFFFFu; }
template <>
__device__ __forceinline__ std::uint32_t word_abs_max<__nv_bfloat16>(std::uint32_t w) {
  return max((w << 16) & 0x7FFFFFFFu, w & 0x7FFF0000u);  // element 0 is the low half (little endian)
}
template <class T>
__device__ __forceinline__ std::uint32_t uint4_abs_max(uint4 v) {
  return max(max(word_abs_max<T>(v.x), word_abs_max<T>(v.y)), max(word_abs_max<T>(v.z), word_abs_max<T>(v.w)));
}

__device__ __forceinline__ std::uint32_t warp_max_u32(std::uint32_t v) { return __reduce_max_sync(0xFFFFFFFFu, v); }

constexpr int kThreads = 256;

// Max of every thread's `m` in the block, folded into *out (bits) with one atomicMax. Every
// thread of the block must call it (it synchronizes).
__device__ __forceinline__ void block_max_into(std::uint32_t m, std::uint32_t* out) {
  __shared__ std::uint32_t warp_m[kThreads / 32];
  m = warp_max_u32(m);
  if ((threadIdx.x & 31) == 0) warp_m[threadIdx.x >> 5] = m;
  __syncthreads();
  if (threadIdx.x < 32) {
    m = threadIdx.x < blockDim.x / 32 ? warp_m[threadIdx.x] : 0u;
    m = warp_max_u32(m);
    if (threadIdx.x == 0 && m != 0) atomicMax(out, m);
  }
}

// ---- (a) tensorwise amax ---------------------------------------------------------------------

// out must hold 0 (bits) before the launch. The first `nvec` 16-byte vectors are read as uint4
// (x 16-byte aligned), the rest element by element.
template <class T>
__global__ void amax_tensor_kernel(const T* __restrict__ x, std::int64_t n, std::int64_t nvec,
                                   std::uint32_t* __restrict__ out) {
  constexpr int kPer = 16 / sizeof(T);
  std::uint32_t m = 0;
  const std::int64_t tid = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  const uint4* xv = reinterpret_cast<const uint4*>(x);
  for (std::int64_t i = tid; i < nvec; i += stride) m = max(m, uint4_abs_max<T>(__ldg(xv + i)));
  for (std::int64_t i = nvec * kPer + tid; i < n; i += stride) m = max(m, abs_bits(x[i]));
  block_max_into(m, out);
}

// ---- (b) rowwise / colwise amax --------------------------------------------------------------

// One warp per row. vec: every row starts 16-byte aligned and cols * sizeof(T) % 16 == 0.
template <class T, bool kVec>
__global__ void amax_row_kernel(const T* __restrict__ x, std::int64_t rows, std::int64_t cols, float* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const std::int64_t warps_total = std::int64_t(gridDim.x) * (blockDim.x >> 5);
  for (std::int64_t r = blockIdx.x * std::int64_t(blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps_total) {
    const T* row = x + r * cols;
    std::uint32_t m = 0;
    if constexpr (kVec) {
      constexpr int kPer = 16 / sizeof(T);
      const uint4* rv = reinterpret_cast<const uint4*>(row);
      const std::int64_t nv = cols / kPer;
      for (std::int64_t i = lane; i < nv; i += 32) m = max(m, uint4_abs_max<T>(__ldg(rv + i)));
    } else {
      for (std::int64_t c = lane; c < cols; c += 32) m = max(m, abs_bits(row[c]));
    }
    m = warp_max_u32(m);
    if (lane == 0) out[r] = __uint_as_float(m);
  }
}

// Block (32, 8): 32 columns x a chunk of rows; out (bits) must hold 0 before the launch.
template <class T>
__global__ void amax_col_kernel(const T* __restrict__ x, std::int64_t rows, std::int64_t cols, std::int64_t chunk,
                                std::uint32_t* __restrict__ out) {
  __shared__ std::uint32_t part[8][33];
  const std::int64_t c = blockIdx.x * 32LL + threadIdx.x;
  std::uint32_t m = 0;
  for (std::int64_t r0 = blockIdx.y * chunk; r0 < rows; r0 += std::int64_t(gridDim.y) * chunk) {
    const std::int64_t r_end = min(rows, r0 + chunk);
    if (c < cols)
      for (std::int64_t r = r0 + threadIdx.y; r < r_end; r += 8) m = max(m, abs_bits(x[r * cols + c]));
  }
  part[threadIdx.y][threadIdx.x] = m;
  __syncthreads();
  if (threadIdx.y == 0) {
    for (int k = 1; k < 8; ++k) m = max(m, part[k][threadIdx.x]);
    if (c < cols && m != 0) atomicMax(out + c, m);
  }
}

// ---- (c) amax -> scale -----------------------------------------------------------------------

__device__ __forceinline__ float pow2_floor(float v) {
  if (isnan(v) || v == 0.f || isinf(v)) return v;  // log2/floor/exp2 keep NaN, 0 (-inf -> 0) and inf
  const float l = static_cast<float>(log2(static_cast<double>(v)));  // correctly rounded log2f
  const int e = static_cast<int>(floorf(l));
  if (e < -126) return ldexpf(1.0f, e);  // not reachable from an amax (v >= 2^-120)
  return __uint_as_float(static_cast<std::uint32_t>(e + 127) << 23);
}

__device__ __forceinline__ float scale_from_amax(float a, double f8max, bool pow2) {
  float v;
  if (isnan(a)) {
    v = a;
  } else {
    const double clamped = fmax(static_cast<double>(a), 1e-12);
    v = static_cast<float>(__ddiv_rn(f8max, clamped));
  }
  return pow2 ? pow2_floor(v) : v;
}

__global__ void amax_to_scale_kernel(const float* __restrict__ amax, std::int64_t n, double f8max, bool pow2,
                                     float* __restrict__ scale, float* __restrict__ scale_inv) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x) {
    const float v = scale_from_amax(amax[i], f8max, pow2);
    scale[i] = v;
    if (scale_inv) scale_inv[i] = __fdiv_rn(1.0f, v);
  }
}

// ---- (d) casts -------------------------------------------------------------------------------

__device__ __forceinline__ float scale_for(const float* scale, int axis, std::int64_t r, std::int64_t c) {
  return axis == 0 ? scale[0] : axis == 1 ? scale[r] : scale[c];
}

// 8 consecutive elements widened to f32 (p 16-byte aligned: one uint4 of bf16, or two float4).
template <class T>
__device__ __forceinline__ void load8(const T* __restrict__ p, float (&v)[8]) {
  if constexpr (sizeof(T) == 4) {
    const float4* q = reinterpret_cast<const float4*>(p);
    const float4 a = __ldg(q), b = __ldg(q + 1);
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
  } else {
    const uint4 w = __ldg(reinterpret_cast<const uint4*>(p));
    const std::uint32_t ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      v[2 * k] = __uint_as_float(ws[k] << 16);
      v[2 * k + 1] = __uint_as_float(ws[k] & 0xFFFF0000u);
    }
  }
}

// 8 float8 bytes of v[k] * s(k), packed little-endian for one 8-byte store.
template <bool kE4M3, class ScaleOf>
__device__ __forceinline__ uint2 cast8(const float (&v)[8], ScaleOf scale_of) {
  std::uint32_t lo = 0, hi = 0;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const std::uint32_t q = cast_scaled<kE4M3>(v[k], scale_of(k));
    if (k < 4) lo |= q << (8 * k);
    else hi |= q << (8 * (k - 4));
  }
  return make_uint2(lo, hi);
}

// Row-major output only, 8 elements per thread (kVec: cols % 8 == 0, x 16-byte and out 8-byte
// aligned) or 1.
// amax_bits (nullable, holding 0 before the launch) gets max|x| over the tensor in the same pass.
template <class T, bool kE4M3, bool kVec>
__global__ void cast_kernel(const T* __restrict__ x, std::int64_t rows, std::int64_t cols, const float* __restrict__ scale,
                            int axis, std::uint8_t* __restrict__ out, std::uint32_t* __restrict__ amax_bits) {
  constexpr int kPer = kVec ? 8 : 1;
  const std::int64_t groups = rows * cols / kPer;
  const float s_tensor = axis == 0 ? scale[0] : 0.f;
  std::uint32_t m = 0;
  for (std::int64_t g = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; g < groups; g += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t i0 = g * kPer;
    const std::int64_t r = i0 / cols, c0 = i0 - r * cols;
    if constexpr (kVec) {
      float v[8];
      load8<T>(x + i0, v);
#pragma unroll
      for (int k = 0; k < 8; ++k) m = max(m, abs_bits(v[k]));
      *reinterpret_cast<uint2*>(out + i0) =
          cast8<kE4M3>(v, [&](int k) { return axis == 0 ? s_tensor : axis == 1 ? scale[r] : scale[c0 + k]; });
    } else {
      const float s = axis == 0 ? s_tensor : scale_for(scale, axis, r, c0);
      const float v = to_f32(x[i0]);
      m = max(m, abs_bits(v));
      out[i0] = cast_scaled<kE4M3>(v, s);
    }
  }
  if (amax_bits) block_max_into(m, amax_bits);
}

// Dynamic rowwise quantize, row-major output, in one launch: one warp per row reads the row for
// its amax, every lane derives the row's scale from the warp's max (amax_to_scale's arithmetic),
// lane 0 stores amax, scale and scale_inv, and the warp reads the row again (now in cache) to cast
// it. x is read from memory once instead of twice, and the amax/scale launches are gone. kVec:
// cols % 8 == 0, x 16-byte and out 8-byte aligned (so every row is).
template <class T, bool kE4M3, bool kVec>
__global__ void quantize_row_kernel(const T* __restrict__ x, std::int64_t rows, std::int64_t cols, double f8max, bool pow2,
                                    float* __restrict__ amax, float* __restrict__ scale, float* __restrict__ scale_inv,
                                    std::uint8_t* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const std::int64_t warps_total = std::int64_t(gridDim.x) * (blockDim.x >> 5);
  for (std::int64_t r = blockIdx.x * std::int64_t(blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps_total) {
    const T* row = x + r * cols;
    std::uint8_t* orow = out + r * cols;
    std::uint32_t m = 0;
    if constexpr (kVec) {
      for (std::int64_t g = lane; g < cols / 8; g += 32) {
        float v[8];
        load8<T>(row + g * 8, v);
#pragma unroll
        for (int k = 0; k < 8; ++k) m = max(m, abs_bits(v[k]));
      }
    } else {
      for (std::int64_t c = lane; c < cols; c += 32) m = max(m, abs_bits(row[c]));
    }
    m = warp_max_u32(m);
    const float a = __uint_as_float(m);
    const float s = scale_from_amax(a, f8max, pow2);
    if (lane == 0) {
      amax[r] = a;
      scale[r] = s;
      if (scale_inv) scale_inv[r] = __fdiv_rn(1.0f, s);
    }
    if constexpr (kVec) {
      for (std::int64_t g = lane; g < cols / 8; g += 32) {
        float v[8];
        load8<T>(row + g * 8, v);
        *reinterpret_cast<uint2*>(orow + g * 8) = cast8<kE4M3>(v, [&](int) { return s; });
      }
    } else {
      for (std::int64_t c = lane; c < cols; c += 32) orow[c] = cast_scaled<kE4M3>(to_f32(row[c]), s);
    }
  }
}

constexpr int kTile = 64;

// Writes a staged tile (rows [r0, r0 + 64) x columns [c0, c0 + 64) of a [rows, cols] matrix) as
// rows of its [cols, rows] transpose: a warp writes 32 contiguous bytes of one output row, and
// the 68-byte row pitch keeps its column read of the tile free of bank conflicts.
__device__ __forceinline__ void store_tile_transposed(const std::uint8_t (&tile)[kTile][kTile + 4], std::int64_t r0,
                                                      std::int64_t c0, std::int64_t rows, std::int64_t cols,
                                                      std::uint8_t* __restrict__ out_t) {
#pragma unroll 4
  for (int i = threadIdx.x; i < kTile * kTile; i += kThreads) {
    const int c = i / kTile, r = i % kTile;
    const std::int64_t gr = r0 + r, gc = c0 + c;
    if (gr < rows && gc < cols) out_t[gc * rows + gr] = tile[r][c];
  }
}

// Fused cast + transpose (see the top of the file). grid (column tiles, row tiles), 256 threads.
template <class T, bool kE4M3>
__global__ void cast_transpose_kernel(const T* __restrict__ x, std::int64_t rows, std::int64_t cols,
                                      const float* __restrict__ scale, int axis, std::uint8_t* __restrict__ out,
                                      std::uint8_t* __restrict__ out_t, std::uint32_t* __restrict__ amax_bits) {
  __shared__ std::uint8_t tile[kTile][kTile + 4];
  const std::int64_t row_tiles = (rows + kTile - 1) / kTile;
  const std::int64_t c0 = blockIdx.x * std::int64_t(kTile);
  const float s_tensor = axis == 0 ? scale[0] : 0.f;
  std::uint32_t m = 0;
  for (std::int64_t tr = blockIdx.y; tr < row_tiles; tr += gridDim.y) {
    const std::int64_t r0 = tr * kTile;
#pragma unroll 4
    for (int i = threadIdx.x; i < kTile * kTile; i += kThreads) {
      const int r = i / kTile, c = i % kTile;
      const std::int64_t gr = r0 + r, gc = c0 + c;
      if (gr < rows && gc < cols) {
        const float s = axis == 0 ? s_tensor : scale_for(scale, axis, gr, gc);
        const float v = to_f32(x[gr * cols + gc]);
        m = max(m, abs_bits(v));
        const std::uint8_t q = cast_scaled<kE4M3>(v, s);
        tile[r][c] = q;
        if (out) out[gr * cols + gc] = q;
      }
    }
    __syncthreads();
    store_tile_transposed(tile, r0, c0, rows, cols, out_t);
    __syncthreads();  // the tile is rewritten by the next row tile
  }
  if (amax_bits) block_max_into(m, amax_bits);
}

// ---- launch helpers --------------------------------------------------------------------------

[[noreturn]] void usage(const char* fn, const std::string& msg) {
  throw_usage_error(std::string("titan::cuda::") + fn + ": " + msg);
}

bool aligned(const void* p, std::size_t a) { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }

void check_sizes(const char* fn, std::int64_t rows, std::int64_t cols) {
  if (rows < 0 || cols < 0) usage(fn, "negative size [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
}
void check_f8(const char* fn, DType f8) {
  if (f8 != DType::f8e4m3 && f8 != DType::f8e5m2)
    usage(fn, "target dtype must be float8_e4m3fn or float8_e5m2, got " + std::string(dtype_name(f8)));
}

int axis_code(Fp8ScaleAxis a) { return a == Fp8ScaleAxis::tensor ? 0 : a == Fp8ScaleAxis::per_row ? 1 : 2; }

double f8_max(DType f8) { return f8 == DType::f8e4m3 ? double(kF8E4M3Max) : double(kF8E5M2Max); }

// launch(std::true_type) for e4m3, launch(std::false_type) for e5m2: the kE4M3 template argument.
template <class Launch>
void with_f8_format(DType f8, Launch&& launch) {
  if (f8 == DType::f8e4m3) launch(std::true_type{});
  else launch(std::false_type{});
}

}  // namespace

void amax_tensorwise(const void* x, DType x_dtype, std::int64_t n, float* amax) {
  if (n < 0) usage("amax_tensorwise", "negative size");
  if (!amax) usage("amax_tensorwise", "amax is null");
  TITAN_CUDA_CHECK(cudaMemsetAsync(amax, 0, sizeof(float), compute_stream()));
  if (n == 0) return;
  if (!x) usage("amax_tensorwise", "x is null");
  dispatch_float(x_dtype, "amax_tensorwise", [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t nvec = aligned(x, 16) ? n / (16 / sizeof(T)) : 0;
    const std::int64_t work = nvec > 0 ? nvec : n;
    amax_tensor_kernel<T><<<grid_for(work, kThreads, 2048), kThreads, 0, compute_stream()>>>(
        static_cast<const T*>(x), n, nvec, reinterpret_cast<std::uint32_t*>(amax));
    TITAN_CUDA_LAUNCH_CHECK();
  });
}

void amax_rowwise(const void* x, DType x_dtype, std::int64_t rows, std::int64_t cols, float* amax) {
  check_sizes("amax_rowwise", rows, cols);
  if (rows == 0) return;
  if (!amax) usage("amax_rowwise", "amax is null");
  if (cols > 0 && !x) usage("amax_rowwise", "x is null");
  dispatch_float(x_dtype, "amax_rowwise", [&](auto tag) {
    using T = decltype(tag);
    const bool vec = aligned(x, 16) && (cols * std::int64_t(sizeof(T))) % 16 == 0;
    const unsigned blocks = grid_for(rows, kThreads / 32, 1 << 20);
    if (vec)
      amax_row_kernel<T, true><<<blocks, kThreads, 0, compute_stream()>>>(static_cast<const T*>(x), rows, cols, amax);
    else
      amax_row_kernel<T, false><<<blocks, kThreads, 0, compute_stream()>>>(static_cast<const T*>(x), rows, cols, amax);
    TITAN_CUDA_LAUNCH_CHECK();
  });
}

void amax_colwise(const void* x, DType x_dtype, std::int64_t rows, std::int64_t cols, float* amax) {
  check_sizes("amax_colwise", rows, cols);
  if (cols == 0) return;
  if (!amax) usage("amax_colwise", "amax is null");
  TITAN_CUDA_CHECK(cudaMemsetAsync(amax, 0, std::size_t(cols) * sizeof(float), compute_stream()));
  if (rows == 0) return;
  if (!x) usage("amax_colwise", "x is null");
  dispatch_float(x_dtype, "amax_colwise", [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t col_blocks = (cols + 31) / 32;
    // Enough row chunks to fill the GPU (~4 blocks of 256 threads per SM on 132 SMs) but at
    // least 256 rows each, at most 65535 chunks.
    std::int64_t row_chunks = std::max<std::int64_t>(1, std::min<std::int64_t>((rows + 255) / 256, (1024 + col_blocks - 1) / col_blocks));
    row_chunks = std::min<std::int64_t>(row_chunks, 65535);
    const std::int64_t chunk = (rows + row_chunks - 1) / row_chunks;
    if (col_blocks > INT32_MAX) usage("amax_colwise", "too many columns");
    dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(row_chunks));
    amax_col_kernel<T><<<grid, dim3(32, 8), 0, compute_stream()>>>(static_cast<const T*>(x), rows, cols, chunk,
                                                                    reinterpret_cast<std::uint32_t*>(amax));
    TITAN_CUDA_LAUNCH_CHECK();
  });
}

void amax_to_scale(const float* amax, std::int64_t n, DType f8, bool round_to_power_of_2, float* scale, float* scale_inv) {
  check_f8("amax_to_scale", f8);
  if (n < 0) usage("amax_to_scale", "negative size");
  if (n == 0) return;
  if (!amax || !scale) usage("amax_to_scale", "amax or scale is null");
  const double fmax = f8_max(f8);
  amax_to_scale_kernel<<<grid_for(n, kThreads), kThreads, 0, compute_stream()>>>(amax, n, fmax, round_to_power_of_2,
                                                                                  scale, scale_inv);
  TITAN_CUDA_LAUNCH_CHECK();
}

void cast_to_fp8(const void* x, DType x_dtype, std::int64_t rows, std::int64_t cols, DType f8, const float* scale,
                 Fp8ScaleAxis axis, void* out, void* out_t, float* amax) {
  constexpr const char* fn = "cast_to_fp8";
  check_sizes(fn, rows, cols);
  check_f8(fn, f8);
  if (!out && !out_t) usage(fn, "neither out nor out_t given");
  if (amax) TITAN_CUDA_CHECK(cudaMemsetAsync(amax, 0, sizeof(float), compute_stream()));
  if (rows == 0 || cols == 0) return;
  auto* amax_bits = reinterpret_cast<std::uint32_t*>(amax);
  // The grid-stride casts: with an amax, as many blocks as the amax kernel uses (2048), so the
  // per-block atomics on one word stay few.
  const std::int64_t max_blocks = amax ? 2048 : 65535LL * 8;
  if (!x || !scale) usage(fn, "x or scale is null");
  const int ax = axis_code(axis);
  auto* o = static_cast<std::uint8_t*>(out);
  auto* ot = static_cast<std::uint8_t*>(out_t);
  dispatch_float(x_dtype, fn, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x);
    auto launch = [&](auto e4m3_tag) {
      constexpr bool kE4M3 = decltype(e4m3_tag)::value;
      if (ot) {
        const std::int64_t col_tiles = (cols + kTile - 1) / kTile, row_tiles = (rows + kTile - 1) / kTile;
        if (col_tiles > INT32_MAX) usage(fn, "too many columns");
        // With an amax to fold, few enough blocks that their atomics on one word stay cheap.
        const std::int64_t max_row_blocks = amax ? std::max<std::int64_t>(1, 2048 / col_tiles) : 65535;
        dim3 grid(static_cast<unsigned>(col_tiles), static_cast<unsigned>(std::min<std::int64_t>(row_tiles, max_row_blocks)));
        cast_transpose_kernel<T, kE4M3><<<grid, kThreads, 0, compute_stream()>>>(xp, rows, cols, scale, ax, o, ot, amax_bits);
      } else if (cols % 8 == 0 && aligned(x, 16) && aligned(out, 8)) {
        cast_kernel<T, kE4M3, true><<<grid_for(rows * cols / 8, kThreads, max_blocks), kThreads, 0, compute_stream()>>>(
            xp, rows, cols, scale, ax, o, amax_bits);
      } else {
        cast_kernel<T, kE4M3, false><<<grid_for(rows * cols, kThreads, max_blocks), kThreads, 0, compute_stream()>>>(
            xp, rows, cols, scale, ax, o, amax_bits);
      }
      TITAN_CUDA_LAUNCH_CHECK();
    };
    with_f8_format(f8, launch);
  });
}

// ---- (e) dequantize: out = f32(q) / scale, IEEE division (the CPU's Float8Tensor::dequantize) --
template <bool kE4M3>
__global__ void dequantize_kernel(const std::uint8_t* __restrict__ q, std::int64_t rows, std::int64_t cols,
                                  const float* __restrict__ scale, int axis, float* __restrict__ out) {
  const std::int64_t n = rows * cols;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / cols, c = i - r * cols;
    float v;
    if constexpr (kE4M3) {
      __nv_fp8_e4m3 b;
      b.__x = q[i];
      v = float(b);
    } else {
      __nv_fp8_e5m2 b;
      b.__x = q[i];
      v = float(b);
    }
    out[i] = __fdiv_rn(v, scale_for(scale, axis, r, c));
  }
}

void dequantize_fp8(const void* q, DType f8, std::int64_t rows, std::int64_t cols, const float* scale, Fp8ScaleAxis axis,
                    float* out) {
  constexpr const char* fn = "dequantize_fp8";
  check_sizes(fn, rows, cols);
  check_f8(fn, f8);
  if (rows == 0 || cols == 0) return;
  const auto* qp = static_cast<const std::uint8_t*>(q);
  const int ax = axis_code(axis);
  if (f8 == DType::f8e4m3)
    dequantize_kernel<true><<<grid_for(rows * cols, kThreads), kThreads, 0, compute_stream()>>>(qp, rows, cols, scale, ax, out);
  else
    dequantize_kernel<false><<<grid_for(rows * cols, kThreads), kThreads, 0, compute_stream()>>>(qp, rows, cols, scale, ax, out);
  TITAN_CUDA_LAUNCH_CHECK();
}

// ---- (g) transpose of float8 bytes ------------------------------------------------------------
// The layout of the fused cast + transpose without the cast: a block stages a 64 x 64 byte tile in
// shared memory (a warp reads 32 contiguous bytes of a row of q), then writes the tile's columns as
// rows of out (32 contiguous bytes per warp; the 68-byte row pitch keeps a warp's column read free
// of bank conflicts). grid (column tiles, row tiles), 256 threads.
__global__ void transpose_fp8_kernel(const std::uint8_t* __restrict__ q, std::int64_t rows, std::int64_t cols,
                                     std::uint8_t* __restrict__ out) {
  __shared__ std::uint8_t tile[kTile][kTile + 4];
  const std::int64_t row_tiles = (rows + kTile - 1) / kTile;
  const std::int64_t c0 = blockIdx.x * std::int64_t(kTile);
  for (std::int64_t tr = blockIdx.y; tr < row_tiles; tr += gridDim.y) {
    const std::int64_t r0 = tr * kTile;
#pragma unroll 4
    for (int i = threadIdx.x; i < kTile * kTile; i += kThreads) {
      const int r = i / kTile, c = i % kTile;
      const std::int64_t gr = r0 + r, gc = c0 + c;
      if (gr < rows && gc < cols) tile[r][c] = q[gr * cols + gc];
    }
    __syncthreads();
    store_tile_transposed(tile, r0, c0, rows, cols, out);
    __syncthreads();  // the tile is rewritten by the next row tile
  }
}

void transpose_fp8(const void* q, std::int64_t rows, std::int64_t cols, void* out) {
  constexpr const char* fn = "transpose_fp8";
  check_sizes(fn, rows, cols);
  if (rows == 0 || cols == 0) return;
  if (!q || !out) usage(fn, "q or out is null");
  const std::int64_t col_tiles = (cols + kTile - 1) / kTile, row_tiles = (rows + kTile - 1) / kTile;
  if (col_tiles > INT32_MAX) usage(fn, "too many columns");
  dim3 grid(static_cast<unsigned>(col_tiles), static_cast<unsigned>(std::min<std::int64_t>(row_tiles, 65535)));
  transpose_fp8_kernel<<<grid, kThreads, 0, compute_stream()>>>(static_cast<const std::uint8_t*>(q), rows, cols,
                                                                 static_cast<std::uint8_t*>(out));
  TITAN_CUDA_LAUNCH_CHECK();
}

// ---- (f) reciprocals of the scales: the dequantization factors the FP8 GEMM consumes --------
__global__ void amax_history_push_kernel(float* row, std::int64_t length, std::int64_t* pushes, const float* amax) {
  const std::int64_t n = *pushes;
  row[n % length] = *amax;
  *pushes = n + 1;
}

__global__ void scale_reciprocal_kernel(const float* __restrict__ scale, std::int64_t n_in, std::int64_t n_out,
                                        float* __restrict__ scale_inv) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n_out; i += std::int64_t(gridDim.x) * blockDim.x)
    scale_inv[i] = __fdiv_rn(1.0f, scale[n_in == 1 ? 0 : i]);
}

void scale_reciprocal(const float* scale, std::int64_t n_in, std::int64_t n_out, float* scale_inv) {
  if (n_in != 1 && n_in != n_out) usage("scale_reciprocal", "n_in must be 1 or n_out");
  if (n_out <= 0) return;
  if (!scale || !scale_inv) usage("scale_reciprocal", "scale or scale_inv is null");
  scale_reciprocal_kernel<<<grid_for(n_out, kThreads), kThreads, 0, compute_stream()>>>(scale, n_in, n_out, scale_inv);
  TITAN_CUDA_LAUNCH_CHECK();
}

void amax_history_push(float* row, std::int64_t length, std::int64_t* pushes, const float* amax) {
  if (length <= 0 || !row || !pushes || !amax) usage("amax_history_push", "needs a row of length >= 1, a count and an amax");
  amax_history_push_kernel<<<1, 1, 0, compute_stream()>>>(row, length, pushes, amax);
  TITAN_CUDA_LAUNCH_CHECK();
}

void quantize_fp8(const void* x, DType x_dtype, std::int64_t rows, std::int64_t cols, DType f8, Fp8ScaleAxis axis,
                  bool round_to_power_of_2, float* amax, float* scale, float* scale_inv, void* out, void* out_t) {
  check_sizes("quantize_fp8", rows, cols);
  check_f8("quantize_fp8", f8);
  const std::int64_t n_scales = axis == Fp8ScaleAxis::tensor ? 1 : axis == Fp8ScaleAxis::per_row ? rows : cols;
  if (axis == Fp8ScaleAxis::per_row && out && !out_t && rows > 0) {  // one pass (quantize_row_kernel)
    if (!amax || !scale) usage("quantize_fp8", "amax or scale is null");
    if (cols > 0 && !x) usage("quantize_fp8", "x is null");
    const double fmax = f8_max(f8);
    auto* o = static_cast<std::uint8_t*>(out);
    dispatch_float(x_dtype, "quantize_fp8", [&](auto tag) {
      using T = decltype(tag);
      const T* xp = static_cast<const T*>(x);
      const bool vec = cols % 8 == 0 && aligned(x, 16) && aligned(out, 8);
      const unsigned blocks = grid_for(rows, kThreads / 32, 1 << 20);
      auto launch = [&](auto e4m3_tag) {
        constexpr bool kE4M3 = decltype(e4m3_tag)::value;
        if (vec)
          quantize_row_kernel<T, kE4M3, true><<<blocks, kThreads, 0, compute_stream()>>>(xp, rows, cols, fmax, round_to_power_of_2,
                                                                                       amax, scale, scale_inv, o);
        else
          quantize_row_kernel<T, kE4M3, false><<<blocks, kThreads, 0, compute_stream()>>>(xp, rows, cols, fmax, round_to_power_of_2,
                                                                                        amax, scale, scale_inv, o);
        TITAN_CUDA_LAUNCH_CHECK();
      };
      with_f8_format(f8, launch);
    });
    return;
  }
  switch (axis) {
    case Fp8ScaleAxis::tensor: amax_tensorwise(x, x_dtype, rows * cols, amax); break;
    case Fp8ScaleAxis::per_row: amax_rowwise(x, x_dtype, rows, cols, amax); break;
    case Fp8ScaleAxis::per_column: amax_colwise(x, x_dtype, rows, cols, amax); break;
  }
  amax_to_scale(amax, n_scales, f8, round_to_power_of_2, scale, scale_inv);
  cast_to_fp8(x, x_dtype, rows, cols, f8, scale, axis, out, out_t);
}

}  // namespace titan::cuda
