// The pool behind ops/cpu/threads.hpp: persistent workers woken per parallel_for (or, with oneDNN,
// its OpenMP team, below), which hands out indices through one atomic counter (the assignment of
// units to threads may vary from call to call; each unit's result does not depend on it).
#include "ops/cpu/threads.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "ops/cpu/blas.hpp"
#include "ops/cpu/gemm_impl.hpp"

namespace titan::ops::cpu {

namespace {

thread_local bool t_in_pool_task = false;

// One parallel_for: its indices are handed out through `next`; the first exception stops the
// rest and is rethrown by the caller.
struct Job {
  const std::function<void(std::int64_t)>* fn;
  std::int64_t n;
  std::atomic<std::int64_t> next{0};
  std::mutex mutex;
  std::exception_ptr error;
};

// What every thread of either pool runs for a job.
void drain(Job& job) {
  t_in_pool_task = true;
  for (std::int64_t i; (i = job.next.fetch_add(1)) < job.n;) {
    try {
      (*job.fn)(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(job.mutex);
      if (!job.error) job.error = std::current_exception();
      job.next.store(job.n);
    }
  }
  t_in_pool_task = false;
}

class Pool {
 public:
  ~Pool() { resize(1); }

  void resize(int threads) {
    std::lock_guard<std::mutex> run(run_mutex_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
    stop_ = false;
    // A new worker starts from the current generation, so it waits for the next run instead of
    // taking the last one (finished) for new work.
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, g = generation_] { work(g); });
  }

  void run(Job& job) {
    std::lock_guard<std::mutex> run(run_mutex_);  // one parallel_for at a time (callers of other threads wait)
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      busy_ = int(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    drain(job);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return busy_ == 0; });
    job_ = nullptr;
  }

 private:
  void work(std::uint64_t seen) {
    for (;;) {
      Job* job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        job = job_;
      }
      drain(*job);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--busy_ == 0) done_.notify_one();
    }
  }

  std::mutex run_mutex_, mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  Job* job_ = nullptr;
  int busy_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
};

Pool& pool() {
  static Pool p;
  return p;
}

// oneDNN (Debian's is built on OpenMP) runs its GEMMs on libgomp's thread team, whose workers spin
// for a while after each region. A second pool of our own would then fight those spinning threads
// for the cores (measured on 2 cores: attention and the elementwise passes slowed by up to a
// third), so while oneDNN is the GEMM library the same team runs parallel_for: a region through
// libgomp's stable entry point, found at run time as onednn_set_threads finds omp_set_num_threads
// (libgomp comes with libdnnl; -fopenmp would make every `#pragma omp` in the kernels a thread
// region). With OpenBLAS or BLIS our pool's workers sleep on a condition variable between calls.
using GompParallel = void (*)(void (*)(void*), void*, unsigned, unsigned);
GompParallel gomp_parallel() {
  static const GompParallel fn = reinterpret_cast<GompParallel>(dlsym(RTLD_DEFAULT, "GOMP_parallel"));
  return fn;
}

void team_drain(void* job) { drain(*static_cast<Job*>(job)); }

std::atomic<int> g_threads{1};

}  // namespace

void set_cpu_threads(int n) {
  n = std::max(1, n);
  openblas_set_threads(n);
  set_gemm_library(gemm_library());  // hands BLIS and oneDNN the same count
  if (n != g_threads.load()) pool().resize(n);
  g_threads.store(n);
}

int cpu_threads() { return g_threads.load(); }

void parallel_for(std::int64_t n, const std::function<void(std::int64_t)>& fn) {
  if (n <= 0) return;
  const int threads = g_threads.load(std::memory_order_relaxed);
  if (n == 1 || t_in_pool_task || threads == 1) {
    for (std::int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  Job job;
  job.fn = &fn;
  job.n = n;
  if (gemm_library() == GemmLibrary::onednn && gomp_parallel()) {
    // Always the full team: a smaller one would let libgomp end the extra threads, which the next
    // GEMM then starts again (with their thread_local scratch); idle members find no index.
    gomp_parallel()(team_drain, &job, unsigned(threads), 0);
  } else {
    pool().run(job);
  }
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace titan::ops::cpu
