// bench_attention: causal GQA flash attention on the GPU (kernels/attention.cu: cuDNN's fused
// attention or titan.cpp's own kernels, --impl; the line "implementation:" says which), forward alone,
// backward alone and forward + backward, timed with CUDA events on the compute stream (warmup,
// then the median of --iters runs). Prints TFLOP/s with the usual causal count (forward
// 2 * 2 * B * H * S^2 * D / 2, backward 2.5x that) and the share of the H100 SXM dense bf16 peak
// (989 TFLOP/s). Without a GPU it says so and exits 0.
//   bench_attention [--batch 1] [--seq 8192] [--heads 32] [--kv-heads 8] [--head-dim 128] [--dtype bf16]
//                   [--impl auto|cudnn|titan] [--deterministic]
#include <CLI/CLI.hpp>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "attention.hpp"
#include "core/dtype.hpp"
#include "runtime.hpp"

namespace {

constexpr double kH100Bf16PeakTflops = 989.0;

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// A device buffer of n values of `dtype` filled with uniform noise of unit variance.
struct Buffer {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  Buffer(std::int64_t n, titan::DType dtype, std::uint64_t seed) : bytes(std::size_t(n) * titan::dtype_size(dtype)) {
    ptr = titan::cuda::allocate(bytes);
    std::vector<unsigned char> host(bytes);
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (std::int64_t i = 0; i < n; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64
      const float u = (float((x >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f) * 3.4641016f;
      if (dtype == titan::DType::bf16) {
        const std::uint16_t b = titan::f32_to_bf16(u);
        std::memcpy(host.data() + 2 * i, &b, 2);
      } else {
        std::memcpy(host.data() + 4 * i, &u, 4);
      }
    }
    titan::cuda::copy(ptr, host.data(), bytes);
  }
  ~Buffer() { titan::cuda::deallocate(ptr, bytes); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

// Median milliseconds of `iters` timed runs of f after `warmup` untimed ones.
double time_ms(const std::function<void()>& f, int warmup, int iters) {
  auto stream = static_cast<cudaStream_t>(titan::cuda::stream_handle());
  for (int i = 0; i < warmup; ++i) f();
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    check(cudaEventRecord(start, stream), "cudaEventRecord");
    f();
    check(cudaEventRecord(stop, stream), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float t = 0;
    check(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_attention: causal GQA flash attention forward/backward throughput on the GPU"};
  std::int64_t B = 1, S = 8192, H = 32, KV = 8, D = 128;
  int warmup = 3, iters = 10;
  std::string dtype_name = "bf16", impl_name = "auto";
  app.add_option("--batch", B, "batch size");
  app.add_option("--seq", S, "sequence length");
  app.add_option("--heads", H, "query heads");
  app.add_option("--kv-heads", KV, "key/value heads");
  app.add_option("--head-dim", D, "head dimension (16, 32, 64, 128)");
  app.add_option("--dtype", dtype_name, "bf16 or f32")->check(CLI::IsMember({"bf16", "f32"}));
  app.add_option("--impl", impl_name,
                 "bf16 kernels: auto (cuDNN's fused attention where it runs, else titan.cpp's), cudnn or titan")
      ->check(CLI::IsMember({"auto", "cudnn", "titan"}));
  bool deterministic = false;
  app.add_flag("--deterministic", deterministic,
               "cuDNN's deterministic backward (debug.deterministic; titan.cpp's kernels always are)");
  app.add_option("--warmup", warmup, "untimed runs");
  app.add_option("--iters", iters, "timed runs (median reported)")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  if (titan::cuda::device_count() == 0) {
    std::printf("no CUDA device\n");
    return 0;
  }
  try {
    titan::cuda::set_device(0);
    const titan::DType dtype = dtype_name == "bf16" ? titan::DType::bf16 : titan::DType::f32;
    titan::cuda::set_attention_impl(titan::cuda::attention_impl_named(impl_name));
    titan::cuda::set_attention_deterministic(deterministic);
    std::printf("bench_attention on %s: B=%lld S=%lld H=%lld KV=%lld D=%lld %s, causal\n",
                titan::cuda::device_description(0).c_str(), (long long)B, (long long)S, (long long)H, (long long)KV,
                (long long)D, dtype_name.c_str());
    const std::int64_t nq = B * S * H * D, nk = B * S * KV * D, nl = B * H * S;
    Buffer q(nq, dtype, 1), k(nk, dtype, 2), v(nk, dtype, 3), dout(nq, dtype, 4);
    Buffer out(nq, dtype, 5), lse(nl, titan::DType::f32, 6), dq(nq, dtype, 7), dk(nk, dtype, 8), dv(nk, dtype, 9);
    auto* lse_p = static_cast<float*>(lse.ptr);
    auto fwd = [&] {
      titan::cuda::attention_forward(q.ptr, k.ptr, v.ptr, out.ptr, lse_p, B, S, H, KV, D, dtype);
    };
    auto bwd = [&] {
      titan::cuda::attention_backward(dout.ptr, q.ptr, k.ptr, v.ptr, out.ptr, lse_p, dq.ptr, dk.ptr, dv.ptr, B, S, H,
                                      KV, D, dtype);
    };
    // Builds cuDNN's plans for the shape (untimed); with --impl cudnn a shape it refuses is an error.
    std::printf("implementation: %s\n", titan::cuda::attention_implementation(B, S, H, KV, D, dtype).c_str());
    fwd();  // a valid out and lse for the backward runs
    titan::cuda::synchronize();

    const double fwd_flops = 2.0 * 2.0 * double(B) * double(H) * double(S) * double(S) * double(D) / 2.0;
    struct Row {
      const char* name;
      double flops;
      std::function<void()> f;
    };
    const Row rows[] = {{"forward", fwd_flops, fwd},
                        {"backward", 2.5 * fwd_flops, bwd},
                        {"forward+backward", 3.5 * fwd_flops, [&] { fwd(); bwd(); }}};
    std::printf("%-18s %10s %10s %14s\n", "pass", "ms", "TFLOP/s", "% of 989 peak");
    for (const Row& r : rows) {
      const double ms = time_ms(r.f, warmup, iters);
      const double tflops = r.flops / (ms * 1e-3) / 1e12;
      std::printf("%-18s %10.3f %10.1f %13.1f%%\n", r.name, ms, tflops, 100.0 * tflops / kH100Bf16PeakTflops);
    }
    titan::cuda::synchronize();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_attention: %s\n", e.what());
    return 1;
  }
  return 0;
}
