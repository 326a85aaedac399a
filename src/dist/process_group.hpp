#pragma once
// Collectives over a group of ranks (DESIGN.md section 6). ProcessGroup is the interface FSDP
// uses; MpiProcessGroup implements it with MPI, for CPU tensors directly and for GPU tensors
// through host copies (an NCCL implementation for device tensors is still to come). DeviceMesh lays the world out as a 3D
// (replicate, shard, tp) grid and owns the groups along each dimension.
//
// Every collective is issued non-blocking and waited for with a deadline (comm timeouts): a rank
// that stops answering ends the job with one line naming the collective, the group and the
// silent rank(s), instead of a hang. Every call is counted (calls, bytes, seconds waited) in the
// process-wide CommStats, which the step log reports.
#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace titan::dist {

enum class ReduceOp { sum, avg, max };

// What a rank's collectives cost, summed over all its groups since the last reset.
struct CommStats {
  enum Op { all_gather = 0, reduce_scatter, all_reduce, broadcast, barrier, kNumOps };
  std::array<std::int64_t, kNumOps> calls{}, bytes{};
  double wait_seconds = 0;  // time spent inside collectives (waiting for peers and moving data): exposed
  // Issue to observed completion, summed over collectives: wait_seconds plus what overlapped
  // compute (a prefetched gather, a reduce-scatter behind the next unit's backward).
  double in_flight_seconds = 0;
  std::int64_t total_bytes() const;
  static const char* name(Op op);
};
CommStats& comm_stats();
void reset_comm_stats();
// Counts one collective of `bytes` (what every ProcessGroup implementation calls when it issues one).
void count_collective(CommStats::Op op, std::size_t bytes);

// The deadline of every collective from now on (comm.init_timeout_seconds during set-up and the
// first step, comm.train_timeout_seconds after it). `key` names the config key in the message.
void set_collective_timeout(double seconds, const std::string& key);
double collective_timeout_seconds();
const std::string& collective_timeout_key();

// Lets MPI advance every collective in flight (one MPI_Test each). OpenMPI moves a non-blocking
// collective only inside MPI calls, so FSDP calls this between ops while a unit computes.
void poll_collectives();

// A collective in flight (the non-blocking variants). wait() blocks until it is done (or the
// timeout ends the job); the destructor waits too, so buffers are never left in use.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
};

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "shard group (world ranks 2, 3)": for messages.
  virtual std::string describe() const = 0;

  // Non-blocking variants: start the collective and return its handle; the tensors must stay
  // untouched until wait().
  // In place; float32/float64/int64 (max also works for float32 amaxes).
  virtual std::unique_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op) = 0;
  // out (size() x shard.numel() elements) = every rank's shard in rank order; any dtype.
  virtual std::unique_ptr<Work> all_gather_async(const Tensor& shard, const Tensor& out) = 0;
  // in (size() x out.numel() elements): out = op over ranks of in's chunk number rank().
  virtual std::unique_ptr<Work> reduce_scatter_async(const Tensor& in, const Tensor& out, ReduceOp op) = 0;
  virtual std::unique_ptr<Work> broadcast_async(const Tensor& t, int root) = 0;
  virtual std::unique_ptr<Work> barrier_async() = 0;

  // dst = src, for a buffer a collective on this group reads next (FSDP's offloaded shards packed
  // into the all-gather's send buffer). A GPU group queues a host-to-device copy on its own
  // communication stream, off the compute stream and ordered before its next collective (src
  // converted to dst's dtype on the host first); otherwise Tensor::copy_from.
  virtual void copy_in(const Tensor& dst, const Tensor& src) { dst.copy_from(src); }

  // Blocking forms: start and wait.
  void all_reduce(const Tensor& t, ReduceOp op) { all_reduce_async(t, op)->wait(); }
  void all_gather(const Tensor& shard, const Tensor& out) { all_gather_async(shard, out)->wait(); }
  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) { reduce_scatter_async(in, out, op)->wait(); }
  void broadcast(const Tensor& t, int root) { broadcast_async(t, root)->wait(); }
  void barrier() { barrier_async()->wait(); }
};

// Device collectives (DESIGN.md section 6: GPU ranks use NCCL): the backend of a device kind
// registers a factory that makes a process group over the same ranks as `host_group`, for the
// device `device_index` (a bootstrap such as NCCL's unique id travels over host_group). As with
// core's backend registry, dist names no device backend: the CUDA side registers itself
// (src/dist/nccl_process_group.cpp, compiled only with nvcc).
using DeviceGroupFactory = std::unique_ptr<ProcessGroup> (*)(ProcessGroup& host_group, int device_index);
void register_device_group_factory(Device::Kind kind, DeviceGroupFactory factory, const char* name);
// The registered factory's name ("nccl"), or "" when none is registered for `kind`.
std::string device_group_backend(Device::Kind kind);
// Called by poll_collectives() too: a device backend's check of its collectives in flight
// (completion and deadlines).
void set_device_collective_poller(void (*poll)());
// The one-line error for a collective that missed its deadline (`what`: which one, on which
// group, and the backend's own diagnosis), then the job ends (MPI_Abort), as for MPI collectives.
[[noreturn]] void collective_timed_out(const std::string& what);

class World;

// The (replicate, shard, tp) mesh over the world, tp innermost:
//   rank = (replicate_index * shard + shard_index) * tp + tp_index
// shard_group() holds the ranks with this rank's replicate and tp indices (they shard the
// weights between them); replicate_group() the ranks with its shard and tp indices (they hold
// the same shards); tp_group() the ranks with its replicate and shard indices (adjacent ranks:
// they split each layer's weights and see the same batch); dp_group() the ranks with its tp index
// (one per data-parallel rank: the batch and loss reductions).
class DeviceMesh {
 public:
  // Throws UserError when replicate * shard * tp != world size.
  DeviceMesh(const World& world, int replicate, int shard, int tp = 1);
  ~DeviceMesh();
  int replicate() const { return replicate_; }
  int shard() const { return shard_; }
  int tp() const { return tp_; }
  int replicate_index() const { return replicate_index_; }
  int shard_index() const { return shard_index_; }
  int tp_index() const { return tp_index_; }
  ProcessGroup& world_group() { return *world_; }
  ProcessGroup& shard_group() { return *shard_group_; }
  ProcessGroup& replicate_group() { return *replicate_group_; }
  ProcessGroup& tp_group() { return *tp_group_; }
  ProcessGroup& dp_group() { return *dp_group_; }
  // Data-parallel rank among replicate x shard (the world rank when tp is 1).
  int dp_rank() const { return replicate_index_ * shard_ + shard_index_; }
  // From now on, collectives on tensors of `device` go to its registered device group (NCCL for
  // CUDA) and host tensors stay with MPI; every rank calls it (the groups are made collectively).
  // Throws UserError when no device group is registered for the kind.
  void use_device_collectives(Device device);
  // Splits every shard group into groups of `n` adjacent shard indices (n divides shard(); every
  // rank calls it): FSDP's hpZ group (reshard_after_forward = n). Null until made.
  void make_shard_subgroups(int n);
  ProcessGroup* shard_subgroup() { return shard_subgroup_.get(); }

 private:
  void route_device_collectives(std::unique_ptr<ProcessGroup>& g);
  int replicate_, shard_, tp_, replicate_index_, shard_index_, tp_index_;
  bool mpi_ = false;
  std::optional<Device> device_collectives_;
  std::unique_ptr<ProcessGroup> world_, shard_group_, replicate_group_, tp_group_, dp_group_, shard_subgroup_;
};

}  // namespace titan::dist
