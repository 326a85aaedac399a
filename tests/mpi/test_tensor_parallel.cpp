// Async TP's fused ops (dist::all_gather_linears, dist::linear_reduce_scatter) against the separate
// ops the synchronous plan runs, on a TP group of the whole world: values and every gradient, in
// f32 and bf16, for shards whose rows split unevenly into chunks and whose chunks cross sequences.
#include <catch2/catch.hpp>

#include <cmath>

#include "autograd/functions.hpp"
#include "core/rng.hpp"
#include "dist/process_group.hpp"
#include "dist/tensor_parallel.hpp"
#include "float8/float8_linear.hpp"
#include "mpi_world.hpp"

using namespace titan;
using namespace titan::dist;
using autograd::Variable;

namespace {

// N(0, 1) values, different on every rank (each holds other rows / another weight part).
Tensor random(const Shape& shape, std::uint64_t key, DType dtype) {
  Tensor t = Tensor::empty(shape, DType::f32);
  rng::fill_normal(t, key, std::uint64_t(g_world->rank()) << 32, 0.0, 1.0);
  return dtype == DType::f32 ? t : t.to(dtype);
}

// max |a - b| / max |b|, in float64.
double relative_difference(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const Tensor x = a.to(DType::f64), y = b.to(DType::f64);
  double diff = 0, scale = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    diff = std::max(diff, std::abs(x.data<double>()[i] - y.data<double>()[i]));
    scale = std::max(scale, std::abs(y.data<double>()[i]));
  }
  return diff / scale;
}

}  // namespace

TEST_CASE("tensor parallel: fused all-gather + Linears and Linear + reduce-scatter equal the separate ops") {
  const int T = g_world->size();
  DeviceMesh mesh(*g_world, 1, 1, T);
  ProcessGroup& tp = mesh.tp_group();
  const std::int64_t C = 12, N1 = 8, N2 = 5;
  for (DType dt : {DType::f32, DType::bf16})
    for (auto [B, Sl] : {std::pair<std::int64_t, std::int64_t>{2, 3}, {1, 5}}) {
      INFO(dtype_name(dt) << ", shard [" << B << ", " << Sl << "] on TP " << T);
      // bf16 values are rounded once per op on either path; a GEMM's f32 sum over another row
      // blocking can move one rounding by an ulp (2^-8 relative).
      const double tol = dt == DType::f32 ? 1e-6 : 1e-2;
      const Tensor x = random({B, Sl, C}, 1, dt), w1 = random({N1, C}, 2, dt), w2 = random({N2, C}, 3, dt);
      const Tensor w3 = random({N2, C}, 8, dt);
      const Tensor d1 = random({B, Sl * T, N1}, 4, dt), d2 = random({B, Sl * T, N2}, 5, dt);
      const Tensor d3 = random({B, Sl * T, N2}, 9, dt);
      {
        Variable xa(x, true), w1a(w1, true), w2a(w2, true), w3a(w3, true);
        Variable gathered = all_gather_sequence(xa, tp);
        Variable y1 = autograd::linear(gathered, w1a), y2 = autograd::linear(gathered, w2a);
        Variable y3 = autograd::linear(gathered, w3a);
        autograd::run_backward({y1, y2, y3}, {d1, d2, d3}, false);
        Variable xb(x, true), w1b(w1, true), w2b(w2, true), w3b(w3, true);
        GatheredLinears fused = all_gather_linears(xb, {w1b, w2b}, tp);
        CHECK(relative_difference(fused.gathered.data(), gathered.data()) == 0);  // moved, not computed
        CHECK(relative_difference(fused.outputs[0].data(), y1.data()) <= tol);
        CHECK(relative_difference(fused.outputs[1].data(), y2.data()) <= tol);
        // A reader of the gathered input outside the fused pair sends its gradient back through it.
        Variable y3b = autograd::linear(fused.gathered, w3b);
        autograd::run_backward({fused.outputs[0], fused.outputs[1], y3b}, {d1, d2, d3}, false);
        CHECK(relative_difference(xb.grad(), xa.grad()) <= tol);
        CHECK(relative_difference(w1b.grad(), w1a.grad()) <= tol);
        CHECK(relative_difference(w2b.grad(), w2a.grad()) <= tol);
        CHECK(relative_difference(w3b.grad(), w3a.grad()) <= tol);
      }
      {
        // Row-wise: x over the whole sequence with this rank's columns, the sum's sequence shard out.
        const Tensor xr = random({B, Sl * T, C}, 6, dt), dy = random({B, Sl, N1}, 7, dt);
        Variable xa(xr, true), wa(w1, true);
        Variable y = reduce_scatter_sequence(autograd::linear(xa, wa), tp);
        autograd::run_backward({y}, {dy}, false);
        Variable xb(xr, true), wb(w1, true);
        Variable fused = linear_reduce_scatter(xb, wb, tp);
        CHECK(fused.shape() == y.shape());
        CHECK(fused.data().dtype() == y.data().dtype());
        CHECK(relative_difference(fused.data(), y.data()) <= tol);
        autograd::run_backward({fused}, {dy}, false);
        CHECK(relative_difference(xb.grad(), xa.grad()) <= tol);
        CHECK(relative_difference(wb.grad(), wa.grad()) <= tol);
      }
    }
}

TEST_CASE("tensor parallel: a fused pair's collectives run in chunks, the same bytes as the separate ops") {
  const int T = g_world->size();
  if (T == 1) return;  // a group of one communicates nothing
  DeviceMesh mesh(*g_world, 1, 1, T);
  ProcessGroup& tp = mesh.tp_group();
  const Tensor x = random({2, 4, 6}, 1, DType::f32), w = random({3, 6}, 2, DType::f32);
  reset_comm_stats();
  Variable gathered = all_gather_sequence(Variable(x), tp);
  const CommStats separate = comm_stats();
  reset_comm_stats();
  GatheredLinears fused = all_gather_linears(Variable(x), {Variable(w)}, tp);
  const CommStats chunked = comm_stats();
  CHECK(separate.calls[CommStats::all_gather] == 1);
  CHECK(chunked.calls[CommStats::all_gather] == async_tp_chunks(T));
  CHECK(chunked.bytes[CommStats::all_gather] == separate.bytes[CommStats::all_gather]);
}

TEST_CASE("tensor parallel: a float8 row-wise layer's output gradient travels as e5m2, same gradients bit for bit") {
  const int T = g_world->size();
  if (T == 1) return;
  DeviceMesh mesh(*g_world, 1, 1, T);
  ProcessGroup& tp = mesh.tp_group();
  const std::int64_t B = 2, Sl = 3, K = 8, N = 16;  // wo-like: this rank's K columns, the whole sequence
  const Tensor x = random({B, Sl * T, K}, 11, DType::f32), w = random({N, K}, 12, DType::f32);
  const Tensor dy = random({B, Sl, N}, 13, DType::f32);
  struct Result {
    Tensor dx, dw;
    std::int64_t gather_bytes;
  };
  auto run = [&](bool announce_producer) {
    float8::Float8Linear layer(K, N, float8::recipe_from_name("tensorwise"));
    layer.set_amax_over_group([&](const Tensor& t) { tp.all_reduce(t, ReduceOp::max); });
    layer.weight.set_data(w);
    Variable xv(x, true);
    Variable y = reduce_scatter_sequence(layer(xv), tp, announce_producer ? &layer : nullptr);
    reset_comm_stats();
    autograd::run_backward({y}, {dy}, false);
    return Result{xv.grad(), layer.weight.grad(), comm_stats().bytes[CommStats::all_gather]};
  };
  const Result high = run(false), e5m2 = run(true);
  CHECK(relative_difference(e5m2.dx, high.dx) == 0);
  CHECK(relative_difference(e5m2.dw, high.dw) == 0);
  CHECK(high.gather_bytes == 4 * e5m2.gather_bytes);  // f32 -> 1 byte per element
}
