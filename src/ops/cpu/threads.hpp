#pragma once
// The CPU backend's threads (training.cpu_threads): one count for the GEMM libraries' own threads
// and for titan.cpp's pool, which runs the kernels that parallelise over independent units
// (attention's (batch, kv head) pairs). A unit is computed by one thread in its fixed order and
// writes only its own outputs, so results are bit-identical for any thread count; only the GEMM
// libraries split sums by thread count (docs/training.md, "Determinism").
//
// Until set_cpu_threads is called the pool has one thread (the caller) and the GEMM libraries keep
// what they read at load (OPENBLAS_NUM_THREADS): the unit tests run so.
#include <algorithm>
#include <cstdint>
#include <functional>

namespace titan::ops::cpu {

// Threads for the pool and every GEMM library; n >= 1.
void set_cpu_threads(int n);
int cpu_threads();

// fn(i) for i in [0, n), spread over the pool's threads (the caller is one of them); returns when
// all are done and rethrows the first exception a call threw. Called from inside a pool task, it
// runs inline, so kernels can nest without oversubscribing.
void parallel_for(std::int64_t n, const std::function<void(std::int64_t)>& fn);

// fn(begin, end) over [0, n) in chunks of `grain` on the pool. The split is fixed by n and grain,
// not by the thread count, so a kernel whose chunks are independent (elementwise passes, whole
// rows) gives the same bits on any number of threads.
template <class F>
void parallel_chunks(std::int64_t n, std::int64_t grain, F&& fn) {
  if (n <= 0) return;
  const std::int64_t chunks = (n + grain - 1) / grain;
  if (chunks == 1) return fn(std::int64_t(0), n);
  parallel_for(chunks, [&](std::int64_t c) { fn(c * grain, std::min(n, (c + 1) * grain)); });
}

// Elements per chunk of an elementwise pass: 64 KiB of floats, large enough that waking a thread
// (~a few microseconds) costs little next to it.
constexpr std::int64_t kElementwiseGrain = 16384;

}  // namespace titan::ops::cpu
