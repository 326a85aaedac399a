#pragma once
// Data types and exact scalar conversions (DESIGN.md section 3).
//
// bf16, f16 and the two float8 formats are storage types: arithmetic happens in f32 (or f64 in
// the reference paths). Every conversion from f32 rounds to nearest, ties to even. Float8 casts
// saturate: anything beyond the format's largest finite value (infinities included) becomes
// +-max, as torchao's casts clamp before converting; NaN stays NaN.
//
//   format   bits (sign|exp|mantissa)  bias  max finite   smallest subnormal   inf/NaN
//   bf16     1|8|7                     127   ~3.39e38     2^-133               IEEE
//   f16      1|5|10                    15    65504        2^-24                IEEE
//   e4m3fn   1|4|3                     7     448          2^-9                 no inf; NaN = S.1111.111
//   e5m2     1|5|2                     15    57344        2^-16                IEEE (inf = S.11111.00)
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace titan {

enum class DType : std::uint8_t { f32, f64, bf16, f16, f8e4m3, f8e5m2, i32, i64 };

std::size_t dtype_size(DType dt);
std::string_view dtype_name(DType dt);
bool is_floating(DType dt);

constexpr float kF8E4M3Max = 448.0f;
constexpr float kF8E5M2Max = 57344.0f;

// Inline: the CPU's bf16 storage converts whole tensors through these, and the loops vectorize.
// (memcpy, not std::bit_cast: nvcc compiles the kernels that include this header as C++17.)
inline std::uint16_t f32_to_bf16(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040);  // NaN: keep sign, quiet
  u += 0x7FFF + ((u >> 16) & 1);
  return static_cast<std::uint16_t>(u >> 16);
}
inline float bf16_to_f32(std::uint16_t bits) {
  const std::uint32_t u = static_cast<std::uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
// float32 -> float16, round to nearest even, on the bits: a normal result rebiases the exponent
// and rounds the mantissa from 23 to 10 bits (a carry moves into the exponent, up to infinity); a
// subnormal one is x scaled to the 2^-24 quantum (exact) and rounded to an integer by adding and
// subtracting 2^23 (round to nearest even in float arithmetic).
inline std::uint16_t f32_to_f16(float x) {
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000);
  const std::uint32_t u = bits & 0x7FFFFFFFu;
  if (u > 0x7F800000u) return sign | 0x7E00;   // NaN
  if (u >= 0x477FF000u) return sign | 0x7C00;  // >= 65520 (inf included) rounds to infinity
  if (u < 0x38800000u) {                       // below 2^-14: subnormal or zero
    float magnitude;
    std::memcpy(&magnitude, &u, sizeof magnitude);
    const float quanta = magnitude * 0x1p24f;
    return sign | static_cast<std::uint16_t>((quanta + 0x1p23f) - 0x1p23f);
  }
  const std::uint32_t v = u - 0x38000000u;  // exponent bias 127 -> 15
  return sign | static_cast<std::uint16_t>((v + 0xFFFu + ((v >> 13) & 1u)) >> 13);
}
inline float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000) << 16;
  const std::uint32_t em = h & 0x7FFFu;
  std::uint32_t u;
  if (em >= 0x7C00u) {
    u = sign | 0x7F800000u | ((em & 0x3FFu) << 13);  // inf, NaN (payload kept)
  } else if (em < 0x400u) {                          // subnormal or zero: em x 2^-24, exact
    const float v = static_cast<float>(em) * 0x1p-24f;
    std::memcpy(&u, &v, sizeof u);
    u |= sign;
  } else {
    u = sign | ((em + 0x1C000u) << 13);  // exponent bias 15 -> 127
  }
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
std::uint8_t f32_to_f8e4m3(float x);
float f8e4m3_to_f32(std::uint8_t bits);
std::uint8_t f32_to_f8e5m2(float x);
float f8e5m2_to_f32(std::uint8_t bits);

// Element i of a host buffer of dtype `dt`, widened to double; and stored from double (f64 as
// is, the other floats through f32 with the rounding above, integers truncated). Tensor and the CPU backend's
// fill/convert share these, so every host path converts the same way.
double load_element(DType dt, const void* base, std::int64_t i);
void store_element(DType dt, void* base, std::int64_t i, double v);

}  // namespace titan
