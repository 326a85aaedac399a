#include "dist/parallel_dims.hpp"

#include "core/errors.hpp"

namespace titan::dist {

std::string ParallelDims::describe() const {
  std::string dp;
  if (replicate > 1 && shard > 1)
    dp = "HSDP (replicate " + std::to_string(replicate) + " x shard " + std::to_string(shard) + ")";
  else if (shard > 1) dp = "FSDP (shard " + std::to_string(shard) + ")";
  else if (replicate > 1) dp = "DDP (replicate " + std::to_string(replicate) + ")";
  if (tp > 1) return dp.empty() ? "TP " + std::to_string(tp) : dp + " + TP " + std::to_string(tp);
  return dp.empty() ? "single device" : dp;
}

ParallelDims resolve_parallel_dims(std::int64_t replicate, std::int64_t shard, std::int64_t tp, int world) {
  const std::string w = std::to_string(world);
  const std::string r = std::to_string(replicate), t = std::to_string(tp);
  if (shard == -1) {
    if (world % (replicate * tp) != 0)
      throw UserError("parallelism: data_parallel_shard_degree = -1 means world / (data_parallel_replicate_degree x "
                      "tensor_parallel_degree) = " + w + " / (" + r + " x " + t + "), which is not a whole number; "
                      "launch a multiple of " + std::to_string(replicate * tp) + " ranks, or choose degrees whose "
                      "product divides the world size " + w);
    shard = world / (replicate * tp);
  }
  if (replicate * shard * tp != world)
    throw UserError("parallelism: data_parallel_replicate_degree (" + r + ") x data_parallel_shard_degree (" +
                    std::to_string(shard) + ") x tensor_parallel_degree (" + t + ") = " +
                    std::to_string(replicate * shard * tp) + ", but the world size is " + w + "; make the product " + w +
                    " (or set data_parallel_shard_degree = -1)");
  return ParallelDims{world, static_cast<int>(replicate), static_cast<int>(shard), static_cast<int>(tp)};
}

BatchPlan resolve_batch(std::int64_t local_batch, std::int64_t global_batch, const ParallelDims& dims) {
  const std::int64_t per_micro_step = local_batch * dims.dp();
  if (global_batch == -1) return {local_batch, per_micro_step, 1};
  if (global_batch % per_micro_step != 0)
    throw UserError("training: global_batch_size (" + std::to_string(global_batch) +
                    ") must be a multiple of local_batch_size x data-parallel degree = " + std::to_string(local_batch) +
                    " x " + std::to_string(dims.dp()) + " = " + std::to_string(per_micro_step) +
                    " (gradient accumulation needs whole micro-steps)");
  return {local_batch, global_batch, global_batch / per_micro_step};
}

}  // namespace titan::dist
