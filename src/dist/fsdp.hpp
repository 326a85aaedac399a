#pragma once
// FSDP2-style fully sharded data parallelism over a DeviceMesh (DESIGN.md section 6).
//
// Every parameter is sharded on dim 0 over the shard group: with R rows and S ranks, each rank
// owns ceil(R / S) rows (the last ranks' tails are zero padding, so any S <= R works), kept as an
// f32 master shard that the optimizer updates. Parameters are grouped into units (TorchTitan:
// tok_embeddings, each block, [norm, output]); a unit's parameters live in one storage that is
// filled by all-gathers before the unit runs and released after it:
//
//   forward  pre-hook     gather the unit (mixed_precision_param, or what an extension sends)
//            post-hook    release it when reshard_after_forward; the unit's outputs carry an
//                         identity node whose backward re-gathers it (module backward pre-hook)
//   backward each parameter's gradient lands in its unsharded buffer; once all of a unit's have,
//            reduce-scatter them (average over the shard group) into the shard gradients, then
//            all-reduce those over the replicate group (HSDP), and release the unit.
//            A callback at the end of backward finishes any unit still pending.
//
// What a parameter's gathered value is: its master shards all-gathered in the mixed-precision
// param dtype (mixed_precision_param), into a buffer of that dtype the layer uses as it is; where
// the device's ops do not compute in that dtype (bf16 on the CPU) the buffer is f32 holding the
// rounded values, so the rounding happens once, in the gather. A parameter whose module supplies
// an all-gather extension (nn/all_gather.hpp) is gathered the extension's way instead (Float8Linear:
// e4m3 bytes and a scale); FSDP does not know what it encodes.
//
// Autograd keeps references to the gathered buffers as saved tensors (never copies); releasing a
// buffer keeps those views valid and a re-gather refills the same storage (Storage::release /
// reallocate), so a unit's weights are alive only while it is gathered.
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dist/process_group.hpp"
#include "nn/module.hpp"

namespace titan::dist {

// FSDP's mixed-precision policy and placement.
struct FsdpOptions {
  DType param_dtype = DType::f32;   // mixed_precision_param: what travels in the all-gather (f32, bf16 or f16)
  DType reduce_dtype = DType::f32;  // mixed_precision_reduce: precision of the gradient reductions
  Device device = Device::cpu();    // where shards, gathered units and gradients live
  // The parameters are themselves parts of tensors split over this group too (tensor parallel):
  // an extension's max_over_shards also takes the MAX over it. Null: whole parameters.
  ProcessGroup* extension_max_also = nullptr;
  // ZeRO++ hpZ (reshard_after_forward = N, FSDP2's int): a unit that reshards after forward
  // keeps its gathered bytes sharded over this group of N adjacent shard ranks (each member 1/N
  // of them, in the all-gather's wire dtype) instead of freeing everything, and its backward
  // gathers from this group only. Null: units free all after forward.
  ProcessGroup* hpz_group = nullptr;
  // CPU offload (FSDP2's CPUOffloadPolicy): master shards and their gradients live in host memory
  // (the optimizer updates them there); each all-gather copies the shards to `device` as it packs
  // them, each reduced gradient comes back to the host. With `device` the CPU: nothing changes.
  bool offload = false;
};

// All-gathers FSDP issued, by the group they ran on (the step log's hpZ evidence).
struct FsdpGatherCounts {
  std::int64_t shard_group = 0, hpz_group = 0;
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
  // is a range of whole rows of the real (unpadded) part of this rank's shard and `first_element`
  // its flat offset in the full parameter: no rank ever holds a full parameter. The ranges are
  // filled concurrently on the CPU pool (ops/cpu/threads.hpp): `init` must be a pure function of
  // (fqn, element index), as the counter-based init is.
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
  // The f32 master shard behind a module parameter (what an extension's owner reads to
  // precompute its encoding, e.g. float8 scales for every weight in one all-reduce).
  const Tensor& local_shard_of(const autograd::Variable& module_param) const;
  // The whole f32 value of sharded_parameters()[i] (an all-gather over the shard group: every
  // member must call it), e.g. for an HF export.
  Tensor full_parameter(size_t i);

  // Gradient accumulation: false on all but the last micro-batch keeps the unsharded gradients
  // (no communication); true (the default) reduces them at the end of the backward.
  void set_requires_gradient_sync(bool sync) { sync_grads_ = sync; }

  // Sums `t` over the shard group in place (the global sum of squares for the gradient norm; a
  // device tensor stays on its device).
  void sum_over_shards(Tensor& t);

  // After the shards changed (initialisation, an optimizer step, a load): gathered copies are
  // stale; every all-gather extension is told (shards_changed).
  void refresh_after_update();

  ShardedStateBytes state_bytes() const;
  // All-reduces issued by all-gather extensions (max_over_shards calls) since construction.
  std::int64_t extension_all_reduces() const { return extension_all_reduces_; }
  int shard_degree() const;
  // Where the master shards and their gradients live: the host under offload, else `device`.
  Device shard_device() const { return opt_.offload ? Device::cpu() : opt_.device; }
  // `t` in shard memory: shard_device(), or a copy in page-locked host memory when offloading
  // from a GPU; otherwise the same tensor when it is there already.
  Tensor to_shard_memory(const Tensor& t) const;
  FsdpGatherCounts gather_counts() const { return gather_counts_; }

  // Prefetching (on by default): a unit's forward issues the next unit's all-gather, its
  // backward the previous unit's, so each gather runs while a unit computes.
  void set_prefetch(bool on) { prefetch_ = on; }
  // Units whose full parameters are alive now (gathered, or their all-gather in flight): at most
  // two while a forward or backward runs (the computing unit and the prefetched one).
  int live_units() const;

  struct Param;
  struct Unit;
  struct PendingReduce;

 private:
  void start_gather(Unit& u);   // packs the shards and issues the unit's all-gather
  void finish_gather(Unit& u);  // waits for it and copies the parameters out
  void gather(Unit& u);
  void release(Unit& u);
  void post_backward(Unit& u);
  void finish_reduce();  // the oldest pending reduction, to the end (accumulated into the shard grads)
  // One stage of a pending reduction: waits for its collective, then issues the replica
  // all-reduce (HSDP, after the reduce-scatter) or accumulates; true when it is done.
  bool advance_reduce(PendingReduce& r);
  // A finished reduction's shard gradients: views of its buffer, or added to what is there.
  void accumulate_shard_grads(const PendingReduce& r);
  void accumulate_shard_grad(Param& p, Tensor shard_grad);
  void finish_backward();

  DeviceMesh& mesh_;
  FsdpOptions opt_;
  std::vector<std::unique_ptr<Unit>> units_;
  std::vector<PendingReduce> pending_;  // oldest first
  bool prefetch_ = true;
  bool sync_grads_ = true;
  bool callback_queued_ = false;
  std::int64_t extension_all_reduces_ = 0;
  FsdpGatherCounts gather_counts_;
};

}  // namespace titan::dist
