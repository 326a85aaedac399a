// Float8 kernels (kernels/float8_cast.hpp) vs the CPU reference, bit for bit: amax (tensorwise,
// per row, per column; NaN/inf/zero rows; vector and scalar paths; multi-block), amax -> scale
// (crafted amaxes incl. 0, below EPS, inf, NaN and values whose scale sits next to a power of
// two), casts with given scales (saturation, rounding ties, subnormals, NaN/inf/+-0) into the
// row-major and the transposed output, and the whole quantize pipeline vs float8::cast_to_float8.
#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "float8/float8.hpp"
#include "float8_cast.hpp"
#include "gpu_test_helpers.hpp"
#include "runtime.hpp"

namespace {

using namespace titan;
using gpu_test::DeviceBuffer;
using gpu_test::random_vector;
using gpu_test::rounded;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::uint32_t bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
bool same_float(float a, float b) { return (std::isnan(a) && std::isnan(b)) || bits(a) == bits(b); }
bool is_f8_nan(std::uint8_t b, DType f8) { return f8 == DType::f8e4m3 ? (b & 0x7F) == 0x7F : (b & 0x7F) > 0x7C; }
std::uint8_t encode(float x, DType f8) { return f8 == DType::f8e4m3 ? f32_to_f8e4m3(x) : f32_to_f8e5m2(x); }

// A device copy of `values` starting `offset` elements into the allocation (offset 1: no vector path).
struct Input {
  Input(const std::vector<float>& values, DType dtype, std::int64_t offset = 0) : dtype(dtype), offset(offset) {
    std::vector<float> padded(std::size_t(offset), 0.f);
    padded.insert(padded.end(), values.begin(), values.end());
    buf = std::make_unique<DeviceBuffer>(padded, dtype);
  }
  const void* get() const { return static_cast<const char*>(buf->get()) + offset * dtype_size(dtype); }
  DType dtype;
  std::int64_t offset;
  std::unique_ptr<DeviceBuffer> buf;
};

std::vector<std::uint8_t> download_bytes(const DeviceBuffer& d) {
  std::vector<std::uint8_t> h(std::size_t(d.size()) * dtype_size(d.dtype()));
  cuda::copy(h.data(), d.get(), h.size());
  return h;
}

Tensor to_tensor(const std::vector<float>& v, std::int64_t rows, std::int64_t cols) {
  Tensor t = Tensor::empty({rows, cols});
  std::memcpy(t.data<float>(), v.data(), v.size() * sizeof(float));
  return t;
}
std::vector<float> to_vector(const Tensor& t) { return std::vector<float>(t.data<float>(), t.data<float>() + t.numel()); }

// Normal samples times 2^e with e uniform in [-lo, hi]: amaxes and scales over many binades.
std::vector<float> spread_values(std::int64_t n, std::uint32_t seed, int lo = 12, int hi = 12) {
  std::vector<float> v = random_vector(n, seed);
  std::mt19937 gen(seed ^ 0x5bd1e995u);
  std::uniform_int_distribution<int> e(-lo, hi);
  for (auto& x : v) x = std::ldexp(x, e(gen));
  return v;
}

void require_same_floats(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  REQUIRE(got.size() == want.size());
  std::size_t bad = 0, first = got.size();
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!same_float(got[i], want[i])) {
      if (first == got.size()) first = i;
      ++bad;
    }
  INFO(what << ": " << bad << " of " << got.size() << " differ; first at " << first << ": got "
            << (first < got.size() ? got[first] : 0.f) << " want " << (first < got.size() ? want[first] : 0.f));
  REQUIRE(bad == 0);
}

// Float8 bytes equal; where the CPU made a NaN the GPU must too, with the same sign where that
// sign is defined by x alone (x NaN, scale not NaN). `x_for` / `s_for` give the inputs of byte i.
template <class XFor, class SFor>
void require_same_f8(const std::vector<std::uint8_t>& got, const std::vector<std::uint8_t>& want, DType f8, XFor x_for,
                     SFor s_for, const std::string& what) {
  REQUIRE(got.size() == want.size());
  std::size_t bad = 0, first = got.size();
  for (std::size_t i = 0; i < got.size(); ++i) {
    bool ok = got[i] == want[i];
    if (!ok && is_f8_nan(want[i], f8) && is_f8_nan(got[i], f8)) {
      const float x = x_for(i), s = s_for(i);
      ok = !(std::isnan(x) && !std::isnan(s)) || (got[i] & 0x80) == (want[i] & 0x80);
    }
    if (!ok) {
      if (first == got.size()) first = i;
      ++bad;
    }
  }
  INFO(what << ": " << bad << " of " << got.size() << " float8 bytes differ; first at " << first << ": got 0x" << std::hex
            << (first < got.size() ? int(got[first]) : 0) << " want 0x" << (first < got.size() ? int(want[first]) : 0)
            << std::dec << " (x " << (first < got.size() ? x_for(first) : 0.f) << ", scale "
            << (first < got.size() ? s_for(first) : 0.f) << ")");
  REQUIRE(bad == 0);
}

const char* axis_name(cuda::Fp8ScaleAxis a) {
  return a == cuda::Fp8ScaleAxis::tensor ? "tensor" : a == cuda::Fp8ScaleAxis::per_row ? "per_row" : "per_column";
}

}  // namespace

TEST_CASE("float8 amax: tensorwise, per row and per column vs float8::amax", "[gpu][float8]") {
  const std::pair<std::int64_t, std::int64_t> shapes[] = {{37, 131}, {64, 256}, {1, 1}, {9, 8}, {300, 40}, {3, 2051}};
  std::uint32_t seed = 10;
  for (DType dt : {DType::f32, DType::bf16})
    for (auto [R, C] : shapes)
      for (std::int64_t offset : {0, 1}) {
        std::vector<float> x = rounded(spread_values(R * C, seed += 7), dt);
        if (R > 8) {  // special rows: NaN, inf, all zero (with -0), and -inf
          x[std::size_t(3 * C + C / 2)] = kNaN;
          x[std::size_t(5 * C)] = -kInf;
          for (std::int64_t c = 0; c < C; ++c) x[std::size_t(7 * C + c)] = c % 2 ? -0.0f : 0.0f;
          x[std::size_t(8 * C + C - 1)] = kInf;
        }
        const Tensor xt = to_tensor(x, R, C);
        const Input in(x, dt, offset);
        const std::string what = std::string(dtype_name(dt)) + " [" + std::to_string(R) + ", " + std::to_string(C) +
                                 "] offset " + std::to_string(offset);

        DeviceBuffer rows(R, DType::f32), cols(C, DType::f32), all(1, DType::f32);
        cuda::amax_rowwise(in.get(), dt, R, C, rows.as<float>());
        cuda::amax_colwise(in.get(), dt, R, C, cols.as<float>());
        cuda::amax_tensorwise(in.get(), dt, R * C, all.as<float>());
        require_same_floats(rows.download(), to_vector(float8::amax(xt, float8::Granularity::axiswise, -1)), "rowwise " + what);
        require_same_floats(cols.download(), to_vector(float8::amax(xt, float8::Granularity::axiswise, 0)), "colwise " + what);
        require_same_floats(all.download(), to_vector(float8::amax(xt, float8::Granularity::tensorwise, -1)), "tensorwise " + what);
      }
}

TEST_CASE("float8 cast with a given scale measures the tensor's amax in the same pass (delayed scaling)", "[gpu][float8]") {
  const std::pair<std::int64_t, std::int64_t> shapes[] = {{37, 131}, {64, 256}, {1, 1}, {300, 40}, {3, 2051}};
  std::uint32_t seed = 500;
  for (DType dt : {DType::f32, DType::bf16})
    for (auto [R, C] : shapes)
      for (std::int64_t offset : {0, 1})       // vector and scalar cast paths
        for (bool transposed : {false, true})  // the cast + transpose kernel too
          for (bool nan : {false, true}) {
            std::vector<float> x = rounded(spread_values(R * C, seed += 7), dt);
            if (nan) x[std::size_t(R * C / 2)] = kNaN;
            const Input in(x, dt, offset);
            const std::string what = std::string(dtype_name(dt)) + " [" + std::to_string(R) + ", " + std::to_string(C) +
                                     "] offset " + std::to_string(offset) + (transposed ? " transposed" : "") +
                                     (nan ? " with NaN" : "");
            DeviceBuffer scale(1, DType::f32), want(1, DType::f32), got(1, DType::f32), out(R * C, DType::f8e4m3),
                out_t(R * C, DType::f8e4m3), plain(R * C, DType::f8e4m3);
            const std::vector<float> s = {0.37f};
            scale.upload(s);
            cuda::amax_tensorwise(in.get(), dt, R * C, want.as<float>());
            cuda::cast_to_fp8(in.get(), dt, R, C, DType::f8e4m3, scale.as<float>(), cuda::Fp8ScaleAxis::tensor,
                              transposed ? nullptr : out.get(), transposed ? out_t.get() : nullptr, got.as<float>());
            cuda::cast_to_fp8(in.get(), dt, R, C, DType::f8e4m3, scale.as<float>(), cuda::Fp8ScaleAxis::tensor,
                              transposed ? nullptr : plain.get(), transposed ? plain.get() : nullptr);
            require_same_floats(got.download(), want.download(), "amax during the cast, " + what);
            REQUIRE(download_bytes(transposed ? out_t : out) == download_bytes(plain));  // the data as without it
          }
}

TEST_CASE("float8 amax tensorwise: many blocks, max in the tail, inf, NaN, zeros, empty", "[gpu][float8]") {
  const std::int64_t n = (1 << 20) + 37;
  for (DType dt : {DType::f32, DType::bf16}) {
    std::vector<float> x = rounded(random_vector(n, 77), dt);
    auto amax_of = [&](const std::vector<float>& v, std::int64_t offset) {
      const Input in(v, dt, offset);
      DeviceBuffer out(1, DType::f32);
      cuda::amax_tensorwise(in.get(), dt, std::int64_t(v.size()), out.as<float>());
      return out.download()[0];
    };
    for (std::int64_t offset : {0, 1}) {
      x[std::size_t(n - 1)] = -1000.f;  // in the scalar tail of the vector path
      CHECK(amax_of(x, offset) == 1000.f);
      x[std::size_t(n / 3)] = 4096.f;
      CHECK(amax_of(x, offset) == 4096.f);
      x[std::size_t(n / 2)] = -kInf;
      CHECK(amax_of(x, offset) == kInf);
      x[std::size_t(n / 2 + 1)] = -kNaN;
      CHECK(std::isnan(amax_of(x, offset)));
      x[std::size_t(n / 2)] = 0.f;
      x[std::size_t(n / 2 + 1)] = 0.f;
      x[std::size_t(n / 3)] = 0.f;
    }
    CHECK(bits(amax_of(std::vector<float>(1000, -0.0f), 0)) == 0u);
    DeviceBuffer out(1, DType::f32);
    cuda::amax_tensorwise(nullptr, dt, 0, out.as<float>());
    CHECK(bits(out.download()[0]) == 0u);
  }
}

TEST_CASE("float8 amax_to_scale: bit-identical to float8::amax_to_scale", "[gpu][float8]") {
  std::vector<float> amax = {0.f, 1e-13f, 1e-12f, 1.0000001e-12f, std::numeric_limits<float>::denorm_min(), FLT_MIN,
                             1.f, 448.f, 57344.f, 3.14159f, 0.1f, FLT_MAX, kInf, kNaN, 2.5e-10f, 7.7e30f};
  // Amaxes whose scale lands just below, on and just above a power of two (the floor of log2).
  for (float fmax : {448.f, 57344.f})
    for (int k = -100; k <= 45; ++k) {
      const float a = float(double(fmax) / std::ldexp(1.0, k));
      float up = a, down = a;
      for (int i = 0; i < 4; ++i) {
        amax.push_back(up);
        amax.push_back(down);
        up = std::nextafter(up, kInf);
        down = std::nextafter(down, 0.f);
      }
    }
  std::mt19937 gen(4);
  std::uniform_real_distribution<float> u(-45.f, 40.f);
  for (int i = 0; i < 5000; ++i) amax.push_back(std::exp2(u(gen)) * 1.2345f);
  const std::int64_t n = std::int64_t(amax.size());
  const Tensor at = to_tensor(amax, n, 1);
  DeviceBuffer dam(amax, DType::f32);
  for (DType f8 : {DType::f8e4m3, DType::f8e5m2})
    for (bool pow2 : {false, true}) {
      DeviceBuffer scale(n, DType::f32), inv(n, DType::f32);
      cuda::amax_to_scale(dam.as<float>(), n, f8, pow2, scale.as<float>(), inv.as<float>());
      const std::vector<float> want = to_vector(float8::amax_to_scale(at, f8, pow2));
      std::vector<float> want_inv(want.size());
      for (std::size_t i = 0; i < want.size(); ++i) want_inv[i] = 1.0f / want[i];
      const std::string what = std::string(dtype_name(f8)) + (pow2 ? " power-of-2" : "");
      require_same_floats(scale.download(), want, "scale " + what);
      require_same_floats(inv.download(), want_inv, "scale_inv " + what);
    }
}

TEST_CASE("float8 cast with given scales: saturation, ties, subnormals, NaN/inf/zero, transposed copy", "[gpu][float8]") {
  // Specials, then random values over many binades.
  std::vector<float> specials = {0.f, -0.f, kInf, -kInf, kNaN, -kNaN, 448.f, -448.f, 449.f, 464.f, -464.f, 465.f, 480.f,
                                 1e30f, -1e30f, 57344.f, 61440.f, 61439.f, 1.0625f, 1.1875f, -1.0625f, 1.125f,
                                 0.0009765625f /*2^-10*/, 0.00146484375f /*1.5 * 2^-10*/, 0.001953125f /*2^-9*/,
                                 1e-7f, -1e-7f, 1e-40f /*f32 subnormal*/, -1e-40f, 3.0517578125e-05f /*2^-15*/,
                                 4.57763671875e-05f /*1.5 * 2^-15*/, 0.015625f, 0.0146484375f, 240.f, 248.f, 232.f};
  const std::int64_t R = 45, C = 77;  // odd: every tile has tails
  std::vector<float> x = spread_values(R * C, 31, 16, 10);
  for (std::size_t i = 0; i < specials.size(); ++i) x[i * 13 % x.size()] = specials[i];
  std::vector<float> row_scales(R), col_scales(C);
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> u(-6.f, 6.f);
  for (auto& s : row_scales) s = std::exp2(u(gen)) * 1.37f;
  for (auto& s : col_scales) s = std::exp2(u(gen)) * 0.91f;
  row_scales[4] = 0.f;   // inf * 0 -> NaN, finite * 0 -> +-0
  col_scales[6] = kInf;  // saturation of everything nonzero
  col_scales[9] = kNaN;

  for (DType dt : {DType::f32, DType::bf16})
    for (DType f8 : {DType::f8e4m3, DType::f8e5m2})
      for (cuda::Fp8ScaleAxis axis : {cuda::Fp8ScaleAxis::tensor, cuda::Fp8ScaleAxis::per_row, cuda::Fp8ScaleAxis::per_column})
        for (float tensor_scale : {1.0f, 0.3721f}) {
          if (axis != cuda::Fp8ScaleAxis::tensor && tensor_scale != 1.0f) continue;
          const std::vector<float> xr = rounded(x, dt);
          const std::vector<float>& scales = axis == cuda::Fp8ScaleAxis::per_row      ? row_scales
                                             : axis == cuda::Fp8ScaleAxis::per_column ? col_scales
                                                                                      : std::vector<float>{tensor_scale};
          auto s_at = [&](std::int64_t r, std::int64_t c) {
            return axis == cuda::Fp8ScaleAxis::tensor ? scales[0] : axis == cuda::Fp8ScaleAxis::per_row ? scales[r] : scales[c];
          };
          std::vector<std::uint8_t> want(std::size_t(R * C)), want_t(std::size_t(R * C));
          for (std::int64_t r = 0; r < R; ++r)
            for (std::int64_t c = 0; c < C; ++c) {
              const std::uint8_t q = encode(xr[r * C + c] * s_at(r, c), f8);  // float8.cpp: encode(x * scale)
              want[r * C + c] = q;
              want_t[c * R + r] = q;
            }
          auto x_rc = [&](std::size_t i) { return xr[i]; };
          auto s_rc = [&](std::size_t i) { return s_at(std::int64_t(i) / C, std::int64_t(i) % C); };
          auto x_t = [&](std::size_t i) { return xr[(i % R) * C + i / R]; };
          auto s_t = [&](std::size_t i) { return s_at(std::int64_t(i % R), std::int64_t(i / R)); };
          const std::string what = std::string(dtype_name(dt)) + " -> " + std::string(dtype_name(f8)) + " " +
                                   axis_name(axis) + " scale " + std::to_string(tensor_scale);
          const Input in(xr, dt);
          DeviceBuffer ds(scales, DType::f32);
          {  // row-major only
            DeviceBuffer out(R * C, f8);
            cuda::cast_to_fp8(in.get(), dt, R, C, f8, ds.as<float>(), axis, out.get(), nullptr);
            require_same_f8(download_bytes(out), want, f8, x_rc, s_rc, "cast " + what);
          }
          {  // both outputs in one pass
            DeviceBuffer out(R * C, f8), out_t(R * C, f8);
            cuda::cast_to_fp8(in.get(), dt, R, C, f8, ds.as<float>(), axis, out.get(), out_t.get());
            require_same_f8(download_bytes(out), want, f8, x_rc, s_rc, "cast+transpose (row-major) " + what);
            require_same_f8(download_bytes(out_t), want_t, f8, x_t, s_t, "cast+transpose (transposed) " + what);
          }
          {  // transposed only
            DeviceBuffer out_t(R * C, f8);
            cuda::cast_to_fp8(in.get(), dt, R, C, f8, ds.as<float>(), axis, nullptr, out_t.get());
            require_same_f8(download_bytes(out_t), want_t, f8, x_t, s_t, "transpose only " + what);
          }
        }
}

TEST_CASE("float8 quantize pipeline vs float8::cast_to_float8 (amax, scale, data, transposed data)", "[gpu][float8]") {
  // {rows, cols, input offset}: vector paths (cols % 8 == 0, aligned), scalar paths, tile tails.
  struct Shape {
    std::int64_t R, C, offset;
  };
  const Shape shapes[] = {{37, 131, 0}, {64, 128, 0}, {130, 72, 0}, {64, 128, 1}, {1, 16, 0}, {200, 3, 0}};
  std::uint32_t seed = 900;
  for (DType dt : {DType::f32, DType::bf16})
    for (DType f8 : {DType::f8e4m3, DType::f8e5m2})
      for (cuda::Fp8ScaleAxis axis : {cuda::Fp8ScaleAxis::tensor, cuda::Fp8ScaleAxis::per_row, cuda::Fp8ScaleAxis::per_column})
        for (bool pow2 : {false, true})
          for (const Shape& sh : shapes) {
            const std::int64_t R = sh.R, C = sh.C;
            std::vector<float> x = rounded(spread_values(R * C, seed += 11, 10, 10), dt);
            if (axis != cuda::Fp8ScaleAxis::tensor && R > 5 && C > 5) {
              x[std::size_t(2 * C + 1)] = kNaN;     // row 2 / column 1: NaN scale, all NaN
              for (std::int64_t c = 0; c < C; ++c) x[std::size_t(4 * C + c)] = 0.f;  // row 4: amax 0 -> EPS
              x[std::size_t(3 * C + 4)] = -kInf;    // row 3 / column 4: scale 0
            }
            const Tensor xt = to_tensor(x, R, C);
            const float8::Granularity g =
                axis == cuda::Fp8ScaleAxis::tensor ? float8::Granularity::tensorwise : float8::Granularity::axiswise;
            const int reduce_dim = axis == cuda::Fp8ScaleAxis::per_column ? 0 : -1;
            const float8::Float8Tensor ref = float8::cast_to_float8(xt, f8, g, reduce_dim, pow2);
            const std::vector<float> want_amax = to_vector(float8::amax(xt, g, reduce_dim));
            const std::vector<float> want_scale = to_vector(ref.scale);
            std::vector<std::uint8_t> want(ref.data.data<std::uint8_t>(), ref.data.data<std::uint8_t>() + R * C);
            std::vector<std::uint8_t> want_t(std::size_t(R * C));
            for (std::int64_t r = 0; r < R; ++r)
              for (std::int64_t c = 0; c < C; ++c) want_t[c * R + r] = want[r * C + c];

            const std::int64_t ns = std::int64_t(want_scale.size());
            const Input in(x, dt, sh.offset);
            DeviceBuffer amax(ns, DType::f32), scale(ns, DType::f32), inv(ns, DType::f32), out(R * C, f8), out_t(R * C, f8);
            cuda::quantize_fp8(in.get(), dt, R, C, f8, axis, pow2, amax.as<float>(), scale.as<float>(), inv.as<float>(),
                               out.get(), out_t.get());
            const std::string what = std::string(dtype_name(dt)) + " -> " + std::string(dtype_name(f8)) + " " +
                                     axis_name(axis) + (pow2 ? " pow2" : "") + " [" + std::to_string(R) + ", " +
                                     std::to_string(C) + "] offset " + std::to_string(sh.offset);
            auto s_at = [&](std::int64_t r, std::int64_t c) {
              return axis == cuda::Fp8ScaleAxis::tensor ? want_scale[0]
                     : axis == cuda::Fp8ScaleAxis::per_row ? want_scale[r] : want_scale[c];
            };
            require_same_floats(amax.download(), want_amax, "amax " + what);
            require_same_floats(scale.download(), want_scale, "scale " + what);
            std::vector<float> want_inv(want_scale.size());
            for (std::size_t i = 0; i < want_inv.size(); ++i) want_inv[i] = 1.0f / want_scale[i];
            require_same_floats(inv.download(), want_inv, "scale_inv " + what);
            require_same_f8(download_bytes(out), want, f8, [&](std::size_t i) { return x[i]; },
                            [&](std::size_t i) { return s_at(std::int64_t(i) / C, std::int64_t(i) % C); }, "data " + what);
            require_same_f8(download_bytes(out_t), want_t, f8, [&](std::size_t i) { return x[(i % R) * C + i / R]; },
                            [&](std::size_t i) { return s_at(std::int64_t(i % R), std::int64_t(i / R)); },
                            "transposed data " + what);
            if (axis == cuda::Fp8ScaleAxis::per_row) {  // row-major only: the one-kernel rowwise quantize
              DeviceBuffer amax1(ns, DType::f32), scale1(ns, DType::f32), inv1(ns, DType::f32), out1(R * C, f8);
              cuda::quantize_fp8(in.get(), dt, R, C, f8, axis, pow2, amax1.as<float>(), scale1.as<float>(),
                                 inv1.as<float>(), out1.get(), nullptr);
              require_same_floats(amax1.download(), want_amax, "fused amax " + what);
              require_same_floats(scale1.download(), want_scale, "fused scale " + what);
              require_same_floats(inv1.download(), want_inv, "fused scale_inv " + what);
              require_same_f8(download_bytes(out1), want, f8, [&](std::size_t i) { return x[i]; },
                              [&](std::size_t i) { return s_at(std::int64_t(i) / C, std::int64_t(i) % C); },
                              "fused data " + what);
              DeviceBuffer out2(R * C, f8);  // without scale_inv
              cuda::quantize_fp8(in.get(), dt, R, C, f8, axis, pow2, amax1.as<float>(), scale1.as<float>(), nullptr,
                                 out2.get(), nullptr);
              REQUIRE(download_bytes(out2) == download_bytes(out1));
            }
            // The row-major-only path (vectorized where the shape allows) gives the same bytes.
            DeviceBuffer out2(R * C, f8);
            cuda::cast_to_fp8(in.get(), dt, R, C, f8, scale.as<float>(), axis, out2.get(), nullptr);
            REQUIRE(download_bytes(out2) == download_bytes(out));
          }
}

TEST_CASE("float8 kernels: argument errors are std::invalid_argument", "[gpu][float8]") {
  DeviceBuffer x(16, DType::f32), s(1, DType::f32), out(16, DType::f8e4m3);
  CHECK_THROWS_AS(cuda::cast_to_fp8(x.get(), DType::f32, 4, 4, DType::bf16, s.as<float>(), cuda::Fp8ScaleAxis::tensor,
                                    out.get(), nullptr),
                  std::invalid_argument);
  CHECK_THROWS_AS(cuda::cast_to_fp8(x.get(), DType::f16, 4, 4, DType::f8e4m3, s.as<float>(), cuda::Fp8ScaleAxis::tensor,
                                    out.get(), nullptr),
                  std::invalid_argument);
  CHECK_THROWS_AS(cuda::cast_to_fp8(x.get(), DType::f32, 4, 4, DType::f8e4m3, s.as<float>(), cuda::Fp8ScaleAxis::tensor,
                                    nullptr, nullptr),
                  std::invalid_argument);
  CHECK_THROWS_AS(cuda::amax_rowwise(x.get(), DType::f32, -1, 4, s.as<float>()), std::invalid_argument);
  CHECK_THROWS_AS(cuda::amax_to_scale(s.as<float>(), 1, DType::f32, false, s.as<float>(), nullptr), std::invalid_argument);
}
