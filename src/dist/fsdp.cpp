#include "dist/fsdp.hpp"

#include <algorithm>
#include <map>
#include <stdexcept>

#include "core/errors.hpp"
#include "ops/cpu/threads.hpp"
#include "ops/ops.hpp"

namespace titan::dist {

using autograd::Variable;

namespace {
// Elements per chunk of the parallel parameter initialisation (whole rows; 16 KiB of floats:
// each chunk's RNG work, tens of microseconds, dwarfs handing it to a thread).
constexpr std::int64_t kInitChunkElements = 1 << 12;
}  // namespace

struct Fsdp::Param {
  std::string fqn;
  Variable* module_param = nullptr;  // the model's parameter: a view of `gathered`
  Shape shape;                       // global shape
  std::int64_t rows = 0, row_elems = 1, rows_per_shard = 0;
  Variable shard;                    // f32 master shard [rows_per_shard, ...]: what the optimizer updates
  std::shared_ptr<nn::AllGatherExtension> extension;  // null: gathered in the param dtype
  DType wire = DType::f32;           // what travels in the all-gather
  Tensor gathered;                   // [S * rows_per_shard, row_elems]; storage released between uses
  std::size_t wire_offset = 0;       // bytes into one rank's part of the unit's flat all-gather buffer
  std::int64_t grad_offset = 0;      // elements into one rank's part of the unit's flat gradient buffer

  std::int64_t padded_numel(int shards) const { return shards * rows_per_shard * row_elems; }
  Shape shard_shape() const {
    Shape s = shape;
    s[0] = rows_per_shard;
    return s;
  }
  Tensor shard_2d() const { return shard.data().view({rows_per_shard, row_elems}); }
};

// One all-gather per unit (FSDP2's layout): each rank packs its shard of every parameter, in the
// parameter's wire dtype, into one flat byte buffer (segments 16-byte aligned); the all-gather
// lays the ranks' buffers end to end, and the copy-out puts rank r's segment of parameter p into
// rows [r * rows_per_shard, (r + 1) * rows_per_shard) of p's gathered buffer.
// One reduce-scatter per unit: the gradients go into a flat f32 buffer [S, shard_elems], rank r's
// part holding rows [r * rows_per_shard, ...) of every parameter's gradient, padding zero; the
// reduce-scatter leaves this rank's part, of which each parameter's shard gradient is a view.
struct Fsdp::Unit {
  std::string name;
  size_t index = 0;  // position in the forward order
  std::vector<nn::Module*> modules;
  bool reshard_after_forward = true;
  std::vector<Param> params;
  std::size_t shard_bytes = 0;     // one rank's part of the flat all-gather buffer
  std::int64_t shard_elems = 0;    // one rank's part of the flat gradient buffer
  enum class State { released, in_flight, gathered } state = State::released;
  Tensor send, recv;               // the flat all-gather's buffers while it is in flight
  // hpZ: this rank's 1/N of the gathered bytes kept from the forward's gather until the backward
  // gathers from them (member j of the group keeps ranks [j S/N, (j+1) S/N)'s packed shards, so
  // the group's all-gather lays them out as the shard group's does).
  Tensor hpz_part;
  std::unique_ptr<Work> gather_work;
  size_t grads_ready = 0;  // parameters whose gradient arrived in the current backward
};

// A unit's gradient reduction in flight: the reduce-scatter's buffers and handle, then (HSDP)
// the replica all-reduce's.
struct Fsdp::PendingReduce {
  Unit* unit;
  Tensor in, out;
  std::unique_ptr<Work> work;
  bool over_replicas = false;  // `work` is the replica all-reduce (else the reduce-scatter)
};

Fsdp::Fsdp(DeviceMesh& mesh, FsdpOptions options) : mesh_(mesh), opt_(options) {}
Fsdp::~Fsdp() = default;

int Fsdp::shard_degree() const { return mesh_.shard(); }

void Fsdp::add_unit(const std::string& name, const std::vector<nn::Module*>& modules, bool reshard_after_forward) {
  auto unit = std::make_unique<Unit>();
  Unit* u = unit.get();
  u->name = name;
  u->modules = modules;
  u->reshard_after_forward = reshard_after_forward;
  const int S = mesh_.shard();
  for (nn::Module* m : modules) {
    // A parameter's own module may supply its all-gather extension (FSDP2's fsdp_pre_all_gather).
    std::map<Variable*, std::shared_ptr<nn::AllGatherExtension>> extensions;
    for (auto& [sub_fqn, sub] : m->named_modules()) {
      const std::string prefix = sub_fqn.empty() ? "" : sub_fqn + ".";
      for (auto& [fqn, var] : sub->named_parameters()) {
        const std::string local = fqn.substr(prefix.size());
        if (local.find('.') != std::string::npos) continue;  // a descendant's parameter
        if (auto ext = sub->all_gather_extension(local)) extensions[var] = std::move(ext);
      }
    }
    for (auto& [fqn, var] : m->named_parameters()) {
      Param p;
      p.fqn = fqn;
      p.module_param = var;
      p.shape = var->shape();
      p.rows = p.shape.empty() ? 1 : p.shape[0];
      p.row_elems = p.rows ? numel_of(p.shape) / p.rows : 0;
      if (p.rows < S)
        throw UserError("parallelism: data_parallel_shard_degree = " + std::to_string(S) + " exceeds the " +
                        std::to_string(p.rows) + " rows of '" + fqn +
                        "', which FSDP shards on dim 0; use a shard degree of at most " + std::to_string(p.rows));
      p.rows_per_shard = (p.rows + S - 1) / S;
      if (auto it = extensions.find(var); it != extensions.end()) p.extension = it->second;
      p.wire = p.extension ? p.extension->gather_dtype() : opt_.param_dtype;
      // The buffer the layer computes with: the wire dtype, unless the device's ops do not
      // compute in it (bf16 on the CPU: f32 holding the rounded values).
      const DType stored = p.extension || ops::computes_in(opt_.device, p.wire) ? p.wire : DType::f32;
      p.gathered = Tensor::empty({S * p.rows_per_shard, p.row_elems}, stored, opt_.device);
      p.gathered.storage()->release();  // allocated by the first gather
      p.module_param->set_data(p.gathered.slice_rows(0, p.rows).view(p.shape));
      p.wire_offset = u->shard_bytes;
      u->shard_bytes += (std::size_t(p.rows_per_shard * p.row_elems) * dtype_size(p.wire) + 15) / 16 * 16;
      p.grad_offset = u->shard_elems;
      u->shard_elems += p.rows_per_shard * p.row_elems;
      u->params.push_back(std::move(p));
    }
  }
  u->index = units_.size();

  for (nn::Module* m : modules) {
    m->add_forward_pre_hook([this, u](nn::Module&) {
      gather(*u);
      // Forward prefetch (FSDP2's default): the next unit's all-gather runs while this one
      // computes. Not for a forward re-run by activation checkpointing inside backward.
      if (prefetch_ && !autograd::in_backward() && u->index + 1 < units_.size()) start_gather(*units_[u->index + 1]);
    });
    m->add_forward_hook([this, u, last = modules.back()](nn::Module& self, std::vector<Variable>&) {
      // A forward re-run by activation checkpointing belongs to the backward: keep the parameters.
      if (&self == last && u->reshard_after_forward && !autograd::in_backward()) release(*u);
    });
    m->add_backward_pre_hook([this, u](nn::Module&) {
      gather(*u);
      // Backward prefetch: the unit whose backward runs next (the previous one in forward order).
      if (prefetch_ && u->index > 0) start_gather(*units_[u->index - 1]);
      if (!callback_queued_) {
        autograd::queue_callback([this] { finish_backward(); });
        callback_queued_ = true;
      }
    });
  }
  for (auto& p : u->params)
    p.module_param->add_grad_accumulated_hook([this, u](Tensor&) {
      poll_collectives();  // a prefetched gather or a pending reduce-scatter moves on in backward
      if (++u->grads_ready == u->params.size()) post_backward(*u);
    });
  // ... and in forward, before each of the unit's layers.
  for (nn::Module* m : modules)
    for (auto& [fqn, sub] : m->named_modules())
      if (sub != m) sub->add_forward_pre_hook([](nn::Module&) { poll_collectives(); });
  units_.push_back(std::move(unit));
}

void Fsdp::init_shards(const std::function<void(const std::string&, Tensor&, std::int64_t)>& init) {
  const std::int64_t k = mesh_.shard_index();
  for (auto& u : units_)
    for (auto& p : u->params) {
      Tensor shard = Tensor::zeros(p.shard_shape());  // padding rows stay zero (and so do their grads)
      const std::int64_t first_row = k * p.rows_per_shard;
      const std::int64_t real_rows = std::clamp<std::int64_t>(p.rows - first_row, 0, p.rows_per_shard);
      Tensor rows = shard.view({p.rows_per_shard, p.row_elems}).slice_rows(0, real_rows);
      Shape real_shape = p.shape;
      real_shape[0] = real_rows;
      rows = rows.view(real_shape);
      // On the host, on every pool thread: the init is a pure function of each element's index
      // (counter-based RNG), so row chunks filled in any order on any number of threads give
      // the same bits (test), and a GPU run's billions of parameters start in seconds.
      if (real_rows > 0) {
        const std::int64_t chunk_rows = std::max<std::int64_t>(1, kInitChunkElements / std::max<std::int64_t>(1, p.row_elems));
        Tensor rows2d = rows.view({real_rows, p.row_elems});
        ops::cpu::parallel_chunks(real_rows, chunk_rows, [&](std::int64_t r0, std::int64_t r1) {
          Shape part_shape = real_shape;
          part_shape[0] = r1 - r0;
          Tensor part = rows2d.slice_rows(r0, r1).view(part_shape);
          init(p.fqn, part, (first_row + r0) * p.row_elems);
        });
      }
      p.shard = Variable(to_shard_memory(shard), true, p.fqn);
    }
}

Tensor Fsdp::to_shard_memory(const Tensor& t) const {
  if (t.device() == shard_device() && !(opt_.offload && !opt_.device.is_cpu())) return t;
  // Offloaded to the host of a GPU: page-locked memory, so the gathers' copies to the device and
  // the gradients' copies back run as DMA without staging (FSDP2's CPUOffloadPolicy pin_memory).
  Tensor out = opt_.offload ? Tensor::empty_pinned(t.shape(), t.dtype(), opt_.device)
                            : Tensor::empty(t.shape(), t.dtype(), shard_device());
  out.copy_from(t);
  return out;
}

std::vector<Variable*> Fsdp::sharded_parameters() {
  std::vector<Variable*> out;
  for (auto& u : units_)
    for (auto& p : u->params) out.push_back(&p.shard);
  return out;
}

const std::string& Fsdp::fqn_of(size_t i) const {
  for (auto& u : units_) {
    if (i < u->params.size()) return u->params[i].fqn;
    i -= u->params.size();
  }
  throw std::out_of_range("Fsdp::fqn_of");
}

Fsdp::ShardRows Fsdp::shard_rows(size_t i) const {
  for (auto& u : units_) {
    if (i < u->params.size()) {
      const Param& p = u->params[i];
      const std::int64_t begin = std::min(p.rows, mesh_.shard_index() * p.rows_per_shard);
      return {p.shape, begin, std::min(p.rows, begin + p.rows_per_shard)};
    }
    i -= u->params.size();
  }
  throw std::out_of_range("Fsdp::shard_rows");
}

Tensor Fsdp::full_parameter(size_t i) {
  for (auto& u : units_) {
    if (i < u->params.size()) {
      const Param& p = u->params[i];
      // Gathered into host memory: the caller writes it to a file.
      Tensor padded = Tensor::empty({p.padded_numel(mesh_.shard())});
      const Tensor shard = p.shard.data().to(Device::cpu());  // a copy: the export is rare
      mesh_.shard_group().all_gather(shard.view({shard.numel()}), padded);
      return padded.view_range(0, p.shape).clone();
    }
    i -= u->params.size();
  }
  throw std::out_of_range("Fsdp::full_parameter");
}

void Fsdp::start_gather(Unit& u) {
  if (u.state != Unit::State::released) return;
  if (!autograd::in_backward()) u.hpz_part = Tensor();  // a forward gathers afresh (and keeps a new part)
  if (u.hpz_part.defined()) {  // hpZ: the backward gathers from the N-rank group
    u.recv = Tensor::empty({std::int64_t(u.shard_bytes) * mesh_.shard()}, DType::f8e4m3, opt_.device);
    u.send = u.hpz_part;
    u.gather_work = opt_.hpz_group->all_gather_async(u.send, u.recv);
    u.hpz_part = Tensor();  // the send buffer holds it until the gather is done
    ++gather_counts_.hpz_group;
    u.state = Unit::State::in_flight;
    return;
  }
  ProcessGroup& group = mesh_.shard_group();
  const auto max_over_shards = [&](const Tensor& t) {
    group.all_reduce(t, ReduceOp::max);
    ++extension_all_reduces_;
    if (opt_.extension_max_also) {
      opt_.extension_max_also->all_reduce(t, ReduceOp::max);
      ++extension_all_reduces_;
    }
  };
  // An extension encodes its shard on the device (an offloaded shard crosses in high precision).
  const auto encode = [&](Param& p, const Tensor& into) {
    const Tensor shard = p.shard_2d();
    p.extension->pre_all_gather(shard.device() == opt_.device ? shard : shard.to(opt_.device), into, max_over_shards);
  };
  if (group.size() == 1) {
    // A shard group of one exchanges nothing: each shard is its parameter's whole value, cast or
    // copied straight into the buffer the layer uses (one pass, not pack + collective + unpack,
    // and no collective counted). The same values as the packed path: rounded to the wire dtype
    // once, then held in the stored dtype.
    for (auto& p : u.params) {
      p.gathered.storage()->reallocate();
      const Tensor shard = p.shard_2d();
      // An offloaded shard is rounded to the wire dtype on the host, so only its bytes cross
      // (the packed path's copy_in).
      if (p.extension) encode(p, p.gathered);
      else if (p.gathered.dtype() == p.wire) p.gathered.copy_from(shard);
      else p.gathered.copy_from(shard.to(p.wire));
    }
    ++gather_counts_.shard_group;
    u.state = Unit::State::in_flight;  // finish_gather: nothing to wait for or unpack
    return;
  }
  // Pack this rank's shards (a byte buffer; each segment read as its parameter's wire dtype).
  u.send = Tensor::empty({std::int64_t(u.shard_bytes)}, DType::f8e4m3, opt_.device);
  for (auto& p : u.params) {
    Tensor seg = u.send.view_bytes(p.wire_offset, {p.rows_per_shard, p.row_elems}, p.wire);
    // Offloaded shards cross to the device here (a plain gather converts on the host first, so
    // only the param dtype's bytes cross; an extension encodes on the device).
    if (p.extension) encode(p, seg);
    else group.copy_in(seg, p.shard_2d());  // f32, or rounded to the param dtype once here (offload: off the compute stream)
  }
  u.recv = Tensor::empty({std::int64_t(u.shard_bytes) * mesh_.shard()}, DType::f8e4m3, opt_.device);
  u.gather_work = group.all_gather_async(u.send, u.recv);
  ++gather_counts_.shard_group;
  u.state = Unit::State::in_flight;
}

void Fsdp::finish_gather(Unit& u) {
  if (u.state != Unit::State::in_flight) return;
  if (!u.gather_work) {  // a shard group of one: start_gather filled the buffers
    for (auto& p : u.params)
      if (p.extension) p.extension->post_all_gather(p.module_param->data());
    u.state = Unit::State::gathered;
    return;
  }
  u.gather_work->wait();
  u.gather_work.reset();
  const int S = mesh_.shard();
  for (auto& p : u.params) {
    p.gathered.storage()->reallocate();
    for (int r = 0; r < S; ++r)
      p.gathered.slice_rows(r * p.rows_per_shard, (r + 1) * p.rows_per_shard)
          .copy_from(u.recv.view_bytes(r * u.shard_bytes + p.wire_offset, {p.rows_per_shard, p.row_elems}, p.wire));
    if (p.extension) p.extension->post_all_gather(p.module_param->data());
  }
  // hpZ: a forward's gather (not a recompute inside backward) keeps this rank's 1/N of the bytes
  // for the backward's gather. Also under no-grad (an activation-checkpointed block's forward is
  // one); a validation forward's parts wait for the next forward, which replaces them.
  if (opt_.hpz_group && u.reshard_after_forward && !autograd::in_backward()) {
    const std::int64_t block = std::int64_t(u.shard_bytes) * (mesh_.shard() / opt_.hpz_group->size());
    u.hpz_part = u.recv.view_range(opt_.hpz_group->rank() * block, {block}).clone();
  }
  u.send = Tensor();
  u.recv = Tensor();
  u.state = Unit::State::gathered;
}

void Fsdp::gather(Unit& u) {
  start_gather(u);
  finish_gather(u);
}

void Fsdp::release(Unit& u) {
  finish_gather(u);  // a prefetch still in flight: MPI owns its buffers until it completes
  if (u.state != Unit::State::gathered) return;
  for (auto& p : u.params) p.gathered.storage()->release();
  u.state = Unit::State::released;
}

void Fsdp::post_backward(Unit& u) {
  u.grads_ready = 0;
  if (sync_grads_ && mesh_.shard() == 1 && mesh_.replicate() == 1) {
    // One rank holds everything: each gradient is its whole shard's (the mean of one), kept as it
    // is (f32) or converted once, with no packing and no collective. The packed path's values: a
    // missing gradient is zeros, and a half-precision reduce rounds it once.
    for (auto& p : u.params) {
      const Tensor g = p.module_param->grad();
      p.module_param->zero_grad();
      Tensor grad = !g.defined() ? Tensor::zeros(p.shape, DType::f32, opt_.device) : g.dtype() == DType::f32 ? g : g.to(DType::f32);
      if (opt_.reduce_dtype != DType::f32) grad = grad.to(opt_.reduce_dtype).to(DType::f32);
      accumulate_shard_grad(p, grad.view(p.shard_shape()));
    }
  } else if (sync_grads_) {
    const int S = mesh_.shard();
    // Pack every gradient into the flat buffer, rank r's rows into rank r's part.
    Tensor in = Tensor::zeros({S * u.shard_elems}, DType::f32, opt_.device);
    for (auto& p : u.params) {
      const Tensor& g = p.module_param->grad();
      if (!g.defined()) continue;
      const Tensor g2 = g.view({p.rows, p.row_elems});
      for (int r = 0; r < S; ++r) {
        const std::int64_t first = std::min<std::int64_t>(p.rows, r * p.rows_per_shard);
        const std::int64_t last = std::min<std::int64_t>(p.rows, first + p.rows_per_shard);
        if (last > first)
          in.view_range(r * u.shard_elems + p.grad_offset, {last - first, p.row_elems}).copy_from(g2.slice_rows(first, last));
      }
      p.module_param->zero_grad();
    }
    // mixed_precision_reduce = bfloat16 / float16: each rank's contribution and each
    // reduction's result are rounded to it (what a half-precision reduce-scatter delivers); MPI
    // sums the rounded values in f32, so the bytes on the wire are still f32's on the CPU backend.
    if (opt_.reduce_dtype != DType::f32) in.copy_from(in.to(opt_.reduce_dtype));
    if (S == 1) {
      // Replicas of a shard group of one (DDP): nothing to scatter, so the packed buffer goes
      // straight to the replicas' all-reduce (what the plan counts: no reduce-scatter bytes).
      PendingReduce r{&u, in, in, mesh_.replicate_group().all_reduce_async(in, ReduceOp::avg)};
      r.over_replicas = true;
      pending_.push_back(std::move(r));
    } else {
      Tensor out = Tensor::empty({u.shard_elems}, DType::f32, opt_.device);
      // Averages: every rank's loss is the mean over its own batch slice.
      auto work = mesh_.shard_group().reduce_scatter_async(in, out, ReduceOp::avg);
      pending_.push_back(PendingReduce{&u, in, out, std::move(work)});
    }
    // Overlap: this unit's reduce-scatter runs while the next units' backward computes; the
    // ones issued before it move on one stage now (a finished reduce-scatter's replica
    // all-reduce is issued on HSDP, a finished reduction is accumulated), so at most two
    // units' reductions are in flight (three on HSDP).
    for (size_t i = 0; i + 1 < pending_.size();) {
      if (advance_reduce(pending_[i])) pending_.erase(pending_.begin() + std::ptrdiff_t(i));
      else ++i;
    }
  }
  release(u);
}

void Fsdp::finish_reduce() {
  while (!advance_reduce(pending_.front())) {
  }
  pending_.erase(pending_.begin());
}

bool Fsdp::advance_reduce(PendingReduce& r) {
  r.work->wait();
  // Half-precision reduce: each reduction's result is rounded, as such a collective would deliver it.
  if (opt_.reduce_dtype != DType::f32) r.out.copy_from(r.out.to(opt_.reduce_dtype));
  if (!r.over_replicas && mesh_.replicate() > 1) {  // HSDP: one all-reduce per unit over the replicas
    r.work = mesh_.replicate_group().all_reduce_async(r.out, ReduceOp::avg);
    r.over_replicas = true;
    return false;
  }
  accumulate_shard_grads(r);
  return true;
}

void Fsdp::accumulate_shard_grads(const PendingReduce& r) {
  for (auto& p : r.unit->params) accumulate_shard_grad(p, r.out.view_range(p.grad_offset, p.shard_shape()));
}

void Fsdp::accumulate_shard_grad(Param& p, Tensor shard_grad) {
  if (shard_grad.device() != shard_device()) shard_grad = to_shard_memory(shard_grad);  // offload: to the host
  Tensor& acc = p.shard.grad();
  if (acc.defined()) ops::add_(acc, shard_grad);
  else acc = shard_grad;  // the reduction's buffer (or the one rank's gradient) itself: no copy
}

void Fsdp::finish_backward() {
  callback_queued_ = false;
  for (auto& u : units_) {
    if (u->grads_ready > 0) post_backward(*u);  // some parameter got no gradient: reduce what there is
    release(*u);
  }
  while (!pending_.empty()) finish_reduce();
}

int Fsdp::live_units() const {
  int n = 0;
  for (const auto& u : units_) n += u->state != Unit::State::released;
  return n;
}

void Fsdp::sum_over_shards(Tensor& t) { mesh_.shard_group().all_reduce(t, ReduceOp::sum); }

void Fsdp::refresh_after_update() {
  while (!pending_.empty()) finish_reduce();
  for (auto& u : units_) {
    release(*u);
    u->hpz_part = Tensor();  // encoded from the old shards
    for (auto& p : u->params)
      if (p.extension) p.extension->shards_changed();
  }
}

const Tensor& Fsdp::local_shard_of(const Variable& module_param) const {
  for (auto& u : units_)
    for (auto& p : u->params)
      if (p.module_param->impl() == module_param.impl()) return p.shard.data();
  throw std::invalid_argument("Fsdp::local_shard_of: not a parameter of this FSDP's units");
}

ShardedStateBytes Fsdp::state_bytes() const {
  ShardedStateBytes b;
  for (auto& u : units_)
    for (auto& p : u->params) {
      b.params += static_cast<std::int64_t>(p.shard.data().nbytes());
      if (p.shard.grad().defined()) b.grads += static_cast<std::int64_t>(p.shard.grad().nbytes());
    }
  return b;
}

}  // namespace titan::dist
