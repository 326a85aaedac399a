#pragma once
// AdamW on the rank's parameters (f32 master weights and f32 moments), PyTorch's algorithm:
//   p -= lr * weight_decay * p                       (decoupled weight decay, every parameter)
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   p -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Moments are created lazily (zero) on the first step, like torch.optim.AdamW.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "autograd/variable.hpp"

namespace titan::optim {

struct AdamWConfig {
  double lr = 8e-4, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

class AdamW {
 public:
  AdamW(std::vector<autograd::Variable*> params, AdamWConfig cfg);
  // One update with learning rate `lr` (the scheduler's current value); parameters whose grad
  // is undefined are skipped (their step count still advances, as in PyTorch's shared step).
  void step(double lr) {
    prepare(lr);
    apply();
  }
  // step() in two halves for a captured step (compile.enable: a CUDA graph replays apply()'s
  // launch with the pointers it was captured with): prepare advances the step count and writes
  // this step's float32 scalars (ops::adamw_scalars_into) into a buffer on each parameter device,
  // which apply's update reads there.
  void prepare(double lr);
  void apply();
  void zero_grad();
  std::int64_t steps() const { return step_; }
  // Optimizer state, for checkpoints: exp_avg / exp_avg_sq per parameter.
  std::vector<Tensor>& exp_avg() { return m_; }
  std::vector<Tensor>& exp_avg_sq() { return v_; }
  void set_steps(std::int64_t s) { step_ = s; }
  // Allocates the (zero) moments now rather than at the first step, so a checkpoint can fill them.
  void init_state();

 private:
  std::vector<autograd::Variable*> params_;
  AdamWConfig cfg_;
  std::vector<Tensor> m_, v_;
  std::int64_t step_ = 0;
  std::vector<Tensor> scalars_;  // one f32 [6] per parameter device, allocated once (their addresses stay)
};

// Global L2 norm of all gradients (sum of squares in double). If max_norm > 0 and the norm
// exceeds it, scales every gradient by max_norm / (norm + 1e-6), as torch's clip_grad_norm_.
// Returns the global sum of squares before clipping (the norm is its square root) as an f64 [1]
// tensor where the gradients are: nothing is read back, so on a GPU the host does not wait (the
// trainer reads it with the step's losses). With sharded gradients, `all_reduce_sum` sums this
// rank's tensor over the ranks in place (one all-reduce), so every rank clips by the global norm.
// `counted` (one per param; null: all) leaves out of this rank's sum the gradients another rank
// counts (a tensor-parallel replica's); they are still clipped.
Tensor clip_grad_norm(const std::vector<autograd::Variable*>& params, double max_norm,
                      const std::function<void(Tensor&)>& all_reduce_sum = nullptr,
                      const std::vector<bool>* counted = nullptr);
// sqrt(total_sq[0]), read back (a host sync on a GPU).
double norm_from_sum_squares(const Tensor& total_sq);

// TorchTitan's warmup-stable-decay LR multiplier for 0-based scheduler step `step` (the step
// about to be taken is step + 1). warmup: linear (step + 1) / warmup_steps; stable: 1; decay over
// the last decay_ratio of the steps (all of them after warmup when unset), linear | sqrt |
// cosine, from 1 down to min_lr_factor; a virtual extra step keeps the last LR above 0.
struct LrSchedule {
  std::int64_t warmup_steps = 0, stable_steps = 0, decay_steps = 0;
  std::string decay_type = "linear";
  double min_lr_factor = 0;
  // Builds the phases from the config values; `warnings` gets TorchTitan's adjustments.
  static LrSchedule build(std::int64_t total_steps, std::int64_t warmup_steps, const double* decay_ratio,
                          const std::string& decay_type, double min_lr_factor, std::vector<std::string>* warnings);
  double factor(std::int64_t step) const;
};

}  // namespace titan::optim
