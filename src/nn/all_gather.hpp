#pragma once
// FSDP2's all-gather extension (fsdp_pre_all_gather / fsdp_post_all_gather), DESIGN.md section 6.
//
// A parameter may carry an extension that says what travels in FSDP's all-gather instead of its
// value in the mixed-precision param dtype, and how the layer's compute weight is rebuilt from
// what arrived. FSDP calls it without knowing what it encodes (Float8Linear's e4m3 weight + scale
// is one); the layer that registered it reads the result. Lives in nn so that both dist (which
// calls it) and the layers (which implement it) depend only downward.
#include <functional>

#include "core/tensor.hpp"

namespace titan::nn {

class AllGatherExtension {
 public:
  virtual ~AllGatherExtension() = default;
  // The dtype of what travels (and of the gathered buffer the layer then reads).
  virtual DType gather_dtype() const = 0;
  // Encodes this rank's f32 master shard `shard` [rows_per_shard, row_elems] into `out` (same
  // shape, gather_dtype()). `max_over_shards` replaces a float32 tensor by its element-wise MAX
  // over the shard group (one collective; every rank of the group calls pre_all_gather together).
  virtual void pre_all_gather(const Tensor& shard, const Tensor& out,
                              const std::function<void(const Tensor&)>& max_over_shards) = 0;
  // `gathered` is the full parameter in gather_dtype(), a view of FSDP's buffer that stays valid
  // (and is refilled by a re-gather before backward) while the unit is gathered.
  virtual void post_all_gather(const Tensor& gathered) = 0;
  // The shards changed (an optimizer step, a load): whatever the encoding cached is stale.
  virtual void shards_changed() = 0;
};

}  // namespace titan::nn
