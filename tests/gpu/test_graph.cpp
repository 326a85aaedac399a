// CUDA graphs (compile.enable; docs/cuda.md, "CUDA graphs"): what the trainer relies on, one piece
// at a time, so that a failure on the first GPU names the piece.
#include <catch2/catch.hpp>

#include <vector>

#include "core/backend.hpp"
#include "core/step_capture.hpp"
#include "core/tensor.hpp"
#include "gpu_test_helpers.hpp"
#include "ops/ops.hpp"

using namespace titan;

namespace {
const Device kGpu = Device::cuda(0);
using gpu_test::host_floats;
}  // namespace

TEST_CASE("cuda graph: a captured AdamW step replays with each step's scalars", "[gpu][graph]") {
  // The CPU runs step after step eagerly; the GPU captures its first step and replays it, the
  // host writing only the scalars buffer in between, as the trainer does.
  const std::vector<std::int64_t> sizes = {7, 65537 + 3};
  std::vector<Tensor> params, grads;
  for (size_t i = 0; i < sizes.size(); ++i) {
    params.push_back(Tensor::full({sizes[i]}, 0.5 + 0.1 * double(i)));
    grads.push_back(Tensor::full({sizes[i]}, 0.25 - 0.05 * double(i)));
  }
  auto [p, g, m, v, pg, gg, mg, vg] = gpu_test::adamw_lists(params, grads, kGpu);
  const Tensor scalars = Tensor::empty({6}, DType::f32, kGpu);
  DeviceBackend& backend = backend_for(kGpu);
  std::unique_ptr<CapturedStep> graph;
  for (std::int64_t step = 1; step <= 4; ++step) {
    const ops::AdamWStep hp{1e-3 * double(step), 0.9, 0.95, 1e-8, 0.1, step};
    ops::adamw_step(p, g, m, v, hp);
    ops::adamw_scalars_into(scalars, hp);
    if (!graph) {
      graph = backend.capture(kGpu.index, [&] { ops::adamw_step(pg, gg, mg, vg, scalars); });
      REQUIRE(graph);
    }
    graph->replay();
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    INFO("tensor " << i);
    gpu_test::require_close(host_floats(pg[i]), p[i].to_vector(), 1e-6, "param");
    gpu_test::require_close(host_floats(mg[i]), m[i].to_vector(), 1e-6, "exp_avg");
  }
}

TEST_CASE("cuda graph: memory the step allocates and keeps holds each replay's result", "[gpu][graph]") {
  const Tensor x = Tensor::full({1000}, 2.0, DType::f32, kGpu);  // from before the capture, read in place
  Tensor kept;                                                    // made inside, kept after: the step's output
  StepCapture check(Device::Kind::cuda);
  std::unique_ptr<CapturedStep> graph = backend_for(kGpu).capture(kGpu.index, [&] {
    Tensor scratch = ops::add(x, x);  // made and freed inside
    kept = ops::add(scratch, x);
  });
  REQUIRE(graph);
  // `kept` still names the capture's allocation: each replay writes its result there.
  for (int k = 0; k < 3; ++k) {
    x.fill(double(k));
    graph->replay();
    CHECK(kept.to(Device::cpu()).item(999) == double(3 * k));
  }
  CHECK(check.finish().count == 0);
}

TEST_CASE("cuda graph: a host wait inside the capture is refused with CUDA's reason", "[gpu][graph]") {
  const Tensor x = Tensor::full({16}, 1.0, DType::f32, kGpu);
  CHECK_THROWS_WITH(backend_for(kGpu).capture(kGpu.index, [&] { (void)x.item(0); }),
                    Catch::Matchers::Contains("CUDA error"));
  // The stream works again afterwards.
  CHECK(ops::add(x, x).to(Device::cpu()).item(3) == 2.0);
}

TEST_CASE("cuda graph: the delayed recipe's history ring advances on every replay, as the CPU's does", "[gpu][graph]") {
  const std::int64_t L = 3;
  Tensor row = Tensor::zeros({L}), pushes = Tensor::zeros({1}, DType::i64);
  Tensor row_g = row.to(kGpu), pushes_g = pushes.to(kGpu);
  Tensor amax = Tensor::full({1}, 0.0), amax_g = amax.to(kGpu);
  std::unique_ptr<CapturedStep> graph;
  for (int k = 1; k <= 5; ++k) {
    amax.fill(double(k));
    amax_g.fill(double(k));
    ops::amax_history_push(row, pushes, amax);
    if (!graph) {
      graph = backend_for(kGpu).capture(kGpu.index, [&] { ops::amax_history_push(row_g, pushes_g, amax_g); });
      REQUIRE(graph);
    }
    graph->replay();
  }
  CHECK(pushes_g.to(Device::cpu()).item(0) == 5);
  CHECK(row_g.to(Device::cpu()).to_vector() == row.to_vector());  // {4, 5, 3}: 1 and 2 overwritten
  CHECK(row.to_vector() == std::vector<double>{4, 5, 3});
}
