// NCCL communicator (kernels/nccl_comm.hpp) on one GPU, a world of 1: every collective runs
// through NCCL on the communication stream, ordered after the compute stream's writes and
// before its later reads by events, and gives the identity results a 1-rank group must
// (sum/avg/max of one contribution, a gather or scatter of one chunk). Also the health and
// version queries the timeout path uses. The multi-rank path needs several GPUs (docs/fsdp.md).
#include <catch2/catch.hpp>

#include <vector>

#include "gpu_test_helpers.hpp"
#include "nccl_comm.hpp"
#include "runtime.hpp"

using namespace titan;
using gpu_test::DeviceBuffer;

TEST_CASE("nccl: a 1-rank communicator runs every collective, ordered with the compute stream") {
  cuda::set_device(0);
  const cuda::NcclId id = cuda::nccl_unique_id();
  cuda::NcclComm comm(id, 0, 1, 0);
  INFO("NCCL " << cuda::nccl_version());
  CHECK(comm.async_error().empty());
  std::vector<float> values(1000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(i) * 0.5f - 100.f;

  for (auto op : {cuda::NcclReduce::sum, cuda::NcclReduce::avg, cuda::NcclReduce::max}) {
    DeviceBuffer buf(values, DType::f32);  // written on the compute stream
    auto h = comm.all_reduce(buf.get(), values.size(), DType::f32, op);
    comm.order_compute_after(h);
    CHECK(buf.download() == values);  // read on the compute stream, after the collective
    CHECK(comm.complete(h));
    comm.release(h);
  }
  DeviceBuffer in(values, DType::bf16), out(std::int64_t(values.size()), DType::bf16);
  auto g = comm.all_gather(in.get(), out.get(), values.size(), DType::bf16);
  comm.order_compute_after(g);
  CHECK(out.download() == in.download());
  comm.release(g);
  DeviceBuffer rs_out(std::int64_t(values.size()), DType::f32), rs_in(values, DType::f32);
  auto r = comm.reduce_scatter(rs_in.get(), rs_out.get(), values.size(), DType::f32, cuda::NcclReduce::avg);
  comm.order_compute_after(r);
  CHECK(rs_out.download() == values);
  comm.release(r);
  DeviceBuffer b(values, DType::f32);
  auto bc = comm.broadcast(b.get(), values.size(), DType::f32, 0);
  comm.order_compute_after(bc);
  CHECK(b.download() == values);
  comm.release(bc);
  CHECK(comm.async_error().empty());
}
