#pragma once
// Storage and Tensor (DESIGN.md section 3).
//
// A Tensor is a shared Storage + byte offset + shape + dtype + device. Tensors are always
// contiguous and row-major; a view is a contiguous slice of a storage (what FSDP needs for
// parameters that live inside one gathered buffer). Transposes are explicit ops or GEMM flags.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.hpp"

namespace titan {

struct Device {
  enum class Kind : std::uint8_t { cpu, cuda } kind = Kind::cpu;
  int index = 0;
  static Device cpu() { return {}; }
  static Device cuda(int i) { return {Kind::cuda, i}; }
  bool is_cpu() const { return kind == Kind::cpu; }
  bool operator==(const Device&) const = default;
  std::string str() const;  // "cpu" or "cuda:N"
};

// Where storage bytes come from: each device kind's backend hands out its allocator
// (core/backend.hpp). The CPU allocator is aligned malloc with byte counters; other backends
// register theirs from outside core.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void deallocate(void* ptr, std::size_t bytes) = 0;
  virtual Device device() const = 0;
};
Allocator& cpu_allocator();
// Bytes currently allocated / the peak since start (or since the last reset) by the CPU allocator.
std::size_t cpu_bytes_in_use();
std::size_t cpu_peak_bytes();
void reset_cpu_peak_bytes();

class Storage {
 public:
  Storage(std::size_t bytes, Allocator& alloc);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  // FSDP's trick (PyTorch's storage resize to 0 and back): the memory is returned while every
  // view of this storage stays valid, and allocated again (contents undefined) before reuse.
  // Autograd's saved tensors are such views, so a re-gather refills what backward reads.
  void release();
  void reallocate();
  bool allocated() const { return data_ != nullptr; }
  Device device() const { return alloc_->device(); }

 private:
  void* data_;
  std::size_t bytes_;
  Allocator* alloc_;
  std::uint64_t serial_;  // when data_ was allocated (core/step_capture.hpp)
};

using Shape = std::vector<std::int64_t>;
std::int64_t numel_of(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 3, 4]"

class Tensor {
 public:
  Tensor() = default;  // undefined tensor
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  // A host tensor in the memory `device` copies to and from fastest: its backend's pinned host
  // memory where it has one (CUDA), else ordinary host memory (core/backend.hpp).
  static Tensor empty_pinned(const Shape& shape, DType dtype, Device device);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
  // A CPU tensor holding `values` converted to `dtype`.
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::f32);

  // A shape-and-dtype-only tensor without storage (PyTorch's meta device): lets a 405B model be
  // described, counted and planned without allocating it.
  static Tensor meta(const Shape& shape, DType dtype = DType::f32);

  bool defined() const { return storage_ != nullptr; }
  bool is_meta() const { return !storage_ && !shape_.empty(); }
  const Shape& shape() const { return shape_; }
  std::int64_t dim() const { return static_cast<std::int64_t>(shape_.size()); }
  std::int64_t size(std::int64_t d) const { return shape_.at(d < 0 ? d + dim() : d); }
  std::int64_t numel() const { return numel_of(shape_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
  std::size_t offset_bytes() const { return offset_; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  void* raw() const { return static_cast<char*>(storage_->data()) + offset_; }
  template <class T>
  T* data() const { return static_cast<T*>(raw()); }

  // Same storage, new shape with the same number of elements.
  Tensor view(const Shape& shape) const;
  // Rows [begin, end) along dim 0: a view into the same storage.
  Tensor slice_rows(std::int64_t begin, std::int64_t end) const;
  // The tensor as a flat view of `count` elements starting at element `start`, reshaped.
  Tensor view_range(std::int64_t start, const Shape& shape) const;
  // The bytes [byte_offset, byte_offset + size) of this tensor read as `dtype` with `shape`: a view
  // into the same storage (FSDP packs shards of several dtypes into one byte buffer this way).
  // byte_offset must be a multiple of the dtype's size.
  Tensor view_bytes(std::size_t byte_offset, const Shape& shape, DType dtype) const;
  // A copy with its own storage.
  Tensor clone() const;
  // Writes go to the shared storage, so they are const on the handle (as in PyTorch).
  // Copies values from `src` (same numel; converts dtype).
  void copy_from(const Tensor& src) const;
  // Converted copy on the same device (same values rounded to `dtype`).
  Tensor to(DType dtype) const;
  // Copy on another device (same dtype); the non-CPU side's backend moves the bytes.
  Tensor to(Device device) const;
  void fill(double value) const;
  // Element i as double (any dtype); for tests, printing and small reads.
  double item(std::int64_t i = 0) const;
  std::vector<double> to_vector() const;
  void set(std::int64_t i, double value) const;

 private:
  // An uninitialised tensor whose storage comes from `alloc` (empty and empty_pinned).
  static Tensor empty_in(const Shape& shape, DType dtype, Allocator& alloc);
  std::shared_ptr<Storage> storage_;
  std::size_t offset_ = 0;
  Shape shape_;
  DType dtype_ = DType::f32;
};

}  // namespace titan
