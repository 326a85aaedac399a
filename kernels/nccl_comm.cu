// NCCL communicators (nccl_comm.hpp): the communication stream, the event ordering with the
// compute stream, and the error/abort path.
//
//   compute stream:  ... writes buf ... [record e_in]            ...  [wait e_done] reads result ...
//   comm stream:                   [wait e_in] ncclXxx(buf) [record e_done]
//
// The comm stream is non-blocking and of higher priority, so a collective is not queued behind
// compute kernels it does not depend on.
#include "nccl_comm.hpp"

#include <nccl.h>

#include <cstring>
#include <stdexcept>
#include <vector>

#include "common.cuh"

namespace titan::cuda {

namespace {

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess && r != ncclInProgress)
    throw std::runtime_error(std::string("NCCL: ") + what + " failed: " + ncclGetErrorString(r));
}

ncclDataType_t nccl_type(DType dt) {
  switch (dt) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::f16: return ncclFloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::f8e4m3: case DType::f8e5m2: return ncclUint8;  // gathered as bytes, never reduced
  }
  throw std::invalid_argument("NCCL: no NCCL type for this dtype");
}

ncclRedOp_t nccl_op(NcclReduce op) {
  switch (op) {
    case NcclReduce::sum: return ncclSum;
    case NcclReduce::avg: return ncclAvg;
    case NcclReduce::max: return ncclMax;
  }
  return ncclSum;
}

}  // namespace

struct NcclComm::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  std::vector<cudaEvent_t> free_events;

  cudaEvent_t event() {
    if (!free_events.empty()) {
      cudaEvent_t e = free_events.back();
      free_events.pop_back();
      return e;
    }
    cudaEvent_t e;
    TITAN_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    return e;
  }
  // The comm stream waits for everything the compute stream has queued so far.
  void after_compute() {
    cudaEvent_t e = event();
    TITAN_CUDA_CHECK(cudaEventRecord(e, compute_stream()));
    TITAN_CUDA_CHECK(cudaStreamWaitEvent(stream, e, 0));
    free_events.push_back(e);  // reusable at once: the wait was captured when enqueued
  }
  Op finish() {
    cudaEvent_t done = event();
    TITAN_CUDA_CHECK(cudaEventRecord(done, stream));
    return Op{done};
  }
};

NcclId nccl_unique_id() {
  ncclUniqueId id;
  check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  NcclId out{};
  static_assert(sizeof(id) == sizeof(NcclId), "ncclUniqueId is 128 bytes");
  std::memcpy(out.data(), &id, sizeof id);
  return out;
}

std::string nccl_version() {
  int v = 0;
  ncclGetVersion(&v);
  // NCCL_VERSION_CODE: major * 10000 + minor * 100 + patch (since 2.9).
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

NcclComm::NcclComm(const NcclId& id, int rank, int size, int device) : impl_(std::make_unique<Impl>()), rank_(rank), size_(size) {
  set_device(device);
  int least = 0, greatest = 0;
  TITAN_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  TITAN_CUDA_CHECK(cudaStreamCreateWithPriority(&impl_->stream, cudaStreamNonBlocking, greatest));
  ncclUniqueId uid;
  std::memcpy(&uid, id.data(), sizeof uid);
  check(ncclCommInitRank(&impl_->comm, size, uid, rank), "ncclCommInitRank");
}

NcclComm::~NcclComm() {
  if (impl_->stream) cudaStreamSynchronize(impl_->stream);  // nothing of ours still runs
  if (impl_->comm) ncclCommDestroy(impl_->comm);
  for (cudaEvent_t e : impl_->free_events) cudaEventDestroy(e);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
}

NcclComm::Op NcclComm::all_reduce(void* buf, std::size_t count, DType dtype, NcclReduce op) {
  impl_->after_compute();
  check(ncclAllReduce(buf, buf, count, nccl_type(dtype), nccl_op(op), impl_->comm, impl_->stream), "ncclAllReduce");
  return impl_->finish();
}

NcclComm::Op NcclComm::copy_to_device(void* dst, const void* src, std::size_t bytes) {
  impl_->after_compute();  // dst may have just been allocated on the compute stream
  if (bytes > 0) TITAN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, impl_->stream));
  return impl_->finish();
}

void NcclComm::wait_host(const Op& op) {
  if (!op.done) return;
  note_host_sync();
  TITAN_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(op.done)));
}

NcclComm::Op NcclComm::all_gather(const void* in, void* out, std::size_t count, DType dtype) {
  impl_->after_compute();
  check(ncclAllGather(in, out, count, nccl_type(dtype), impl_->comm, impl_->stream), "ncclAllGather");
  return impl_->finish();
}

NcclComm::Op NcclComm::reduce_scatter(const void* in, void* out, std::size_t count, DType dtype, NcclReduce op) {
  impl_->after_compute();
  check(ncclReduceScatter(in, out, count, nccl_type(dtype), nccl_op(op), impl_->comm, impl_->stream),
        "ncclReduceScatter");
  return impl_->finish();
}

NcclComm::Op NcclComm::broadcast(void* buf, std::size_t count, DType dtype, int root) {
  impl_->after_compute();
  check(ncclBroadcast(buf, buf, count, nccl_type(dtype), root, impl_->comm, impl_->stream), "ncclBroadcast");
  return impl_->finish();
}

bool NcclComm::complete(const Op& op) const {
  const cudaError_t r = cudaEventQuery(static_cast<cudaEvent_t>(op.done));
  if (r == cudaErrorNotReady) return false;
  TITAN_CUDA_CHECK(r);
  return true;
}

void NcclComm::order_compute_after(const Op& op) {
  TITAN_CUDA_CHECK(cudaStreamWaitEvent(compute_stream(), static_cast<cudaEvent_t>(op.done), 0));
}

void NcclComm::release(Op& op) {
  if (op.done) impl_->free_events.push_back(static_cast<cudaEvent_t>(op.done));
  op.done = nullptr;
}

std::string NcclComm::async_error() const {
  ncclResult_t r = ncclSuccess;
  if (ncclCommGetAsyncError(impl_->comm, &r) != ncclSuccess) return "ncclCommGetAsyncError failed";
  return r == ncclSuccess || r == ncclInProgress ? "" : ncclGetErrorString(r);
}

void NcclComm::abort() {
  if (impl_->comm) ncclCommAbort(impl_->comm);
  impl_->comm = nullptr;
}

}  // namespace titan::cuda
