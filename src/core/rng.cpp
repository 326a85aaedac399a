#include "core/rng.hpp"

#include <cmath>
#include <numbers>

namespace titan::rng {

namespace {

constexpr std::uint32_t kM0 = 0xD2511F53, kM1 = 0xCD9E8D57;  // Philox multipliers
constexpr std::uint32_t kW0 = 0x9E3779B9, kW1 = 0xBB67AE85;  // Weyl key increments

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

double to_unit(std::uint32_t hi, std::uint32_t lo) {
  // 53 random bits -> (0, 1): add half an ulp so 0 is never returned.
  const std::uint64_t bits = ((static_cast<std::uint64_t>(hi) << 32) | lo) >> 11;
  return (static_cast<double>(bits) + 0.5) * 0x1.0p-53;
}

double normal_cdf(double x) { return 0.5 * (1.0 + std::erf(x / std::numbers::sqrt2)); }

}  // namespace

std::array<std::uint32_t, 4> philox(std::uint64_t index, std::uint32_t stream, std::uint64_t key) {
  std::uint32_t c0 = static_cast<std::uint32_t>(index), c1 = static_cast<std::uint32_t>(index >> 32);
  std::uint32_t c2 = stream, c3 = 0;
  std::uint32_t k0 = static_cast<std::uint32_t>(key), k1 = static_cast<std::uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(kM0) * c0;
    const std::uint64_t p1 = static_cast<std::uint64_t>(kM1) * c2;
    const std::uint32_t n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const std::uint32_t n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<std::uint32_t>(p1);
    c3 = static_cast<std::uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += kW0;
    k1 += kW1;
  }
  return {c0, c1, c2, c3};
}

std::uint64_t make_key(std::uint64_t seed, std::string_view name) {
  std::uint64_t h = 0xCBF29CE484222325ULL;  // FNV-1a over the name
  for (unsigned char c : name) h = (h ^ c) * 0x100000001B3ULL;
  return splitmix64(splitmix64(seed) ^ h);
}

double uniform(std::uint64_t key, std::uint64_t index, std::uint32_t stream) {
  const auto r = philox(index, stream, key);
  return to_unit(r[0], r[1]);
}

double normal(std::uint64_t key, std::uint64_t index, std::uint32_t stream) {
  const auto r = philox(index, stream, key);
  const double u1 = to_unit(r[0], r[1]), u2 = to_unit(r[2], r[3]);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

double erfinv(double y) {
  if (y <= -1) return -INFINITY;
  if (y >= 1) return INFINITY;
  // Initial guess (Giles, "Approximating the erfinv function", single-precision branch), then
  // Newton steps on erf(x) - y, which converge to double precision.
  const double w = -std::log((1.0 - y) * (1.0 + y));
  double x;
  if (w < 5.0) {
    const double t = w - 2.5;
    double p = 2.81022636e-08;
    p = 3.43273939e-07 + p * t;
    p = -3.5233877e-06 + p * t;
    p = -4.39150654e-06 + p * t;
    p = 0.00021858087 + p * t;
    p = -0.00125372503 + p * t;
    p = -0.00417768164 + p * t;
    p = 0.246640727 + p * t;
    p = 1.50140941 + p * t;
    x = p * y;
  } else {
    const double t = std::sqrt(w) - 3.0;
    double p = -0.000200214257;
    p = 0.000100950558 + p * t;
    p = 0.00134934322 + p * t;
    p = -0.00367342844 + p * t;
    p = 0.00573950773 + p * t;
    p = -0.0076224613 + p * t;
    p = 0.00943887047 + p * t;
    p = 1.00167406 + p * t;
    p = 2.83297682 + p * t;
    x = p * y;
  }
  for (int i = 0; i < 3; ++i) {
    const double err = std::erf(x) - y;
    x -= err / (2.0 / std::sqrt(std::numbers::pi) * std::exp(-x * x));
  }
  return x;
}

namespace {

// The inverse-CDF draw of trunc_normal with the CDF bounds lo, hi already computed.
double trunc_normal_from(std::uint64_t key, std::uint64_t index, double mean, double std, double a, double b, double lo,
                         double hi) {
  const double u = lo + (hi - lo) * uniform(key, index);
  double x = mean + std * std::numbers::sqrt2 * erfinv(2.0 * u - 1.0);
  return std::fmin(std::fmax(x, a), b);
}

// Writes value(i) for every element of t: straight into float32 storage (what Tensor::set does
// for it, without a dtype dispatch per element), through set() otherwise.
template <class F>
void fill_each(Tensor& t, F&& value) {
  const std::int64_t n = t.numel();
  if (t.dtype() == DType::f32 && t.device().is_cpu()) {
    float* out = t.data<float>();
    for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(value(i));
  } else {
    for (std::int64_t i = 0; i < n; ++i) t.set(i, value(i));
  }
}

}  // namespace

double trunc_normal(std::uint64_t key, std::uint64_t index, double mean, double std, double a, double b) {
  return trunc_normal_from(key, index, mean, std, a, b, normal_cdf((a - mean) / std), normal_cdf((b - mean) / std));
}

void fill_normal(Tensor& t, std::uint64_t key, std::uint64_t first_index, double mean, double std) {
  fill_each(t, [&](std::int64_t i) { return mean + std * normal(key, first_index + std::uint64_t(i)); });
}

void fill_trunc_normal(Tensor& t, std::uint64_t key, std::uint64_t first_index, double mean, double std, double a,
                       double b) {
  // The bounds' CDF values are the same for every element: computed once.
  const double lo = normal_cdf((a - mean) / std), hi = normal_cdf((b - mean) / std);
  fill_each(t, [&](std::int64_t i) { return trunc_normal_from(key, first_index + std::uint64_t(i), mean, std, a, b, lo, hi); });
}

}  // namespace titan::rng
