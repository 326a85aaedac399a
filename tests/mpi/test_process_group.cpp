// Collectives and the (replicate, shard, tp) mesh, on every factorisation of the world size.
#include <catch2/catch.hpp>

#include "dist/process_group.hpp"
#include "mpi_world.hpp"

using namespace titan;
using namespace titan::dist;

namespace {
std::vector<std::pair<int, int>> meshes(int world) {
  std::vector<std::pair<int, int>> out;
  for (int r = 1; r <= world; ++r)
    if (world % r == 0) out.emplace_back(r, world / r);
  return out;
}
}  // namespace

TEST_CASE("mesh: coordinates and group membership") {
  for (auto [rep, sh] : meshes(g_world->size())) {
    INFO("mesh " << rep << " x " << sh);
    DeviceMesh mesh(*g_world, rep, sh);
    CHECK(mesh.dp_rank() == g_world->rank());
    CHECK(mesh.shard_group().size() == sh);
    CHECK(mesh.replicate_group().size() == rep);
    CHECK(mesh.shard_group().rank() == mesh.shard_index());
    CHECK(mesh.replicate_group().rank() == mesh.replicate_index());
    // The shard group's members share this rank's replicate index: gather world ranks to check.
    Tensor mine = Tensor::full({1}, g_world->rank(), DType::i64), all = Tensor::empty({sh}, DType::i64);
    mesh.shard_group().all_gather(mine, all);
    for (int i = 0; i < sh; ++i) CHECK(all.item(i) == mesh.replicate_index() * sh + i);
  }
}

TEST_CASE("mesh: 3D (replicate, shard, tp) coordinates, tp innermost") {
  const int n = g_world->size();
  for (int rep = 1; rep <= n; ++rep)
    for (int tp = 1; tp <= n; ++tp) {
      if (n % (rep * tp) != 0) continue;
      const int sh = n / (rep * tp);
      INFO("mesh " << rep << " x " << sh << " x " << tp);
      DeviceMesh mesh(*g_world, rep, sh, tp);
      // rank = (replicate_index * shard + shard_index) * tp + tp_index
      CHECK((mesh.replicate_index() * sh + mesh.shard_index()) * tp + mesh.tp_index() == g_world->rank());
      CHECK(mesh.dp_rank() == g_world->rank() / tp);
      CHECK(mesh.tp_group().size() == tp);
      CHECK(mesh.shard_group().size() == sh);
      CHECK(mesh.replicate_group().size() == rep);
      CHECK(mesh.dp_group().size() == rep * sh);
      CHECK(mesh.tp_group().rank() == mesh.tp_index());
      CHECK(mesh.dp_group().rank() == mesh.dp_rank());
      // Members by world rank: the TP group is adjacent ranks, the shard group strides by tp.
      auto members = [&](ProcessGroup& g) {
        Tensor mine = Tensor::full({1}, g_world->rank(), DType::i64), all = Tensor::empty({g.size()}, DType::i64);
        g.all_gather(mine, all);
        std::vector<std::int64_t> out;
        for (int i = 0; i < g.size(); ++i) out.push_back(std::int64_t(all.item(i)));
        return out;
      };
      const std::int64_t first = g_world->rank() - mesh.tp_index();
      auto tp_members = members(mesh.tp_group());
      for (int i = 0; i < tp; ++i) CHECK(tp_members[size_t(i)] == first + i);
      auto shard_members = members(mesh.shard_group());
      for (int i = 0; i < sh; ++i)
        CHECK(shard_members[size_t(i)] == (mesh.replicate_index() * sh + i) * tp + mesh.tp_index());
      auto rep_members = members(mesh.replicate_group());
      for (int i = 0; i < rep; ++i) CHECK(rep_members[size_t(i)] == (i * sh + mesh.shard_index()) * tp + mesh.tp_index());
    }
}

TEST_CASE("collectives: all_reduce, all_gather, reduce_scatter, broadcast") {
  const int n = g_world->size(), r = g_world->rank();
  DeviceMesh mesh(*g_world, 1, n);
  ProcessGroup& pg = mesh.world_group();
  Tensor t = Tensor::from_vector({double(r), 1.0, -double(r)}, {3});
  pg.all_reduce(t, ReduceOp::sum);
  CHECK(t.item(0) == n * (n - 1) / 2.0);
  CHECK(t.item(1) == n);
  Tensor m = Tensor::full({2}, double(r) + 0.5);
  pg.all_reduce(m, ReduceOp::max);
  CHECK(m.item(0) == n - 0.5);
  Tensor a = Tensor::full({4}, 2.0 * r);
  pg.all_reduce(a, ReduceOp::avg);
  CHECK(a.item(3) == Approx(double(n - 1)));

  Tensor shard = Tensor::from_vector({double(r), double(r) + 0.25}, {2});
  Tensor gathered = Tensor::empty({2 * n});
  pg.all_gather(shard, gathered);
  for (int i = 0; i < n; ++i) {
    CHECK(gathered.item(2 * i) == i);
    CHECK(gathered.item(2 * i + 1) == i + 0.25);
  }
  // float8 bytes travel as bytes.
  Tensor f8 = Tensor::full({3}, 1.5 * (r + 1), DType::f8e4m3), f8_all = Tensor::empty({3 * n}, DType::f8e4m3);
  pg.all_gather(f8, f8_all);
  CHECK(f8_all.item(3 * (n - 1)) == 1.5 * n);

  // reduce_scatter: rank r contributes value (r + 1) * (chunk + 1); chunk c ends on rank c.
  Tensor in = Tensor::empty({3 * n});
  for (int c = 0; c < n; ++c)
    for (int k = 0; k < 3; ++k) in.set(3 * c + k, (r + 1) * (c + 1));
  Tensor out = Tensor::empty({3});
  pg.reduce_scatter(in, out, ReduceOp::sum);
  CHECK(out.item(0) == (r + 1) * n * (n + 1) / 2.0);
  pg.reduce_scatter(in, out, ReduceOp::avg);
  CHECK(out.item(2) == Approx((r + 1) * (n + 1) / 2.0));

  Tensor b = Tensor::full({2}, r == 0 ? 42.0 : -1.0);
  pg.broadcast(b, 0);
  CHECK(b.item(1) == 42.0);
  pg.barrier();
  CHECK_THROWS_AS(pg.all_gather(shard, Tensor::empty({2 * n + 1})), std::invalid_argument);
  CHECK_THROWS_AS(pg.all_reduce(Tensor::zeros({2}, DType::bf16), ReduceOp::sum), std::invalid_argument);
}

TEST_CASE("collectives: non-blocking variants in flight together, and the counters") {
  const int n = g_world->size(), r = g_world->rank();
  DeviceMesh mesh(*g_world, 1, n);
  ProcessGroup& pg = mesh.world_group();
  reset_comm_stats();
  Tensor shard = Tensor::full({4}, double(r)), gathered = Tensor::empty({4 * n});
  Tensor sum = Tensor::full({2}, 1.0);
  Tensor in = Tensor::full({2 * n}, double(r + 1)), out = Tensor::empty({2});
  // Three collectives outstanding at once, waited for in another order than issued.
  auto gather = pg.all_gather_async(shard, gathered);
  auto reduce = pg.all_reduce_async(sum, ReduceOp::sum);
  auto scatter = pg.reduce_scatter_async(in, out, ReduceOp::avg);
  scatter->wait();
  reduce->wait();
  gather->wait();
  for (int i = 0; i < n; ++i) CHECK(gathered.item(4 * i + 3) == i);
  CHECK(sum.item(1) == n);
  CHECK(out.item(0) == Approx((n + 1) / 2.0));
  const CommStats& s = comm_stats();
  CHECK(s.calls[CommStats::all_gather] == 1);
  CHECK(s.bytes[CommStats::all_gather] == 16 * n);  // what arrives: n shards of 4 floats
  CHECK(s.bytes[CommStats::all_reduce] == 8);
  CHECK(s.bytes[CommStats::reduce_scatter] == 8 * n);
  CHECK(s.total_bytes() == 24 * n + 8);
  CHECK(s.wait_seconds >= 0);
  { auto unwaited = pg.barrier_async(); }  // the destructor waits: no request is left behind
  CHECK(comm_stats().calls[CommStats::barrier] == 1);
}
