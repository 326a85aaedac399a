#include "optim/adamw.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

#include "ops/ops.hpp"

namespace titan::optim {

AdamW::AdamW(std::vector<autograd::Variable*> params, AdamWConfig cfg) : params_(std::move(params)), cfg_(cfg) {
  m_.resize(params_.size());
  v_.resize(params_.size());
}

void AdamW::prepare(double lr) {
  ++step_;
  for (auto* p : params_) {
    const Device d = p->data().device();
    if (std::none_of(scalars_.begin(), scalars_.end(), [&](const Tensor& t) { return t.device() == d; }))
      scalars_.push_back(Tensor::empty({6}, DType::f32, d));
  }
  for (const Tensor& s : scalars_)
    ops::adamw_scalars_into(s, {lr, cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay, step_});
}

void AdamW::apply() {
  for (const Tensor& scalars : scalars_) {
    std::vector<Tensor> ps, gs, ms, vs;  // every parameter of this device with a gradient: one op call
    for (size_t i = 0; i < params_.size(); ++i) {
      const Tensor& g = params_[i]->grad();
      const Tensor& p = params_[i]->data();
      if (!g.defined() || p.device() != scalars.device()) continue;
      if (p.dtype() != DType::f32 || g.dtype() != DType::f32)
        throw std::invalid_argument("AdamW: parameter '" + params_[i]->name() + "' must be float32 (master weights)");
      if (!m_[i].defined()) {
        m_[i] = Tensor::zeros(p.shape(), DType::f32, p.device());
        v_[i] = Tensor::zeros(p.shape(), DType::f32, p.device());
      }
      if (g.device() != p.device() || m_[i].device() != p.device() || v_[i].device() != p.device())
        throw std::invalid_argument("AdamW: parameter '" + params_[i]->name() + "' on " + p.device().str() +
                                    " has its gradient or moments on another device");
      ps.push_back(p);
      gs.push_back(g);
      ms.push_back(m_[i]);
      vs.push_back(v_[i]);
    }
    ops::adamw_step(ps, gs, ms, vs, scalars);
  }
}

void AdamW::init_state() {
  for (size_t i = 0; i < params_.size(); ++i)
    if (!m_[i].defined()) {
      m_[i] = Tensor::zeros(params_[i]->data().shape(), DType::f32, params_[i]->data().device());
      v_[i] = Tensor::zeros(params_[i]->data().shape(), DType::f32, params_[i]->data().device());
    }
}

void AdamW::zero_grad() {
  for (auto* p : params_) p->zero_grad();
}

Tensor clip_grad_norm(const std::vector<autograd::Variable*>& params, double max_norm,
                      const std::function<void(Tensor&)>& all_reduce_sum, const std::vector<bool>* counted) {
  std::vector<Tensor> counted_grads, all_grads;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i]->grad().defined()) continue;
    all_grads.push_back(params[i]->grad());
    if (!counted || (*counted)[i]) counted_grads.push_back(params[i]->grad());
  }
  const Device device = !all_grads.empty() ? all_grads.front().device()
                        : !params.empty()  ? params.front()->data().device()
                                           : Device::cpu();
  Tensor total_sq = ops::sum_squares_total(counted_grads, device);
  if (all_reduce_sum) all_reduce_sum(total_sq);
  ops::clip_to_max_norm_(all_grads, total_sq, max_norm);
  return total_sq;
}

double norm_from_sum_squares(const Tensor& total_sq) { return std::sqrt(total_sq.item(0)); }

LrSchedule LrSchedule::build(std::int64_t total_steps, std::int64_t warmup_steps, const double* decay_ratio,
                             const std::string& decay_type, double min_lr_factor, std::vector<std::string>* warnings) {
  LrSchedule s;
  if (warmup_steps > total_steps) {
    if (warnings)
      warnings->push_back("lr_scheduler: warmup_steps (" + std::to_string(warmup_steps) + ") exceed the " +
                          std::to_string(total_steps) + " training steps; using " + std::to_string(total_steps));
    warmup_steps = total_steps;
  }
  std::int64_t decay_steps = total_steps - warmup_steps;
  if (decay_ratio) {
    decay_steps = static_cast<std::int64_t>(std::nearbyint(double(total_steps) * *decay_ratio));  // Python round(): half to even
    if (warmup_steps + decay_steps > total_steps) {
      if (warnings)
        warnings->push_back("lr_scheduler: warmup (" + std::to_string(warmup_steps) + ") + decay (" +
                            std::to_string(decay_steps) + ") steps exceed the " + std::to_string(total_steps) +
                            " training steps; decaying over " + std::to_string(total_steps - warmup_steps));
      decay_steps = total_steps - warmup_steps;
    }
  }
  s.warmup_steps = warmup_steps;
  s.decay_steps = decay_steps;
  s.stable_steps = total_steps + 1 - warmup_steps - decay_steps;  // +1: a virtual last step keeps lr > 0
  s.decay_type = decay_type;
  s.min_lr_factor = min_lr_factor;
  return s;
}

double LrSchedule::factor(std::int64_t step) const {
  if (step < warmup_steps) return double(step + 1) / double(warmup_steps);
  if (step < warmup_steps + stable_steps) return 1.0;
  const double progress = double(step + 1 - (warmup_steps + stable_steps)) / double(decay_steps);
  double f;
  if (decay_type == "linear") f = 1.0 - progress;
  else if (decay_type == "sqrt") f = 1.0 - std::sqrt(progress);
  else if (decay_type == "cosine") f = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  else throw std::invalid_argument("lr_scheduler: unknown decay_type '" + decay_type + "'");
  return min_lr_factor + (1.0 - min_lr_factor) * f;
}

}  // namespace titan::optim
