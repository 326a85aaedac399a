#include "dist/process_group.hpp"

#include <mpi.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/errors.hpp"
#include "core/trace.hpp"
#include "dist/world.hpp"
#include "ops/ops.hpp"

namespace titan::dist {

namespace {

// A collective span's args in a profiling trace: the bytes it moves (as CommStats counts them).
std::string bytes_arg(std::size_t bytes) { return "\"bytes\":" + std::to_string(bytes); }

using Clock = std::chrono::steady_clock;

CommStats g_stats;
// A duplicate of MPI_COMM_WORLD for the timeout diagnosis; it must not abort the job on a dead
// peer. Made with the world group (collectively, at mesh creation).
MPI_Comm g_ping_comm = MPI_COMM_NULL;
double g_timeout_seconds = 300;
std::string g_timeout_key = "comm.init_timeout_seconds";

MPI_Datatype mpi_type(DType dt) {
  switch (dt) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i64: return MPI_INT64_T;
    case DType::i32: return MPI_INT32_T;
    case DType::bf16: case DType::f16: return MPI_UINT16_T;
    case DType::f8e4m3: case DType::f8e5m2: return MPI_UINT8_T;
  }
  return MPI_BYTE;
}

// MPI counts are ints: a larger collective would be silently truncated, so it is an error.
int mpi_count(std::int64_t n, const char* what) {
  if (n > std::numeric_limits<int>::max())
    throw UserError(std::string("comm: ") + what + " of " + std::to_string(n) +
                    " elements per rank exceeds MPI's int count; raise data_parallel_shard_degree so each rank's "
                    "part of an FSDP unit stays under 2^31 elements");
  return static_cast<int>(n);
}

void check_reducible(const Tensor& t, const char* what) {
  if (t.dtype() != DType::f32 && t.dtype() != DType::f64 && t.dtype() != DType::i64)
    throw std::invalid_argument(std::string(what) + ": cannot reduce " + std::string(dtype_name(t.dtype())) +
                                " tensors (float32, float64, int64)");
}

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::max ? MPI_MAX : MPI_SUM; }

void scale(const Tensor& t, double f) {
  if (t.dtype() == DType::i64) throw std::invalid_argument("avg of int64 tensors");
  Tensor view = t;
  ops::scale_(view, f);
}

class MpiProcessGroup;

// One MPI request with its deadline; `finish` runs once the data has arrived (avg scaling).
class MpiWork;
// Collectives in flight, for poll_collectives().
std::vector<MpiWork*> g_in_flight;

class MpiWork final : public Work {
 public:
  MpiWork(const MpiProcessGroup* group, CommStats::Op op, MPI_Request req, std::function<void()> finish)
      : group_(group), op_(op), req_(req), finish_(std::move(finish)), issued_(Clock::now()) {
    g_in_flight.push_back(this);
  }
  ~MpiWork() override {
    if (!done_) wait();
    g_in_flight.erase(std::find(g_in_flight.begin(), g_in_flight.end(), this));
  }
  void wait() override;
  // One MPI_Test: lets MPI move the collective on; notes when it completed.
  void poll() {
    if (completed_) return;
    int complete = 0;
    MPI_Test(&req_, &complete, MPI_STATUS_IGNORE);
    if (complete) {
      completed_ = true;
      completed_at_ = Clock::now();
    }
  }

 private:
  const MpiProcessGroup* group_;
  CommStats::Op op_;
  MPI_Request req_;
  std::function<void()> finish_;
  Clock::time_point issued_, completed_at_;
  bool completed_ = false;  // MPI finished it (seen by poll or wait)
  bool done_ = false;       // wait() returned
};

// MPI moves host memory, so a collective on GPU tensors runs on host copies (the "MPI-staged"
// process group for device tensors: what lets several ranks share one GPU; NCCL replaces it
// where present). The device results are written back when the collective is waited for.
class StagedWork final : public Work {
 public:
  // `keep_alive`: host inputs MPI still reads until the collective completes.
  StagedWork(std::unique_ptr<Work> inner, std::vector<std::pair<Tensor, Tensor>> copy_back,
             std::vector<Tensor> keep_alive = {})
      : inner_(std::move(inner)), copy_back_(std::move(copy_back)), keep_alive_(std::move(keep_alive)) {}
  ~StagedWork() override {
    if (inner_) wait();
  }
  void wait() override {
    if (!inner_) return;
    inner_->wait();
    inner_.reset();
    for (auto& [host, device] : copy_back_) device.copy_from(host);
    keep_alive_.clear();
  }

 private:
  std::unique_ptr<Work> inner_;
  std::vector<std::pair<Tensor, Tensor>> copy_back_;  // (host result, device destination)
  std::vector<Tensor> keep_alive_;
};

bool on_device(const Tensor& t) { return !t.device().is_cpu(); }
// The host tensor a collective reads: `t` itself on the CPU, else a copy of its values.
Tensor host_input(const Tensor& t) { return on_device(t) ? t.to(Device::cpu()) : t; }
// The host tensor a collective writes: `t` itself on the CPU, else an empty buffer to copy back.
Tensor host_output(const Tensor& t) { return on_device(t) ? Tensor::empty(t.shape(), t.dtype()) : t; }

// Already complete (a world of one, or a group of one rank).
class DoneWork final : public Work {
 public:
  void wait() override {}
};

// A group backed by an MPI communicator; without MPI (a world of one) every collective is a copy.
class MpiProcessGroup final : public ProcessGroup {
 public:
  MpiProcessGroup(MPI_Comm comm, bool owned, std::string name) : comm_(comm), owned_(owned), name_(std::move(name)) {
    if (comm_ == MPI_COMM_NULL) {
      members_ = {0};
      return;
    }
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    // World ranks of the members, for messages.
    MPI_Group group, world;
    MPI_Comm_group(comm_, &group);
    MPI_Comm_group(MPI_COMM_WORLD, &world);
    std::vector<int> local(static_cast<size_t>(size_));
    for (int i = 0; i < size_; ++i) local[size_t(i)] = i;
    members_.resize(static_cast<size_t>(size_));
    MPI_Group_translate_ranks(group, size_, local.data(), world, members_.data());
    MPI_Group_free(&group);
    MPI_Group_free(&world);
    if (comm_ == MPI_COMM_WORLD && g_ping_comm == MPI_COMM_NULL) {
      MPI_Comm_dup(MPI_COMM_WORLD, &g_ping_comm);
      MPI_Comm_set_errhandler(g_ping_comm, MPI_ERRORS_RETURN);
    }
  }
  ~MpiProcessGroup() override {
    if (owned_ && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override {
    std::string ranks;
    for (int m : members_) ranks += (ranks.empty() ? "" : ", ") + std::to_string(m);
    return name_ + " group (world ranks " + ranks + ")";
  }

  std::unique_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op) override {
    trace::Span span("comm", "all_reduce");  // profiling: issuing the collective (its wait is MpiWork::wait)
    if (span.active()) span.set_args(bytes_arg(t.nbytes()));
    // A group of one exchanges nothing: its tensors stay where they are (a GPU tensor is not
    // staged through the host, which would make the host wait).
    if (on_device(t) && size_ > 1) {
      const Tensor h = host_input(t);
      return std::make_unique<StagedWork>(all_reduce_async(h, op), std::vector<std::pair<Tensor, Tensor>>{{h, t}});
    }
    check_reducible(t, "all_reduce");
    count_collective(CommStats::all_reduce, t.nbytes());
    if (size_ == 1) return done({});  // the sum, max and mean of one value
    std::function<void()> finish;
    if (op == ReduceOp::avg) finish = [t, n = size_] { scale(t, 1.0 / n); };
    MPI_Request req;
    MPI_Iallreduce(MPI_IN_PLACE, t.raw(), mpi_count(t.numel(), "all_reduce"), mpi_type(t.dtype()), mpi_op(op), comm_, &req);
    return std::make_unique<MpiWork>(this, CommStats::all_reduce, req, std::move(finish));
  }

  std::unique_ptr<Work> all_gather_async(const Tensor& shard, const Tensor& out) override {
    trace::Span span("comm", "all_gather");  // profiling: issuing the collective (its wait is MpiWork::wait)
    if (span.active()) span.set_args(bytes_arg(out.nbytes()));
    if ((on_device(shard) || on_device(out)) && size_ > 1) {
      const Tensor h = host_output(out);
      std::vector<std::pair<Tensor, Tensor>> back;
      if (on_device(out)) back.push_back({h, out});
      const Tensor in = host_input(shard);
      return std::make_unique<StagedWork>(all_gather_async(in, h), std::move(back), std::vector<Tensor>{in});
    }
    if (out.numel() != shard.numel() * size_ || out.dtype() != shard.dtype())
      throw std::invalid_argument("all_gather: output " + shape_str(out.shape()) + " does not hold " +
                                  std::to_string(size_) + " shards of " + shape_str(shard.shape()));
    count_collective(CommStats::all_gather, out.nbytes());
    if (size_ == 1) {
      out.copy_from(shard);
      return done({});
    }
    MPI_Request req;
    MPI_Iallgather(shard.raw(), mpi_count(shard.numel(), "all_gather"), mpi_type(shard.dtype()), out.raw(),
                   mpi_count(shard.numel(), "all_gather"), mpi_type(shard.dtype()), comm_, &req);
    return std::make_unique<MpiWork>(this, CommStats::all_gather, req, nullptr);
  }

  std::unique_ptr<Work> reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    trace::Span span("comm", "reduce_scatter");  // profiling: issuing the collective (its wait is MpiWork::wait)
    if (span.active()) span.set_args(bytes_arg(in.nbytes()));
    if ((on_device(in) || on_device(out)) && size_ > 1) {
      const Tensor h = host_output(out);
      std::vector<std::pair<Tensor, Tensor>> back;
      if (on_device(out)) back.push_back({h, out});
      const Tensor src = host_input(in);
      return std::make_unique<StagedWork>(reduce_scatter_async(src, h, op), std::move(back), std::vector<Tensor>{src});
    }
    check_reducible(in, "reduce_scatter");
    if (in.numel() != out.numel() * size_ || in.dtype() != out.dtype())
      throw std::invalid_argument("reduce_scatter: input " + shape_str(in.shape()) + " is not " + std::to_string(size_) +
                                  " chunks of " + shape_str(out.shape()));
    count_collective(CommStats::reduce_scatter, in.nbytes());
    if (size_ == 1) {
      out.copy_from(in);
      return done({});
    }
    std::function<void()> finish;
    if (op == ReduceOp::avg) finish = [out, n = size_] { scale(out, 1.0 / n); };
    MPI_Request req;
    MPI_Ireduce_scatter_block(in.raw(), out.raw(), mpi_count(out.numel(), "reduce_scatter"), mpi_type(in.dtype()), mpi_op(op),
                              comm_, &req);
    return std::make_unique<MpiWork>(this, CommStats::reduce_scatter, req, std::move(finish));
  }

  std::unique_ptr<Work> broadcast_async(const Tensor& t, int root) override {
    trace::Span span("comm", "broadcast");  // profiling: issuing the collective (its wait is MpiWork::wait)
    if (span.active()) span.set_args(bytes_arg(t.nbytes()));
    if (on_device(t) && size_ > 1) {
      const Tensor h = host_input(t);
      return std::make_unique<StagedWork>(broadcast_async(h, root), std::vector<std::pair<Tensor, Tensor>>{{h, t}});
    }
    count_collective(CommStats::broadcast, t.nbytes());
    if (size_ == 1) return done({});
    MPI_Request req;
    MPI_Ibcast(t.raw(), mpi_count(t.numel(), "broadcast"), mpi_type(t.dtype()), root, comm_, &req);
    return std::make_unique<MpiWork>(this, CommStats::broadcast, req, nullptr);
  }

  std::unique_ptr<Work> barrier_async() override {
    TITAN_TRACE_SPAN("comm", "barrier");  // profiling: issuing the collective (its wait is MpiWork::wait)
    count_collective(CommStats::barrier, 0);
    if (size_ == 1) return done({});
    MPI_Request req;
    MPI_Ibarrier(comm_, &req);
    return std::make_unique<MpiWork>(this, CommStats::barrier, req, nullptr);
  }

  // The collective `op` missed its deadline: find out which members are silent, report, and
  // take the whole job down (the silent rank cannot be reached to agree on anything).
  [[noreturn]] void timed_out(CommStats::Op op) const {
    const std::string silent = silent_ranks();
    const std::string line = fmt::format(
        "comm: {} on the {} did not complete within {} = {:g} s; {}; stopping the job (a rank that died, hung or "
        "was stopped; if the step is just slow, raise {})",
        CommStats::name(op), describe(), g_timeout_key, g_timeout_seconds,
        silent.empty() ? "every rank answered the diagnosis, so the ranks disagree on the order of collectives"
                       : "not answering: world rank(s) " + silent,
        g_timeout_key);
    int world_rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    spdlog::default_logger()->flush();
    std::fprintf(stderr, "error: [rank %d] %s\n", world_rank, line.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, kExitRuntimeError);
    std::abort();  // not reached
  }

 private:
  static std::unique_ptr<Work> done(const std::function<void()>& finish) {
    if (finish) finish();
    return std::make_unique<DoneWork>();
  }

  // Every rank that timed out pings every other rank and listens for their pings for a grace
  // period. A stuck collective soon blocks every healthy rank (directly, or through a rank that
  // waits for the silent one in another group), so they all time out within moments of each
  // other and answer; whoever stays silent is the rank that stopped.
  static std::string silent_ranks() {
    if (g_ping_comm == MPI_COMM_NULL) return "";
    const int kTag = 7177;
    int me = 0, n = 1;
    MPI_Comm_rank(g_ping_comm, &me);
    MPI_Comm_size(g_ping_comm, &n);
    std::vector<int> heard(static_cast<size_t>(n), -1);
    std::vector<MPI_Request> reqs;
    for (int peer = 0; peer < n; ++peer) {
      if (peer == me) continue;
      MPI_Request s, r;
      MPI_Isend(&me, 1, MPI_INT, peer, kTag, g_ping_comm, &s);
      MPI_Request_free(&s);
      MPI_Irecv(&heard[size_t(peer)], 1, MPI_INT, peer, kTag, g_ping_comm, &r);
      reqs.push_back(r);
    }
    const auto deadline = Clock::now() + std::chrono::duration<double>(std::min(10.0, std::max(2.0, g_timeout_seconds / 2)));
    while (Clock::now() < deadline) {
      int all = 0;
      MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &all, MPI_STATUSES_IGNORE);
      if (all) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::string silent;
    for (int peer = 0; peer < n; ++peer)
      if (peer != me && heard[size_t(peer)] != peer) silent += (silent.empty() ? "" : ", ") + std::to_string(peer);
    return silent;
  }

  MPI_Comm comm_;
  bool owned_;
  std::string name_;
  int rank_ = 0, size_ = 1;
  std::vector<int> members_;
};

void MpiWork::wait() {
  if (done_) return;
  TITAN_TRACE_SPAN("comm_wait", CommStats::name(op_));  // profiling: waiting for the collective's peers
  const auto t0 = Clock::now();
  const auto deadline = t0 + std::chrono::duration<double>(g_timeout_seconds);
  // Poll: spin briefly (collectives are usually quick), then sleep between tests so that
  // oversubscribed ranks leave the cores to the peers they wait for.
  for (long polls = 0;; ++polls) {
    poll();
    if (completed_) break;
    if (Clock::now() > deadline) group_->timed_out(op_);
    if (polls < 200) std::this_thread::yield();
    else std::this_thread::sleep_for(std::chrono::microseconds(polls < 2000 ? 20 : 200));
  }
  done_ = true;
  const auto now = Clock::now();
  g_stats.wait_seconds += std::chrono::duration<double>(now - t0).count();
  g_stats.in_flight_seconds += std::chrono::duration<double>(completed_at_ - issued_).count();
  if (finish_) finish_();
}

}  // namespace

namespace {
struct DeviceGroupEntry {
  DeviceGroupFactory factory = nullptr;
  const char* name = "";
};
DeviceGroupEntry g_device_groups[2];  // by Device::Kind (cpu, cuda)
void (*g_device_poller)() = nullptr;

// Host tensors to the MPI group, device tensors to the device group: one ProcessGroup for FSDP,
// the loss and the gradient norm whatever their tensors live on.
class RoutingGroup final : public ProcessGroup {
 public:
  RoutingGroup(std::unique_ptr<ProcessGroup> host, std::unique_ptr<ProcessGroup> device)
      : host_(std::move(host)), device_(std::move(device)) {}
  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string describe() const override { return host_->describe(); }
  std::unique_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op) override { return on(t).all_reduce_async(t, op); }
  std::unique_ptr<Work> all_gather_async(const Tensor& shard, const Tensor& out) override {
    return on(out).all_gather_async(shard, out);
  }
  std::unique_ptr<Work> reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) override {
    return on(in).reduce_scatter_async(in, out, op);
  }
  std::unique_ptr<Work> broadcast_async(const Tensor& t, int root) override { return on(t).broadcast_async(t, root); }
  std::unique_ptr<Work> barrier_async() override { return host_->barrier_async(); }
  void copy_in(const Tensor& dst, const Tensor& src) override { on(dst).copy_in(dst, src); }

 private:
  ProcessGroup& on(const Tensor& t) { return t.device().is_cpu() ? *host_ : *device_; }
  std::unique_ptr<ProcessGroup> host_, device_;
};
}  // namespace

void register_device_group_factory(Device::Kind kind, DeviceGroupFactory factory, const char* name) {
  g_device_groups[static_cast<int>(kind)] = {factory, name};
}

std::string device_group_backend(Device::Kind kind) {
  const auto& e = g_device_groups[static_cast<int>(kind)];
  return e.factory ? e.name : "";
}

void set_device_collective_poller(void (*poll)()) { g_device_poller = poll; }

void collective_timed_out(const std::string& what) {
  int world_rank = 0, initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  spdlog::default_logger()->flush();
  std::fprintf(stderr, "error: [rank %d] comm: %s; stopping the job (a rank that died, hung or was stopped; if the "
                       "step is just slow, raise %s)\n",
               world_rank, what.c_str(), g_timeout_key.c_str());
  std::fflush(stderr);
  if (initialized) MPI_Abort(MPI_COMM_WORLD, kExitRuntimeError);
  std::exit(kExitRuntimeError);
}

void poll_collectives() {
  for (MpiWork* w : g_in_flight) w->poll();
  if (g_device_poller) g_device_poller();
}

void DeviceMesh::use_device_collectives(Device device) {
  const auto& e = g_device_groups[static_cast<int>(device.kind)];
  if (!e.factory)
    throw UserError("comm: this build has no collectives for " + device.str() +
                    " tensors; set comm.backend = \"mpi\" (host-staged) or build with the CUDA toolkit");
  device_collectives_ = device;
  // The TP and data-parallel groups carry device tensors only under tensor parallelism (tp 1:
  // dp_group is the world again, and one communicator per group costs set-up and GPU memory).
  for (auto* g : {&world_, &shard_group_, &replicate_group_, &shard_subgroup_})
    if (*g) route_device_collectives(*g);
  if (tp_ > 1)
    for (auto* g : {&tp_group_, &dp_group_}) route_device_collectives(*g);
}

void DeviceMesh::route_device_collectives(std::unique_ptr<ProcessGroup>& g) {
  const auto& e = g_device_groups[static_cast<int>(device_collectives_->kind)];
  auto dev = e.factory(*g, device_collectives_->index);
  g = std::make_unique<RoutingGroup>(std::move(g), std::move(dev));
}

void DeviceMesh::make_shard_subgroups(int n) {
  if (n < 1 || shard_ % n != 0)
    throw std::invalid_argument("DeviceMesh::make_shard_subgroups: " + std::to_string(n) + " does not divide the shard degree " +
                                std::to_string(shard_));
  if (!mpi_) {
    shard_subgroup_ = std::make_unique<MpiProcessGroup>(MPI_COMM_NULL, false, "hpz");
    return;
  }
  // Members share the replicate and tp indices and shard_index / n; ordered by shard index.
  MPI_Comm comm;
  MPI_Comm_split(MPI_COMM_WORLD, (replicate_index_ * tp_ + tp_index_) * (shard_ / n) + shard_index_ / n, shard_index_,
                 &comm);
  shard_subgroup_ = std::make_unique<MpiProcessGroup>(comm, true, "hpz");
  if (device_collectives_) route_device_collectives(shard_subgroup_);
}

std::int64_t CommStats::total_bytes() const {
  std::int64_t t = 0;
  for (auto b : bytes) t += b;
  return t;
}

const char* CommStats::name(Op op) {
  static const char* names[] = {"all_gather", "reduce_scatter", "all_reduce", "broadcast", "barrier"};
  return names[op];
}

CommStats& comm_stats() { return g_stats; }
void count_collective(CommStats::Op op, std::size_t bytes) {
  ++g_stats.calls[op];
  g_stats.bytes[op] += static_cast<std::int64_t>(bytes);
}
void reset_comm_stats() { g_stats = CommStats{}; }

void set_collective_timeout(double seconds, const std::string& key) {
  g_timeout_seconds = seconds;
  g_timeout_key = key;
}

double collective_timeout_seconds() { return g_timeout_seconds; }
const std::string& collective_timeout_key() { return g_timeout_key; }

DeviceMesh::DeviceMesh(const World& world, int replicate, int shard, int tp)
    : replicate_(replicate), shard_(shard), tp_(tp) {
  if (replicate * shard * tp != world.size())
    throw UserError("mesh: replicate " + std::to_string(replicate) + " x shard " + std::to_string(shard) + " x tp " +
                    std::to_string(tp) + " does not cover the " + std::to_string(world.size()) + " ranks");
  tp_index_ = world.rank() % tp;
  shard_index_ = world.rank() / tp % shard;
  replicate_index_ = world.rank() / (tp * shard);
  mpi_ = world.uses_mpi();
  if (!world.uses_mpi()) {
    world_ = std::make_unique<MpiProcessGroup>(MPI_COMM_NULL, false, "world");
    shard_group_ = std::make_unique<MpiProcessGroup>(MPI_COMM_NULL, false, "shard");
    replicate_group_ = std::make_unique<MpiProcessGroup>(MPI_COMM_NULL, false, "replicate");
    tp_group_ = std::make_unique<MpiProcessGroup>(MPI_COMM_NULL, false, "tp");
    dp_group_ = std::make_unique<MpiProcessGroup>(MPI_COMM_NULL, false, "dp");
    return;
  }
  // Each split's color is the coordinates the group's members share; its key orders them by the
  // coordinate they differ in.
  MPI_Comm shard_comm, replicate_comm, tp_comm, dp_comm;
  MPI_Comm_split(MPI_COMM_WORLD, replicate_index_ * tp + tp_index_, shard_index_, &shard_comm);
  MPI_Comm_split(MPI_COMM_WORLD, shard_index_ * tp + tp_index_, replicate_index_, &replicate_comm);
  MPI_Comm_split(MPI_COMM_WORLD, replicate_index_ * shard + shard_index_, tp_index_, &tp_comm);
  MPI_Comm_split(MPI_COMM_WORLD, tp_index_, dp_rank(), &dp_comm);
  world_ = std::make_unique<MpiProcessGroup>(MPI_COMM_WORLD, false, "world");
  shard_group_ = std::make_unique<MpiProcessGroup>(shard_comm, true, "shard");
  replicate_group_ = std::make_unique<MpiProcessGroup>(replicate_comm, true, "replicate");
  tp_group_ = std::make_unique<MpiProcessGroup>(tp_comm, true, "tp");
  dp_group_ = std::make_unique<MpiProcessGroup>(dp_comm, true, "dp");
}

DeviceMesh::~DeviceMesh() = default;

}  // namespace titan::dist
