#pragma once
// Helpers for the GPU tests: device buffers filled from host vectors in a storage dtype,
// poisoned outputs (NaN bytes, so a kernel that skips an element fails), and comparisons with
// per-dtype tolerances against the CPU reference.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "core/tensor.hpp"
#include "runtime.hpp"

namespace titan::gpu_test {

// A device allocation of `n` elements of `dtype` (f32, bf16, f16, f8e4m3, f8e5m2, i32, i64).
class DeviceBuffer {
 public:
  DeviceBuffer(std::int64_t n, DType dtype) : n_(n), dtype_(dtype), bytes_(std::size_t(n) * dtype_size(dtype)) {
    ptr_ = cuda::allocate(bytes_);
    poison();
  }
  DeviceBuffer(const std::vector<float>& values, DType dtype) : DeviceBuffer(std::int64_t(values.size()), dtype) {
    upload(values);
  }
  ~DeviceBuffer() { cuda::deallocate(ptr_, bytes_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  std::int64_t size() const { return n_; }
  DType dtype() const { return dtype_; }

  // All bytes 0xFF: NaN in every float format (and -1 in the integer ones).
  void poison() {
    std::vector<unsigned char> host(bytes_, 0xFF);
    cuda::copy(ptr_, host.data(), bytes_);
  }
  void upload(const std::vector<float>& values) {
    REQUIRE(std::int64_t(values.size()) == n_);
    std::vector<unsigned char> host(bytes_);
    for (std::int64_t i = 0; i < n_; ++i) encode(values[i], host.data() + std::size_t(i) * dtype_size(dtype_));
    cuda::copy(ptr_, host.data(), bytes_);
  }
  void upload_ints(const std::vector<std::int64_t>& values) {
    REQUIRE(std::int64_t(values.size()) == n_);
    std::vector<unsigned char> host(bytes_);
    for (std::int64_t i = 0; i < n_; ++i) {
      if (dtype_ == DType::i64) std::memcpy(host.data() + i * 8, &values[i], 8);
      else {
        const std::int32_t v = std::int32_t(values[i]);
        std::memcpy(host.data() + i * 4, &v, 4);
      }
    }
    cuda::copy(ptr_, host.data(), bytes_);
  }
  std::vector<float> download() const {
    std::vector<unsigned char> host(bytes_);
    cuda::copy(host.data(), ptr_, bytes_);
    std::vector<float> out(static_cast<std::size_t>(n_));
    for (std::int64_t i = 0; i < n_; ++i) out[std::size_t(i)] = decode(host.data() + std::size_t(i) * dtype_size(dtype_));
    return out;
  }

 private:
  void encode(float v, unsigned char* dst) const {
    switch (dtype_) {
      case DType::f32: std::memcpy(dst, &v, 4); break;
      case DType::bf16: { const std::uint16_t b = f32_to_bf16(v); std::memcpy(dst, &b, 2); break; }
      case DType::f16: { const std::uint16_t b = f32_to_f16(v); std::memcpy(dst, &b, 2); break; }
      case DType::f8e4m3: *dst = f32_to_f8e4m3(v); break;
      case DType::f8e5m2: *dst = f32_to_f8e5m2(v); break;
      default: FAIL("DeviceBuffer::upload: use upload_ints for integer dtypes");
    }
  }
  float decode(const unsigned char* src) const {
    switch (dtype_) {
      case DType::f32: { float v; std::memcpy(&v, src, 4); return v; }
      case DType::bf16: { std::uint16_t b; std::memcpy(&b, src, 2); return bf16_to_f32(b); }
      case DType::f16: { std::uint16_t b; std::memcpy(&b, src, 2); return f16_to_f32(b); }
      case DType::f8e4m3: return f8e4m3_to_f32(*src);
      case DType::f8e5m2: return f8e5m2_to_f32(*src);
      case DType::i32: { std::int32_t v; std::memcpy(&v, src, 4); return float(v); }
      case DType::i64: { std::int64_t v; std::memcpy(&v, src, 8); return float(v); }
      default: return NAN;
    }
  }
  std::int64_t n_;
  DType dtype_;
  std::size_t bytes_;
  void* ptr_ = nullptr;
};

inline std::vector<float> random_vector(std::int64_t n, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = dist(gen);
  return v;
}

// Rounds every value through `dtype` (what the GPU sees after upload), so the CPU reference
// computes on exactly the GPU's inputs.
inline std::vector<float> rounded(std::vector<float> v, DType dtype) {
  if (dtype == DType::bf16)
    for (auto& x : v) x = bf16_to_f32(f32_to_bf16(x));
  return v;
}

// Relative tolerance per storage dtype: f32 outputs ~1e-5, bf16 outputs one rounding (2^-8).
inline double tolerance_for(DType dtype) { return dtype == DType::bf16 ? 1e-2 : 1e-5; }

// |got - want| <= tol * (|want| + floor), floor = tol-scaled max |want| (so values near zero
// are judged against the tensor's scale); no NaN/inf in `got` unless `want` has one there.
inline void require_close(const std::vector<float>& got, const std::vector<double>& want, double rel_tol,
                          const std::string& what) {
  REQUIRE(got.size() == want.size());
  double max_abs = 0;
  for (double w : want) max_abs = std::max(max_abs, std::fabs(w));
  std::size_t bad = 0, first = got.size();
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(double(got[i]) - want[i]);
    const bool ok = std::isfinite(got[i]) && err <= rel_tol * (std::fabs(want[i]) + 0.1 * max_abs);
    if (!ok) {
      if (first == got.size()) first = i;
      ++bad;
    }
    if (std::isfinite(err)) worst = std::max(worst, err / (std::fabs(want[i]) + 0.1 * max_abs + 1e-30));
  }
  INFO(what << ": " << bad << " of " << got.size() << " elements outside rel tol " << rel_tol << " (worst " << worst
            << "; first at " << first << ": got " << (first < got.size() ? got[first] : 0.f) << " want "
            << (first < got.size() ? want[first] : 0.0) << ")");
  REQUIRE(bad == 0);
}
inline void require_close(const std::vector<float>& got, const std::vector<float>& want, double rel_tol,
                          const std::string& what) {
  require_close(got, std::vector<double>(want.begin(), want.end()), rel_tol, what);
}

// A tensor's values as float32 on the host (any float dtype, on any device).
inline std::vector<float> host_floats(const Tensor& t) {
  const Tensor h = t.to(Device::cpu()).to(DType::f32);
  return std::vector<float>(h.data<float>(), h.data<float>() + h.numel());
}

// AdamW's lists for a CPU-against-GPU test: the given parameters and gradients with zero moments
// on the host, and copies of all four on `gpu`.
struct AdamWLists {
  std::vector<Tensor> p, g, m, v, pg, gg, mg, vg;
};
inline AdamWLists adamw_lists(const std::vector<Tensor>& params, const std::vector<Tensor>& grads, Device gpu) {
  AdamWLists l;
  for (size_t i = 0; i < params.size(); ++i) {
    l.p.push_back(params[i]);
    l.g.push_back(grads[i]);
    l.m.push_back(Tensor::zeros(params[i].shape()));
    l.v.push_back(Tensor::zeros(params[i].shape()));
    l.pg.push_back(l.p.back().to(gpu));
    l.gg.push_back(l.g.back().to(gpu));
    l.mg.push_back(l.m.back().to(gpu));
    l.vg.push_back(l.v.back().to(gpu));
  }
  return l;
}

}  // namespace titan::gpu_test
