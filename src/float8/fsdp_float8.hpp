#pragma once
// Float8 all-gather for FSDP (enable_fsdp_float8_all_gather, tensorwise recipe; DESIGN.md
// section 5), built on FSDP's generic all-gather extension (nn/all_gather.hpp), so FSDP itself
// never names float8:
//   pre_all_gather   the f32 master shard is cast to e4m3 with the scale of the weight's global
//                    amax (one MAX all-reduce over the shard group at the gather, or precomputed
//                    for every weight at once after the optimizer step) and sent as bytes;
//   post_all_gather  the gathered e4m3 weight and that scale are what the layer's GEMMs use.
// The scale is kept until the shards change, so the re-gather before backward sends the same
// bytes; the float8 weight is bit-identical to a single-process run's.
#include <functional>

#include "float8/float8_linear.hpp"

namespace titan::float8 {

// Gives every Float8Linear under `root` the float8 all-gather extension for its weight. Call
// before FSDP makes the units. Returns how many weights will travel as e4m3.
int enable_fsdp_float8_all_gather(nn::Module& root);

// precompute_float8_dynamic_scale_for_fsdp: the post-optimizer step. Every float8-gathered
// weight's amax from its local shard (`local_shard(weight)`), combined across the shard group in
// ONE `max_over_shards` call, becomes the scale the next gathers use. Returns the number of
// all-reduces issued (1, or 0 without float8-gathered weights).
int precompute_float8_dynamic_scale_for_fsdp(nn::Module& root,
                                             const std::function<const Tensor&(const autograd::Variable&)>& local_shard,
                                             const std::function<void(const Tensor&)>& max_over_shards);

}  // namespace titan::float8
