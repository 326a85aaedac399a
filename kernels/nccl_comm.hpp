#pragma once
// NCCL communicators as the rest of titan.cpp sees them: plain C++, no CUDA or NCCL headers, so
// src/dist can include it (DESIGN.md section 6: GPU ranks use NCCL on their own streams).
//
// One NcclComm per process group. Every collective is enqueued on the communicator's own
// communication stream after an event recorded on the compute stream (so it reads what the
// compute stream wrote before the call), and records a completion event. The caller then either
// polls it (complete) or orders later compute after it (order_compute_after) without blocking the
// host; a collective that never completes is found by polling with a deadline, and async_error /
// abort end it (ncclCommGetAsyncError, ncclCommAbort).
#include <array>
#include <cstddef>
#include <memory>
#include <string>

#include "core/dtype.hpp"

namespace titan::cuda {

using NcclId = std::array<char, 128>;  // ncclUniqueId's bytes (NCCL_UNIQUE_ID_BYTES)
// A new unique id (made by one rank, sent to the others, e.g. by MPI_Bcast).
NcclId nccl_unique_id();
// "2.27.3": the NCCL library's version.
std::string nccl_version();

enum class NcclReduce { sum, avg, max };

class NcclComm {
 public:
  // ncclCommInitRank on `device` (this process's CUDA device); every rank of the group calls it
  // with the same id.
  NcclComm(const NcclId& id, int rank, int size, int device);
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  // A collective in flight: its completion event (a cudaEvent_t).
  struct Op {
    void* done = nullptr;
  };
  // In place. avg is NCCL's ncclAvg. f32/f64/bf16/f16/i32/i64 (max on floats and ints).
  Op all_reduce(void* buf, std::size_t count, DType dtype, NcclReduce op);
  // out = size() x count elements, rank r's `in` at r * count.
  Op all_gather(const void* in, void* out, std::size_t count, DType dtype);
  // in = size() x count elements; out (count) = op over ranks of in's chunk rank().
  Op reduce_scatter(const void* in, void* out, std::size_t count, DType dtype, NcclReduce op);
  Op broadcast(void* buf, std::size_t count, DType dtype, int root);

  // bytes from host memory to device memory on the communication stream (after the compute
  // stream's work so far, before this communicator's next collective); returns once queued, with
  // the copy's completion event (src must stay unchanged until it completes).
  Op copy_to_device(void* dst, const void* src, std::size_t bytes);
  void wait_host(const Op& op);             // cudaEventSynchronize: the host waits for it
  bool complete(const Op& op) const;        // cudaEventQuery: done on the device
  void order_compute_after(const Op& op);   // the compute stream waits for it (the host does not)
  void release(Op& op);                     // the event goes back to this communicator's pool
  std::string async_error() const;          // ncclCommGetAsyncError: "" while healthy
  void abort();                             // ncclCommAbort: ends every collective in flight
  int rank() const { return rank_; }
  int size() const { return size_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0, size_ = 1;
};

}  // namespace titan::cuda
