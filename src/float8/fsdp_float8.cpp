#include "float8/fsdp_float8.hpp"

#include <vector>

namespace titan::float8 {

namespace {

class Float8WeightAllGather : public nn::AllGatherExtension {
 public:
  explicit Float8WeightAllGather(Float8Linear& layer) : layer_(layer) {}

  DType gather_dtype() const override { return DType::f8e4m3; }

  void pre_all_gather(const Tensor& shard, const Tensor& out,
                      const std::function<void(const Tensor&)>& max_over_shards) override {
    if (!fresh_) {  // torchao without precompute: the global amax at the weight's gather
      const Tensor global_amax = amax(shard, Granularity::tensorwise, 0);
      max_over_shards(global_amax);
      set_scale(amax_to_scale(global_amax, DType::f8e4m3, false));
    }
    out.copy_from(cast_to_float8_with_scale(shard, DType::f8e4m3, scale_).data);
  }

  void post_all_gather(const Tensor&) override { layer_.set_precast_weight_scale(scale_); }

  void shards_changed() override { fresh_ = false; }

  // `s`, an f32 [1] tensor where the shard is (the host never reads it: no sync on a GPU), is
  // copied into this weight's own scale, which stays the same tensor from step to step: the layer
  // holds it, and a captured step (compile.enable) replays its writes into the same memory.
  void set_scale(const Tensor& s) {
    if (!scale_.defined() || scale_.device() != s.device()) scale_ = Tensor::empty({1}, DType::f32, s.device());
    scale_.copy_from(s);
    fresh_ = true;
  }

 private:
  Float8Linear& layer_;
  Tensor scale_;
  bool fresh_ = false;  // scale_ is the current shard's (precomputed, or computed at this gather)
};

}  // namespace

int enable_fsdp_float8_all_gather(nn::Module& root) {
  int n = 0;
  for (auto& [fqn, m] : root.named_modules())
    if (auto* f8 = dynamic_cast<Float8Linear*>(m)) {
      f8->set_all_gather_extension("weight", std::make_shared<Float8WeightAllGather>(*f8));
      ++n;
    }
  return n;
}

int precompute_float8_dynamic_scale_for_fsdp(nn::Module& root,
                                             const std::function<const Tensor&(const autograd::Variable&)>& local_shard,
                                             const std::function<void(const Tensor&)>& max_over_shards) {
  std::vector<std::pair<Float8WeightAllGather*, const Tensor*>> weights;
  for (auto& [fqn, m] : root.named_modules())
    if (auto* f8 = dynamic_cast<Float8Linear*>(m))
      if (auto* ext = dynamic_cast<Float8WeightAllGather*>(f8->all_gather_extension("weight").get()))
        weights.emplace_back(ext, &local_shard(f8->weight));
  if (weights.empty()) return 0;
  // Every weight's amax side by side where the shards are (queued: the host reads none of them).
  const Device device = weights.front().second->device();
  Tensor amaxes = Tensor::empty({static_cast<std::int64_t>(weights.size())}, DType::f32, device);
  for (size_t i = 0; i < weights.size(); ++i) {
    const Tensor& shard = *weights[i].second;
    const Tensor shard_2d = shard.view({shard.size(0), shard.numel() / shard.size(0)});
    amaxes.view_range(std::int64_t(i), {1}).copy_from(amax(shard_2d, Granularity::tensorwise, 0));
  }
  max_over_shards(amaxes);  // every weight's global amax in ONE all-reduce
  const Tensor scales = amax_to_scale(amaxes, DType::f8e4m3, false);
  for (size_t i = 0; i < weights.size(); ++i) weights[i].first->set_scale(scales.view_range(std::int64_t(i), {1}));
  return 1;
}

}  // namespace titan::float8
