#pragma once
// How the world of ranks is divided: a 3D (replicate, shard, tp) mesh, tp innermost (the ranks
// of one tensor-parallel group are adjacent, so they share a node), and how the global batch
// splits into per-rank micro-batches. Pure arithmetic; errors are UserErrors that show the numbers.
#include <cstdint>
#include <string>

namespace titan::dist {

struct ParallelDims {
  int world = 1;
  int replicate = 1;  // data_parallel_replicate_degree
  int shard = 1;      // data_parallel_shard_degree (resolved)
  int tp = 1;         // tensor_parallel_degree
  // Data-parallel degree: the ranks that see different batches (a TP group shares one).
  int dp() const { return replicate * shard; }
  // "FSDP (shard 4)", "HSDP (replicate 2 x shard 2)", "DDP (replicate 2)", "single device",
  // with " + TP 2" (or "TP 2" alone) when tensor parallel.
  std::string describe() const;
};

// shard == -1 means world / (replicate x tp). The product replicate x shard x tp must equal the
// world size.
ParallelDims resolve_parallel_dims(std::int64_t replicate, std::int64_t shard, std::int64_t tp, int world);

struct BatchPlan {
  std::int64_t local_batch = 1;   // sequences per rank per micro-step
  std::int64_t global_batch = 1;  // sequences per optimizer step
  std::int64_t grad_accum = 1;    // micro-steps per optimizer step
};

// global == -1 means local x dp; otherwise global must be a multiple of local x dp.
BatchPlan resolve_batch(std::int64_t local_batch, std::int64_t global_batch, const ParallelDims& dims);

}  // namespace titan::dist
