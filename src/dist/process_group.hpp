#pragma once
// Collectives over a group of ranks (DESIGN.md section 6). ProcessGroup is the interface FSDP
// uses; MpiProcessGroup implements it for CPU tensors with MPI (an NCCL implementation for
// device tensors comes with the CUDA backend). DeviceMesh lays the world out as a 2D
// (replicate, shard) grid and owns the groups along each dimension.
#include <memory>
#include <string>

#include "core/tensor.hpp"

namespace titan::dist {

enum class ReduceOp { sum, avg, max };

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place; float32/float64/int64 (max also works for float32 amaxes).
  virtual void all_reduce(const Tensor& t, ReduceOp op) = 0;
  // out (size() x shard.numel() elements) = every rank's shard in rank order; any dtype.
  virtual void all_gather(const Tensor& shard, const Tensor& out) = 0;
  // in (size() x out.numel() elements): out = op over ranks of in's chunk number rank().
  virtual void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) = 0;
  virtual void broadcast(const Tensor& t, int root) = 0;
  virtual void barrier() = 0;
};

class World;

// The (replicate, shard) mesh over the world: rank = replicate_index * shard + shard_index.
// shard_group() holds the ranks with this rank's replicate index (they shard the weights
// between them); replicate_group() the ranks with its shard index (they hold the same shards).
class DeviceMesh {
 public:
  // Throws UserError when replicate * shard != world size.
  DeviceMesh(const World& world, int replicate, int shard);
  ~DeviceMesh();
  int replicate() const { return replicate_; }
  int shard() const { return shard_; }
  int replicate_index() const { return replicate_index_; }
  int shard_index() const { return shard_index_; }
  ProcessGroup& world_group() { return *world_; }
  ProcessGroup& shard_group() { return *shard_group_; }
  ProcessGroup& replicate_group() { return *replicate_group_; }
  // Data-parallel rank among replicate x shard, which is also the world rank.
  int dp_rank() const { return replicate_index_ * shard_ + shard_index_; }

 private:
  int replicate_, shard_, replicate_index_, shard_index_;
  std::unique_ptr<ProcessGroup> world_, shard_group_, replicate_group_;
};

}  // namespace titan::dist
