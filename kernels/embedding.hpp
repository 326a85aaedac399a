#pragma once
// Token embedding on the GPU (embedding.cu): gather of weight rows and its deterministic
// scatter-add backward. Plain C++ launchers on the compute stream (asynchronous).
#include <cstdint>

#include "core/dtype.hpp"

namespace titan::cuda {

// out[i, :] = weight[tokens[i], :] for i < n_tokens. weight [V, D] and out [n_tokens, D] in dtype
// (f32 or bf16); tokens in token_dtype (i32 or i64). A token outside [0, V) is not read: its out
// row is written as zeros and the out-of-range flag is set (see embedding_tokens_out_of_range).
void embedding_forward(const void* weight, const void* tokens, DType token_dtype, void* out, std::int64_t n_tokens,
                       std::int64_t V, std::int64_t D, DType dtype);

// dweight[v, :] += sum over i with tokens[i] == v of dy[i, :], in increasing i (deterministic:
// stable device radix sort of the token ids, then one ordered sum per distinct token; no atomics).
// dy [n_tokens, D] in dtype (f32 or bf16); dweight [V, D] is f32. Out-of-range tokens are skipped
// and set the flag. Allocates O(n_tokens) scratch from the pool.
void embedding_backward(const void* dy, const void* tokens, DType token_dtype, float* dweight, std::int64_t n_tokens,
                        std::int64_t V, std::int64_t D, DType dtype);

// Whether any embedding kernel launched since the last call met a token outside [0, V), without
// the host waiting: the flag goes into *out (device memory; 1.0 raised, 0.0 not) and is cleared,
// both queued on the compute stream, to be read back with other values.
void embedding_take_out_of_range_async(double* out);

}  // namespace titan::cuda
