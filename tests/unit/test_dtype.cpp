// Exact scalar conversions: every float8 bit pattern, every rounding tie, saturation and NaN,
// checked against formulas here and against PyTorch's answers (tests/golden/dtypes.txt).
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <fstream>
#include <sstream>

#include "core/dtype.hpp"

using namespace titan;

namespace {

struct Format {
  const char* name;
  int exp_bits, man_bits;
  float (*decode)(std::uint8_t);
  std::uint8_t (*encode)(float);
  float max;
};
const Format kE4M3{"e4m3", 4, 3, f8e4m3_to_f32, f32_to_f8e4m3, kF8E4M3Max};
const Format kE5M2{"e5m2", 5, 2, f8e5m2_to_f32, f32_to_f8e5m2, kF8E5M2Max};

// The value of a bit pattern, from the format definition (written independently of dtype.cpp).
double expected_value(const Format& f, unsigned bits) {
  const int bias = (1 << (f.exp_bits - 1)) - 1;
  const unsigned e = (bits >> f.man_bits) & ((1u << f.exp_bits) - 1);
  const unsigned m = bits & ((1u << f.man_bits) - 1);
  const double sign = (bits & 0x80) ? -1.0 : 1.0;
  const unsigned emax = (1u << f.exp_bits) - 1;
  if (f.exp_bits == 4 && e == emax && m == 7) return NAN;  // e4m3fn: only S.1111.111 is NaN, no inf
  if (f.exp_bits == 5 && e == emax) return m ? NAN : sign * INFINITY;
  if (e == 0) return sign * std::ldexp(m, 1 - bias - f.man_bits);
  return sign * std::ldexp((1u << f.man_bits) + m, int(e) - bias - f.man_bits);
}

std::string golden_path() { return std::string(TITAN_SOURCE_DIR) + "/tests/golden/dtypes.txt"; }

}  // namespace

TEST_CASE("float8: all 256 bit patterns of each format decode to the right value") {
  for (const Format* f : {&kE4M3, &kE5M2}) {
    for (unsigned b = 0; b < 256; ++b) {
      INFO(f->name << " bits " << b);
      const double want = expected_value(*f, b);
      const float got = f->decode(static_cast<std::uint8_t>(b));
      if (std::isnan(want)) {
        CHECK(std::isnan(got));
      } else {
        CHECK(got == want);
        CHECK(std::signbit(got) == bool(b & 0x80));
        // Every finite value encodes back to its own bits.
        if (std::isfinite(want)) CHECK(f->encode(got) == b);
      }
    }
  }
  CHECK(f8e4m3_to_f32(0x7E) == 448.0f);
  CHECK(f8e4m3_to_f32(0x01) == std::ldexp(1.0f, -9));
  CHECK(f8e5m2_to_f32(0x7B) == 57344.0f);
  CHECK(f8e5m2_to_f32(0x01) == std::ldexp(1.0f, -16));
}

TEST_CASE("float8: every tie between neighbours rounds to the even one, and off-tie to the nearest") {
  for (const Format* f : {&kE4M3, &kE5M2}) {
    for (unsigned b = 0; b < 0x7F; ++b) {
      const float lo = f->decode(static_cast<std::uint8_t>(b)), hi = f->decode(static_cast<std::uint8_t>(b + 1));
      if (!std::isfinite(lo) || !std::isfinite(hi)) continue;
      INFO(f->name << " between bits " << b << " and " << b + 1);
      const float mid = (lo + hi) / 2;  // exact in f32
      const unsigned even = (b % 2 == 0) ? b : b + 1;
      CHECK(f->encode(mid) == even);
      CHECK(f->encode(-mid) == (even | 0x80));
      CHECK(f->encode(std::nextafter(mid, 0.0f)) == b);
      CHECK(f->encode(std::nextafter(mid, INFINITY)) == b + 1);
    }
  }
}

TEST_CASE("float8: saturation, infinities and NaN") {
  CHECK(f32_to_f8e4m3(1e9f) == 0x7E);
  CHECK(f32_to_f8e4m3(-1e9f) == 0xFE);
  CHECK(f32_to_f8e4m3(INFINITY) == 0x7E);
  CHECK(f32_to_f8e4m3(-INFINITY) == 0xFE);
  CHECK(f32_to_f8e4m3(470.0f) == 0x7E);  // would round to 480, which e4m3fn does not have
  CHECK(std::isnan(f8e4m3_to_f32(f32_to_f8e4m3(NAN))));
  CHECK(f32_to_f8e5m2(1e9f) == 0x7B);
  CHECK(f32_to_f8e5m2(-INFINITY) == 0xFB);
  CHECK(std::isnan(f8e5m2_to_f32(f32_to_f8e5m2(NAN))));
  CHECK(f32_to_f8e4m3(-0.0f) == 0x80);
  CHECK(f32_to_f8e4m3(std::ldexp(1.0f, -11)) == 0x00);  // below half the smallest subnormal
  CHECK(f32_to_f8e4m3(std::ldexp(1.0f, -10)) == 0x00);  // tie with 0 -> even (0)
  CHECK(f32_to_f8e4m3(std::ldexp(1.5f, -10)) == 0x01);
}

TEST_CASE("bf16 and f16: round to nearest even at every tie of sampled binades") {
  for (int e = -20; e <= 20; e += 3) {
    for (unsigned m = 0; m < 128; m += 5) {
      // bf16 neighbours a < b in this binade; their midpoint is an exact f32.
      const float a = std::ldexp(1.0f + m / 128.0f, e), b = std::ldexp(1.0f + (m + 1) / 128.0f, e);
      const float mid = (a + b) / 2;
      const std::uint16_t want = (m % 2 == 0) ? f32_to_bf16(a) : f32_to_bf16(b);
      CHECK(f32_to_bf16(mid) == want);
      CHECK(bf16_to_f32(f32_to_bf16(std::nextafter(mid, 0.0f))) == a);
      CHECK(bf16_to_f32(f32_to_bf16(std::nextafter(mid, INFINITY))) == b);
    }
  }
  for (int e = -14; e <= 15; e += 2) {
    for (unsigned m = 0; m < 1024; m += 37) {
      const float a = std::ldexp(1.0f + m / 1024.0f, e), b = std::ldexp(1.0f + (m + 1) / 1024.0f, e);
      const float mid = (a + b) / 2;
      const float want = (m % 2 == 0) ? a : b;
      CHECK(f16_to_f32(f32_to_f16(mid)) == want);
      CHECK(f16_to_f32(f32_to_f16(std::nextafter(mid, INFINITY))) == b);
    }
  }
  CHECK(f32_to_f16(65520.0f) == 0x7C00);  // rounds up past the largest finite: inf
  CHECK(f32_to_f16(65519.0f) == 0x7BFF);
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
  CHECK(std::isinf(bf16_to_f32(f32_to_bf16(INFINITY))));
}

TEST_CASE("conversions match PyTorch bit for bit (tests/golden/dtypes.txt)") {
  std::ifstream in(golden_path());
  REQUIRE(in.good());
  std::string line;
  int decodes = 0, casts = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ss(line);
    std::string kind, fmt, a, b;
    ss >> kind >> fmt >> a >> b;
    const unsigned long x = std::stoul(a, nullptr, 16), y = std::stoul(b, nullptr, 16);
    INFO(line);
    if (kind == "decode") {
      const float want = std::bit_cast<float>(static_cast<std::uint32_t>(y));
      const float got = fmt == "e4m3" ? f8e4m3_to_f32(std::uint8_t(x)) : f8e5m2_to_f32(std::uint8_t(x));
      if (std::isnan(want)) CHECK(std::isnan(got));
      else CHECK(std::bit_cast<std::uint32_t>(got) == y);
      ++decodes;
    } else {
      const float in_value = std::bit_cast<float>(static_cast<std::uint32_t>(x));
      unsigned long got = 0;
      float got_value = 0, want_value = 0;
      if (fmt == "e4m3") { got = f32_to_f8e4m3(in_value); got_value = f8e4m3_to_f32(got); want_value = f8e4m3_to_f32(y); }
      if (fmt == "e5m2") { got = f32_to_f8e5m2(in_value); got_value = f8e5m2_to_f32(got); want_value = f8e5m2_to_f32(y); }
      if (fmt == "bf16") { got = f32_to_bf16(in_value); got_value = bf16_to_f32(got); want_value = bf16_to_f32(y); }
      if (fmt == "f16") { got = f32_to_f16(in_value); got_value = f16_to_f32(got); want_value = f16_to_f32(y); }
      if (std::isnan(want_value)) CHECK(std::isnan(got_value));  // NaN payloads may differ
      else CHECK(got == y);
      ++casts;
    }
  }
  CHECK(decodes == 512);
  CHECK(casts > 1000);
}

TEST_CASE("float8: casts of 200k random floats equal the nearest representable value (ties to even)") {
  // Reference: search the 127 non-negative finite codes for the nearest; ties go to the even code.
  auto nearest = [](const Format& f, float x) -> unsigned {
    if (std::isnan(x)) return 0xFFFF;
    const float a = std::min(std::fabs(x), f.max);
    unsigned best = 0;
    double best_d = 1e300;
    for (unsigned b = 0; b < 0x80; ++b) {
      const float v = f.decode(static_cast<std::uint8_t>(b));
      if (!std::isfinite(v)) continue;
      const double d = std::fabs(double(v) - double(a));
      if (d < best_d || (d == best_d && b % 2 == 0)) {
        best = b;
        best_d = d;
      }
    }
    return best | (std::signbit(x) ? 0x80u : 0u);
  };
  std::uint64_t state = 12345;
  auto next = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<std::uint32_t>(state >> 32);
  };
  for (const Format* f : {&kE4M3, &kE5M2}) {
    int mismatches = 0;
    for (int i = 0; i < 100000; ++i) {
      // Random sign and mantissa, exponents around the format's range (and beyond it).
      const std::uint32_t e = 127 - 22 + next() % 42;
      const float x = std::bit_cast<float>((next() & 0x80000000u) | (e << 23) | (next() & 0x7FFFFF));
      mismatches += f->encode(x) != nearest(*f, x);
    }
    CHECK(mismatches == 0);
  }
}
