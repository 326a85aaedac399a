// The NCCL process group for CUDA tensors (DESIGN.md section 6). Compiled only in builds with
// nvcc, and linked into every program as an object file beside the CUDA DeviceBackend
// (src/CMakeLists.txt): nothing names this file, it registers itself as the device-group factory
// for CUDA (dist/process_group.hpp), which DeviceMesh::use_device_collectives uses.
//
// One NCCL communicator per MPI group (world, shard, replicate): rank 0 of the group makes the
// unique id and broadcasts it over the MPI group. Collectives run on the communicator's own
// stream, ordered after the compute stream's work by an event (kernels/nccl_comm.hpp); wait()
// does not block the host: it makes the compute stream wait for the collective's completion
// event and hands the collective to a watchdog. poll_collectives() (FSDP calls it between layers),
// every later wait and a watchdog thread (every 100 ms, for a host blocked in a CUDA sync) check
// it: a collective still incomplete after the comm timeout, or one NCCL reports an asynchronous
// error for, aborts the communicator and ends the job with the same one-line error as the MPI path.
//
// Compiled and linked, never run yet: no GPU has been lent to this project's sessions with
// NCCL set up across ranks (docs/fsdp.md says what was verified).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/errors.hpp"
#include "core/tensor.hpp"
#include "dist/process_group.hpp"
#include "kernels/nccl_comm.hpp"

namespace titan::dist {

namespace {

using Clock = std::chrono::steady_clock;

struct Watched {
  cuda::NcclComm* comm;
  cuda::NcclComm::Op op;
  Clock::time_point issued;
  std::string what;  // "all_gather on the shard group (world ranks 0, 1) (NCCL)"
};

// The watchdog's state: leaked on purpose (its thread runs until the process ends, past static
// destruction). The main thread adds waited collectives and polls at op boundaries; the thread
// polls every 100 ms, because a rank whose host is blocked in a CUDA synchronisation (an .item()
// after a hung collective) never reaches an op boundary again.
struct Watchdog {
  std::mutex mutex;
  std::vector<Watched> watched;
  bool thread_started = false;
};
Watchdog& watchdog() {
  static Watchdog* w = new Watchdog;
  return *w;
}

// Checks every watched collective (the caller holds the mutex): completed ones are dropped; one
// past the deadline, or one NCCL reports an error for, aborts its communicator (which releases
// the stream waiting on it) and ends the process with the one-line error.
void poll_locked(Watchdog& w, bool from_thread) {
  for (size_t i = 0; i < w.watched.size();) {
    Watched& x = w.watched[i];
    const std::string err = x.comm->async_error();
    const bool done = err.empty() && x.comm->complete(x.op);
    if (!done && (!err.empty() || std::chrono::duration<double>(Clock::now() - x.issued).count() >
                                      collective_timeout_seconds())) {
      x.comm->abort();
      const std::string line = x.what + " did not complete within " + collective_timeout_key() + " = " +
                               std::to_string(collective_timeout_seconds()) + " s" +
                               (err.empty() ? std::string() : " (NCCL: " + err + ")");
      if (!from_thread) collective_timed_out(line);
      // Off the main thread MPI may not be called: print the same line and end the process;
      // mpirun takes the job down when a rank exits non-zero.
      std::fprintf(stderr, "error: comm: %s; stopping the job (a rank that died, hung or was stopped; if the step "
                           "is just slow, raise %s)\n", line.c_str(), collective_timeout_key().c_str());
      std::fflush(stderr);
      std::_Exit(kExitRuntimeError);
    }
    if (done) {
      x.comm->release(x.op);
      w.watched[i] = w.watched.back();
      w.watched.pop_back();
    } else {
      ++i;
    }
  }
}

void poll_watched() {
  Watchdog& w = watchdog();
  std::lock_guard<std::mutex> lock(w.mutex);
  poll_locked(w, false);
}

void start_watchdog_thread() {
  Watchdog& w = watchdog();
  std::lock_guard<std::mutex> lock(w.mutex);
  if (w.thread_started) return;
  w.thread_started = true;
  std::thread([&w] {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::lock_guard<std::mutex> guard(w.mutex);
      try {
        poll_locked(w, true);
      } catch (const std::exception& e) {  // a CUDA error while querying: the device is gone
        std::fprintf(stderr, "error: comm: NCCL watchdog: %s; stopping the job\n", e.what());
        std::fflush(stderr);
        std::_Exit(kExitRuntimeError);
      }
    }
  }).detach();
}

class NcclWork final : public Work {
 public:
  NcclWork(cuda::NcclComm* comm, cuda::NcclComm::Op op, std::string what, std::vector<Tensor> keep_alive)
      : comm_(comm), op_(op), what_(std::move(what)), keep_alive_(std::move(keep_alive)), issued_(Clock::now()) {}
  ~NcclWork() override { wait(); }
  void wait() override {
    if (!op_.done) return;
    comm_->order_compute_after(op_);
    {
      std::lock_guard<std::mutex> lock(watchdog().mutex);
      watchdog().watched.push_back({comm_, op_, issued_, what_});
    }
    op_.done = nullptr;
    poll_watched();
    // The tensors stay referenced until here; later frees are ordered after the collective on
    // the compute stream (stream-ordered allocator), so the memory outlives the NCCL kernels.
    keep_alive_.clear();
  }

 private:
  cuda::NcclComm* comm_;
  cuda::NcclComm::Op op_;
  std::string what_;
  std::vector<Tensor> keep_alive_;
  Clock::time_point issued_;
};

cuda::NcclReduce nccl_reduce(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return cuda::NcclReduce::sum;
    case ReduceOp::avg: return cuda::NcclReduce::avg;
    case ReduceOp::max: return cuda::NcclReduce::max;
  }
  return cuda::NcclReduce::sum;
}

class NcclProcessGroup final : public ProcessGroup {
 public:
  NcclProcessGroup(ProcessGroup& host_group, int device_index)
      : rank_(host_group.rank()), size_(host_group.size()), name_(host_group.describe()) {
    // The unique id: rank 0 makes it, the MPI group carries it (128 bytes).
    Tensor id = Tensor::zeros({128}, DType::f8e4m3);
    if (rank_ == 0) {
      const cuda::NcclId made = cuda::nccl_unique_id();
      std::memcpy(id.raw(), made.data(), made.size());
    }
    host_group.broadcast(id, 0);
    cuda::NcclId got{};
    std::memcpy(got.data(), id.raw(), got.size());
    comm_ = std::make_unique<cuda::NcclComm>(got, rank_, size_, device_index);
    start_watchdog_thread();
  }
  ~NcclProcessGroup() override {
    for (auto& s : staged_) {
      comm_->wait_host(s.done);
      comm_->release(s.done);
    }
    staged_.clear();
    // The watchdog must not reach a destroyed communicator: this group's entries leave first.
    Watchdog& w = watchdog();
    std::lock_guard<std::mutex> lock(w.mutex);
    for (size_t i = 0; i < w.watched.size();) {
      if (w.watched[i].comm == comm_.get()) {
        w.watched[i] = w.watched.back();
        w.watched.pop_back();
      } else {
        ++i;
      }
    }
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override { return name_ + " (NCCL)"; }

  void copy_in(const Tensor& dst, const Tensor& src) override {
    if (!src.device().is_cpu() || dst.device().is_cpu() || dst.numel() != src.numel()) return dst.copy_from(src);
    // Through a pinned staging buffer of dst's dtype (the host converts into it): a copy from
    // pageable memory could block until the comm stream, queued behind the compute stream, got
    // there. The buffer goes back to the allocator only once its copy has run, so the host never
    // writes memory a queued copy still reads, and src may change as soon as this returns.
    release_finished_staging();
    Tensor host = Tensor::empty_pinned(dst.shape(), dst.dtype(), dst.device());
    host.copy_from(src);
    staged_.push_back({host, comm_->copy_to_device(dst.raw(), host.raw(), dst.nbytes())});
  }
  std::unique_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op) override {
    count_collective(CommStats::all_reduce, t.nbytes());
    return work("all_reduce", comm_->all_reduce(t.raw(), std::size_t(t.numel()), t.dtype(), nccl_reduce(op)), {t});
  }
  std::unique_ptr<Work> all_gather_async(const Tensor& shard, const Tensor& out) override {
    if (out.numel() != shard.numel() * size_ || out.dtype() != shard.dtype())
      throw std::invalid_argument("all_gather: output " + shape_str(out.shape()) + " does not hold " +
                                  std::to_string(size_) + " shards of " + shape_str(shard.shape()));
    count_collective(CommStats::all_gather, out.nbytes());
    return work("all_gather", comm_->all_gather(shard.raw(), out.raw(), std::size_t(shard.numel()), shard.dtype()),
                {shard, out});
  }
  std::unique_ptr<Work> reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    if (in.numel() != out.numel() * size_ || in.dtype() != out.dtype())
      throw std::invalid_argument("reduce_scatter: input " + shape_str(in.shape()) + " is not " + std::to_string(size_) +
                                  " chunks of " + shape_str(out.shape()));
    count_collective(CommStats::reduce_scatter, in.nbytes());
    return work("reduce_scatter",
                comm_->reduce_scatter(in.raw(), out.raw(), std::size_t(out.numel()), in.dtype(), nccl_reduce(op)),
                {in, out});
  }
  std::unique_ptr<Work> broadcast_async(const Tensor& t, int root) override {
    count_collective(CommStats::broadcast, t.nbytes());
    return work("broadcast", comm_->broadcast(t.raw(), std::size_t(t.numel()), t.dtype(), root), {t});
  }
  std::unique_ptr<Work> barrier_async() override {
    throw std::logic_error("NcclProcessGroup: barriers go to the MPI group");
  }

 private:
  std::unique_ptr<Work> work(const char* op, cuda::NcclComm::Op handle, std::vector<Tensor> keep) {
    return std::make_unique<NcclWork>(comm_.get(), handle, std::string(op) + " on the " + describe(), std::move(keep));
  }
  // Staging buffers whose copies have run go back to the pinned allocator (oldest first: the
  // copies run in order on the one comm stream).
  void release_finished_staging() {
    while (!staged_.empty() && comm_->complete(staged_.front().done)) {
      comm_->release(staged_.front().done);
      staged_.pop_front();
    }
  }

  int rank_, size_;
  std::string name_;
  std::unique_ptr<cuda::NcclComm> comm_;
  struct Staged {
    Tensor host;
    cuda::NcclComm::Op done;
  };
  std::deque<Staged> staged_;
};

std::unique_ptr<ProcessGroup> make_nccl_group(ProcessGroup& host_group, int device_index) {
  return std::make_unique<NcclProcessGroup>(host_group, device_index);
}

// Registers at static initialisation, before main.
[[maybe_unused]] const bool registered = [] {
  register_device_group_factory(Device::Kind::cuda, &make_nccl_group, "nccl");
  set_device_collective_poller(&poll_watched);
  return true;
}();

}  // namespace

}  // namespace titan::dist
