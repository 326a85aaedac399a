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
// outside [0, V) that is not ignore_index gives loss NaN and raises the device flag that
// cross_entropy_take_out_of_range_async takes (the host is not made to wait for the targets).
// A NaN logit makes its row's lse/loss NaN.
void cross_entropy_forward(const void* logits, const std::int64_t* targets, std::int64_t N, std::int64_t V,
                           std::int64_t ignore_index, float* loss_rows, float* lse_rows, DType dtype);

// The mean over the rows whose target is not ignore_index, on the device: *valid_rows = their
// count (f64), *loss = float(sum of their loss_rows in double / count), 0 without any. One block,
// a fixed reduction order: deterministic.
void cross_entropy_mean(const float* loss_rows, const std::int64_t* targets, std::int64_t N, std::int64_t ignore_index,
                        float* loss, double* valid_rows);

// dlogits[n, j] = (exp(logits[n, j] - lse_rows[n]) - (j == targets[n])) * g with
// g = float(dloss / *valid_rows) (0 when it is 0), read by the kernel: the host never needs the
// count. Zeros for ignored rows (NaN for rows whose target is out of range). dlogits may alias
// logits (in place).
void cross_entropy_backward(const void* logits, const std::int64_t* targets, const float* lse_rows, double dloss,
                            const double* valid_rows, void* dlogits, std::int64_t N, std::int64_t V,
                            std::int64_t ignore_index, DType dtype);

// *out += 2.0 when a forward met an out-of-range target since the last take (the bit next to the
// embedding's token flag, see embedding_take_out_of_range_async), and clears the flag; queued.
void cross_entropy_take_out_of_range_async(double* out);

}  // namespace titan::cuda
