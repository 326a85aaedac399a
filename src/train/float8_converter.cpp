#include "train/float8_converter.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "float8/float8_linear.hpp"
#include "float8/fsdp_float8.hpp"
#include "ops/ops.hpp"

namespace titan::train {

void Float8Converter::convert(nn::Module& model) {
  int converted = 0;
  for (const auto& d : float8::convert_to_float8(model, opts_.filter_fqns, opts_.recipe_name, opts_.amax_history_len,
                                                 opts_.emulate))
    converted += d.convert;
  spdlog::info("float8: {} Linear layers use the {} recipe ({})", converted, opts_.recipe_name,
               ops::scaled_mm_implementation(opts_.device, opts_.emulate));
  if (opts_.enable_fsdp_float8_all_gather) float8::enable_fsdp_float8_all_gather(model);
}

// With precompute, every float8-gathered weight's scale comes from one all-reduce after each
// change of the shards (else each gather all-reduces its own amax).
void Float8Converter::precompute_scales(nn::Module& model, const ParallelAccess& parallel) {
  if (precompute())
    scale_all_reduces_ +=
        float8::precompute_float8_dynamic_scale_for_fsdp(model, parallel.local_shard, parallel.max_over_shards);
}

void Float8Converter::weights_changed(nn::Module& model, const ParallelAccess& parallel) {
  precompute_scales(model, parallel);
  // The delayed scales are recomputed from the histories at their next use (after a load, or
  // after a validation between CUDA graph replays, whose device-side pushes the host never saw).
  float8::mark_delayed_scales_stale(model);
}

// Delayed scaling on several ranks: torchao initialises each amax with a MAX all-reduce, so the
// first step casts with the global amax. Each first-step cast issues one blocking all-reduce over
// the world in the middle of forward or backward. That cannot deadlock: every rank runs the same
// layers in the same order (same model, same micro-batch count, same activation-checkpointing
// recomputes), so the casts, and with them these collectives, come in the same order on every
// rank; whether a cast is a first-step one depends only on the histories, which the end-of-step
// sync (and a checkpoint) keeps identical on all ranks.
void Float8Converter::parallelized(nn::Module& model, const ParallelAccess& parallel) {
  // Tensor parallel (tensorwise; the plan refuses other recipes with TP): every Linear of the TP
  // plan is split over the TP group, so each tensorwise amax becomes the whole tensor's (one MAX
  // all-reduce per cast; for an operand that is replicated over the group it changes nothing).
  if (parallel.max_over_tp)
    for (auto& [fqn, m] : model.named_modules())
      if (auto* f8 = dynamic_cast<float8::Float8Linear*>(m))
        f8->set_amax_over_group([this, max = parallel.max_over_tp](const Tensor& amax) {
          max(amax);
          ++scale_all_reduces_;
        });
  if (opts_.recipe_name != "delayed" || parallel.data_parallel_size <= 1) return;
  float8::set_first_step_amax_reduction(model, [this, max_over_world = parallel.max_over_world](const Tensor& amax) {
    max_over_world(amax);  // in place, where the cast runs
    ++scale_all_reduces_;
  });
}

void Float8Converter::post_optimizer_hook(nn::Module& model, const ParallelAccess& parallel) {
  precompute_scales(model, parallel);
  // Delayed scaling: this step's amaxes join the histories (one reduction for the whole model).
  float8::sync_amax_histories(model, parallel.max_over_world);
}

}  // namespace titan::train
