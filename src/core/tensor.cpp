#include "core/tensor.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#ifdef TITAN_WITH_CUDA
#include "kernels/elementwise.hpp"
#include "kernels/runtime.hpp"
#endif

namespace titan {

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

namespace {

std::atomic<std::size_t> g_in_use{0}, g_peak{0};

class CpuAllocator final : public Allocator {
 public:
  void* allocate(std::size_t bytes) override {
    // 64-byte alignment: whole cache lines, and enough for any SIMD width BLAS uses.
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
    if (!p) throw std::bad_alloc();
    const std::size_t now = g_in_use.fetch_add(bytes) + bytes;
    std::size_t peak = g_peak.load();
    while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
    }
    return p;
  }
  void deallocate(void* ptr, std::size_t bytes) override {
    std::free(ptr);
    g_in_use.fetch_sub(bytes);
  }
  Device device() const override { return Device::cpu(); }
};

template <class F>
void dispatch_store(DType dt, void* base, std::int64_t i, F&& value) {
  const double v = value;
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

double load(DType dt, const void* base, std::int64_t i) {
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

#ifdef TITAN_WITH_CUDA
// Device memory from the CUDA runtime's stream-ordered pool (kernels/runtime.hpp). A process
// drives one GPU (the rank's local one), chosen by the first allocation on it.
class CudaAllocator final : public Allocator {
 public:
  explicit CudaAllocator(int index) : index_(index) {}
  void* allocate(std::size_t bytes) override {
    cuda::set_device(index_);
    return cuda::allocate(bytes);
  }
  void deallocate(void* ptr, std::size_t bytes) override { cuda::deallocate(ptr, bytes); }
  Device device() const override { return Device::cuda(index_); }

 private:
  int index_;
};

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) return cpu_allocator();
  static CudaAllocator alloc(device.index);
  if (alloc.device() != device)
    throw std::logic_error("Tensor: this process uses " + alloc.device().str() + ", not " + device.str());
  return alloc;
}
#else
Allocator& allocator_for(Device device) {
  if (!device.is_cpu())
    throw std::invalid_argument("Tensor: " + device.str() + " asked for, but this build has no CUDA backend (nvcc was not found)");
  return cpu_allocator();
}
#endif

}  // namespace

Allocator& cpu_allocator() {
  static CpuAllocator alloc;
  return alloc;
}
std::size_t cpu_bytes_in_use() { return g_in_use.load(); }
std::size_t cpu_peak_bytes() { return g_peak.load(); }
void reset_cpu_peak_bytes() { g_peak.store(g_in_use.load()); }

Storage::Storage(std::size_t bytes, Allocator& alloc) : data_(alloc.allocate(bytes)), bytes_(bytes), alloc_(&alloc) {}
Storage::~Storage() { release(); }
void Storage::release() {
  if (data_) alloc_->deallocate(data_, bytes_);
  data_ = nullptr;
}
void Storage::reallocate() {
  if (!data_) data_ = alloc_->allocate(bytes_);
}

std::int64_t numel_of(const Shape& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (auto d : shape)
    if (d < 0) throw std::invalid_argument("Tensor::empty: negative dimension in " + shape_str(shape));
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(static_cast<std::size_t>(numel_of(shape)) * dtype_size(dtype), allocator_for(device));
  return t;
}

Tensor Tensor::meta(const Shape& shape, DType dtype) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
#ifdef TITAN_WITH_CUDA
  if (!device.is_cpu()) {
    cuda::memset_zero(t.raw(), t.nbytes());
    return t;
  }
#endif
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill(value);
  return t;
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype) {
  if (static_cast<std::int64_t>(values.size()) != numel_of(shape))
    throw std::invalid_argument("Tensor::from_vector: " + std::to_string(values.size()) + " values for shape " + shape_str(shape));
  Tensor t = empty(shape, dtype);
  for (std::int64_t i = 0; i < t.numel(); ++i) dispatch_store(dtype, t.raw(), i, values[i]);
  return t;
}

Tensor Tensor::view(const Shape& shape) const {
  if (numel_of(shape) != numel())
    throw std::invalid_argument("Tensor::view: " + shape_str(shape_) + " cannot be viewed as " + shape_str(shape));
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::slice_rows(std::int64_t begin, std::int64_t end) const {
  if (dim() == 0 || begin < 0 || end < begin || end > shape_[0])
    throw std::out_of_range("Tensor::slice_rows: [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " + shape_str(shape_));
  Tensor t = *this;
  t.shape_[0] = end - begin;
  t.offset_ += static_cast<std::size_t>(begin * (numel() / std::max<std::int64_t>(shape_[0], 1))) * dtype_size(dtype_);
  return t;
}

Tensor Tensor::view_range(std::int64_t start, const Shape& shape) const {
  if (start < 0 || start + numel_of(shape) > numel())
    throw std::out_of_range("Tensor::view_range: elements [" + std::to_string(start) + ", +" +
                            std::to_string(numel_of(shape)) + ") of " + shape_str(shape_));
  Tensor t = *this;
  t.shape_ = shape;
  t.offset_ += static_cast<std::size_t>(start) * dtype_size(dtype_);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device());
  t.copy_from(*this);
  return t;
}

void Tensor::copy_from(const Tensor& src) const {
  if (src.numel() != numel())
    throw std::invalid_argument("copy_from: " + shape_str(src.shape()) + " into " + shape_str(shape_));
#ifdef TITAN_WITH_CUDA
  if (!device().is_cpu() || !src.device().is_cpu()) {
    if (src.dtype() == dtype_) {
      cuda::copy(raw(), src.raw(), nbytes());  // any direction
    } else if (!device().is_cpu() && !src.device().is_cpu()) {
      cuda::convert(src.raw(), src.dtype(), raw(), dtype_, numel());
    } else {  // convert on the host side, then one copy
      const Tensor host = device().is_cpu() ? src.to(Device::cpu()) : src.to(dtype_);
      copy_from(host);
    }
    return;
  }
#endif
  if (src.dtype() == dtype_) {
    std::memmove(raw(), src.raw(), nbytes());
    return;
  }
  for (std::int64_t i = 0; i < numel(); ++i) dispatch_store(dtype_, raw(), i, load(src.dtype(), src.raw(), i));
}

Tensor Tensor::to(DType dtype) const {
  Tensor t = empty(shape_, dtype, device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device device) const {
  Tensor t = empty(shape_, dtype_, device);
  t.copy_from(*this);
  return t;
}

void Tensor::fill(double value) const {
#ifdef TITAN_WITH_CUDA
  if (!device().is_cpu()) {
    cuda::fill(raw(), dtype_, numel(), value);
    return;
  }
#endif
  for (std::int64_t i = 0; i < numel(); ++i) dispatch_store(dtype_, raw(), i, value);
}

double Tensor::item(std::int64_t i) const {
  if (i < 0 || i >= numel()) throw std::out_of_range("Tensor::item: " + std::to_string(i) + " of " + shape_str(shape_));
  if (!device().is_cpu()) return view_range(i, {1}).to(Device::cpu()).item(0);
  return load(dtype_, raw(), i);
}

std::vector<double> Tensor::to_vector() const {
  if (!device().is_cpu()) return to(Device::cpu()).to_vector();
  std::vector<double> v(static_cast<size_t>(numel()));
  for (std::int64_t i = 0; i < numel(); ++i) v[i] = load(dtype_, raw(), i);
  return v;
}

void Tensor::set(std::int64_t i, double value) const {
  if (!device().is_cpu()) {
    const Tensor one = Tensor::empty({1}, dtype_);
    one.set(0, value);
    view_range(i, {1}).copy_from(one);
    return;
  }
  dispatch_store(dtype_, raw(), i, value);
}

}  // namespace titan
