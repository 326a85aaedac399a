// The device backend registry (core/backend.hpp): the CPU backend is there, its allocate / copy /
// fill / convert give core/dtype.hpp's values, its byte counters move, a missing backend is a
// clear error, and Tensor and probe_devices reach a device only through the registry.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "core/backend.hpp"
#include "core/device.hpp"
#include "core/memory_history.hpp"
#include "core/tensor.hpp"

using namespace titan;
using Catch::Matchers::Contains;

namespace {

std::uint16_t bf16_bits(const Tensor& t, std::int64_t i) { return t.data<std::uint16_t>()[i]; }
std::uint8_t byte_at(const Tensor& t, std::int64_t i) { return t.data<std::uint8_t>()[i]; }

// Puts a backend in place for one test and restores whatever was registered before.
class ScopedBackend {
 public:
  ScopedBackend(Device::Kind kind, DeviceBackend* backend)
      : kind_(kind), previous_(has_backend(kind) ? &backend_for(kind) : nullptr) {
    register_backend(kind, backend);
  }
  ~ScopedBackend() { register_backend(kind_, previous_); }

 private:
  Device::Kind kind_;
  DeviceBackend* previous_;
};

// Host memory (malloc) that counts its allocations, reported as `where`'s.
struct CountingAlloc final : Allocator {
  explicit CountingAlloc(Device where) : where(where) {}
  Device where;
  int allocs = 0, frees = 0;
  void* allocate(std::size_t bytes) override {
    ++allocs;
    return std::malloc(bytes + 1);
  }
  void deallocate(void* p, std::size_t) override {
    ++frees;
    std::free(p);
  }
  Device device() const override { return where; }
};

// A pretend accelerator over host memory that counts what reaches it.
struct FakeBackend final : DeviceBackend {
  CountingAlloc alloc{Device::cuda(0)};
  int copies = 0, zeros = 0, fills = 0, converts = 0, syncs = 0;

  Device::Kind kind() const override { return Device::Kind::cuda; }
  int device_count() const override { return 3; }
  DeviceProperties properties(int index) const override {
    DeviceProperties p;
    p.name = "Fake";
    p.description = "Fake accelerator #" + std::to_string(index);
    p.total_memory = 12345;
    p.peak_bf16_flops = 1e15;
    return p;
  }
  Allocator& allocator(int) override { return alloc; }
  void copy(void* dst, Device, const void* src, Device, std::size_t bytes) override {
    ++copies;
    std::memmove(dst, src, bytes);
  }
  void zero(void* dst, std::size_t bytes) override {
    ++zeros;
    std::memset(dst, 0, bytes);
  }
  void fill(void* dst, DType dtype, std::int64_t n, double value) override {
    ++fills;
    for (std::int64_t i = 0; i < n; ++i) store_element(dtype, dst, i, value);
  }
  void convert(const void* src, DType sdt, void* dst, DType ddt, std::int64_t n) override {
    ++converts;
    for (std::int64_t i = 0; i < n; ++i) store_element(ddt, dst, i, load_element(sdt, src, i));
  }
  void synchronize(int) override { ++syncs; }
  MemoryStats memory_stats(int) const override { return {}; }
  void reset_peak(int) override {}
  // Host memory it would pin, when a test asks for one.
  CountingAlloc pinned{Device::cpu()};
  bool has_pinned = false;
  Allocator* pinned_host_allocator() override { return has_pinned ? &pinned : nullptr; }
};

}  // namespace

TEST_CASE("backend: pinned host tensors come from the device backend's pinned allocator, else plain host memory") {
  FakeBackend fake;
  ScopedBackend scoped(Device::Kind::cuda, &fake);
  {
    Tensor plain = Tensor::empty_pinned({4, 3}, DType::bf16, Device::cuda(0));  // no pinned allocator
    CHECK(plain.device().is_cpu());
    CHECK(fake.alloc.allocs == 0);
  }
  fake.has_pinned = true;
  {
    Tensor pinned = Tensor::empty_pinned({4, 3}, DType::f32, Device::cuda(0));
    CHECK(pinned.device().is_cpu());  // host memory, usable by host code as any CPU tensor
    CHECK(pinned.shape() == Shape{4, 3});
    CHECK(fake.pinned.allocs == 1);
    pinned.fill(2.5);
    CHECK(pinned.item(11) == 2.5);
    Tensor on_device = pinned.to(Device::cuda(0));  // crosses through the backend's copy
    CHECK(fake.copies == 1);
    CHECK(on_device.to(Device::cpu()).item(5) == 2.5);
    Tensor for_cpu = Tensor::empty_pinned({2}, DType::f32, Device::cpu());  // the CPU pins nothing
    CHECK(fake.pinned.allocs == 1);
  }
  CHECK(fake.pinned.frees == 1);
}

TEST_CASE("backend: the CPU backend is registered in core") {
  REQUIRE(has_backend(Device::Kind::cpu));
  DeviceBackend& cpu = backend_for(Device::cpu());
  CHECK(cpu.kind() == Device::Kind::cpu);
  CHECK(cpu.device_count() == 1);
  const DeviceProperties p = cpu.properties(0);
  CHECK(p.name == "cpu");
  CHECK(p.total_memory > 0);
  CHECK(p.peak_bf16_flops == 0);  // the trainer measures the CPU's GEMM peak
  CHECK(cpu.memory_stats(0).capacity == p.total_memory);
  cpu.synchronize(0);  // a no-op, but it must exist
  CHECK(std::string(kind_name(Device::Kind::cuda)) == "cuda");
}

TEST_CASE("backend: the CUDA backend is registered exactly when the build has it") {
  // The CUDA backend registers from a static initialiser in an object nothing names; this fails
  // if the linker dropped it (e.g. linked from the static library instead of as an object).
#ifdef TITAN_WITH_CUDA
  REQUIRE(has_backend(Device::Kind::cuda));
  DeviceBackend& gpu = backend_for(Device::Kind::cuda);
  CHECK(gpu.kind() == Device::Kind::cuda);
  CHECK(gpu.device_count() >= 0);  // 0 without a GPU: not an error
  CHECK(probe_devices(0).cuda_built);
#else
  CHECK_FALSE(has_backend(Device::Kind::cuda));
  CHECK_FALSE(probe_devices(0).cuda_built);
#endif
}

TEST_CASE("backend: CPU allocate / copy / zero / fill / convert through the registry") {
  DeviceBackend& cpu = backend_for(Device::Kind::cpu);
  Allocator& alloc = cpu.allocator(0);
  CHECK(&alloc == &cpu_allocator());
  void* p = alloc.allocate(100);
  CHECK(reinterpret_cast<std::uintptr_t>(p) % 64 == 0);
  alloc.deallocate(p, 100);

  // copy: bytes arrive unchanged, through the CPU backend or copy_bytes
  std::vector<std::uint8_t> a(37), b(37, 0), c(37, 0);
  for (int i = 0; i < 37; ++i) a[i] = static_cast<std::uint8_t>(i * 7 + 1);
  cpu.copy(b.data(), Device::cpu(), a.data(), Device::cpu(), a.size());
  copy_bytes(c.data(), Device::cpu(), a.data(), Device::cpu(), a.size());
  CHECK(b == a);
  CHECK(c == a);

  // zero clears every byte
  std::vector<std::int64_t> ints(5, -1);
  cpu.zero(ints.data(), ints.size() * sizeof(std::int64_t));
  CHECK(ints == std::vector<std::int64_t>(5, 0));

  // fill rounds to nearest even: 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125 -> 1.0
  std::vector<std::uint16_t> h(3, 0);
  cpu.fill(h.data(), DType::bf16, 3, 1.00390625);
  CHECK(h == std::vector<std::uint16_t>(3, 0x3F80));
  std::vector<std::int32_t> i32(2, 0);
  cpu.fill(i32.data(), DType::i32, 2, 7.0);
  CHECK(i32 == std::vector<std::int32_t>{7, 7});

  // convert: RNE ties to even both ways, float8 saturates and keeps NaN, as core/dtype.hpp
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> src = {1.00390625f, 1.01171875f, -2.5f, 500.0f, -1e6f, nan, 0.0f};
  std::vector<std::uint16_t> bf(src.size());
  cpu.convert(src.data(), DType::f32, bf.data(), DType::bf16, std::int64_t(src.size()));
  CHECK(bf[0] == 0x3F80);  // tie -> even (down)
  CHECK(bf[1] == 0x3F82);  // tie -> even (up)
  for (std::size_t i = 0; i < src.size(); ++i) CHECK(bf[i] == f32_to_bf16(src[i]));
  std::vector<std::uint8_t> e4(src.size()), e5(src.size());
  cpu.convert(src.data(), DType::f32, e4.data(), DType::f8e4m3, std::int64_t(src.size()));
  cpu.convert(src.data(), DType::f32, e5.data(), DType::f8e5m2, std::int64_t(src.size()));
  CHECK(f8e4m3_to_f32(e4[3]) == 448.0f);   // saturates, no inf in e4m3fn
  CHECK(f8e4m3_to_f32(e4[4]) == -448.0f);
  CHECK(std::isnan(f8e4m3_to_f32(e4[5])));
  CHECK(f8e5m2_to_f32(e5[4]) == -57344.0f);
  CHECK(std::isnan(f8e5m2_to_f32(e5[5])));
  for (std::size_t i = 0; i < src.size(); ++i) {
    CHECK(e4[i] == f32_to_f8e4m3(src[i]));
    CHECK(e5[i] == f32_to_f8e5m2(src[i]));
  }
  // and back: bf16 -> f32 is exact
  std::vector<float> back(src.size());
  cpu.convert(bf.data(), DType::bf16, back.data(), DType::f32, std::int64_t(src.size()));
  CHECK(back[2] == -2.5f);
  CHECK(back[0] == 1.0f);

  // Tensor's conversions are the backend's: the same bits
  const Tensor t = Tensor::from_vector({1.00390625, 1.01171875, -2.5, 500.0}, {4});
  const Tensor tb = t.to(DType::bf16), t8 = t.to(DType::f8e4m3);
  for (int i = 0; i < 4; ++i) {
    CHECK(bf16_bits(tb, i) == bf[i]);
    CHECK(byte_at(t8, i) == e4[i]);
  }
  Tensor f = Tensor::full({3}, 1.00390625, DType::bf16);
  CHECK(bf16_bits(f, 2) == 0x3F80);
  CHECK(Tensor::zeros({4}, DType::i64).to_vector() == std::vector<double>(4, 0.0));
}

TEST_CASE("backend: CPU memory stats: in use, peak and reset move as allocations do") {
  DeviceBackend& cpu = backend_for(Device::Kind::cpu);
  const std::size_t before = cpu.memory_stats(0).in_use;
  cpu.reset_peak(0);
  CHECK(cpu.memory_stats(0).peak == before);
  {
    const Tensor a = Tensor::empty({1000});  // 4000 bytes
    MemoryStats s = cpu.memory_stats(0);
    CHECK(s.in_use == before + 4000);
    CHECK(s.peak >= before + 4000);
    // in use + the freed large blocks the allocator keeps for reuse (earlier tests of this
    // process may have left some)
    CHECK(s.reserved >= s.in_use);
    CHECK(s.capacity > 0);
    {
      const Tensor b = Tensor::empty({500}, DType::f64);  // 4000 more
      CHECK(cpu.memory_stats(0).in_use == before + 8000);
    }
    s = cpu.memory_stats(0);
    CHECK(s.in_use == before + 4000);
    CHECK(s.peak >= before + 8000);  // the peak remembers b
    cpu.reset_peak(0);
    CHECK(cpu.memory_stats(0).peak == before + 4000);  // reset: the peak is what is live now
  }
  CHECK(cpu.memory_stats(0).in_use == before);
  CHECK(cpu.memory_stats(0).peak == before + 4000);
  // The older free functions read the same counters.
  CHECK(cpu_bytes_in_use() == before);
  CHECK(cpu_peak_bytes() == before + 4000);
}

TEST_CASE("backend: asking for a kind nobody registered is a clear error") {
  ScopedBackend none(Device::Kind::cuda, nullptr);  // as in a build without nvcc
  CHECK_FALSE(has_backend(Device::Kind::cuda));
  CHECK_THROWS_WITH(backend_for(Device::Kind::cuda), Contains("this build has no CUDA backend"));
  CHECK_THROWS_WITH(Tensor::empty({2}, DType::f32, Device::cuda(0)), Contains("this build has no CUDA backend"));
  CHECK_THROWS_WITH(Tensor::from_vector({1, 2}, {2}).to(Device::cuda(0)), Contains("this build has no CUDA backend"));
  const DeviceInfo info = probe_devices(0);
  CHECK_FALSE(info.cuda_built);
  CHECK(info.cuda_devices == 0);
  CHECK(resolve_device("auto", info) == "cpu");
}

TEST_CASE("backend: Tensor and probe_devices reach a device only through its registered backend") {
  FakeBackend fake;
  {
    ScopedBackend scoped(Device::Kind::cuda, &fake);
    const Device dev = Device::cuda(0);
    const Tensor host = Tensor::from_vector({1.5, -2.0, 1.00390625, 4.0}, {4});
    Tensor t = host.to(dev);  // allocate + host -> device copy
    CHECK(t.device() == dev);
    CHECK(fake.alloc.allocs == 1);
    CHECK(fake.copies == 1);
    CHECK(t.to_vector() == host.to_vector());  // device -> host copy
    CHECK(fake.copies == 2);
    const Tensor b = t.to(DType::bf16);  // same device, another dtype: the backend converts
    CHECK(fake.converts == 1);
    CHECK(b.item(2) == 1.0);  // the fake converts with core's rules: tie to even
    t.fill(3.0);
    CHECK(fake.fills == 1);
    CHECK(t.item(0) == 3.0);
    const Tensor z = Tensor::zeros({8}, DType::i64, dev);
    CHECK(fake.zeros == 1);
    // another device and another dtype: converted on the host, then one copy
    const int copies_before = fake.copies, converts_before = fake.converts;
    const Tensor h8 = Tensor::empty({4}, DType::f8e4m3);
    h8.copy_from(t);
    CHECK(h8.item(1) == 3.0);
    CHECK(fake.copies == copies_before + 1);
    CHECK(fake.converts == converts_before);  // the host did the conversion

    const DeviceInfo info = probe_devices(4);
    CHECK(info.cuda_built);
    CHECK(info.cuda_devices == 3);
    CHECK(info.gpu_name == "Fake accelerator #1");  // local rank 4 -> device 4 mod 3
    CHECK(info.gpu_memory_bytes == 12345);
    CHECK(resolve_device("auto", info) == "cuda");
  }
  CHECK(fake.alloc.frees == fake.alloc.allocs);  // every storage returned its bytes to the fake
}

TEST_CASE("memory_history lists live storages while recording, with their step") {
  memory_history::set_enabled(false);
  Tensor before = Tensor::empty({1000});  // allocated before recording: not listed
  memory_history::set_enabled(true);
  memory_history::set_step(3);
  Tensor a = Tensor::empty({256, 4});  // 4 KiB
  {
    Tensor tmp = Tensor::empty({7});
    CHECK(memory_history::live_blocks().size() == 2);
  }
  memory_history::set_step(4);
  Tensor b = Tensor::empty({10}, DType::bf16);
  const auto blocks = memory_history::live_blocks();
  REQUIRE(blocks.size() == 2);  // tmp was freed
  CHECK(blocks[0].bytes == 4096);
  CHECK(blocks[0].step == 3);
  CHECK(blocks[0].device == Device::cpu());
  CHECK(blocks[1].bytes == 20);
  CHECK(blocks[1].step == 4);
  CHECK(blocks[0].seq < blocks[1].seq);
  before = Tensor();  // freeing a block recording never saw is harmless
  memory_history::set_enabled(false);
  CHECK(memory_history::live_blocks().empty());
}
