// The op API on CUDA tensors against the same call on CPU tensors (the reference backend):
// tensor movement and conversions, every op used by the model, and AdamW. Inputs are rounded
// through the storage dtype first, so both sides compute on identical values.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <vector>

#include "autograd/variable.hpp"
#include "core/backend.hpp"
#include "core/tensor.hpp"
#include "dist/process_group.hpp"
#include "dist/world.hpp"
#include "float8/float8.hpp"
#include "float8/float8_linear.hpp"
#include "gpu_test_helpers.hpp"
#include "ops/ops.hpp"
#include "optim/adamw.hpp"

using namespace titan;

namespace {

const Device kGpu = Device::cuda(0);

Tensor random_tensor(const Shape& shape, std::uint32_t seed, DType dtype = DType::f32, float scale = 1.0f) {
  const auto v = gpu_test::random_vector(numel_of(shape), seed, scale);
  return Tensor::from_vector(std::vector<double>(v.begin(), v.end()), shape, dtype);
}

std::vector<float> floats(const Tensor& t) {
  const auto d = t.to_vector();
  return std::vector<float>(d.begin(), d.end());
}

// CPU reference in f32 on the (possibly bf16-rounded) values of `t`.
Tensor f32_cpu(const Tensor& t) { return t.device().is_cpu() ? t.to(DType::f32) : t.to(Device::cpu()).to(DType::f32); }

void require_close(const Tensor& gpu, const Tensor& cpu_ref, double tol, const std::string& what) {
  REQUIRE(!gpu.device().is_cpu());
  REQUIRE(gpu.shape() == cpu_ref.shape());
  gpu_test::require_close(floats(gpu), cpu_ref.to_vector(), tol, what);
}

}  // namespace

TEST_CASE("cuda tensors: round trips and conversions match the CPU bit for bit", "[gpu]") {
  const Tensor host = random_tensor({3, 37}, 1, DType::f32, 300.0f);
  host.set(0, NAN);
  host.set(1, INFINITY);
  host.set(2, -1e6);
  host.set(3, 0.0);
  const Tensor dev = host.to(kGpu);
  REQUIRE(dev.device() == kGpu);
  REQUIRE(dev.to(Device::cpu()).to_vector().size() == host.to_vector().size());
  for (DType dt : {DType::bf16, DType::f16, DType::f8e4m3, DType::f8e5m2}) {
    const auto want = host.to(dt).to_vector();
    const auto got = dev.to(dt).to(Device::cpu()).to_vector();
    for (size_t i = 0; i < want.size(); ++i) {
      INFO(dtype_name(dt) << " element " << i << " of " << host.item(std::int64_t(i)));
      if (std::isnan(want[i])) REQUIRE(std::isnan(got[i]));
      else REQUIRE(got[i] == want[i]);
    }
  }
  const Tensor z = Tensor::zeros({5, 7}, DType::bf16, kGpu);
  for (double v : z.to_vector()) REQUIRE(v == 0.0);
  z.fill(2.5);
  z.set(4, -1.0);
  REQUIRE(z.item(3) == 2.5);
  REQUIRE(z.item(4) == -1.0);
  const Tensor c = dev.clone();
  REQUIRE(c.storage() != dev.storage());
  REQUIRE(c.item(5) == host.item(5));
}

TEST_CASE("cuda ops: GEMMs of the linear layer and matmul vs the CPU", "[gpu]") {
  for (DType dt : {DType::f32, DType::bf16}) {
    const double tol = gpu_test::tolerance_for(dt);
    const Tensor x = random_tensor({2, 19, 67}, 2, dt), w = random_tensor({45, 67}, 3, dt), dy = random_tensor({2, 19, 45}, 4, dt);
    require_close(ops::linear(x.to(kGpu), w.to(kGpu)), ops::linear(f32_cpu(x), f32_cpu(w)), tol, "linear");
    require_close(ops::linear_backward_input(dy.to(kGpu), w.to(kGpu)), ops::linear_backward_input(f32_cpu(dy), f32_cpu(w)), tol,
                  "linear_backward_input");
    Tensor dw_ref = random_tensor({45, 67}, 5), dw = dw_ref.to(kGpu);
    ops::linear_backward_weight(dy.to(kGpu), x.to(kGpu), dw, true);
    ops::linear_backward_weight(f32_cpu(dy), f32_cpu(x), dw_ref, true);
    require_close(dw, dw_ref, tol, "linear_backward_weight (f32 grad, accumulate)");
    const Tensor a = random_tensor({3, 13, 29}, 6, dt), b = random_tensor({3, 31, 29}, 7, dt);
    Tensor c_ref = random_tensor({3, 13, 31}, 8, dt).to(DType::f32), c = c_ref.to(dt).to(kGpu);
    c_ref = f32_cpu(c);
    ops::matmul(false, true, 0.5, a.to(kGpu), b.to(kGpu), 1.0, c);
    ops::matmul(false, true, 0.5, f32_cpu(a), f32_cpu(b), 1.0, c_ref);
    require_close(c, c_ref, tol, "batched matmul");
  }
}

TEST_CASE("cuda ops: elementwise, reductions, norm, rope, swiglu, embedding vs the CPU", "[gpu]") {
  for (DType dt : {DType::f32, DType::bf16}) {
    const double tol = gpu_test::tolerance_for(dt);
    const Tensor a = random_tensor({37, 129}, 10, dt), b = random_tensor({37, 129}, 11, dt);
    Tensor ga = a.to(kGpu), ca = f32_cpu(a);
    ops::add_(ga, b.to(kGpu), -0.75);
    ops::add_(ca, f32_cpu(b), -0.75);
    require_close(ga, ca, tol, "add_");
    ops::scale_(ga, 3.0);
    ops::scale_(ca, 3.0);
    require_close(ga, ca, tol, "scale_");
    REQUIRE(ops::sum(a.to(kGpu)) == Approx(ops::sum(f32_cpu(a))).epsilon(1e-9).margin(1e-9));
    REQUIRE(ops::sum_squares(a.to(kGpu)) == Approx(ops::sum_squares(f32_cpu(a))).epsilon(1e-9));
    {  // all sums queued, one read: each equals sum_squares on the GPU exactly (same kernel)
      const std::int64_t syncs_before = backend_for(kGpu).host_syncs(kGpu.index);
      const Tensor each = ops::sum_squares_each({a.to(kGpu), b.to(kGpu)});
      const Tensor host = each.to(Device::cpu());
      REQUIRE(backend_for(kGpu).host_syncs(kGpu.index) - syncs_before == 1);
      REQUIRE(host.item(0) == ops::sum_squares(a.to(kGpu)));
      REQUIRE(host.item(1) == ops::sum_squares(b.to(kGpu)));
    }

    require_close(ops::swiglu(a.to(kGpu), b.to(kGpu)), ops::swiglu(f32_cpu(a), f32_cpu(b)), tol, "swiglu");
    const Tensor dh = random_tensor({37, 129}, 12, dt);
    Tensor da, db, da_ref, db_ref;
    ops::swiglu_backward(dh.to(kGpu), a.to(kGpu), b.to(kGpu), da, db);
    ops::swiglu_backward(f32_cpu(dh), f32_cpu(a), f32_cpu(b), da_ref, db_ref);
    require_close(da, da_ref, tol, "swiglu da");
    require_close(db, db_ref, tol, "swiglu db");

    const Tensor w = random_tensor({129}, 13, dt);
    const auto n = ops::rmsnorm(a.to(kGpu), w.to(kGpu), 1e-5);
    const auto n_ref = ops::rmsnorm(f32_cpu(a), f32_cpu(w), 1e-5);
    require_close(n.y, n_ref.y, tol, "rmsnorm y");
    Tensor dw = Tensor::zeros({129}, DType::f32, kGpu), dw_ref = Tensor::zeros({129});
    require_close(ops::rmsnorm_backward(dh.to(kGpu), a.to(kGpu), w.to(kGpu), n.rstd, dw),
                  ops::rmsnorm_backward(f32_cpu(dh), f32_cpu(a), f32_cpu(w), n_ref.rstd, dw_ref), tol, "rmsnorm dx");
    require_close(dw, dw_ref, tol, "rmsnorm dw");

    const auto table = ops::rope_table(16, 64, 500000.0, nullptr);
    const Tensor x = random_tensor({2, 37, 3, 16}, 14, dt);
    require_close(ops::rope(x.to(kGpu), table, false), ops::rope(f32_cpu(x), table, false), tol, "rope");
    require_close(ops::rope(x.to(kGpu), table, true), ops::rope(f32_cpu(x), table, true), tol, "rope inverse");

    const Tensor emb = random_tensor({101, 24}, 15, dt);
    std::vector<double> ids;
    for (int i = 0; i < 2 * 17; ++i) ids.push_back((i * 37) % 101);
    const Tensor tokens = Tensor::from_vector(ids, {2, 17}, DType::i64);
    require_close(ops::embedding(emb.to(kGpu), tokens.to(kGpu)), ops::embedding(f32_cpu(emb), tokens), tol, "embedding");
    const Tensor dy = random_tensor({2, 17, 24}, 16, dt);
    Tensor demb = Tensor::zeros({101, 24}, DType::f32, kGpu), demb_ref = Tensor::zeros({101, 24});
    ops::embedding_backward(dy.to(kGpu), tokens.to(kGpu), demb);
    ops::embedding_backward(f32_cpu(dy), tokens, demb_ref);
    require_close(demb, demb_ref, tol, "embedding backward");
  }
}

TEST_CASE("cuda ops: an out-of-range token id is not waited for, and raise_device_errors throws it once", "[gpu]") {
  ops::raise_device_errors(kGpu);  // nothing stale
  const Tensor emb = Tensor::full({10, 8}, 1.0, DType::f32, kGpu);
  const Tensor good = Tensor::from_vector({1, 2, 3}, {3}, DType::i64).to(kGpu);
  const Tensor bad = Tensor::from_vector({1, 12, 3}, {3}, DType::i64).to(kGpu);
  const std::int64_t syncs = backend_for(kGpu).host_syncs(kGpu.index);
  Tensor out = ops::embedding(emb, good);
  out = ops::embedding(emb, bad);
  REQUIRE(backend_for(kGpu).host_syncs(kGpu.index) == syncs);  // no token copied back
  REQUIRE_THROWS_WITH(ops::raise_device_errors(kGpu), Catch::Contains("outside the vocabulary of 10"));
  REQUIRE(out.to(Device::cpu()).item(8) == 0.0);  // the bad id's row is zeros, never a neighbour's
  REQUIRE_NOTHROW(ops::raise_device_errors(kGpu));  // reading cleared it
}

TEST_CASE("cuda ops: the flags are taken without a wait, and read with other values", "[gpu]") {
  ops::raise_device_errors(kGpu);  // nothing stale
  const Tensor emb = Tensor::full({10, 8}, 1.0, DType::f32, kGpu);
  const Tensor bad = Tensor::from_vector({1, 12, 3}, {3}, DType::i64).to(kGpu);
  const std::int64_t syncs = backend_for(kGpu).host_syncs(kGpu.index);
  const Tensor out = ops::embedding(emb, bad);
  const Tensor taken = ops::take_device_errors(kGpu), again = ops::take_device_errors(kGpu);
  REQUIRE(backend_for(kGpu).host_syncs(kGpu.index) == syncs);
  REQUIRE(taken.device() == kGpu);
  REQUIRE_THROWS_WITH(ops::raise_device_errors(taken.to(Device::cpu())), Catch::Contains("outside the vocabulary of 10"));
  REQUIRE_NOTHROW(ops::raise_device_errors(again));  // the first take cleared the flag
}

TEST_CASE("cuda ops: gradient clipping from the device-side norm: no host wait, the CPU's arithmetic", "[gpu]") {
  for (const double max_norm : {1.0, 1e6}) {  // clipped, and left alone
    const Tensor a = random_tensor({37, 129}, 31, DType::f32), b = random_tensor({5, 3}, 32, DType::f32);
    Tensor ga = a.to(kGpu), gb = b.to(kGpu), ca = a.clone(), cb = b.clone();
    const std::int64_t syncs = backend_for(kGpu).host_syncs(kGpu.index);
    const Tensor sq = ops::sum_squares_total({ga, gb}, kGpu);
    ops::clip_to_max_norm_({ga, gb}, sq, max_norm);
    REQUIRE(backend_for(kGpu).host_syncs(kGpu.index) == syncs);  // nothing read back
    // The total adds the GPU's per-tensor sums in order, as the host would.
    const Tensor each = ops::sum_squares_each({a.to(kGpu), b.to(kGpu)}).to(Device::cpu());
    REQUIRE(sq.to(Device::cpu()).item(0) == (0.0 + each.item(0)) + each.item(1));
    const Tensor csq = ops::sum_squares_total({ca, cb}, Device::cpu());
    REQUIRE(sq.to(Device::cpu()).item(0) == Approx(csq.item(0)).epsilon(1e-12));
    ops::clip_to_max_norm_({ca, cb}, csq, max_norm);
    require_close(ga, ca, 1e-6, "clipped a");
    require_close(gb, cb, 1e-6, "clipped b");
    if (max_norm > 1e3) REQUIRE(gb.to(Device::cpu()).to_vector() == b.to_vector());
  }
}

TEST_CASE("cuda ops: attention and cross-entropy vs the CPU", "[gpu]") {
  for (DType dt : {DType::f32, DType::bf16}) {
    const double tol = dt == DType::bf16 ? 2e-2 : 1e-4;
    const Tensor q = random_tensor({2, 37, 4, 64}, 20, dt), k = random_tensor({2, 37, 2, 64}, 21, dt),
                 v = random_tensor({2, 37, 2, 64}, 22, dt), dout = random_tensor({2, 37, 4, 64}, 23, dt);
    const auto o = ops::attention(q.to(kGpu), k.to(kGpu), v.to(kGpu));
    const auto o_ref = ops::attention(f32_cpu(q), f32_cpu(k), f32_cpu(v));
    require_close(o.out, o_ref.out, tol, "attention out");
    // bf16 runs cuDNN's fused attention where it is available (its own summation order): 1e-4.
    require_close(o.lse, o_ref.lse, dt == DType::bf16 ? 1e-4 : 1e-5, "attention lse");
    const auto g = ops::attention_backward(dout.to(kGpu), q.to(kGpu), k.to(kGpu), v.to(kGpu), o);
    const auto g_ref = ops::attention_backward(f32_cpu(dout), f32_cpu(q), f32_cpu(k), f32_cpu(v), o_ref);
    require_close(g.dq, g_ref.dq, tol, "attention dq");
    require_close(g.dk, g_ref.dk, tol, "attention dk");
    require_close(g.dv, g_ref.dv, tol, "attention dv");

    const Tensor logits = random_tensor({41, 1031}, 24, dt, 3.0f);
    std::vector<double> t;
    for (int i = 0; i < 41; ++i) t.push_back(i % 7 == 3 ? -100 : (i * 131) % 1031);
    const Tensor targets = Tensor::from_vector(t, {41}, DType::i64);
    const auto ce = ops::cross_entropy(logits.to(kGpu), targets.to(kGpu), -100);
    const auto ce_ref = ops::cross_entropy(f32_cpu(logits), targets, -100);
    REQUIRE(ce.valid_rows.to(Device::cpu()).item(0) == double(ce_ref.n_valid));
    REQUIRE(ce.loss.device() == kGpu);
    REQUIRE(ce.loss.to(Device::cpu()).item(0) == Approx(ce_ref.loss.item(0)).epsilon(1e-5));
    require_close(ops::cross_entropy_backward(logits.to(kGpu), targets.to(kGpu), ce, 1.0, -100),
                  ops::cross_entropy_backward(f32_cpu(logits), targets, ce_ref, 1.0, -100), tol, "cross_entropy grad");
  }
}

TEST_CASE("cuda AdamW: one multi-tensor launch matches the CPU optimizer", "[gpu]") {
  std::vector<std::unique_ptr<autograd::Variable>> cpu_params, gpu_params;
  std::vector<autograd::Variable*> cpu_ptrs, gpu_ptrs;
  const std::vector<Shape> shapes = {{257, 3}, {1}, {70000}, {5, 5}};  // 70000 spans two chunks
  for (size_t i = 0; i < shapes.size(); ++i) {
    const Tensor p = random_tensor(shapes[i], 30 + std::uint32_t(i));
    cpu_params.push_back(std::make_unique<autograd::Variable>(p.clone(), true));
    gpu_params.push_back(std::make_unique<autograd::Variable>(p.to(kGpu), true));
    cpu_ptrs.push_back(cpu_params.back().get());
    gpu_ptrs.push_back(gpu_params.back().get());
  }
  optim::AdamWConfig cfg;
  cfg.weight_decay = 0.1;
  optim::AdamW cpu_opt(cpu_ptrs, cfg), gpu_opt(gpu_ptrs, cfg);
  for (int step = 0; step < 3; ++step) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      const Tensor g = random_tensor(shapes[i], 100 + std::uint32_t(step * 10 + i), DType::f32, 0.01f);
      cpu_ptrs[i]->grad() = g.clone();
      gpu_ptrs[i]->grad() = g.to(kGpu);
    }
    cpu_opt.step(1e-3);
    gpu_opt.step(1e-3);
  }
  for (size_t i = 0; i < shapes.size(); ++i)
    require_close(gpu_ptrs[i]->data(), cpu_ptrs[i]->data(), 1e-6, "AdamW parameter " + std::to_string(i));
}

TEST_CASE("MPI collectives in a group of one: GPU tensors stay on the GPU, the host waits for nothing", "[gpu]") {
  int argc = 0;
  char** argv = nullptr;
  dist::World world(&argc, &argv);  // a world of one outside mpirun
  dist::DeviceMesh mesh(world, 1, 1);
  dist::ProcessGroup& pg = mesh.world_group();
  const Tensor host = Tensor::from_vector({1.5, -2.0, 3.25, 4.0}, {4});
  Tensor t = host.to(kGpu);
  {
    const std::int64_t syncs = backend_for(kGpu).host_syncs(kGpu.index);
    Tensor g = Tensor::zeros({4}, DType::f32, kGpu), r = Tensor::zeros({4}, DType::f32, kGpu);
    pg.all_reduce(t, dist::ReduceOp::sum);
    pg.all_gather(t, g);
    pg.reduce_scatter(g, r, dist::ReduceOp::avg);
    REQUIRE(backend_for(kGpu).host_syncs(kGpu.index) == syncs);
    REQUIRE(r.to_vector() == host.to_vector());
  }
  pg.all_reduce(t, dist::ReduceOp::avg);
  REQUIRE(t.device() == kGpu);
  REQUIRE(t.to_vector() == host.to_vector());
  Tensor gathered = Tensor::zeros({4}, DType::f32, kGpu);
  pg.all_gather(t, gathered);
  REQUIRE(gathered.to_vector() == host.to_vector());
  Tensor scattered = Tensor::zeros({4}, DType::f32, kGpu);
  pg.reduce_scatter(t, scattered, dist::ReduceOp::sum);
  REQUIRE(scattered.to_vector() == host.to_vector());
  auto work = pg.all_gather_async(host, gathered);  // a CPU input into a GPU output
  work->wait();
  REQUIRE(gathered.to_vector() == host.to_vector());
}

TEST_CASE("float8 on GPU tensors: amax, scales and fake quantization bit for bit as the CPU", "[gpu]") {
  Tensor x = random_tensor({37, 48}, 40, DType::f32, 20.0f);
  x.set(5, 0.0);
  x.set(6, 1e-30);
  x.set(7, 1e5);  // beyond e4m3's range: saturates
  const Tensor gx = x.to(kGpu);
  struct Case {
    float8::Granularity g;
    int dim;
    bool pow2;
    DType f8;
  };
  for (const Case c : {Case{float8::Granularity::tensorwise, 0, false, DType::f8e4m3}, Case{float8::Granularity::tensorwise, 0, false, DType::f8e5m2},
                       Case{float8::Granularity::axiswise, -1, true, DType::f8e4m3}, Case{float8::Granularity::axiswise, 0, true, DType::f8e4m3}}) {
    INFO("granularity " << int(c.g) << " dim " << c.dim << " " << dtype_name(c.f8));
    REQUIRE(float8::amax(gx, c.g, c.dim).to_vector() == float8::amax(x, c.g, c.dim).to_vector());
    const Tensor s_gpu = float8::amax_to_scale(float8::amax(gx, c.g, c.dim), c.f8, c.pow2);
    REQUIRE(s_gpu.to_vector() == float8::amax_to_scale(float8::amax(x, c.g, c.dim), c.f8, c.pow2).to_vector());
    REQUIRE(float8::fake_quantize(gx, c.f8, c.g, c.dim, c.pow2).to_vector() ==
            float8::fake_quantize(x, c.f8, c.g, c.dim, c.pow2).to_vector());
  }
  const float fixed = 3.5f;
  float amax_gpu = 0, amax_cpu = 0;
  REQUIRE(float8::fake_quantize(gx, DType::f8e4m3, float8::Granularity::tensorwise, 0, false, &fixed, &amax_gpu).to_vector() ==
          float8::fake_quantize(x, DType::f8e4m3, float8::Granularity::tensorwise, 0, false, &fixed, &amax_cpu).to_vector());
  REQUIRE(amax_gpu == amax_cpu);
}

TEST_CASE("Float8Linear on the GPU (f32 and bf16 inputs) matches the CPU emulation", "[gpu]") {
  for (const char* recipe : {"tensorwise", "rowwise", "rowwise_with_gw_hp"}) {
    for (DType dt : {DType::f32, DType::bf16}) {
      INFO(recipe << " " << dtype_name(dt));
      // emulate = true on both sides: this compares the GPU's casts and emulated GEMMs with the
      // CPU's (tests/gpu/test_scaled_mm.cpp compares cuBLASLt FP8 with the emulation).
      const float8::Recipe r = float8::recipe_from_name(recipe, 16, true);
      const Tensor x = random_tensor({2, 16, 64}, 50, dt), w = random_tensor({48, 64}, 51, dt, 0.1f),
                   dy = random_tensor({2, 16, 48}, 52, dt);
      autograd::Variable xc(f32_cpu(x), true), wc(f32_cpu(w), true), xg(x.to(kGpu), true), wg(w.to(kGpu), true);
      autograd::Variable yc = float8::float8_linear(xc, wc, r, nullptr);
      autograd::Variable yg = float8::float8_linear(xg, wg, r, nullptr);
      REQUIRE(yg.data().dtype() == dt);
      const double tol = dt == DType::bf16 ? 1e-2 : 1e-5;
      require_close(yg.data(), yc.data(), tol, "float8 y");
      yc.backward(f32_cpu(dy));
      yg.backward(dy.to(kGpu));
      require_close(xg.grad(), xc.grad(), tol, "float8 dx");
      require_close(wg.grad(), wc.grad(), tol, "float8 dw");
    }
  }
}

TEST_CASE("cuda float8 delayed scaling: amaxes, histories and scales stay on the device, the CPU's bits", "[gpu]") {
  using float8::DelayedScaling;
  const float8::Recipe recipe = float8::recipe_from_name("delayed", 3);
  float8::Float8Linear cpu(48, 32, recipe), gpu(48, 32, recipe);
  const Tensor w = random_tensor({32, 48}, 61, DType::f32, 0.2f);
  cpu.weight.set_data(w.clone());
  gpu.weight.set_data(w.to(kGpu));
  const auto identity = [](const Tensor&) {};
  for (int step = 1; step <= 8; ++step) {  // step 4's large input leaves the 3-step window at step 7
    const Tensor x = random_tensor({5, 48}, 70 + step, DType::f32, step == 4 ? 8.0f : 1.0f);
    const Tensor gy = random_tensor({5, 32}, 80 + step);
    const std::int64_t syncs = backend_for(kGpu).host_syncs(kGpu.index);
    autograd::Variable xg(x.to(kGpu), true);
    autograd::Variable yg = gpu(xg);
    yg.backward(gy.to(kGpu));
    float8::sync_amax_histories(gpu, identity);
    INFO("step " << step);
    REQUIRE(backend_for(kGpu).host_syncs(kGpu.index) == syncs);  // nothing read back in a step
    autograd::Variable xc(x.clone(), true);
    autograd::Variable yc = cpu(xc);
    yc.backward(gy);
    float8::sync_amax_histories(cpu, identity);
    require_close(yg.data(), yc.data(), 1e-2, "delayed output");  // FP8 tensor cores vs float32
    require_close(xg.grad(), xc.grad(), 1e-2, "delayed grad_input");
    for (int r = 0; r < 3; ++r) {  // amax is exact, so the histories and scales agree bit for bit
      const auto role = DelayedScaling::Role(r);
      REQUIRE(gpu.delayed_state()->history(role) == cpu.delayed_state()->history(role));
      REQUIRE(gpu.delayed_state()->scale(role, DType::f8e4m3).to(Device::cpu()).item(0) ==
              cpu.delayed_state()->scale(role, DType::f8e4m3).item(0));
    }
  }
}

TEST_CASE("cuda ops: one-pass add, and the fused residual add + rmsnorm, give the unfused GPU ops' bits", "[gpu]") {
  for (DType dt : {DType::f32, DType::bf16})
    for (std::int64_t D : {129, 256})  // scalar and 16-byte vector paths
      for (std::int64_t rows : {37, 1100})  // one row per backward block, and several
        for (bool offset : {false, true}) {  // b and dh as views one element in: misaligned
          INFO(dtype_name(dt) << ", D = " << D << ", rows = " << rows << (offset ? ", misaligned views" : ""));
          const auto view = [&](std::uint32_t seed) {
            const Tensor t = random_tensor({rows * D + 1}, seed, dt).to(kGpu);
            return t.view_range(offset ? 1 : 0, {rows, D});
          };
          const Tensor a = random_tensor({rows, D}, 90, dt).to(kGpu), b = view(91);
          const Tensor w = random_tensor({D}, 92, dt).to(kGpu), dy = random_tensor({rows, D}, 93, dt).to(kGpu);
          const Tensor dh = view(94);
          const ops::AddRmsNormOut f = ops::add_rmsnorm(a, b, w, 1e-5);
          const Tensor h = ops::add(a, b);
          Tensor accumulated = a.clone();  // the one-pass add gives clone + add_'s bits
          ops::add_(accumulated, b);
          REQUIRE(h.to_vector() == accumulated.to_vector());
          const ops::RmsNormOut n = ops::rmsnorm(h, w, 1e-5);
          REQUIRE(f.h.to_vector() == h.to_vector());
          REQUIRE(f.y.to_vector() == n.y.to_vector());
          REQUIRE(f.rstd.to_vector() == n.rstd.to_vector());
          Tensor dw_fused = Tensor::zeros({D}, DType::f32, kGpu), dw = Tensor::zeros({D}, DType::f32, kGpu);
          const Tensor dx_fused = ops::rmsnorm_backward(dy, f.h, w, f.rstd, dw_fused, dh);
          const Tensor dx = ops::add(ops::rmsnorm_backward(dy, h, w, n.rstd, dw), dh);
          REQUIRE(dx_fused.to_vector() == dx.to_vector());
          REQUIRE(dw_fused.to_vector() == dw.to_vector());
          const ops::AddRmsNormOut c = ops::add_rmsnorm(f32_cpu(a), f32_cpu(b), f32_cpu(w), 1e-5);
          require_close(f.y, c.y, gpu_test::tolerance_for(dt), "fused rmsnorm y vs the CPU");
          Tensor dw_cpu = Tensor::zeros({D});
          require_close(dx_fused, ops::rmsnorm_backward(f32_cpu(dy), c.h, f32_cpu(w), c.rstd, dw_cpu, f32_cpu(dh)),
                        gpu_test::tolerance_for(dt), "fused rmsnorm dx vs the CPU");
        }
}
