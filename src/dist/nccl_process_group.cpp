// The NCCL process group for CUDA tensors (DESIGN.md section 6). Compiled only in builds with
// nvcc, and linked into every program as an object file beside the CUDA DeviceBackend
// (src/CMakeLists.txt): nothing names this file, it registers itself as the device-group factory
// for CUDA (dist/process_group.hpp), which DeviceMesh::use_device_collectives uses.
//
// One NCCL communicator per MPI group (world, shard, replicate): rank 0 of the group makes the
// unique id and broadcasts it over the MPI group. Collectives run on the communicator's own
// stream, ordered after the compute stream's work by an event (kernels/nccl_comm.hpp); wait()
// does not block the host: it makes the compute stream wait for the collective's completion
// event and hands the collective to a watchdog. poll_collectives() (FSDP calls it between layers)
// and every later wait check the watchdog: a collective still incomplete after the comm timeout,
// or one NCCL reports an asynchronous error for, aborts the communicator and ends the job with
// the same one-line error as the MPI path.
//
// Compiled and linked, never run yet: no GPU has been lent to this project's sessions with
// NCCL set up across ranks (docs/fsdp.md says what was verified).
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <memory>
#include <string>
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
  std::string what;  // "all_gather on the shard group (world ranks 0, 1)"
};
std::vector<Watched> g_watched;

void poll_watched() {
  for (size_t i = 0; i < g_watched.size();) {
    Watched& w = g_watched[i];
    const std::string err = w.comm->async_error();
    if (!err.empty() ||
        (!w.comm->complete(w.op) &&
         std::chrono::duration<double>(Clock::now() - w.issued).count() > collective_timeout_seconds())) {
      w.comm->abort();
      collective_timed_out(w.what + " did not complete within " + collective_timeout_key() + " = " +
                           std::to_string(collective_timeout_seconds()) + " s" +
                           (err.empty() ? std::string() : " (NCCL: " + err + ")"));
    }
    if (w.comm->complete(w.op)) {
      w.comm->release(w.op);
      g_watched[i] = g_watched.back();
      g_watched.pop_back();
    } else {
      ++i;
    }
  }
}

class NcclWork final : public Work {
 public:
  NcclWork(cuda::NcclComm* comm, cuda::NcclComm::Op op, std::string what, std::vector<Tensor> keep_alive)
      : comm_(comm), op_(op), what_(std::move(what)), keep_alive_(std::move(keep_alive)) {}
  ~NcclWork() override { wait(); }
  void wait() override {
    if (!op_.done) return;
    comm_->order_compute_after(op_);
    g_watched.push_back({comm_, op_, Clock::now(), what_});
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
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override { return name_ + " (NCCL)"; }

  std::unique_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op) override {
    count(CommStats::all_reduce, t.nbytes());
    return work("all_reduce", comm_->all_reduce(t.raw(), std::size_t(t.numel()), t.dtype(), nccl_reduce(op)), {t});
  }
  std::unique_ptr<Work> all_gather_async(const Tensor& shard, const Tensor& out) override {
    if (out.numel() != shard.numel() * size_ || out.dtype() != shard.dtype())
      throw std::invalid_argument("all_gather: output " + shape_str(out.shape()) + " does not hold " +
                                  std::to_string(size_) + " shards of " + shape_str(shard.shape()));
    count(CommStats::all_gather, out.nbytes());
    return work("all_gather", comm_->all_gather(shard.raw(), out.raw(), std::size_t(shard.numel()), shard.dtype()),
                {shard, out});
  }
  std::unique_ptr<Work> reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    if (in.numel() != out.numel() * size_ || in.dtype() != out.dtype())
      throw std::invalid_argument("reduce_scatter: input " + shape_str(in.shape()) + " is not " + std::to_string(size_) +
                                  " chunks of " + shape_str(out.shape()));
    count(CommStats::reduce_scatter, in.nbytes());
    return work("reduce_scatter",
                comm_->reduce_scatter(in.raw(), out.raw(), std::size_t(out.numel()), in.dtype(), nccl_reduce(op)),
                {in, out});
  }
  std::unique_ptr<Work> broadcast_async(const Tensor& t, int root) override {
    count(CommStats::broadcast, t.nbytes());
    return work("broadcast", comm_->broadcast(t.raw(), std::size_t(t.numel()), t.dtype(), root), {t});
  }
  std::unique_ptr<Work> barrier_async() override {
    throw std::logic_error("NcclProcessGroup: barriers go to the MPI group");
  }

 private:
  static void count(CommStats::Op op, std::size_t bytes) {
    ++comm_stats().calls[op];
    comm_stats().bytes[op] += static_cast<std::int64_t>(bytes);
  }
  std::unique_ptr<Work> work(const char* op, cuda::NcclComm::Op handle, std::vector<Tensor> keep) {
    return std::make_unique<NcclWork>(comm_.get(), handle, std::string(op) + " on the " + describe(), std::move(keep));
  }

  int rank_, size_;
  std::string name_;
  std::unique_ptr<cuda::NcclComm> comm_;
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
