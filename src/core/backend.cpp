// The backend registry and the CPU backend (backend.hpp).
#include "core/backend.hpp"

#include <unistd.h>

#include <array>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>
#include <stdexcept>

namespace titan {

namespace {

std::atomic<std::size_t> g_in_use{0}, g_peak{0}, g_cached{0}, g_peak_reserved{0};

void raise_to(std::atomic<std::size_t>& peak, std::size_t now) {
  std::size_t seen = peak.load();
  while (now > seen && !peak.compare_exchange_weak(seen, now)) {
  }
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCacheBlocks = false;  // ASan must see every free to catch use-after-free
#else
constexpr bool kCacheBlocks = true;
#endif

// Why a cache: a training step allocates and frees the same activation and gradient sizes every
// step. glibc serves blocks this large with fresh mmap'd pages, so without reuse every step pays a
// page fault and a kernel page clear per 4 KiB of every tensor (measured: 12% of a debug-model step
// on one core). Blocks of at least kMinCached bytes are rounded up to one of four sizes per power
// of two (waste under 25%) and kept on a free list per size after free; smaller ones stay with
// malloc, whose bins already reuse them. The cache never holds more than the peak of live bytes,
// so the process's footprint stays within 2x what tensors need (in practice, the same sizes
// return every step and little sits cached).
constexpr std::size_t kMinCached = 64 * 1024;

std::size_t size_class(std::size_t bytes) {
  if (bytes < kMinCached) return (bytes + 63) / 64 * 64;
  std::size_t top = std::size_t{1} << (63 - __builtin_clzll(bytes));  // largest power of 2 <= bytes
  const std::size_t quarter = top / 4;
  return (bytes + quarter - 1) / quarter * quarter;
}

class CpuAllocator final : public Allocator {
 public:
  void* allocate(std::size_t bytes) override {
    const std::size_t rounded = size_class(bytes);
    void* p = kCacheBlocks && rounded >= kMinCached ? take_cached(rounded) : nullptr;
    // 64-byte alignment: whole cache lines, and enough for any SIMD width BLAS uses.
    const bool fresh = !p;
    if (fresh) p = std::aligned_alloc(64, rounded + 64);
    if (!p) throw std::bad_alloc();
    const std::size_t now = g_in_use.fetch_add(bytes) + bytes;
    raise_to(g_peak, now);
    // Only a fresh block grows the reservation (a cached one moves from cached to in use).
    if (fresh) raise_to(g_peak_reserved, now + g_cached.load());
    return p;
  }
  void deallocate(void* ptr, std::size_t bytes) override {
    g_in_use.fetch_sub(bytes);
    const std::size_t rounded = size_class(bytes);
    if (kCacheBlocks && rounded >= kMinCached && keep_cached(ptr, rounded)) return;
    std::free(ptr);
  }
  Device device() const override { return Device::cpu(); }

 private:
  void* take_cached(std::size_t rounded) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(rounded);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    g_cached.fetch_sub(rounded);
    return p;
  }
  bool keep_cached(void* ptr, std::size_t rounded) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (g_cached.load() + rounded > g_peak.load()) release_all_locked();
    if (g_cached.load() + rounded > g_peak.load()) return false;
    free_[rounded].push_back(ptr);
    g_cached.fetch_add(rounded);
    return true;
  }
  void release_all_locked() {
    for (auto& [size, blocks] : free_) {
      for (void* p : blocks) std::free(p);
      g_cached.fetch_sub(size * blocks.size());
      blocks.clear();
    }
  }

  std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
};

// The host: one device, synchronous work, malloc'd memory counted by CpuAllocator.
// dst[i] = convert_one(src[i]) for n elements of type S (the result type names dst's); true.
template <class S, class F>
bool convert_loop(const void* src, void* dst, std::int64_t n, F convert_one) {
  using D = decltype(convert_one(S{}));
  const S* s = static_cast<const S*>(src);
  D* d = static_cast<D*>(dst);
  for (std::int64_t i = 0; i < n; ++i) d[i] = convert_one(s[i]);
  return true;
}

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
    // The conversions half-precision storage makes on every CPU op: one vectorizable loop each.
    auto is = [&](DType from, DType to) { return src_dtype == from && dst_dtype == to; };
    if ((is(DType::f32, DType::bf16) && convert_loop<float>(src, dst, n, f32_to_bf16)) ||
        (is(DType::bf16, DType::f32) && convert_loop<std::uint16_t>(src, dst, n, bf16_to_f32)) ||
        (is(DType::f32, DType::f16) && convert_loop<float>(src, dst, n, f32_to_f16)) ||
        (is(DType::f16, DType::f32) && convert_loop<std::uint16_t>(src, dst, n, f16_to_f32)) ||
        (is(DType::f64, DType::f32) && convert_loop<double>(src, dst, n, [](double x) { return static_cast<float>(x); })) ||
        (is(DType::f32, DType::f64) && convert_loop<float>(src, dst, n, [](float x) { return static_cast<double>(x); })))
      return;
    for (std::int64_t i = 0; i < n; ++i) store_element(dst_dtype, dst, i, load_element(src_dtype, src, i));
  }
  void synchronize(int) override {}
  MemoryStats memory_stats(int) const override {
    MemoryStats s;
    s.in_use = g_in_use.load();
    s.reserved = s.in_use + g_cached.load();
    s.peak = g_peak.load();
    s.peak_reserved = std::max(g_peak_reserved.load(), s.reserved);
    s.capacity = physical_memory();
    return s;
  }
  void reset_peak(int) override {
    g_peak.store(g_in_use.load());
    g_peak_reserved.store(g_in_use.load() + g_cached.load());
  }

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
