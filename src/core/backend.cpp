// The backend registry and the CPU backend (backend.hpp).
#include "core/backend.hpp"

#include <unistd.h>

#include <array>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

namespace titan {

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

// The host: one device, synchronous work, malloc'd memory counted by CpuAllocator.
class CpuBackend final : public DeviceBackend {
 public:
  Device::Kind kind() const override { return Device::Kind::cpu; }
  int device_count() const override { return 1; }
  DeviceProperties properties(int) const override {
    DeviceProperties p;
    p.name = p.description = "cpu";
    p.total_memory = physical_memory();
    return p;  // peaks 0: the trainer measures the CPU's GEMM peak itself
  }
  Allocator& allocator(int) override { return cpu_allocator(); }
  void copy(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes) override {
    if (!dst_device.is_cpu() || !src_device.is_cpu())
      throw std::logic_error("cpu backend: cannot copy " + src_device.str() + " -> " + dst_device.str());
    if (bytes) std::memmove(dst, src, bytes);
  }
  void zero(void* dst, std::size_t bytes) override {
    if (bytes) std::memset(dst, 0, bytes);
  }
  void fill(void* dst, DType dtype, std::int64_t n, double value) override {
    for (std::int64_t i = 0; i < n; ++i) store_element(dtype, dst, i, value);
  }
  void convert(const void* src, DType src_dtype, void* dst, DType dst_dtype, std::int64_t n) override {
    if (src_dtype == dst_dtype) {
      std::memmove(dst, src, static_cast<std::size_t>(n) * dtype_size(dst_dtype));
      return;
    }
    // The conversions bf16 storage makes on every CPU op: one vectorizable loop each.
    if (src_dtype == DType::f32 && dst_dtype == DType::bf16) {
      const float* s = static_cast<const float*>(src);
      auto* d = static_cast<std::uint16_t*>(dst);
      for (std::int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(s[i]);
      return;
    }
    if (src_dtype == DType::bf16 && dst_dtype == DType::f32) {
      const auto* s = static_cast<const std::uint16_t*>(src);
      float* d = static_cast<float*>(dst);
      for (std::int64_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
      return;
    }
    if (src_dtype == DType::f64 && dst_dtype == DType::f32) {
      const double* s = static_cast<const double*>(src);
      float* d = static_cast<float*>(dst);
      for (std::int64_t i = 0; i < n; ++i) d[i] = static_cast<float>(s[i]);
      return;
    }
    if (src_dtype == DType::f32 && dst_dtype == DType::f64) {
      const float* s = static_cast<const float*>(src);
      double* d = static_cast<double*>(dst);
      for (std::int64_t i = 0; i < n; ++i) d[i] = s[i];
      return;
    }
    for (std::int64_t i = 0; i < n; ++i) store_element(dst_dtype, dst, i, load_element(src_dtype, src, i));
  }
  void synchronize(int) override {}
  MemoryStats memory_stats(int) const override {
    MemoryStats s;
    s.in_use = s.reserved = g_in_use.load();
    s.peak = g_peak.load();
    s.capacity = physical_memory();
    return s;
  }
  void reset_peak(int) override { g_peak.store(g_in_use.load()); }

 private:
  static std::size_t physical_memory() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) : 0;
  }
};

constexpr std::size_t kKinds = 2;  // Device::Kind's values

// A function-local static, so a backend registering from another file's static initialiser
// finds the table constructed whatever the initialisation order. The CPU backend is there from
// the start: core is always linked, so nothing can drop it.
std::array<std::atomic<DeviceBackend*>, kKinds>& registry() {
  static CpuBackend cpu;
  static std::array<std::atomic<DeviceBackend*>, kKinds> table{&cpu, nullptr};
  return table;
}

std::size_t slot(Device::Kind kind) {
  const auto i = static_cast<std::size_t>(kind);
  if (i >= kKinds) throw std::logic_error("backend registry: unknown device kind " + std::to_string(i));
  return i;
}

}  // namespace

Allocator& cpu_allocator() {
  static CpuAllocator alloc;
  return alloc;
}
std::size_t cpu_bytes_in_use() { return g_in_use.load(); }
std::size_t cpu_peak_bytes() { return g_peak.load(); }
void reset_cpu_peak_bytes() { g_peak.store(g_in_use.load()); }

const char* kind_name(Device::Kind kind) {
  switch (kind) {
    case Device::Kind::cpu: return "cpu";
    case Device::Kind::cuda: return "cuda";
  }
  return "?";
}

void register_backend(Device::Kind kind, DeviceBackend* backend) { registry()[slot(kind)].store(backend); }

bool has_backend(Device::Kind kind) { return registry()[slot(kind)].load() != nullptr; }

DeviceBackend& backend_for(Device::Kind kind) {
  DeviceBackend* b = registry()[slot(kind)].load();
  if (!b) {
    std::string upper = kind_name(kind);
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    throw std::invalid_argument(std::string(kind_name(kind)) + " device asked for, but this build has no " + upper +
                                " backend (none was compiled in: CMake builds it only when it finds that backend's toolkit)");
  }
  return *b;
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes) {
  backend_for(dst_device.is_cpu() ? src_device : dst_device).copy(dst, dst_device, src, src_device, bytes);
}

}  // namespace titan
