#pragma once
// Cross-entropy over logits [N, V] with integer targets [N]; rows whose target is ignore_index
// do not count. loss = sum_valid (lse_n - x[n, t_n]) / n_valid (PyTorch's mean reduction).
// Backward: dx[n] = dloss * (softmax(x[n]) - onehot(t_n)) / n_valid, zero for ignored rows.
// Log-sum-exp is accumulated in double; lse[N] is saved for backward.
#include <cmath>
#include <cstdint>

namespace titan::ops::cpu {

template <class T>
double cross_entropy_forward(const T* x, const std::int64_t* targets, float* lse, std::int64_t N, std::int64_t V,
                             std::int64_t ignore_index, std::int64_t* n_valid) {
  double total = 0;
  std::int64_t valid = 0;
  for (std::int64_t n = 0; n < N; ++n) {
    const T* row = x + n * V;
    double mx = row[0];
    for (std::int64_t j = 1; j < V; ++j) mx = std::max(mx, double(row[j]));
    double sum = 0;
    for (std::int64_t j = 0; j < V; ++j) sum += std::exp(double(row[j]) - mx);
    const double l = mx + std::log(sum);
    lse[n] = static_cast<float>(l);
    if (targets[n] == ignore_index) continue;
    total += l - double(row[targets[n]]);
    ++valid;
  }
  *n_valid = valid;
  return valid ? total / double(valid) : 0.0;
}

// Recomputes each row's log-sum-exp in double (the float lse saved by forward would cost
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
    double mx = row[0];
    for (std::int64_t j = 1; j < V; ++j) mx = std::max(mx, double(row[j]));
    double sum = 0;
    for (std::int64_t j = 0; j < V; ++j) sum += std::exp(double(row[j]) - mx);
    const double l = mx + std::log(sum);
    for (std::int64_t j = 0; j < V; ++j) drow[j] = static_cast<T>(g * std::exp(double(row[j]) - l));
    drow[targets[n]] -= static_cast<T>(g);
  }
}

}  // namespace titan::ops::cpu
