#include "core/tensor.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "core/backend.hpp"
#include "core/memory_history.hpp"
#include "core/step_capture.hpp"

namespace titan {

std::string Device::str() const { return is_cpu() ? "cpu" : std::string(kind_name(kind)) + ":" + std::to_string(index); }

namespace {
// Every byte a storage holds comes from its device's backend (core/backend.hpp); this throws the
// registry's "this build has no ... backend" for a kind nobody registered.
Allocator& allocator_for(Device device) { return backend_for(device).allocator(device.index); }
}  // namespace

Storage::Storage(std::size_t bytes, Allocator& alloc)
    : data_(alloc.allocate(bytes)), bytes_(bytes), alloc_(&alloc), serial_(StepCapture::next_serial()) {
  memory_history::on_allocate(data_, bytes_, alloc_->device());
}
Storage::~Storage() { release(); }
void Storage::release() {
  if (data_) {
    memory_history::on_free(data_);
    // Inside a step capture, memory from before it is freed when the capture ends.
    if (!StepCapture::defer_free(serial_, data_, bytes_, *alloc_)) alloc_->deallocate(data_, bytes_);
  }
  data_ = nullptr;
}
void Storage::reallocate() {
  if (!data_) {
    data_ = alloc_->allocate(bytes_);
    serial_ = StepCapture::next_serial();
    memory_history::on_allocate(data_, bytes_, alloc_->device());
  }
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

Tensor Tensor::empty_in(const Shape& shape, DType dtype, Allocator& alloc) {
  for (auto d : shape)
    if (d < 0) throw std::invalid_argument("Tensor::empty: negative dimension in " + shape_str(shape));
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(static_cast<std::size_t>(numel_of(shape)) * dtype_size(dtype), alloc);
  return t;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) { return empty_in(shape, dtype, allocator_for(device)); }

Tensor Tensor::empty_pinned(const Shape& shape, DType dtype, Device device) {
  Allocator* pinned = device.is_cpu() ? nullptr : backend_for(device).pinned_host_allocator();
  return empty_in(shape, dtype, pinned ? *pinned : allocator_for(Device::cpu()));
}

Tensor Tensor::meta(const Shape& shape, DType dtype) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  backend_for(device).zero(t.raw(), t.nbytes());
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
  const std::int64_t t_numel = t.numel();
  for (std::int64_t i = 0; i < t_numel; ++i) store_element(dtype, t.raw(), i, values[i]);
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

Tensor Tensor::view_bytes(std::size_t byte_offset, const Shape& shape, DType dtype) const {
  const std::size_t bytes = static_cast<std::size_t>(numel_of(shape)) * dtype_size(dtype);
  if (byte_offset + bytes > nbytes() || byte_offset % dtype_size(dtype) != 0)
    throw std::out_of_range("Tensor::view_bytes: " + std::to_string(bytes) + " bytes at byte " +
                            std::to_string(byte_offset) + " of a " + std::to_string(nbytes()) +
                            "-byte tensor (or misaligned for the dtype)");
  Tensor t = *this;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.offset_ += byte_offset;
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
  const Device dst_device = device(), src_device = src.device();
  if (src.dtype() == dtype_) {
    copy_bytes(raw(), dst_device, src.raw(), src_device, nbytes());
  } else if (dst_device == src_device) {
    backend_for(dst_device).convert(src.raw(), src.dtype(), raw(), dtype_, numel());
  } else {  // another device and another dtype: convert on the host side, then one copy
    const Tensor host = dst_device.is_cpu() ? src.to(Device::cpu()) : src.to(dtype_);
    copy_from(host);
  }
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

void Tensor::fill(double value) const { backend_for(device()).fill(raw(), dtype_, numel(), value); }

double Tensor::item(std::int64_t i) const {
  if (i < 0 || i >= numel()) throw std::out_of_range("Tensor::item: " + std::to_string(i) + " of " + shape_str(shape_));
  if (!device().is_cpu()) return view_range(i, {1}).to(Device::cpu()).item(0);
  return load_element(dtype_, raw(), i);
}

std::vector<double> Tensor::to_vector() const {
  if (!device().is_cpu()) return to(Device::cpu()).to_vector();
  std::vector<double> v(static_cast<size_t>(numel()));
  for (std::int64_t i = 0; i < numel(); ++i) v[i] = load_element(dtype_, raw(), i);
  return v;
}

void Tensor::set(std::int64_t i, double value) const {
  if (!device().is_cpu()) {
    const Tensor one = Tensor::empty({1}, dtype_);
    one.set(0, value);
    view_range(i, {1}).copy_from(one);
    return;
  }
  store_element(dtype_, raw(), i, value);
}

}  // namespace titan
