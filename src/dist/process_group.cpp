#include "dist/process_group.hpp"

#include <mpi.h>

#include <stdexcept>
#include <vector>

#include "core/errors.hpp"
#include "dist/world.hpp"
#include "ops/ops.hpp"

namespace titan::dist {

namespace {

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

void check_reducible(const Tensor& t, const char* what) {
  if (t.dtype() != DType::f32 && t.dtype() != DType::f64 && t.dtype() != DType::i64)
    throw std::invalid_argument(std::string(what) + ": cannot reduce " + std::string(dtype_name(t.dtype())) +
                                " tensors (float32, float64, int64)");
}

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::max ? MPI_MAX : MPI_SUM; }

// A group backed by an MPI communicator; without MPI (a world of one) every collective is a copy.
class MpiProcessGroup final : public ProcessGroup {
 public:
  MpiProcessGroup(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
    if (comm_ != MPI_COMM_NULL) {
      MPI_Comm_rank(comm_, &rank_);
      MPI_Comm_size(comm_, &size_);
    }
  }
  ~MpiProcessGroup() override {
    if (owned_ && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce(const Tensor& t, ReduceOp op) override {
    check_reducible(t, "all_reduce");
    if (size_ > 1) MPI_Allreduce(MPI_IN_PLACE, t.raw(), static_cast<int>(t.numel()), mpi_type(t.dtype()), mpi_op(op), comm_);
    if (op == ReduceOp::avg) scale(t, 1.0 / size_);
  }

  void all_gather(const Tensor& shard, const Tensor& out) override {
    if (out.numel() != shard.numel() * size_ || out.dtype() != shard.dtype())
      throw std::invalid_argument("all_gather: output " + shape_str(out.shape()) + " does not hold " +
                                  std::to_string(size_) + " shards of " + shape_str(shard.shape()));
    if (size_ == 1) {
      out.copy_from(shard);
      return;
    }
    MPI_Allgather(shard.raw(), static_cast<int>(shard.numel()), mpi_type(shard.dtype()), out.raw(),
                  static_cast<int>(shard.numel()), mpi_type(shard.dtype()), comm_);
  }

  void reduce_scatter(const Tensor& in, const Tensor& out, ReduceOp op) override {
    check_reducible(in, "reduce_scatter");
    if (in.numel() != out.numel() * size_ || in.dtype() != out.dtype())
      throw std::invalid_argument("reduce_scatter: input " + shape_str(in.shape()) + " is not " + std::to_string(size_) +
                                  " chunks of " + shape_str(out.shape()));
    if (size_ == 1) {
      out.copy_from(in);
    } else {
      MPI_Reduce_scatter_block(in.raw(), out.raw(), static_cast<int>(out.numel()), mpi_type(in.dtype()), mpi_op(op), comm_);
    }
    if (op == ReduceOp::avg) scale(out, 1.0 / size_);
  }

  void broadcast(const Tensor& t, int root) override {
    if (size_ > 1) MPI_Bcast(t.raw(), static_cast<int>(t.numel()), mpi_type(t.dtype()), root, comm_);
  }

  void barrier() override {
    if (size_ > 1) MPI_Barrier(comm_);
  }

 private:
  static void scale(const Tensor& t, double f) {
    if (t.dtype() == DType::i64) throw std::invalid_argument("avg of int64 tensors");
    Tensor view = t;
    ops::scale_(view, f);
  }
  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

DeviceMesh::DeviceMesh(const World& world, int replicate, int shard) : replicate_(replicate), shard_(shard) {
  if (replicate * shard != world.size())
    throw UserError("mesh: replicate " + std::to_string(replicate) + " x shard " + std::to_string(shard) +
                    " does not cover the " + std::to_string(world.size()) + " ranks");
  replicate_index_ = world.rank() / shard;
  shard_index_ = world.rank() % shard;
  if (!world.uses_mpi()) {
    world_ = std::make_unique<MpiProcessGroup>(MPI_COMM_NULL, false);
    shard_group_ = std::make_unique<MpiProcessGroup>(MPI_COMM_NULL, false);
    replicate_group_ = std::make_unique<MpiProcessGroup>(MPI_COMM_NULL, false);
    return;
  }
  MPI_Comm shard_comm, replicate_comm;
  // Same replicate index -> one shard group (ordered by shard index); same shard index -> one replicate group.
  MPI_Comm_split(MPI_COMM_WORLD, replicate_index_, shard_index_, &shard_comm);
  MPI_Comm_split(MPI_COMM_WORLD, shard_index_, replicate_index_, &replicate_comm);
  world_ = std::make_unique<MpiProcessGroup>(MPI_COMM_WORLD, false);
  shard_group_ = std::make_unique<MpiProcessGroup>(shard_comm, true);
  replicate_group_ = std::make_unique<MpiProcessGroup>(replicate_comm, true);
}

DeviceMesh::~DeviceMesh() = default;

}  // namespace titan::dist
