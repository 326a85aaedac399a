// cuDNN's fused flash attention behind attention.cu (contract: cudnn_attention.hpp).
//
// One cuDNN graph per (shape, pass): the forward is sdpa(Q, K, V) -> O, Stats with the causal
// band (diagonal top left, right bound 0) and scale 1/sqrt(D); the backward is
// sdpa_backward(Q, K, V, O, dO, Stats) -> dQ, dK, dV with the same mask and scale (its
// deterministic algorithm when asked: a separate plan). Every tensor is bf16 in titan.cpp's [B, S, heads, D] layout, described
// to cuDNN as [B, heads, S, D] by its strides; Stats is f32 [B, H, S, 1] (titan.cpp's lse).
// cuDNN reduces over a GQA group itself (dK, dV have KV heads). Plans and workspace sizes are
// built once per shape, on first ask, under a mutex; the handle runs on titan.cpp's compute
// stream, and the workspace comes from its stream-ordered pool (so a CUDA graph capture records
// the execution like any kernel).
#include "cudnn_attention.hpp"

#if TITAN_WITH_CUDNN_FE

#define NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING
#define CUDNN_FRONTEND_SKIP_JSON_LIB
#include <dlfcn.h>

#include <cuda_runtime.h>

#include <cmath>
#include <exception>
#include <stdexcept>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>

#include <cudnn_frontend.h>

#include "runtime.hpp"

// The frontend's dynamic-loading shim calls cuDNN through this handle (dlsym); it is ours to set.
namespace cudnn_frontend {
void* cudnn_dlhandle = nullptr;
}

namespace titan::cuda {
namespace {

namespace fe = cudnn_frontend;

enum Uid : std::int64_t { kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV };

struct Plan {
  std::shared_ptr<fe::graph::Graph> graph;
  std::int64_t workspace = 0;
  std::string unsupported;  // "" when the graph is built
};

struct State {
  std::mutex mu;
  bool opened = false;
  std::string unavailable;  // why cuDNN cannot be used at all ("" once the handle exists)
  cudnnHandle_t handle = nullptr;
  std::string description;
  // (B, S, H, KV, D, backward, deterministic backward)
  std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool, bool>, Plan> plans;
};

State& state() {
  static State* s = new State;  // never destroyed: a plan may outlive static destruction order
  return *s;
}

std::string version_string(std::int64_t v) {
  // cuDNN 9 encodes major * 10000 + minor * 100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
}

// Opens libcudnn and makes the handle on the compute stream, once (state().mu held).
void open_cudnn(State& s) {
  if (s.opened) return;
  s.opened = true;
  for (const char* name : {"libcudnn.so.9", "libcudnn.so"}) {
    if ((fe::cudnn_dlhandle = dlopen(name, RTLD_NOW | RTLD_LOCAL))) break;
  }
  if (!fe::cudnn_dlhandle) {
    const char* err = dlerror();
    s.unavailable = std::string("libcudnn.so.9 not found (") + (err ? err : "dlopen failed") + ")";
    return;
  }
  try {
    const std::int64_t v = std::int64_t(fe::detail::get_backend_version());
    if (v < 90000) {
      s.unavailable = "cuDNN " + version_string(v) + " is older than 9.0";
      return;
    }
    cudnnHandle_t h = nullptr;
    if (fe::detail::create_handle(&h) != CUDNN_STATUS_SUCCESS) {
      s.unavailable = "cudnnCreate failed";
      return;
    }
    if (fe::detail::set_stream(h, static_cast<cudaStream_t>(stream_handle())) != CUDNN_STATUS_SUCCESS) {
      fe::detail::destroy_handle(h);
      s.unavailable = "cudnnSetStream failed";
      return;
    }
    s.handle = h;
    s.description = "cuDNN " + version_string(v) + " (frontend " + std::to_string(CUDNN_FRONTEND_MAJOR_VERSION) + "." +
                    std::to_string(CUDNN_FRONTEND_MINOR_VERSION) + "." + std::to_string(CUDNN_FRONTEND_PATCH_VERSION) +
                    ")";
  } catch (const std::exception& e) {
    s.unavailable = std::string("cuDNN could not be loaded: ") + e.what();
  }
}

// A bf16 [B, S, heads, D] tensor of titan.cpp's, as cuDNN's [B, heads, S, D] (by its strides).
fe::graph::Tensor_attributes& bshd(fe::graph::Tensor_attributes& t, std::int64_t uid, std::int64_t B, std::int64_t S,
                                   std::int64_t heads, std::int64_t D) {
  return t.set_uid(uid)
      .set_dim({B, heads, S, D})
      .set_stride({S * heads * D, D, heads * D, 1})
      .set_data_type(fe::DataType_t::BFLOAT16);
}

// titan.cpp's lse [B, H, S] f32, as cuDNN's softmax stats [B, H, S, 1].
fe::graph::Tensor_attributes& stats_layout(fe::graph::Tensor_attributes& t, std::int64_t B, std::int64_t S,
                                           std::int64_t H) {
  return t.set_uid(kStats).set_dim({B, H, S, 1}).set_stride({H * S, S, 1, 1}).set_data_type(fe::DataType_t::FLOAT);
}

// The graph of one pass, built into plans; "" or cuDNN's reason.
std::string build(State& s, Plan& plan, std::int64_t B, std::int64_t S, std::int64_t H, std::int64_t KV,
                  std::int64_t D, bool backward, bool deterministic) {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  const float scale = static_cast<float>(1.0 / std::sqrt(double(D)));  // the CPU op's float(1/sqrt(D))
  auto input = [&](const char* name, std::int64_t uid, std::int64_t heads) {
    fe::graph::Tensor_attributes t;
    return g->tensor(bshd(t.set_name(name), uid, B, S, heads, D));
  };
  auto q = input("Q", kQ, H);
  auto k = input("K", kK, KV);
  auto v = input("V", kV, KV);
  if (!backward) {
    auto attrs = fe::graph::SDPA_attributes()
                     .set_name("titan_causal_attention")
                     .set_generate_stats(true)
                     .set_attn_scale(scale)
                     .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT)
                     .set_diagonal_band_right_bound(0);
    auto [o, stats] = g->sdpa(q, k, v, attrs);
    bshd(o->set_output(true), kO, B, S, H, D);
    stats_layout(stats->set_output(true), B, S, H);
  } else {
    auto o = input("O", kO, H);
    auto dout = input("dO", kDO, H);
    fe::graph::Tensor_attributes stats_in;
    auto stats = g->tensor(stats_layout(stats_in.set_name("Stats"), B, S, H));
    auto attrs = fe::graph::SDPA_backward_attributes()
                     .set_name("titan_causal_attention_backward")
                     .set_attn_scale(scale)
                     .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT)
                     .set_diagonal_band_right_bound(0)
                     .set_deterministic_algorithm(deterministic);
    auto [dq, dk, dv] = g->sdpa_backward(q, k, v, o, dout, stats, attrs);
    bshd(dq->set_output(true), kDQ, B, S, H, D);
    bshd(dk->set_output(true), kDK, B, S, KV, D);
    bshd(dv->set_output(true), kDV, B, S, KV, D);
  }
  auto failed = [](const char* stage, fe::error_t e) { return std::string(stage) + ": " + e.get_message(); };
  if (auto e = g->validate(); e.is_bad()) return failed("validate", e);
  if (auto e = g->build_operation_graph(s.handle); e.is_bad()) return failed("operation graph", e);
  if (auto e = g->create_execution_plans({fe::HeurMode_t::A}); e.is_bad()) return failed("heuristics", e);
  if (auto e = g->check_support(s.handle); e.is_bad()) return failed("no engine supports it", e);
  if (auto e = g->build_plans(s.handle); e.is_bad()) return failed("plan build", e);
  if (auto e = g->get_workspace_size(plan.workspace); e.is_bad()) return failed("workspace size", e);
  if (plan.workspace > kCudnnWorkspaceBudget)
    return "its plan needs " + std::to_string(plan.workspace >> 20) + " MiB of workspace per call, over titan.cpp's " +
           std::to_string(kCudnnWorkspaceBudget >> 20) + " MiB budget" +
           (deterministic ? " (cuDNN's deterministic backward keeps B x H x S x S scores)" : "");
  plan.graph = std::move(g);
  return "";
}

// The plan for a shape and pass, built on first use (state().mu held by the caller).
Plan& plan_for(State& s, std::int64_t B, std::int64_t S, std::int64_t H, std::int64_t KV, std::int64_t D,
               bool backward, bool deterministic) {
  const bool deterministic_backward = backward && deterministic;  // forward plans have no such choice
  const auto key = std::make_tuple(B, S, H, KV, D, backward, deterministic_backward);
  auto it = s.plans.find(key);
  if (it != s.plans.end()) return it->second;
  Plan& plan = s.plans[key];
  open_cudnn(s);
  if (!s.unavailable.empty()) {
    plan.unsupported = s.unavailable;
  } else if (D % 8 != 0 || D > 256) {
    plan.unsupported = "head_dim " + std::to_string(D) + " is not a multiple of 8 up to 256";
  } else {
    try {
      plan.unsupported = build(s, plan, B, S, H, KV, D, backward, deterministic_backward);
    } catch (const std::exception& e) {
      plan.unsupported = e.what();
    }
    if (!plan.unsupported.empty()) plan.graph.reset();
  }
  return plan;
}

// A CUDA error already pending is not cuDNN's: it is reported, not hidden behind a fallback.
void throw_if_cuda_error(const char* when) {
  const cudaError_t err = cudaPeekAtLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error ") + when + " cuDNN attention: " + cudaGetErrorString(err));
}

bool execute(Plan& plan, std::unordered_map<std::int64_t, void*>& pack) {
  State& s = state();
  throw_if_cuda_error("before");
  void* workspace = plan.workspace > 0 ? allocate(std::size_t(plan.workspace)) : nullptr;
  std::string failure;
  try {
    if (auto e = plan.graph->execute(s.handle, pack, workspace); e.is_bad()) failure = "execute: " + e.get_message();
  } catch (const std::exception& e) {
    failure = std::string("execute: ") + e.what();
  }
  if (workspace) deallocate(workspace, std::size_t(plan.workspace));  // stream-ordered: after cuDNN's kernels
  if (failure.empty()) return true;
  throw_if_cuda_error("in");
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(static_cast<cudaStream_t>(stream_handle()), &capturing) == cudaSuccess &&
      capturing != cudaStreamCaptureStatusNone)
    throw std::runtime_error("cuDNN attention failed inside a CUDA graph capture: " + failure);
  plan.unsupported = failure;  // later calls of this shape run titan.cpp's kernels
  plan.graph.reset();
  return false;
}

}  // namespace

std::string cudnn_attention_unsupported(std::int64_t B, std::int64_t S, std::int64_t H, std::int64_t KV,
                                        std::int64_t D, bool backward, bool deterministic) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return plan_for(s, B, S, H, KV, D, backward, deterministic).unsupported;
}

bool cudnn_attention_forward(const void* q, const void* k, const void* v, void* out, float* lse, std::int64_t B,
                             std::int64_t S, std::int64_t H, std::int64_t KV, std::int64_t D) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  Plan& plan = plan_for(s, B, S, H, KV, D, false, false);
  if (!plan.graph) return false;
  std::unordered_map<std::int64_t, void*> pack{{kQ, const_cast<void*>(q)}, {kK, const_cast<void*>(k)},
                                               {kV, const_cast<void*>(v)}, {kO, out},
                                               {kStats, lse}};
  return execute(plan, pack);
}

bool cudnn_attention_backward(const void* dout, const void* q, const void* k, const void* v, const void* out,
                              const float* lse, void* dq, void* dk, void* dv, std::int64_t B, std::int64_t S,
                              std::int64_t H, std::int64_t KV, std::int64_t D, bool deterministic) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  Plan& plan = plan_for(s, B, S, H, KV, D, true, deterministic);
  if (!plan.graph) return false;
  std::unordered_map<std::int64_t, void*> pack{
      {kQ, const_cast<void*>(q)},     {kK, const_cast<void*>(k)},     {kV, const_cast<void*>(v)},
      {kO, const_cast<void*>(out)},   {kDO, const_cast<void*>(dout)}, {kStats, const_cast<float*>(lse)},
      {kDQ, dq},                      {kDK, dk},                      {kDV, dv}};
  return execute(plan, pack);
}

std::string cudnn_description() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  open_cudnn(s);
  return s.unavailable.empty() ? s.description : s.unavailable;
}

}  // namespace titan::cuda

#else  // no cuDNN frontend headers at build time

namespace titan::cuda {

namespace {
const char* kNotBuilt = "this build has no cuDNN frontend headers (scripts/cudnn_frontend.sh, then rebuild)";
}

std::string cudnn_attention_unsupported(std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool,
                                        bool) {
  return kNotBuilt;
}
bool cudnn_attention_forward(const void*, const void*, const void*, void*, float*, std::int64_t, std::int64_t,
                             std::int64_t, std::int64_t, std::int64_t) {
  return false;
}
bool cudnn_attention_backward(const void*, const void*, const void*, const void*, const void*, const float*, void*,
                              void*, void*, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool) {
  return false;
}
std::string cudnn_description() { return kNotBuilt; }

}  // namespace titan::cuda

#endif
