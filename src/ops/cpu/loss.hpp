#pragma once
// Cross-entropy over logits [N, V] with integer targets [N]; rows whose target is ignore_index
// do not count. loss = sum_valid (lse_n - x[n, t_n]) / n_valid (PyTorch's mean reduction).
// Backward: dx[n] = dloss * (softmax(x[n]) - onehot(t_n)) / n_valid, zero for ignored rows.
// Exponentials are float for float logits (fast_expf) and double for double; their sum is
// accumulated in double.
// Logits and dx may also be bf16 (`In` / `Out` = std::uint16_t bits) with T = float: each row is
// widened into a scratch row and dx rounded back row by row, so no f32 copy of the [N, V] logits
// exists (they are the largest activation).
#include <cmath>
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/dtype.hpp"
#include "ops/cpu/fast_math.hpp"
#include "ops/cpu/threads.hpp"

namespace titan::ops::cpu {

// Rows per chunk on the CPU pool (a row is a whole vocabulary: 2K to 128K values).
constexpr std::int64_t kRowsPerChunk = 8;

// Row n of x as T: x itself when In is T, else widened from bf16 into `wide`.
template <class T, class In>
const T* row_as(const In* x, std::int64_t n, std::int64_t V, std::vector<T>& wide) {
  if constexpr (std::is_same_v<T, In>) {
    return x + n * V;
  } else {
    wide.resize(static_cast<size_t>(V));
    for (std::int64_t j = 0; j < V; ++j) wide[size_t(j)] = bf16_to_f32(x[n * V + j]);
    return wide.data();
  }
}

template <class T, class In = T>
double cross_entropy_forward(const In* x, const std::int64_t* targets, std::int64_t N, std::int64_t V,
                             std::int64_t ignore_index, std::int64_t* n_valid) {
  // Rows in parallel chunks on the CPU pool, each row's loss kept; then summed in row order, so
  // the total has the same bits on any thread count.
  std::vector<double> row_loss(static_cast<size_t>(N), 0.0);
  parallel_chunks(N, kRowsPerChunk, [&](std::int64_t n0, std::int64_t n1) {
    thread_local std::vector<T> scratch, wide;
    for (std::int64_t n = n0; n < n1; ++n) {
      if (targets[n] == ignore_index) continue;
      const T* row = row_as<T>(x, n, V, wide);
      const double mx = row_max(row, V);
      // exp into a scratch row (the logits stay untouched), summed in double.
      scratch.assign(row, row + V);
      const double l = mx + std::log(exp_shift_sum(scratch.data(), V, static_cast<T>(mx)));
      row_loss[size_t(n)] = l - double(row[targets[n]]);
    }
  });
  double total = 0;
  std::int64_t valid = 0;
  for (std::int64_t n = 0; n < N; ++n) {
    if (targets[n] == ignore_index) continue;
    total += row_loss[size_t(n)];
    ++valid;
  }
  *n_valid = valid;
  return valid ? total / double(valid) : 0.0;
}

// Recomputes each row's log-sum-exp in double (a float copy saved by forward would cost
// precision in the float64 reference path).
template <class T, class In = T, class Out = T>
void cross_entropy_backward(const In* x, const std::int64_t* targets, Out* dx, std::int64_t N, std::int64_t V,
                            std::int64_t ignore_index, std::int64_t n_valid, double dloss) {
  const double g = n_valid ? dloss / double(n_valid) : 0.0;
  parallel_chunks(N, kRowsPerChunk, [&](std::int64_t n0, std::int64_t n1) {
    thread_local std::vector<T> wide, out_row;
    for (std::int64_t n = n0; n < n1; ++n) {
      if (targets[n] == ignore_index) {
        for (std::int64_t j = 0; j < V; ++j) dx[n * V + j] = Out(0);
        continue;
      }
      const T* row = row_as<T>(x, n, V, wide);
      T* drow;
      if constexpr (std::is_same_v<T, Out>) {
        drow = dx + n * V;
      } else {
        out_row.resize(static_cast<size_t>(V));
        drow = out_row.data();
      }
      const double mx = row_max(row, V);
      // dx = g * softmax: the row's exps go to drow first, then are rescaled by g / sum.
      const double sum = (std::copy(row, row + V, drow), exp_shift_sum(drow, V, static_cast<T>(mx)));
      const T k = static_cast<T>(g / sum);
      for (std::int64_t j = 0; j < V; ++j) drow[j] *= k;
      drow[targets[n]] -= static_cast<T>(g);
      if constexpr (!std::is_same_v<T, Out>)
        for (std::int64_t j = 0; j < V; ++j) dx[n * V + j] = f32_to_bf16(drow[j]);
    }
  });
}

}  // namespace titan::ops::cpu
