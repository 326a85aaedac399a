#pragma once
// Model converters (TorchTitan's ModelConverter protocol, model.converters): a converter rewrites
// the model before it is parallelised (`convert`, on the meta device), may attach hooks that need
// the parallel set-up once it exists (`parallelized`), and may do work after each optimizer step
// (`post_optimizer_hook`). The trainer builds them from the config, calls `convert` on each, then
// `parallelized`, and after every optimizer step calls the hook once FSDP has refreshed.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "autograd/variable.hpp"
#include "core/tensor.hpp"
#include "nn/module.hpp"

namespace titan::train {

// What a converter's hooks may use of the parallel set-up, without naming FSDP or the mesh.
struct ParallelAccess {
  // This rank's f32 master shard of a parameter (FSDP's local shard).
  std::function<const Tensor&(const autograd::Variable&)> local_shard;
  // In-place MAX all-reduce of a float32 tensor over the ranks that hold parts of one weight
  // (the shard group, and the TP group when tensor parallel), and over the whole world.
  std::function<void(const Tensor&)> max_over_shards;
  std::function<void(const Tensor&)> max_over_world;
  // Tensor parallel: MAX over the TP group (null without tensor parallelism).
  std::function<void(const Tensor&)> max_over_tp;
  // Data-parallel ranks (replicate x shard).
  int data_parallel_size = 1;
};

class ModelConverter {
 public:
  virtual ~ModelConverter() = default;
  // Rewrites `model` (full shapes, on the meta device, before FSDP) and logs what it did.
  virtual void convert(nn::Module& model) = 0;
  // Once, after FSDP has sharded the model and before the first forward: the hooks a layer needs
  // from the parallel set-up during the steps.
  virtual void parallelized(nn::Module& /*model*/, const ParallelAccess& /*parallel*/) {}
  // After an optimizer step, once FSDP's gathered copies follow the new shards.
  virtual void post_optimizer_hook(nn::Module& model, const ParallelAccess& parallel) = 0;
  // After the shards were set outside a step (initialisation, HF import, checkpoint load): the
  // part of the post-optimizer work that follows the weights, without a step's bookkeeping.
  virtual void weights_changed(nn::Module& /*model*/, const ParallelAccess& /*parallel*/) {}
  // Collectives this converter has issued for float8 scales so far (the step log's
  // float8_amax_all_reduces counts them with FSDP's extension all-reduces).
  virtual std::int64_t amax_all_reduces() const { return 0; }
};

using ModelConverters = std::vector<std::unique_ptr<ModelConverter>>;

}  // namespace titan::train
