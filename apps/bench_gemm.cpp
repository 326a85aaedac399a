// bench_gemm: throughput of titan's cuBLASLt GEMMs (kernels/gemm.hpp) on the forward linear
// shapes of Llama 3 8B (y = x W^T, M = 8192 tokens), in bf16, fp8 tensorwise and fp8 rowwise
// (bf16 output, fast accumulation as torchao's forward), against "cuBLASLt's own best": every
// algorithm of cuBLASLt's top-8 heuristic list timed directly with the same descriptors, keeping
// the fastest. "ours" is the plan cache's algorithm (heuristic top-1) called through the public
// API, host overhead included. Timing: cudaEvents around each call on the compute stream,
// warmup, median of --iters calls. Without a GPU it prints "no CUDA device" and exits 0.
//
//   bench_gemm [iters=20] [tokens=8192]
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.hpp"
#include "float8_cast.hpp"
#include "gemm.hpp"
#include "runtime.hpp"

namespace {

using titan::DType;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "bench_gemm: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}
bool lt_ok(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; }
void check(cublasStatus_t s, const char* what) {
  if (!lt_ok(s)) {
    std::fprintf(stderr, "bench_gemm: %s: cuBLAS status %d\n", what, int(s));
    std::exit(1);
  }
}

cudaStream_t stream() { return static_cast<cudaStream_t>(titan::cuda::stream_handle()); }

// Median GPU time (ms) of `fn` over `iters` calls after `warmup` calls; -1 if fn fails.
double time_ms(const std::function<bool()>& fn, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i)
    if (!fn()) return -1;
  std::vector<cudaEvent_t> ev(2 * std::size_t(iters));
  for (auto& e : ev) check(cudaEventCreate(&e), "cudaEventCreate");
  for (int i = 0; i < iters; ++i) {
    check(cudaEventRecord(ev[2 * i], stream()), "cudaEventRecord");
    if (!fn()) return -1;
    check(cudaEventRecord(ev[2 * i + 1], stream()), "cudaEventRecord");
  }
  check(cudaStreamSynchronize(stream()), "cudaStreamSynchronize");
  std::vector<double> t(static_cast<std::size_t>(iters));
  for (int i = 0; i < iters; ++i) {
    float ms = 0;
    check(cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]), "cudaEventElapsedTime");
    t[i] = ms;
  }
  for (auto& e : ev) cudaEventDestroy(e);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

enum class Mode { bf16, fp8_tensorwise, fp8_rowwise };

struct Operands {
  void* x = nullptr;  // [M, K] bf16
  void* w = nullptr;  // [N, K] bf16
  void* x8 = nullptr;  // [M, K] e4m3
  void* w8 = nullptr;  // [N, K] e4m3
  float* sx = nullptr;  // scale_inv: tensorwise [1], rowwise [M]
  float* sw = nullptr;  // tensorwise [1], rowwise [N]
  float* sx_row = nullptr;
  float* sw_row = nullptr;
  void* y = nullptr;  // [M, N] bf16
};

// cuBLASLt called directly: the same TN mapping as gemm.cu (its A = W [N, K] read K x N with op T,
// its B = x [M, K] read K x M with op N, D = y^T N x M), top-8 heuristic algorithms each timed.
double best_of_heuristics(Mode mode, std::int64_t M, std::int64_t N, std::int64_t K, const Operands& op,
                          cublasLtHandle_t handle, void* workspace, std::size_t ws_bytes, int iters) {
  cublasLtMatmulDesc_t desc;
  check(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
  const cublasOperation_t t = CUBLAS_OP_T, n = CUBLAS_OP_N;
  check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t), "transa");
  check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &n, sizeof n), "transb");
  const bool fp8 = mode != Mode::bf16;
  const void* a_ptr = fp8 ? op.w8 : op.w;
  const void* b_ptr = fp8 ? op.x8 : op.x;
  if (fp8) {
    const std::int8_t fast = 1;
    check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof fast), "fast accum");
    const void* sa = mode == Mode::fp8_rowwise ? op.sw_row : op.sw;
    const void* sb = mode == Mode::fp8_rowwise ? op.sx_row : op.sx;
    if (mode == Mode::fp8_rowwise) {
      const std::int32_t m = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
      check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &m, sizeof m), "a scale mode");
      check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &m, sizeof m), "b scale mode");
    }
    check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sa, sizeof sa), "a scale");
    check(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sb, sizeof sb), "b scale");
  }
  const cudaDataType_t in_t = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
  cublasLtMatrixLayout_t la, lb, lc;
  check(cublasLtMatrixLayoutCreate(&la, in_t, K, N, K), "layout a");
  check(cublasLtMatrixLayoutCreate(&lb, in_t, K, M, K), "layout b");
  check(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, N, M, N), "layout c");
  cublasLtMatmulPreference_t pref;
  check(cublasLtMatmulPreferenceCreate(&pref), "pref");
  const std::uint64_t ws = ws_bytes;
  check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws), "pref ws");
  cublasLtMatmulHeuristicResult_t results[8] = {};
  int found = 0;
  const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(handle, desc, la, lb, lc, lc, pref, 8, results, &found);
  double best = -1;
  const float alpha = 1.f, beta = 0.f;
  for (int i = 0; lt_ok(hs) && i < found; ++i) {
    if (!lt_ok(results[i].state)) continue;
    const double ms = time_ms(
        [&] {
          return lt_ok(cublasLtMatmul(handle, desc, &alpha, a_ptr, la, b_ptr, lb, &beta, op.y, lc, op.y, lc,
                                      &results[i].algo, workspace, ws_bytes, stream()));
        },
        3, iters);
    if (ms > 0 && (best < 0 || ms < best)) best = ms;
  }
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatmulDescDestroy(desc);
  return best;
}

double ours(Mode mode, std::int64_t M, std::int64_t N, std::int64_t K, const Operands& op, int iters) {
  try {
    return time_ms(
        [&] {
          if (mode == Mode::bf16)
            titan::cuda::gemm(false, true, M, N, K, 1.f, op.x, DType::bf16, K, 0, op.w, DType::bf16, K, 0, 0.f, op.y,
                              DType::bf16, N, 0, 1);
          else if (mode == Mode::fp8_tensorwise)
            titan::cuda::gemm_fp8(M, N, K, op.x8, DType::f8e4m3, op.sx, op.w8, DType::f8e4m3, op.sw, op.y, DType::bf16,
                                  titan::cuda::Fp8Scaling::tensorwise, true);
          else
            titan::cuda::gemm_fp8(M, N, K, op.x8, DType::f8e4m3, op.sx_row, op.w8, DType::f8e4m3, op.sw_row, op.y,
                                  DType::bf16, titan::cuda::Fp8Scaling::rowwise, true);
          return true;
        },
        5, iters);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "  (%s)\n", e.what());
    return -1;
  }
}

// Fills `count` bf16 values on the device with N(0, 1) samples (a host block copied repeatedly).
void fill_bf16(void* dst, std::int64_t count, std::uint32_t seed) {
  const std::int64_t block = std::int64_t(1) << 22;
  std::vector<std::uint16_t> host(static_cast<std::size_t>(block));
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.f, 1.f);
  for (auto& h : host) h = titan::f32_to_bf16(dist(gen));
  for (std::int64_t off = 0; off < count; off += block) {
    const std::int64_t n = std::min(block, count - off);
    titan::cuda::copy(static_cast<std::uint16_t*>(dst) + off, host.data(), std::size_t(n) * 2);
  }
}

std::string cell(double ms, double flop) {
  if (ms <= 0) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", flop / (ms * 1e-3) / 1e12);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  if (titan::cuda::device_count() == 0) {
    std::printf("no CUDA device\n");
    return 0;
  }
  const int iters = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  const std::int64_t M = argc > 2 ? std::max(16, std::atoi(argv[2])) : 8192;
  titan::cuda::set_device(0);
  std::printf("bench_gemm on %s: y = x W^T, M = %lld tokens, bf16 output, median of %d; TFLOP/s\n",
              titan::cuda::device_description(0).c_str(), static_cast<long long>(M), iters);

  struct Shape {
    const char* name;
    std::int64_t N, K;
  };
  const Shape shapes[] = {{"wq/wo", 4096, 4096},   {"wk/wv", 1024, 4096},    {"w1/w3", 14336, 4096},
                          {"w2", 4096, 14336},     {"output", 128256, 4096}};
  std::int64_t max_xk = 0, max_nk = 0, max_n = 0;
  for (const auto& s : shapes) {
    max_xk = std::max(max_xk, M * s.K);
    max_nk = std::max(max_nk, s.N * s.K);
    max_n = std::max(max_n, s.N);
  }
  Operands op;
  op.x = titan::cuda::allocate(std::size_t(max_xk) * 2);
  op.w = titan::cuda::allocate(std::size_t(max_nk) * 2);
  op.x8 = titan::cuda::allocate(std::size_t(max_xk));
  op.w8 = titan::cuda::allocate(std::size_t(max_nk));
  op.y = titan::cuda::allocate(std::size_t(M * max_n) * 2);
  op.sx = static_cast<float*>(titan::cuda::allocate(4 * 3));
  op.sw = static_cast<float*>(titan::cuda::allocate(4 * 3));
  op.sx_row = static_cast<float*>(titan::cuda::allocate(std::size_t(M) * 4 * 3));
  op.sw_row = static_cast<float*>(titan::cuda::allocate(std::size_t(max_n) * 4 * 3));
  fill_bf16(op.x, max_xk, 1);
  fill_bf16(op.w, max_nk, 2);

  cublasLtHandle_t handle;
  check(cublasLtCreate(&handle), "cublasLtCreate");
  const std::size_t ws_bytes = std::size_t(32) << 20;
  void* workspace = titan::cuda::allocate(ws_bytes);

  std::printf("%-8s %6s %6s %6s | %9s %9s | %9s %9s | %9s %9s\n", "layer", "M", "N", "K", "bf16", "bf16-best",
              "fp8tw", "fp8tw-best", "fp8rw", "fp8rw-best");
  for (const auto& s : shapes) {
    const std::int64_t N = s.N, K = s.K;
    // Quantize with titan's kernels: tensorwise (amax, scale, scale_inv in 3 floats) and rowwise
    // (power-of-2 scales per row of x and of W; the rowwise data overwrite x8/w8 only after the
    // tensorwise runs, so each mode times its own operands).
    float* sx_t = op.sx;
    float* sw_t = op.sw;
    titan::cuda::quantize_fp8(op.x, DType::bf16, M, K, DType::f8e4m3, titan::cuda::Fp8ScaleAxis::tensor, false, sx_t + 1,
                              sx_t + 2, sx_t, op.x8, nullptr);
    titan::cuda::quantize_fp8(op.w, DType::bf16, N, K, DType::f8e4m3, titan::cuda::Fp8ScaleAxis::tensor, false, sw_t + 1,
                              sw_t + 2, sw_t, op.w8, nullptr);
    const double flop = 2.0 * double(M) * double(N) * double(K);
    const double bf16_ours = ours(Mode::bf16, M, N, K, op, iters);
    const double bf16_best = best_of_heuristics(Mode::bf16, M, N, K, op, handle, workspace, ws_bytes, iters);
    const double tw_ours = ours(Mode::fp8_tensorwise, M, N, K, op, iters);
    const double tw_best = best_of_heuristics(Mode::fp8_tensorwise, M, N, K, op, handle, workspace, ws_bytes, iters);
    // Rowwise: sx_row = scale_inv [M], then amax [M] and scale [M] behind it (likewise for W).
    titan::cuda::quantize_fp8(op.x, DType::bf16, M, K, DType::f8e4m3, titan::cuda::Fp8ScaleAxis::per_row, true,
                              op.sx_row + M, op.sx_row + 2 * M, op.sx_row, op.x8, nullptr);
    titan::cuda::quantize_fp8(op.w, DType::bf16, N, K, DType::f8e4m3, titan::cuda::Fp8ScaleAxis::per_row, true,
                              op.sw_row + N, op.sw_row + 2 * N, op.sw_row, op.w8, nullptr);
    const double rw_ours = ours(Mode::fp8_rowwise, M, N, K, op, iters);
    const double rw_best = best_of_heuristics(Mode::fp8_rowwise, M, N, K, op, handle, workspace, ws_bytes, iters);
    std::printf("%-8s %6lld %6lld %6lld | %9s %9s | %9s %9s | %9s %9s\n", s.name, static_cast<long long>(M),
                static_cast<long long>(N), static_cast<long long>(K), cell(bf16_ours, flop).c_str(),
                cell(bf16_best, flop).c_str(), cell(tw_ours, flop).c_str(), cell(tw_best, flop).c_str(),
                cell(rw_ours, flop).c_str(), cell(rw_best, flop).c_str());
    std::fflush(stdout);
  }
  titan::cuda::synchronize();
  return 0;
}
