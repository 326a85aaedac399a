// Tensor storage/views and the counter-based RNG.
#include <catch2/catch.hpp>

#include <cmath>

#include "core/backend.hpp"
#include "core/rng.hpp"
#include "core/step_capture.hpp"
#include "core/tensor.hpp"

using namespace titan;

TEST_CASE("tensor: views share storage, slices are offsets, clones do not") {
  Tensor t = Tensor::from_vector({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {4, 3});
  CHECK(t.numel() == 12);
  CHECK(t.nbytes() == 48);
  Tensor rows = t.slice_rows(1, 3);
  CHECK(rows.shape() == Shape{2, 3});
  CHECK(rows.item(0) == 3);
  CHECK(rows.storage() == t.storage());
  rows.set(0, 42);
  CHECK(t.item(3) == 42);
  Tensor flat = t.view({12});
  CHECK(flat.item(11) == 11);
  Tensor part = t.view_range(5, {2, 2});
  CHECK(part.item(3) == 8);
  Tensor c = t.clone();
  c.set(0, -1);
  CHECK(t.item(0) == 0);
  CHECK_THROWS(t.view({5, 3}));
  CHECK_THROWS(t.slice_rows(2, 5));
  Tensor half = t.to(DType::bf16);
  CHECK(half.nbytes() == 24);
  CHECK(half.item(3) == 42);
}

TEST_CASE("tensor: the CPU allocator tracks bytes in use and the peak") {
  const std::size_t before = cpu_bytes_in_use();
  reset_cpu_peak_bytes();
  {
    Tensor a = Tensor::empty({1000});
    CHECK(cpu_bytes_in_use() == before + 4000);
  }
  CHECK(cpu_bytes_in_use() == before);
  CHECK(cpu_peak_bytes() >= before + 4000);
}

TEST_CASE("tensor: the CPU allocator reuses freed large blocks instead of fresh pages") {
  // A training step frees and reallocates the same sizes every step; fresh pages cost a fault
  // and a kernel clear per 4 KiB (backend.cpp).
  reset_cpu_peak_bytes();
  const void* first = nullptr;
  {
    Tensor a = Tensor::empty({1 << 18});  // 1 MiB
    first = a.raw();
  }
  const MemoryStats freed = backend_for(Device::cpu()).memory_stats(0);
  CHECK(freed.reserved >= freed.in_use + (std::size_t{1} << 20));  // held, but not in use
  Tensor b = Tensor::empty({(1 << 18) - 100});  // same size class
#if !defined(__SANITIZE_ADDRESS__)
  CHECK(b.raw() == first);
#endif
  CHECK(cpu_bytes_in_use() >= b.nbytes());
}

TEST_CASE("rng: element i depends only on (seed, name, i), so slices generate alone") {
  const auto key = rng::make_key(42, "layers.0.attention.wq.weight");
  Tensor full = Tensor::empty({1000});
  rng::fill_normal(full, key, 0, 0.0, 1.0);
  Tensor shard = Tensor::empty({300});
  rng::fill_normal(shard, key, 500, 0.0, 1.0);
  for (int i = 0; i < 300; ++i) CHECK(shard.item(i) == full.item(500 + i));
  // Different name or seed: a different stream.
  CHECK(rng::normal(rng::make_key(42, "layers.0.attention.wk.weight"), 0) != rng::normal(key, 0));
  CHECK(rng::normal(rng::make_key(43, "layers.0.attention.wq.weight"), 0) != rng::normal(key, 0));
  // Known-answer: Philox-4x32-10 of counter 0 and key 0 (Random123's kat_vectors).
  const auto r = rng::philox(0, 0, 0);
  CHECK(r[0] == 0x6627e8d5u);
  CHECK(r[1] == 0xe169c58du);
  CHECK(r[2] == 0xbc57ac4cu);
  CHECK(r[3] == 0x9b00dbd8u);
}

TEST_CASE("rng: normal and truncated normal have the right moments and bounds") {
  const auto key = rng::make_key(7, "stats");
  const int n = 200000;
  double s = 0, s2 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = rng::normal(key, i);
    s += x;
    s2 += x * x;
  }
  CHECK(std::abs(s / n) < 0.01);
  CHECK(std::abs(s2 / n - 1.0) < 0.01);
  // Truncated at +-1 sigma: variance of N(0,1) restricted to [-1, 1] is 1 - 2 phi(1) / (2 Phi(1) - 1).
  const double phi1 = std::exp(-0.5) / std::sqrt(2 * M_PI);
  const double var_expected = 1.0 - 2 * phi1 / std::erf(1 / std::sqrt(2.0));
  double t2 = 0, tmax = 0;
  for (int i = 0; i < n; ++i) {
    const double x = rng::trunc_normal(key, i, 0.0, 1.0, -1.0, 1.0);
    t2 += x * x;
    tmax = std::max(tmax, std::abs(x));
  }
  CHECK(tmax <= 1.0);
  CHECK(t2 / n == Approx(var_expected).epsilon(0.01));
  for (double y : {-0.999, -0.5, 0.0, 0.3, 0.9, 0.999999}) CHECK(std::erf(rng::erfinv(y)) == Approx(y).epsilon(1e-14));
}

TEST_CASE("StepCapture: a step that frees memory from before it is found, its own is not") {
  Tensor kept = Tensor::zeros({256});     // carried over from "the previous step"
  Tensor replaced = Tensor::zeros({64});  // will be replaced by a new tensor inside the step
  const std::size_t before = cpu_bytes_in_use();
  {
    StepCapture capture(Device::Kind::cpu);
    Tensor scratch = Tensor::zeros({1000});  // allocated and freed inside: the step's own
    scratch = Tensor();
    Tensor out = Tensor::zeros({32});  // allocated inside and kept: the step's own
    kept.fill(2.0);                   // written in place: fine
    replaced = Tensor::full({64}, 3.0);
    // The old buffer of `replaced` is set aside, not freed, until the capture finishes.
    const std::size_t during = cpu_bytes_in_use();
    const StepCapture::FreedEarly early = capture.finish();
    CHECK(early.count == 1);
    CHECK(early.bytes == 64 * 4);
    CHECK(during - cpu_bytes_in_use() >= 64 * 4);
    CHECK(capture.finish().count == 0);  // finishing twice reports nothing more
  }
  CHECK(cpu_bytes_in_use() == before);  // out freed normally after the scope
  CHECK(replaced.item(5) == 3.0);
  // A released-then-reallocated storage (FSDP's resize trick) counts from its new allocation.
  Tensor unit = Tensor::zeros({128});
  unit.storage()->release();
  {
    StepCapture capture(Device::Kind::cpu);
    unit.storage()->reallocate();
    unit.storage()->release();
    CHECK(capture.finish().count == 0);
  }
  // Another device kind's memory is not this capture's business; nor is a second scope allowed.
  {
    StepCapture capture(Device::Kind::cuda);
    kept = Tensor();
    CHECK_THROWS_AS(StepCapture(Device::Kind::cuda), std::logic_error);
    CHECK(capture.finish().count == 0);
  }
}
