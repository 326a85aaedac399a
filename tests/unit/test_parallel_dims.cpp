#include <catch2/catch.hpp>

#include "core/errors.hpp"
#include "dist/parallel_dims.hpp"

using namespace titan::dist;
using Catch::Matchers::Contains;

TEST_CASE("mesh: shard degree -1 takes the ranks left after replication and TP") {
  ParallelDims d = resolve_parallel_dims(1, -1, 1, 4);
  CHECK(d.replicate == 1);
  CHECK(d.shard == 4);
  CHECK(d.describe() == "FSDP (shard 4)");
  d = resolve_parallel_dims(2, -1, 1, 4);
  CHECK(d.shard == 2);
  CHECK(d.describe() == "HSDP (replicate 2 x shard 2)");
  CHECK(resolve_parallel_dims(2, 1, 1, 2).describe() == "DDP (replicate 2)");
  CHECK(resolve_parallel_dims(1, -1, 1, 1).describe() == "single device");
  CHECK(resolve_parallel_dims(1, 3, 1, 3).shard == 3);
  d = resolve_parallel_dims(2, -1, 2, 8);
  CHECK(d.shard == 2);
  CHECK(d.tp == 2);
  CHECK(d.dp() == 4);
  CHECK(d.describe() == "HSDP (replicate 2 x shard 2) + TP 2");
  CHECK(resolve_parallel_dims(1, -1, 2, 2).describe() == "TP 2");
  CHECK(resolve_parallel_dims(1, -1, 8, 64).shard == 8);  // TorchTitan's 70B: 64 GPUs, TP 8
}

TEST_CASE("mesh: a product that is not the world size shows the arithmetic") {
  CHECK_THROWS_WITH(resolve_parallel_dims(3, 2, 1, 4),
                    Contains("data_parallel_replicate_degree (3) x data_parallel_shard_degree (2) x tensor_parallel_degree (1) = 6, but the world size is 4"));
  CHECK_THROWS_WITH(resolve_parallel_dims(3, -1, 1, 4), Contains("4 / (3 x 1), which is not a whole number"));
  CHECK_THROWS_WITH(resolve_parallel_dims(1, -1, 3, 4), Contains("4 / (1 x 3), which is not a whole number"));
  CHECK_THROWS_AS(resolve_parallel_dims(1, 2, 1, 1), titan::UserError);
  CHECK_THROWS_AS(resolve_parallel_dims(1, 2, 2, 2), titan::UserError);
}

TEST_CASE("batch: global batch and gradient accumulation") {
  const ParallelDims d = resolve_parallel_dims(2, 2, 1, 4);
  BatchPlan b = resolve_batch(8, -1, d);
  CHECK(b.global_batch == 32);
  CHECK(b.grad_accum == 1);
  b = resolve_batch(8, 128, d);
  CHECK(b.grad_accum == 4);
  CHECK_THROWS_WITH(resolve_batch(8, 100, d), Contains("must be a multiple of local_batch_size x data-parallel degree = 8 x 4 = 32"));
  // TP ranks share their batch: the data-parallel degree of 2 x 2 x TP 2 is 4.
  CHECK(resolve_batch(1, -1, resolve_parallel_dims(2, 2, 2, 8)).global_batch == 4);
}
