#pragma once
// FSDP2-style fully sharded data parallelism over a DeviceMesh (DESIGN.md section 6).
//
// Every parameter is sharded on dim 0 over the shard group: with R rows and S ranks, each rank
// owns ceil(R / S) rows (the last ranks' tails are zero padding, so any S <= R works), kept as an
// f32 master shard that the optimizer updates. Parameters are grouped into units (TorchTitan:
// tok_embeddings, each block, [norm, output]); a unit's parameters live in one storage that is
// filled by all-gathers before the unit runs and released after it:
//
//   forward  pre-hook     gather the unit (mixed_precision_param: f32, bf16, or float8 bytes)
//            post-hook    release it when reshard_after_forward; the unit's outputs carry an
//                         identity node whose backward re-gathers it (module backward pre-hook)
//   backward each parameter's gradient lands in its unsharded buffer; once all of a unit's have,
//            reduce-scatter them (average over the shard group) into the shard gradients, then
//            all-reduce those over the replicate group (HSDP), and release the unit.
//            A callback at the end of backward finishes any unit still pending.
//
// Autograd keeps views of the unit storage as saved tensors; releasing the storage keeps those
// views valid and a re-gather refills the same storage (Storage::release / reallocate).
//
// Float8 all-gather (tensorwise recipe): a Float8Linear weight is cast to e4m3 on its shard with
// the scale of the global amax (one MAX all-reduce over the shard group, or precomputed for every
// weight with ONE all-reduce after the optimizer step) and gathered as bytes; the layer then
// uses that scale, so its float8 weight is bit-identical to a single-process run.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dist/process_group.hpp"
#include "nn/module.hpp"

namespace titan::float8 {
class Float8Linear;
}

namespace titan::dist {

struct FsdpOptions {
  DType param_dtype = DType::f32;   // mixed_precision_param: what travels in the all-gather (f32 or bf16)
  DType reduce_dtype = DType::f32;  // mixed_precision_reduce: precision of the gradient reductions
  bool float8_all_gather = false;   // enable_fsdp_float8_all_gather
  bool precompute_float8_scales = false;  // precompute_float8_dynamic_scale_for_fsdp
  Device device = Device::cpu();          // where shards, gathered units and gradients live
};

// The per-rank footprint of the sharded training state (bytes).
struct ShardedStateBytes {
  std::int64_t params = 0, grads = 0;
};

class Fsdp {
 public:
  Fsdp(DeviceMesh& mesh, FsdpOptions options);
  ~Fsdp();
  Fsdp(const Fsdp&) = delete;
  Fsdp& operator=(const Fsdp&) = delete;

  // Makes the parameters of `modules` one unit (fully_shard(modules)). Their data must not be
  // used until init_shards; from then on they hold data only while the unit is gathered.
  // Throws UserError when the shard degree exceeds a parameter's rows.
  void add_unit(const std::string& name, const std::vector<nn::Module*>& modules, bool reshard_after_forward);

  // Allocates every master shard and fills it with `init(fqn, rows, first_element)`, where `rows`
  // is the real (unpadded) part of this rank's shard and `first_element` its flat offset in the
  // full parameter: no rank ever holds a full parameter.
  void init_shards(const std::function<void(const std::string& fqn, Tensor& rows, std::int64_t first_element)>& init);

  // The f32 master shards [ceil(R / S), ...]: what the optimizer and gradient clipping see.
  std::vector<autograd::Variable*> sharded_parameters();
  // FQN of sharded_parameters()[i].
  const std::string& fqn_of(size_t i) const;
  // Which rows of the full parameter sharded_parameters()[i] holds: [row_begin, row_end) of
  // `global_shape` are its first row_end - row_begin rows (the rest is padding).
  struct ShardRows {
    Shape global_shape;
    std::int64_t row_begin = 0, row_end = 0;
  };
  ShardRows shard_rows(size_t i) const;
  // The whole f32 value of sharded_parameters()[i] (an all-gather over the shard group: every
  // member must call it), e.g. for an HF export.
  Tensor full_parameter(size_t i);

  // Gradient accumulation: false on all but the last micro-batch keeps the unsharded gradients
  // (no communication); true (the default) reduces them at the end of the backward.
  void set_requires_gradient_sync(bool sync) { sync_grads_ = sync; }

  // Sum over the shard group of a local value (global sum of squares for the gradient norm).
  double sum_over_shards(double local);

  // After the shards changed (initialisation, an optimizer step): gathered copies are stale, and
  // float8 weight scales are either recomputed for every weight with one all-reduce (precompute)
  // or dropped, to be computed by each weight's gather.
  void refresh_after_update();

  ShardedStateBytes state_bytes() const;
  // Float8 amax all-reduces issued (each is one collective) since construction.
  std::int64_t float8_amax_all_reduces() const { return amax_all_reduces_; }
  int shard_degree() const;

  struct Param;
  struct Unit;

 private:
  void gather(Unit& u);
  void release(Unit& u);
  void post_backward(Unit& u);
  void finish_backward();
  void ensure_float8_scales(Unit& u);

  DeviceMesh& mesh_;
  FsdpOptions opt_;
  std::vector<std::unique_ptr<Unit>> units_;
  bool sync_grads_ = true;
  bool callback_queued_ = false;
  std::int64_t amax_all_reduces_ = 0;
};

}  // namespace titan::dist
