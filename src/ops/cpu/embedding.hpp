#pragma once
// Embedding gather and its backward scatter-add. tokens are int32 or int64; each token selects
// one row of weight [V, D]. Out-of-range tokens are an error (they would read outside weight).
#include <cstdint>
#include <stdexcept>
#include <string>

#include "core/tensor.hpp"

namespace titan::ops::cpu {

template <class F>
void for_each_token(const Tensor& tokens, std::int64_t V, F&& f) {
  const std::int64_t n = tokens.numel();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t tok = tokens.dtype() == DType::i64 ? tokens.data<std::int64_t>()[i]
                                                          : static_cast<std::int64_t>(tokens.data<std::int32_t>()[i]);
    if (tok < 0 || tok >= V)
      throw std::out_of_range("embedding: token " + std::to_string(tok) + " at position " + std::to_string(i) +
                              " is outside the vocabulary of " + std::to_string(V));
    f(i, tok);
  }
}

template <class T>
void embedding_forward(const T* weight, const Tensor& tokens, T* out, std::int64_t V, std::int64_t D) {
  for_each_token(tokens, V, [&](std::int64_t i, std::int64_t tok) {
    for (std::int64_t d = 0; d < D; ++d) out[i * D + d] = weight[tok * D + d];
  });
}

template <class T>
void embedding_backward(const T* dy, const Tensor& tokens, T* dweight, std::int64_t V, std::int64_t D) {
  for_each_token(tokens, V, [&](std::int64_t i, std::int64_t tok) {
    for (std::int64_t d = 0; d < D; ++d) dweight[tok * D + d] += dy[i * D + d];
  });
}

}  // namespace titan::ops::cpu
