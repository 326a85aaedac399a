// cuBLASLt GEMMs (gemm.hpp): the row-major <-> column-major mapping, the plan cache, fp8.
//
// Mapping. A row-major matrix X (R x C, row stride ld) is, read column-major with leading
// dimension ld, the C x R matrix X^T. cuBLASLt computes column-major D = op(A') op(B'); we ask for
// D = C^T (N x M, ld = ldc), which is exactly row-major C, with
//   A' = our B:  op(B)^T is N x K. B stored K x N (no trans_b) reads as the N x K matrix B^T
//                -> op N; B stored N x K (trans_b) reads as K x N -> op T.
//   B' = our A:  op(A)^T is K x M. A stored M x K (no trans_a) reads as K x M -> op N;
//                A stored K x M (trans_a) reads as M x K -> op T.
// so cuBLASLt's (m, n, k) = (N, M, K). For fp8 (A [M, K], B [N, K], both K-contiguous) this is
// cuBLASLt's required "TN" form: A' = B read K x N with op T, B' = A read K x M with op N; the
// scale that cuBLASLt applies to its A is ours for B and vice versa (rowwise: its m-vector is our
// b_scale_inv [N], its n-vector our a_scale_inv [M]).
//
// Plan cache. Descriptor creation and the heuristic query cost tens of microseconds, so each
// distinct problem builds them once: the key holds everything a descriptor or the heuristic's
// choice depends on (shape, dtypes, transposes, leading dims, batch and strides, fp8 scaling
// mode and fast accumulation) plus each matrix's pointer-alignment class, which the heuristic
// must know (its default assumes 256-byte alignment, and a view at an odd offset needs an
// algorithm that tolerates it). Plans, the handle and the workspace live for the process; they
// are deliberately never destroyed, so nothing runs after the CUDA runtime has shut down.
#include "gemm.hpp"

#include <cublasLt.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "common.cuh"

namespace titan::cuda {

namespace {

constexpr std::size_t kWorkspaceBytes = std::size_t(32) << 20;

const char* status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
  }
}

void check_lt(cublasStatus_t s, const char* what, const char* context) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string(context) + ": cuBLASLt error in " + what + ": " + status_name(s) + " (" +
                             std::to_string(int(s)) + ")");
}
#define TITAN_LT_CHECK(expr, context) check_lt((expr), #expr, (context))

[[noreturn]] void usage(const char* fn, const std::string& msg) {
  throw std::invalid_argument(std::string("titan::cuda::") + fn + ": " + msg);
}

std::string s(std::int64_t v) { return std::to_string(v); }

cudaDataType_t cuda_type(DType dt) {
  switch (dt) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::f8e4m3: return CUDA_R_8F_E4M3;
    case DType::f8e5m2: return CUDA_R_8F_E5M2;
    default: throw std::invalid_argument("titan::cuda gemm: no cuBLASLt type for " + std::string(dtype_name(dt)));
  }
}

// Largest power of two (<= 256) dividing the address of every batch item.
std::int64_t alignment_class(const void* p, std::int64_t stride_bytes, bool batched) {
  std::uint64_t a = reinterpret_cast<std::uintptr_t>(p);
  if (batched) a |= static_cast<std::uint64_t>(stride_bytes);
  std::int64_t al = 256;
  while (al > 1 && (a % static_cast<std::uint64_t>(al)) != 0) al >>= 1;
  return al;
}

struct PlanKey {
  std::array<std::int64_t, 16> v{};
  bool operator==(const PlanKey& o) const { return v == o.v; }
};
struct PlanKeyHash {
  std::size_t operator()(const PlanKey& k) const {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (std::int64_t x : k.v) {
      h ^= static_cast<std::uint64_t>(x) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
      h *= 0x100000001b3ull;
    }
    return static_cast<std::size_t>(h);
  }
};

// One problem's descriptors. a/b/c are cuBLASLt's A, B and C (= D) layouts.
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  cublasLtMatmulAlgo_t algo{};
  std::size_t workspace = 0;
  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {  // runs only for a plan whose construction failed (cached plans are never freed)
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

struct State {
  std::mutex mu;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  int sm = 0;  // major * 10 + minor
  std::unordered_map<PlanKey, Plan*, PlanKeyHash> plans;
};

// Leaked on purpose (see the top of the file). Call with the lock held.
State& state_locked_init(std::unique_lock<std::mutex>& lock) {
  static State* st = new State;
  lock = std::unique_lock<std::mutex>(st->mu);
  if (!st->handle) {
    (void)stream_handle();  // makes sure the device and its stream exist
    int dev = 0, major = 0, minor = 0;
    TITAN_CUDA_CHECK(cudaGetDevice(&dev));
    TITAN_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    TITAN_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    cublasLtHandle_t h = nullptr;
    TITAN_LT_CHECK(cublasLtCreate(&h), "titan::cuda::gemm init");
    st->workspace = allocate(kWorkspaceBytes);
    st->sm = major * 10 + minor;
    st->handle = h;
  }
  return *st;
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t type, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                                   std::int64_t batch, std::int64_t stride, const char* ctx) {
  cublasLtMatrixLayout_t l = nullptr;
  TITAN_LT_CHECK(cublasLtMatrixLayoutCreate(&l, type, static_cast<std::uint64_t>(rows), static_cast<std::uint64_t>(cols), ld),
                 ctx);
  if (batch > 1) {
    const std::int32_t count = static_cast<std::int32_t>(batch);
    const std::int64_t offset = stride;
    cublasStatus_t st = cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count);
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &offset, sizeof offset);
    if (st != CUBLAS_STATUS_SUCCESS) {
      cublasLtMatrixLayoutDestroy(l);
      check_lt(st, "cublasLtMatrixLayoutSetAttribute(batch)", ctx);
    }
  }
  return l;
}

template <class T>
void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const T& value, const char* ctx) {
  TITAN_LT_CHECK(cublasLtMatmulDescSetAttribute(d, attr, &value, sizeof value), ctx);
}

// Fills plan.pref (workspace limit, alignments of cuBLASLt's A, B, C, D) and asks the heuristic
// for its best algorithm. Returns false when cuBLASLt has none for this problem.
bool choose_algo(cublasLtHandle_t handle, Plan& plan, std::uint32_t align_a, std::uint32_t align_b,
                 std::uint32_t align_c, const char* ctx) {
  TITAN_LT_CHECK(cublasLtMatmulPreferenceCreate(&plan.pref), ctx);
  const std::uint64_t ws = kWorkspaceBytes;
  TITAN_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(plan.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws), ctx);
  TITAN_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(plan.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a,
                                                      sizeof align_a), ctx);
  TITAN_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(plan.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b,
                                                      sizeof align_b), ctx);
  TITAN_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(plan.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c,
                                                      sizeof align_c), ctx);
  TITAN_LT_CHECK(cublasLtMatmulPreferenceSetAttribute(plan.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c,
                                                      sizeof align_c), ctx);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(handle, plan.desc, plan.a, plan.b, plan.c, plan.c, plan.pref, 1, &result, &found);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || found == 0) return false;
  check_lt(st, "cublasLtMatmulAlgoGetHeuristic", ctx);
  if (result.state != CUBLAS_STATUS_SUCCESS) return false;
  plan.algo = result.algo;
  plan.workspace = result.workspaceSize;
  return true;
}

// C = beta * C over a (batched) M x N matrix: the K == 0 case, which cuBLASLt does not take.
template <class T>
__global__ void scale_matrix_kernel(T* c, std::int64_t M, std::int64_t N, std::int64_t ldc, std::int64_t stride_c,
                                    std::int64_t total, float beta) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < total;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t n = i % N, t = i / N, m = t % M, b = t / M;
    T* p = c + b * stride_c + m * ldc + n;
    *p = from_f32<T>(beta == 0.f ? 0.f : beta * to_f32(*p));
  }
}

void scale_matrix(void* C, DType c_dtype, std::int64_t M, std::int64_t N, std::int64_t ldc, std::int64_t stride_c,
                  std::int64_t batch, float beta) {
  const std::int64_t total = M * N * batch;
  dispatch_float(c_dtype, "gemm", [&](auto tag) {
    using T = decltype(tag);
    scale_matrix_kernel<T><<<grid_for(total, 256), 256, 0, compute_stream()>>>(static_cast<T*>(C), M, N, ldc, stride_c,
                                                                               total, beta);
    TITAN_CUDA_LAUNCH_CHECK();
  });
}

std::string shape_str(std::int64_t M, std::int64_t N, std::int64_t K) { return "M=" + s(M) + " N=" + s(N) + " K=" + s(K); }

}  // namespace

void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, float alpha, const void* A,
          DType a_dtype, std::int64_t lda, std::int64_t stride_a, const void* B, DType b_dtype, std::int64_t ldb,
          std::int64_t stride_b, float beta, void* C, DType c_dtype, std::int64_t ldc, std::int64_t stride_c,
          std::int64_t batch) {
  constexpr const char* fn = "gemm";
  if (M < 0 || N < 0 || K < 0 || batch < 0)
    usage(fn, "negative size (" + shape_str(M, N, K) + " batch=" + s(batch) + ")");
  if (batch > INT32_MAX) usage(fn, "batch " + s(batch) + " exceeds cuBLASLt's int32 batch count");
  if (a_dtype != b_dtype)
    usage(fn, "A and B must have the same dtype (got " + std::string(dtype_name(a_dtype)) + " and " +
                  std::string(dtype_name(b_dtype)) + ")");
  if (a_dtype != DType::f32 && a_dtype != DType::bf16)
    usage(fn, "A/B dtype " + std::string(dtype_name(a_dtype)) + " is not supported (float32, bfloat16; fp8 goes through gemm_fp8)");
  if (c_dtype != DType::f32 && c_dtype != DType::bf16)
    usage(fn, "C dtype " + std::string(dtype_name(c_dtype)) + " is not supported (float32, bfloat16)");
  if (a_dtype == DType::f32 && c_dtype == DType::bf16)
    usage(fn, "float32 inputs with a bfloat16 output are not a cuBLASLt combination; compute into float32 and cast");
  if (lda < std::max<std::int64_t>(1, trans_a ? M : K))
    usage(fn, "lda " + s(lda) + " < " + (trans_a ? "M " + s(M) + " (A stored K x M)" : "K " + s(K) + " (A stored M x K)"));
  if (ldb < std::max<std::int64_t>(1, trans_b ? K : N))
    usage(fn, "ldb " + s(ldb) + " < " + (trans_b ? "K " + s(K) + " (B stored N x K)" : "N " + s(N) + " (B stored K x N)"));
  if (ldc < std::max<std::int64_t>(1, N)) usage(fn, "ldc " + s(ldc) + " < N " + s(N));
  if (batch > 1) {
    if (stride_a < 0 || stride_b < 0) usage(fn, "negative batch stride");
    if (M > 0 && N > 0 && stride_c < (M - 1) * ldc + N)
      usage(fn, "stride_c " + s(stride_c) + " makes the " + s(batch) + " outputs overlap (needs >= " + s((M - 1) * ldc + N) + ")");
  }
  if (M == 0 || N == 0 || batch == 0) return;
  const std::size_t in_size = dtype_size(a_dtype), out_size = dtype_size(c_dtype);
  if (!C) usage(fn, "C is null");
  if (reinterpret_cast<std::uintptr_t>(C) % out_size != 0) usage(fn, "C is not aligned to its element size");
  if (K == 0) {
    scale_matrix(C, c_dtype, M, N, ldc, batch > 1 ? stride_c : 0, batch, beta);
    return;
  }
  if (!A || !B) usage(fn, "A or B is null");
  if (reinterpret_cast<std::uintptr_t>(A) % in_size != 0 || reinterpret_cast<std::uintptr_t>(B) % in_size != 0)
    usage(fn, "A or B is not aligned to its element size");

  const bool batched = batch > 1;
  const std::int64_t sa = batched ? stride_a : 0, sb = batched ? stride_b : 0, sc = batched ? stride_c : 0;
  // cuBLASLt's A is our B, its B our A (see the top of the file).
  const std::int64_t al_a = alignment_class(B, sb * std::int64_t(in_size), batched);
  const std::int64_t al_b = alignment_class(A, sa * std::int64_t(in_size), batched);
  const std::int64_t al_c = alignment_class(C, sc * std::int64_t(out_size), batched);

  PlanKey key;
  key.v = {0, trans_a, trans_b, M, N, K, std::int64_t(a_dtype), std::int64_t(c_dtype), lda, ldb, ldc, sa, sb, sc, batch,
           (al_a << 20) | (al_b << 10) | al_c};

  std::unique_lock<std::mutex> lock;
  State& st = state_locked_init(lock);
  auto it = st.plans.find(key);
  Plan* plan = nullptr;
  if (it != st.plans.end()) {
    plan = it->second;
  } else {
    auto p = std::make_unique<Plan>();
    const char* ctx = "titan::cuda::gemm (plan)";
    TITAN_LT_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), ctx);
    const cublasOperation_t op_a = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    set_desc(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, op_a, ctx);
    set_desc(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, op_b, ctx);
    const cudaDataType_t in_t = cuda_type(a_dtype), out_t = cuda_type(c_dtype);
    p->a = make_layout(in_t, trans_b ? K : N, trans_b ? N : K, ldb, batch, sb, ctx);
    p->b = make_layout(in_t, trans_a ? M : K, trans_a ? K : M, lda, batch, sa, ctx);
    p->c = make_layout(out_t, N, M, ldc, batch, sc, ctx);
    if (!choose_algo(st.handle, *p, std::uint32_t(al_a), std::uint32_t(al_b), std::uint32_t(al_c), ctx))
      throw std::runtime_error("titan::cuda::gemm: cuBLASLt has no algorithm for " + shape_str(M, N, K) + " batch=" +
                               s(batch) + " " + std::string(dtype_name(a_dtype)) + " -> " +
                               std::string(dtype_name(c_dtype)) + " trans_a=" + s(trans_a) + " trans_b=" + s(trans_b) +
                               " lda=" + s(lda) + " ldb=" + s(ldb) + " ldc=" + s(ldc));
    plan = p.release();
    st.plans.emplace(key, plan);
  }
  TITAN_LT_CHECK(cublasLtMatmul(st.handle, plan->desc, &alpha, B, plan->a, A, plan->b, &beta, C, plan->c, C, plan->c,
                                &plan->algo, st.workspace, kWorkspaceBytes, compute_stream()),
                 "titan::cuda::gemm");
}

void gemm_fp8(std::int64_t M, std::int64_t N, std::int64_t K, const void* A, DType a_dtype, const float* a_scale_inv,
              const void* B, DType b_dtype, const float* b_scale_inv, void* C, DType c_dtype, Fp8Scaling scaling,
              bool fast_accum) {
  constexpr const char* fn = "gemm_fp8";
  auto is_f8 = [](DType d) { return d == DType::f8e4m3 || d == DType::f8e5m2; };
  if (M < 0 || N < 0 || K < 0) usage(fn, "negative size (" + shape_str(M, N, K) + ")");
  if (!is_f8(a_dtype) || !is_f8(b_dtype))
    usage(fn, "A and B must be float8_e4m3fn or float8_e5m2 (got " + std::string(dtype_name(a_dtype)) + " and " +
                  std::string(dtype_name(b_dtype)) + ")");
  if (a_dtype == DType::f8e5m2 && b_dtype == DType::f8e5m2)
    usage(fn, "A and B cannot both be float8_e5m2 (cuBLASLt has no e5m2 x e5m2 kernel)");
  if (c_dtype != DType::f32 && c_dtype != DType::bf16)
    usage(fn, "C dtype " + std::string(dtype_name(c_dtype)) + " is not supported (float32, bfloat16)");
  if (K % 16 != 0) usage(fn, "K must be a multiple of 16 for cuBLASLt's fp8 kernels (" + shape_str(M, N, K) + ")");
  if (N % 16 != 0) usage(fn, "N must be a multiple of 16 for cuBLASLt's fp8 kernels (" + shape_str(M, N, K) + ")");
  if (M == 0 || N == 0) return;
  auto aligned16 = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
  if (!C || !aligned16(C)) usage(fn, "C must be a non-null 16-byte aligned pointer");
  if (K == 0) {
    scale_matrix(C, c_dtype, M, N, N, 0, 1, 0.f);
    return;
  }
  if (!A || !B || !aligned16(A) || !aligned16(B)) usage(fn, "A and B must be non-null 16-byte aligned pointers");
  if (!a_scale_inv || !b_scale_inv) usage(fn, "a_scale_inv and b_scale_inv must be device pointers (got null)");
  if (scaling == Fp8Scaling::rowwise) {
    if (!aligned16(a_scale_inv) || !aligned16(b_scale_inv))
      usage(fn, "rowwise scale vectors must be 16-byte aligned");
  } else if (reinterpret_cast<std::uintptr_t>(a_scale_inv) % 4 != 0 || reinterpret_cast<std::uintptr_t>(b_scale_inv) % 4 != 0) {
    usage(fn, "scale pointers must be 4-byte aligned");
  }

  const std::int64_t al_a = alignment_class(B, 0, false), al_b = alignment_class(A, 0, false),
                     al_c = alignment_class(C, 0, false);
  PlanKey key;
  key.v = {1, M, N, K, std::int64_t(a_dtype), std::int64_t(b_dtype), std::int64_t(c_dtype), std::int64_t(scaling),
           fast_accum, (al_a << 20) | (al_b << 10) | al_c};

  std::unique_lock<std::mutex> lock;
  State& st = state_locked_init(lock);
  if (st.sm < 89)
    throw std::runtime_error("titan::cuda::gemm_fp8: float8 GEMMs need an sm_89 or newer GPU (this one is sm_" +
                             std::to_string(st.sm) + ")");
  auto it = st.plans.find(key);
  Plan* plan = nullptr;
  const char* ctx = "titan::cuda::gemm_fp8";
  if (it != st.plans.end()) {
    plan = it->second;
  } else {
    auto p = std::make_unique<Plan>();
    TITAN_LT_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), ctx);
    set_desc(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T, ctx);
    set_desc(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N, ctx);
    const std::int8_t fast = fast_accum ? 1 : 0;
    set_desc(p->desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, fast, ctx);
    if (scaling == Fp8Scaling::rowwise) {
      const std::int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
      set_desc(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, mode, ctx);
      set_desc(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, mode, ctx);
    }
    // The heuristic sees the real scale pointers (they are re-set on every call below).
    set_desc(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, static_cast<const void*>(b_scale_inv), ctx);
    set_desc(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, static_cast<const void*>(a_scale_inv), ctx);
    p->a = make_layout(cuda_type(b_dtype), K, N, K, 1, 0, ctx);
    p->b = make_layout(cuda_type(a_dtype), K, M, K, 1, 0, ctx);
    p->c = make_layout(cuda_type(c_dtype), N, M, N, 1, 0, ctx);
    if (!choose_algo(st.handle, *p, std::uint32_t(al_a), std::uint32_t(al_b), std::uint32_t(al_c), ctx)) {
      const std::string what = std::string(dtype_name(a_dtype)) + " x " + std::string(dtype_name(b_dtype)) + " -> " +
                               std::string(dtype_name(c_dtype)) + ", " + shape_str(M, N, K);
      if (scaling == Fp8Scaling::rowwise)
        throw std::runtime_error(
            "titan::cuda::gemm_fp8: rowwise scaling (cuBLASLt CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F) is not "
            "available for " + what + " on sm_" + std::to_string(st.sm) + " with cuBLASLt " +
            std::to_string(cublasLtGetVersion()) + " (it needs sm_90 or newer and cuBLAS 12.9 or newer); use the "
            "tensorwise recipe or emulate = true");
      throw std::runtime_error("titan::cuda::gemm_fp8: cuBLASLt has no fp8 algorithm for " + what + " on sm_" +
                               std::to_string(st.sm));
    }
    plan = p.release();
    st.plans.emplace(key, plan);
  }
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, static_cast<const void*>(b_scale_inv), ctx);
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, static_cast<const void*>(a_scale_inv), ctx);
  const float alpha = 1.f, beta = 0.f;
  const cublasStatus_t status = cublasLtMatmul(st.handle, plan->desc, &alpha, B, plan->a, A, plan->b, &beta, C, plan->c, C,
                                               plan->c, &plan->algo, st.workspace, kWorkspaceBytes, compute_stream());
  if (status != CUBLAS_STATUS_SUCCESS && scaling == Fp8Scaling::rowwise)
    throw std::runtime_error(std::string("titan::cuda::gemm_fp8: cuBLASLt refused the rowwise-scaled (outer-vector) fp8 "
                                         "GEMM on sm_") + std::to_string(st.sm) + ": " + status_name(status));
  check_lt(status, "cublasLtMatmul", ctx);
}

}  // namespace titan::cuda
