#pragma once
// The quantize.linear.float8 converter (DESIGN.md section 5): swaps Linear -> Float8Linear,
// registers the float8 all-gather extension with FSDP's generic mechanism, and after each
// optimizer step precomputes the gathered weights' scales (one MAX all-reduce over the shard
// group) and syncs delayed-scaling amax histories (one MAX all-reduce over the world). With
// delayed scaling on several ranks the first step's casts take the world's MAX amax too.
#include <string>
#include <vector>

#include "core/device.hpp"
#include "train/model_converter.hpp"

namespace titan::train {

struct Float8ConverterOptions {
  std::vector<std::string> filter_fqns;
  std::string recipe_name = "tensorwise";
  int amax_history_len = 16;
  bool emulate = false;
  bool enable_fsdp_float8_all_gather = false;
  bool precompute_float8_dynamic_scale_for_fsdp = false;  // only with the float8 all-gather
  Device device = Device::cpu();                          // where the GEMMs run (for the log line)
};

class Float8Converter final : public ModelConverter {
 public:
  explicit Float8Converter(Float8ConverterOptions options) : opts_(std::move(options)) {}

  void convert(nn::Module& model) override;
  void parallelized(nn::Module& model, const ParallelAccess& parallel) override;
  void post_optimizer_hook(nn::Module& model, const ParallelAccess& parallel) override;
  void weights_changed(nn::Module& model, const ParallelAccess& parallel) override;
  std::int64_t amax_all_reduces() const override { return scale_all_reduces_; }

  bool all_gather() const { return opts_.enable_fsdp_float8_all_gather; }
  bool precompute() const { return opts_.enable_fsdp_float8_all_gather && opts_.precompute_float8_dynamic_scale_for_fsdp; }

 private:
  void precompute_scales(nn::Module& model, const ParallelAccess& parallel);

  Float8ConverterOptions opts_;
  std::int64_t scale_all_reduces_ = 0;
};

}  // namespace titan::train
