#pragma once
// Fused softmax cross-entropy on the GPU (cross_entropy.cu): one read of each logits row for the
// loss, one read + one write for the gradient; probabilities are never stored. Plain C++
// launchers on the compute stream (asynchronous).
#include <cstdint>

#include "core/dtype.hpp"

namespace titan::cuda {

// logits [N, V] in dtype (f32 or bf16), targets [N] int64. Writes, per row n (f32):
//   lse_rows[n]  = log(sum_j exp(logits[n, j]))
//   loss_rows[n] = lse_rows[n] - logits[n, targets[n]]
// Rows with targets[n] == ignore_index get loss 0 and lse 0 (their logits are not read). A target
// outside [0, V) that is not ignore_index gives loss NaN. A NaN logit makes its row's lse/loss NaN.
// The caller reduces loss_rows (e.g. sum / n_valid).
void cross_entropy_forward(const void* logits, const std::int64_t* targets, std::int64_t N, std::int64_t V,
                           std::int64_t ignore_index, float* loss_rows, float* lse_rows, DType dtype);

// dlogits[n, j] = (exp(logits[n, j] - lse_rows[n]) - (j == targets[n])) * grad_scale, zeros for
// ignored rows (NaN for rows whose target is out of range). dlogits may alias logits (in place).
void cross_entropy_backward(const void* logits, const std::int64_t* targets, const float* lse_rows, float grad_scale,
                            void* dlogits, std::int64_t N, std::int64_t V, std::int64_t ignore_index, DType dtype);

}  // namespace titan::cuda
