#include "core/dtype.hpp"

#include <array>
#include <bit>
#include <cmath>

namespace titan {

std::size_t dtype_size(DType dt) {
  switch (dt) {
    case DType::f32: case DType::i32: return 4;
    case DType::f64: case DType::i64: return 8;
    case DType::bf16: case DType::f16: return 2;
    case DType::f8e4m3: case DType::f8e5m2: return 1;
  }
  return 0;
}

std::string_view dtype_name(DType dt) {
  switch (dt) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::bf16: return "bfloat16";
    case DType::f16: return "float16";
    case DType::f8e4m3: return "float8_e4m3fn";
    case DType::f8e5m2: return "float8_e5m2";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
  }
  return "?";
}

bool is_floating(DType dt) { return dt != DType::i32 && dt != DType::i64; }

// bf16 is the top half of an f32: round the dropped 16 bits to nearest even.
namespace {

// A small binary float format: `exp_bits` exponent bits, `man_bits` mantissa bits, IEEE bias.
struct MiniFloat {
  int exp_bits, man_bits;
  int bias() const { return (1 << (exp_bits - 1)) - 1; }
};

double decode_magnitude(std::uint32_t bits, MiniFloat f) {
  const std::uint32_t exp_field = bits >> f.man_bits;
  const std::uint32_t man = bits & ((1u << f.man_bits) - 1);
  if (exp_field == 0) return std::ldexp(static_cast<double>(man), 1 - f.bias() - f.man_bits);
  return std::ldexp(1.0 + std::ldexp(static_cast<double>(man), -f.man_bits), static_cast<int>(exp_field) - f.bias());
}

constexpr MiniFloat kE4M3{4, 3};

template <int N>
std::array<float, N> make_table(float (*decode)(std::uint32_t)) {
  std::array<float, N> t{};
  for (int i = 0; i < N; ++i) t[i] = decode(static_cast<std::uint32_t>(i));
  return t;
}

// An IEEE-style format (all-ones exponent: inf when the mantissa is 0, else NaN): e5m2.
template <int kExpBits, int kManBits>
float decode_ieee(std::uint32_t b) {
  constexpr int kBits = 1 + kExpBits + kManBits;
  constexpr MiniFloat kFormat{kExpBits, kManBits};
  const bool neg = (b >> (kBits - 1)) & 1;
  const std::uint32_t mag = b & ((1u << (kBits - 1)) - 1);
  float v;
  if ((mag >> kManBits) == (1u << kExpBits) - 1) v = (mag & ((1u << kManBits) - 1)) ? NAN : INFINITY;
  else v = static_cast<float>(decode_magnitude(mag, kFormat));
  return neg ? -v : v;
}
float decode_e5m2(std::uint32_t b) { return decode_ieee<5, 2>(b); }
// e4m3fn has no infinities: only S.1111.111 is NaN.
float decode_e4m3(std::uint32_t b) {
  const bool neg = b & 0x80;
  const std::uint32_t mag = b & 0x7F;
  float v = mag == 0x7F ? NAN : static_cast<float>(decode_magnitude(mag, kE4M3));
  return neg ? -v : v;
}

}  // namespace

// float32 -> float8 with round-to-nearest-even on the bits (exact, and cheap enough for casting
// whole activations): a normal result keeps the top mantissa bits of x with the usual
// "add half minus one plus the kept lsb" rounding, which also carries into the exponent; a
// subnormal result is x scaled to the subnormal quantum and rounded by the FPU (exact: the scaled
// value is below 2^3 and a power-of-two scaling loses nothing).
template <int kManBits, int kBias, int kMinNormalExp>
std::uint8_t f32_to_f8_bits(float x, float max_finite, std::uint8_t nan_bits) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  const std::uint8_t sign = static_cast<std::uint8_t>((u >> 24) & 0x80);
  if (std::isnan(x)) return sign | nan_bits;
  float a = std::fabs(x);
  if (a > max_finite) a = max_finite;  // saturate, infinities included
  if (a < std::ldexp(1.0f, kMinNormalExp)) {
    const float m = std::nearbyint(a * std::ldexp(1.0f, kManBits - kMinNormalExp));  // ties to even
    return sign | static_cast<std::uint8_t>(m);
  }
  std::uint32_t b = std::bit_cast<std::uint32_t>(a);
  constexpr int drop = 23 - kManBits;
  b += ((1u << (drop - 1)) - 1) + ((b >> drop) & 1);
  return sign | static_cast<std::uint8_t>((b >> drop) - (static_cast<std::uint32_t>(127 - kBias) << kManBits));
}

std::uint8_t f32_to_f8e4m3(float x) { return f32_to_f8_bits<3, 7, -6>(x, kF8E4M3Max, 0x7F); }

float f8e4m3_to_f32(std::uint8_t bits) {
  static const auto table = make_table<256>(decode_e4m3);
  return table[bits];
}

std::uint8_t f32_to_f8e5m2(float x) { return f32_to_f8_bits<2, 15, -14>(x, kF8E5M2Max, 0x7E); }

float f8e5m2_to_f32(std::uint8_t bits) {
  static const auto table = make_table<256>(decode_e5m2);
  return table[bits];
}

double load_element(DType dt, const void* base, std::int64_t i) {
  switch (dt) {
    case DType::f32: return static_cast<const float*>(base)[i];
    case DType::f64: return static_cast<const double*>(base)[i];
    case DType::bf16: return bf16_to_f32(static_cast<const std::uint16_t*>(base)[i]);
    case DType::f16: return f16_to_f32(static_cast<const std::uint16_t*>(base)[i]);
    case DType::f8e4m3: return f8e4m3_to_f32(static_cast<const std::uint8_t*>(base)[i]);
    case DType::f8e5m2: return f8e5m2_to_f32(static_cast<const std::uint8_t*>(base)[i]);
    case DType::i32: return static_cast<const std::int32_t*>(base)[i];
    case DType::i64: return static_cast<double>(static_cast<const std::int64_t*>(base)[i]);
  }
  return 0;
}

void store_element(DType dt, void* base, std::int64_t i, double v) {
  switch (dt) {
    case DType::f32: static_cast<float*>(base)[i] = static_cast<float>(v); break;
    case DType::f64: static_cast<double*>(base)[i] = v; break;
    case DType::bf16: static_cast<std::uint16_t*>(base)[i] = f32_to_bf16(static_cast<float>(v)); break;
    case DType::f16: static_cast<std::uint16_t*>(base)[i] = f32_to_f16(static_cast<float>(v)); break;
    case DType::f8e4m3: static_cast<std::uint8_t*>(base)[i] = f32_to_f8e4m3(static_cast<float>(v)); break;
    case DType::f8e5m2: static_cast<std::uint8_t*>(base)[i] = f32_to_f8e5m2(static_cast<float>(v)); break;
    case DType::i32: static_cast<std::int32_t*>(base)[i] = static_cast<std::int32_t>(v); break;
    case DType::i64: static_cast<std::int64_t*>(base)[i] = static_cast<std::int64_t>(v); break;
  }
}

}  // namespace titan
