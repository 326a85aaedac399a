#include "dist/fsdp.hpp"

#include <algorithm>
#include <stdexcept>

#include "core/errors.hpp"
#include "float8/float8_linear.hpp"
#include "ops/ops.hpp"

namespace titan::dist {

using autograd::Variable;

struct Fsdp::Param {
  std::string fqn;
  Variable* module_param = nullptr;  // the model's parameter: a view of the unit storage when gathered
  Shape shape;                       // global shape
  std::int64_t rows = 0, row_elems = 1, rows_per_shard = 0;
  std::int64_t offset = 0;           // first element in the unit storage (padded layout)
  Variable shard;                    // f32 master shard [rows_per_shard, ...]: what the optimizer updates
  float8::Float8Linear* float8 = nullptr;  // set when this weight is gathered as float8
  std::optional<float> float8_scale;       // its e4m3 scale (from the global amax) until the next step

  std::int64_t padded_numel(int shards) const { return shards * rows_per_shard * row_elems; }
  Shape shard_shape() const {
    Shape s = shape;
    s[0] = rows_per_shard;
    return s;
  }
  Tensor shard_2d() const { return shard.data().view({rows_per_shard, row_elems}); }
};

struct Fsdp::Unit {
  std::string name;
  std::vector<nn::Module*> modules;
  bool reshard_after_forward = true;
  std::vector<Param> params;
  Tensor flat;           // the unit storage: every parameter, padded to whole shards
  bool gathered = false;
  size_t grads_ready = 0;  // parameters whose gradient arrived in the current backward
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
  std::int64_t offset = 0;
  for (nn::Module* m : modules) {
    // Which Float8Linear (if any) owns each weight: its scale travels with the float8 gather.
    std::vector<std::pair<std::string, nn::Module*>> subs = m->named_modules();
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
      p.offset = offset;
      offset += p.padded_numel(S);
      if (opt_.float8_all_gather)
        for (auto& [sub_fqn, sub] : subs)
          if (auto* f8 = dynamic_cast<float8::Float8Linear*>(sub); f8 && sub_fqn + ".weight" == fqn) p.float8 = f8;
      u->params.push_back(std::move(p));
    }
  }
  u->flat = Tensor::empty({offset}, DType::f32, opt_.device);
  u->flat.storage()->release();  // allocated by the first gather
  for (auto& p : u->params) p.module_param->set_data(u->flat.view_range(p.offset, p.shape));

  for (nn::Module* m : modules) {
    m->add_forward_pre_hook([this, u](nn::Module&) { gather(*u); });
    m->add_forward_hook([this, u, last = modules.back()](nn::Module& self, std::vector<Variable>&) {
      // A forward re-run by activation checkpointing belongs to the backward: keep the parameters.
      if (&self == last && u->reshard_after_forward && !autograd::in_backward()) release(*u);
    });
    m->add_backward_pre_hook([this, u](nn::Module&) {
      gather(*u);
      if (!callback_queued_) {
        autograd::queue_callback([this] { finish_backward(); });
        callback_queued_ = true;
      }
    });
  }
  for (auto& p : u->params)
    p.module_param->add_grad_accumulated_hook([this, u](Tensor&) {
      if (++u->grads_ready == u->params.size()) post_backward(*u);
    });
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
      if (real_rows > 0) init(p.fqn, rows, first_row * p.row_elems);  // on the host (the RNG streams)
      p.shard = Variable(opt_.device.is_cpu() ? shard : shard.to(opt_.device), true, p.fqn);
    }
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
      mesh_.shard_group().all_gather(p.shard.data().view({p.shard.data().numel()}), padded);
      return padded.view_range(0, p.shape).clone();
    }
    i -= u->params.size();
  }
  throw std::out_of_range("Fsdp::full_parameter");
}

void Fsdp::ensure_float8_scales(Unit& u) {
  for (auto& p : u.params) {
    if (!p.float8 || p.float8_scale) continue;
    // torchao without precompute: one MAX all-reduce of each weight's amax, at its gather.
    Tensor amax = float8::amax(p.shard_2d(), float8::Granularity::tensorwise, 0);
    mesh_.shard_group().all_reduce(amax, ReduceOp::max);
    ++amax_all_reduces_;
    p.float8_scale = float8::amax_to_scale(amax, DType::f8e4m3, false).item(0);
  }
}

void Fsdp::gather(Unit& u) {
  if (u.gathered) return;
  if (opt_.float8_all_gather) ensure_float8_scales(u);
  u.flat.storage()->reallocate();
  ProcessGroup& group = mesh_.shard_group();
  const int S = mesh_.shard();
  for (auto& p : u.params) {
    const Tensor region = u.flat.view_range(p.offset, {p.padded_numel(S)});
    const Tensor shard_flat = p.shard.data().view({p.shard.data().numel()});
    if (p.float8) {
      // e4m3 bytes with the global-amax scale; dequantized on arrival (the CPU computes in f32).
      const float scale = *p.float8_scale;
      const float8::Float8Tensor mine = float8::cast_to_float8_with_scale(p.shard_2d(), DType::f8e4m3, scale);
      Tensor bytes = Tensor::empty({p.padded_numel(S)}, DType::f8e4m3, opt_.device);
      group.all_gather(mine.data.view({mine.data.numel()}), bytes);
      const float8::Float8Tensor all{bytes.view({S * p.rows_per_shard, p.row_elems}),
                                     Tensor::full({1}, scale, DType::f32, opt_.device)};
      region.copy_from(all.dequantize().view({p.padded_numel(S)}));
      p.float8->set_precast_weight_scale(scale);
    } else if (opt_.param_dtype == DType::bf16) {
      Tensor all = Tensor::empty({p.padded_numel(S)}, DType::bf16, opt_.device);
      group.all_gather(shard_flat.to(DType::bf16), all);
      region.copy_from(all);
    } else {
      group.all_gather(shard_flat, region);
    }
  }
  u.gathered = true;
}

void Fsdp::release(Unit& u) {
  if (!u.gathered) return;
  u.flat.storage()->release();
  u.gathered = false;
}

void Fsdp::post_backward(Unit& u) {
  u.grads_ready = 0;
  if (sync_grads_) {
    const int S = mesh_.shard();
    for (auto& p : u.params) {
      Tensor& g = p.module_param->grad();
      Tensor padded = Tensor::zeros({p.padded_numel(S)}, DType::f32, opt_.device);
      if (g.defined()) padded.view_range(0, g.shape()).copy_from(g);
      Tensor shard_grad = Tensor::empty(p.shard_shape(), DType::f32, opt_.device);
      // mixed_precision_reduce = bfloat16: each rank's contribution and each reduction's result
      // are rounded to bf16 (what a bf16 reduce-scatter delivers); MPI sums the rounded values
      // in f32, so the bytes on the wire are still f32's on the CPU backend.
      const bool bf16 = opt_.reduce_dtype == DType::bf16;
      auto round_bf16 = [&](Tensor& t) {
        if (bf16) t.copy_from(t.to(DType::bf16));
      };
      round_bf16(padded);
      // Averages: every rank's loss is the mean over its own batch slice.
      mesh_.shard_group().reduce_scatter(padded, shard_grad, ReduceOp::avg);
      round_bf16(shard_grad);
      if (mesh_.replicate() > 1) {
        mesh_.replicate_group().all_reduce(shard_grad, ReduceOp::avg);
        round_bf16(shard_grad);
      }
      Tensor& acc = p.shard.grad();
      if (acc.defined()) ops::add_(acc, shard_grad);
      else acc = shard_grad;
      p.module_param->zero_grad();
    }
  }
  release(u);
}

void Fsdp::finish_backward() {
  callback_queued_ = false;
  for (auto& u : units_) {
    if (u->grads_ready > 0) post_backward(*u);  // some parameter got no gradient: reduce what there is
    release(*u);
  }
}

double Fsdp::sum_over_shards(double local) {
  Tensor t = Tensor::full({1}, local, DType::f64);
  mesh_.shard_group().all_reduce(t, ReduceOp::sum);
  return t.item(0);
}

void Fsdp::refresh_after_update() {
  std::vector<Param*> f8;
  for (auto& u : units_) {
    release(*u);
    for (auto& p : u->params)
      if (p.float8) {
        p.float8_scale.reset();
        f8.push_back(&p);
      }
  }
  if (!opt_.precompute_float8_scales || f8.empty()) return;
  // Every float8 weight's amax in ONE all-reduce (precompute_float8_dynamic_scale_for_fsdp).
  Tensor amaxes = Tensor::empty({static_cast<std::int64_t>(f8.size())});
  for (size_t i = 0; i < f8.size(); ++i)
    amaxes.set(std::int64_t(i), float8::amax(f8[i]->shard_2d(), float8::Granularity::tensorwise, 0).item(0));
  mesh_.shard_group().all_reduce(amaxes, ReduceOp::max);
  ++amax_all_reduces_;
  const Tensor scales = float8::amax_to_scale(amaxes, DType::f8e4m3, false);
  for (size_t i = 0; i < f8.size(); ++i) f8[i]->float8_scale = static_cast<float>(scales.item(std::int64_t(i)));
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
