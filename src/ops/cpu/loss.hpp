#pragma once
// Cross-entropy over logits [N, V] with integer targets [N]; rows whose target is ignore_index
// do not count. loss = sum_valid (lse_n - x[n, t_n]) / n_valid (PyTorch's mean reduction).
// Backward: dx[n] = dloss * (softmax(x[n]) - onehot(t_n)) / n_valid, zero for ignored rows.
// Exponentials are float for float logits (fast_expf) and double for double; their sum is
// accumulated in double.
#include <cmath>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "ops/cpu/fast_math.hpp"

namespace titan::ops::cpu {

template <class T>
double cross_entropy_forward(const T* x, const std::int64_t* targets, std::int64_t N, std::int64_t V,
                             std::int64_t ignore_index, std::int64_t* n_valid) {
  double total = 0;
  std::int64_t valid = 0;
  std::vector<T> scratch;
  for (std::int64_t n = 0; n < N; ++n) {
    const T* row = x + n * V;
    T mx_t = row[0];
#pragma omp simd reduction(max : mx_t)
    for (std::int64_t j = 1; j < V; ++j) mx_t = std::max(mx_t, row[j]);
    const double mx = mx_t;
    // exp into a scratch row (the logits stay untouched), summed in double.
    scratch.assign(row, row + V);
    const double l = mx + std::log(exp_shift_sum(scratch.data(), V, static_cast<T>(mx)));
    if (targets[n] == ignore_index) continue;
    total += l - double(row[targets[n]]);
    ++valid;
  }
  *n_valid = valid;
  return valid ? total / double(valid) : 0.0;
}

// Recomputes each row's log-sum-exp in double (a float copy saved by forward would cost
// precision in the float64 reference path).
template <class T>
void cross_entropy_backward(const T* x, const std::int64_t* targets, T* dx, std::int64_t N, std::int64_t V,
                            std::int64_t ignore_index, std::int64_t n_valid, double dloss) {
  const double g = n_valid ? dloss / double(n_valid) : 0.0;
  for (std::int64_t n = 0; n < N; ++n) {
    const T* row = x + n * V;
    T* drow = dx + n * V;
    if (targets[n] == ignore_index) {
      for (std::int64_t j = 0; j < V; ++j) drow[j] = T(0);
      continue;
    }
    T mx_t = row[0];
#pragma omp simd reduction(max : mx_t)
    for (std::int64_t j = 1; j < V; ++j) mx_t = std::max(mx_t, row[j]);
    const double mx = mx_t;
    // dx = g * softmax: the row's exps go to drow first, then are rescaled by g / sum.
    const double sum = (std::copy(row, row + V, drow), exp_shift_sum(drow, V, static_cast<T>(mx)));
    const T k = static_cast<T>(g / sum);
    for (std::int64_t j = 0; j < V; ++j) drow[j] *= k;
    drow[targets[n]] -= static_cast<T>(g);
  }
}

}  // namespace titan::ops::cpu
