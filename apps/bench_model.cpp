// bench_model: times one training step of a Llama 3 flavor: forward, backward, gradient-norm
// clipping and the AdamW update (--no-optimizer: forward + backward only), on the CPU or (with
// the CUDA backend) the GPU. Prints tokens/s, achieved TFLOP/s and MFU against --peak-tflops.
// Used by scripts/bench_cpu_model.sh (beside PyTorch eager) and scripts/bench_gpu.sh.
//   bench_model [--flavor debugmodel] [--layers N] [--batch 8] [--seq 2048] [--iters 3] [--warmup 1]
//               [--ac none|full|selective] [--bf16] [--cpu-bf16-gemm auto|native|widened] [--float8 RECIPE] [--device cpu|cuda] [--peak-tflops T]
//               [--cpu-gemm auto|openblas|blis|onednn] [--gemm-info] [--graph]
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <optional>

#include "autograd/functions.hpp"
#include "core/backend.hpp"
#include "core/errors.hpp"
#include "core/step_capture.hpp"
#include "dist/fsdp.hpp"
#include "dist/world.hpp"
#include "float8/float8_linear.hpp"
#include "models/llama3/model.hpp"
#include "models/llama3/parallelize.hpp"
#include "optim/adamw.hpp"
#include "train/cpu_gemm.hpp"
#include "cpu_gemm_env.hpp"
#include "ops/cpu/threads.hpp"

int main(int argc, char** argv) {
  using namespace titan;
  const std::string openblas_note = apps::ensure_openblas_kernel(argv);
  apps::set_cpu_gemm_cache_from_environment();
  CLI::App app{"Time forward+backward of a Llama 3 training step on the CPU"};
  std::string flavor = "debugmodel", ac_mode = "none";
  std::int64_t batch = 8, seq = 2048;
  int iters = 3, warmup = 1;
  app.add_option("--flavor", flavor);
  app.add_option("--batch", batch);
  app.add_option("--seq", seq);
  app.add_option("--iters", iters);
  app.add_option("--warmup", warmup);
  app.add_option("--ac", ac_mode)->check(CLI::IsMember({"none", "full", "selective"}));
  bool no_optimizer = false;
  app.add_flag("--no-optimizer", no_optimizer, "time forward + backward only");
  std::string float8_recipe;
  app.add_option("--float8", float8_recipe, "convert the Linears (all but output) with this float8 recipe (emulated)")
      ->check(CLI::IsMember({"tensorwise", "rowwise", "rowwise_with_gw_hp", "delayed"}));
  bool graph = false;
  app.add_flag("--graph", graph,
               "after the warm-up steps, capture one step as a CUDA graph and time its replays (what "
               "compile.enable does in run_train; GPU only)");
  std::string device_name = "cpu";
  app.add_option("--device", device_name, "cpu, or cuda (the rank's GPU; CUDA builds only)")->check(CLI::IsMember({"cpu", "cuda"}));
  bool bf16 = false;
  app.add_flag("--bf16", bf16, "bf16 mixed precision (as training.mixed_precision_param = bfloat16)");
  std::int64_t layers = 0;
  app.add_option("--layers", layers, "use this many transformer blocks (an N-layer slice of a big flavor)");
  double peak_tflops = 0;
  app.add_option("--peak-tflops", peak_tflops,
                 "peak for MFU (e.g. 989 for H100 SXM bf16 dense); default: the device's dense bf16 peak when its "
                 "backend knows it (GPUs it lists), else no MFU");
  std::string cpu_gemm = "auto";
  app.add_option("--cpu-gemm", cpu_gemm, "CPU GEMM library (training.cpu_gemm)")
      ->check(CLI::IsMember({"auto", "openblas", "blis", "onednn"}));
  std::string cpu_bf16_gemm = "auto";
  app.add_option("--cpu-bf16-gemm", cpu_bf16_gemm, "bf16 GEMMs with --bf16 (training.cpu_bf16_gemm)")
      ->check(CLI::IsMember({"auto", "native", "widened"}));
  std::int64_t threads = 0;
  app.add_option("--threads", threads, "CPU threads (training.cpu_threads; 0 = OPENBLAS_NUM_THREADS, else the cores)");
  bool gemm_info = false;
  app.add_flag("--gemm-info", gemm_info, "print the CPU GEMM library, kernel and calibrated peak, and exit");
  CLI11_PARSE(app, argc, argv);
  try {
    const std::string threads_line = apps::apply_cpu_threads(threads, 1);
    const train::CpuGemm g = train::select_cpu_gemm(cpu_gemm, cpu_bf16_gemm);
    if (gemm_info) {
      if (!openblas_note.empty()) std::printf("%s\n", openblas_note.c_str());
      std::printf("%s\n", threads_line.c_str());
      std::printf("%s\n", g.describe().c_str());
      return 0;
    }
  } catch (const std::exception& e) {  // --cpu-bf16-gemm native without the ISA, no threads to start
    std::fprintf(stderr, "error: %s\n", e.what());
    return kExitUsageError;
  }
  const Device device = device_name == "cuda" ? Device::cuda(0) : Device::cpu();
  if (!has_backend(device.kind)) {
    std::fprintf(stderr, "error: --device %s: this build has no CUDA backend (nvcc was not found when it was built)\n",
                 device_name.c_str());
    return kExitUsageError;
  }
  // Memory, synchronisation and the peak all come from the device's backend (core/backend.hpp).
  DeviceBackend& backend = backend_for(device);
  if (peak_tflops == 0 && !device.is_cpu()) {
    try {
      peak_tflops = backend.properties(device.index).peak_bf16_flops / 1e12;
    } catch (const std::exception&) {  // no GPU visible: moving the model below says so
    }
  }
  auto sync = [&] { backend.synchronize(device.index); };

  const llama3::ModelArgs* found = llama3::find_flavor("llama3", flavor);
  if (!found) {
    std::fprintf(stderr, "error: unknown flavor '%s'\n", flavor.c_str());
    return kExitUsageError;
  }
  llama3::ModelArgs args = *found;
  args.max_seq_len = seq;
  if (layers > 0) args.n_layers = layers;
  // On the meta device, as the trainer: FSDP materialises the shards (no full f32 copy first).
  std::unique_ptr<llama3::Transformer> model_holder;
  {
    nn::MetaGuard meta;
    model_holder = std::make_unique<llama3::Transformer>(args);
    if (!float8_recipe.empty()) float8::convert_to_float8(*model_holder, {"output"}, float8_recipe);
  }
  llama3::Transformer& model = *model_holder;
  using Mode = llama3::ActivationCheckpointing::Mode;
  model.set_activation_checkpointing({ac_mode == "full" ? Mode::full : ac_mode == "selective" ? Mode::selective : Mode::none, 2});
  model.build_rope_table();
  // The trainer's path on one process: FSDP over a 1x1 mesh holds the f32 masters and gathers the
  // weights in the param dtype (bf16 with --bf16, so activations are bf16 tensors too).
  dist::World world(&argc, &argv);
  dist::DeviceMesh mesh(world, 1, 1);
  dist::FsdpOptions fo;
  fo.param_dtype = bf16 ? DType::bf16 : DType::f32;
  fo.device = device;
  dist::Fsdp fsdp(mesh, fo);
  llama3::apply_fsdp(model, fsdp, "default");
  try {
    const auto t_init = std::chrono::steady_clock::now();
    fsdp.init_shards([&](const std::string& fqn, Tensor& rows, std::int64_t first) {
      llama3::init_parameter(fqn, rows, first, args, 0);
    });
    std::printf("init: %.2f s for %lld parameters on %d CPU thread(s)\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t_init).count(),
                static_cast<long long>(llama3::count_parameters(args).total), ops::cpu::cpu_threads());
    if (!device.is_cpu()) model.move_to(device);  // the RoPE table
    // Which attention kernels the step runs (on a GPU this builds cuDNN's plans, untimed).
    std::printf("attention: %s\n", ops::attention_implementation(device, batch, seq, args.n_heads, args.kv_heads(),
                                                                  args.head_dim(), fo.param_dtype)
                                       .c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: --device %s: %s\n", device_name.c_str(), e.what());
    return kExitUsageError;
  }

  Tensor tokens = Tensor::empty({batch, seq}, DType::i64), targets = Tensor::empty({batch * seq}, DType::i64);
  for (std::int64_t i = 0; i < batch * seq; ++i) {
    tokens.data<std::int64_t>()[i] = (i * 7919) % args.vocab_size;
    targets.data<std::int64_t>()[i] = (i * 7919 + 1) % args.vocab_size;
  }
  tokens = tokens.to(device);
  targets = targets.to(device);
  std::vector<autograd::Variable*> params = fsdp.sharded_parameters();
  optim::AdamW optimizer(params, {});
  double best = 1e30, total = 0;
  std::int64_t syncs = 0;  // host waits in the timed steps, not counting the step-end sync()
  if (graph && (device.is_cpu() || warmup < 2)) {
    std::fprintf(stderr, "error: --graph needs --device cuda and --warmup 2 or more (an eager step first makes AdamW's "
                         "moments and cuBLASLt's workspace; the last warm-up step captures)\n");
    return kExitUsageError;
  }
  // One step's device work; `loss` is where it leaves the loss. AdamW's scalars are prepared
  // outside it (a replay reads them from the same buffer).
  Tensor loss;
  auto step_body = [&] {
    autograd::Variable logits = model.forward_tokens(tokens);
    autograd::Variable l = autograd::cross_entropy(logits, targets);
    l.backward();
    loss = l.data();
    if (!no_optimizer) {
      optim::clip_grad_norm(params, 1.0);
      optimizer.apply();
      fsdp.refresh_after_update();
      float8::sync_amax_histories(model, [](const Tensor&) {});
    }
  };
  std::unique_ptr<CapturedStep> captured;
  backend.reset_peak(device.index);
  for (int it = 0; it < warmup + iters; ++it) {
    const std::int64_t syncs_before = backend.host_syncs(device.index);
    const auto t0 = std::chrono::steady_clock::now();
    if (!no_optimizer) optimizer.prepare(8e-4);
    if (captured) {
      captured->replay();
    } else if (graph && it == warmup - 1) {  // the last warm-up step captures, then runs the graph
      for (auto* p : params) p->zero_grad();
      loss = Tensor();  // the previous step's, dropped before the capture (StepCapture)
      StepCapture check(device.kind);
      captured = backend.capture(device.index, step_body);
      captured->replay();
      if (const StepCapture::FreedEarly early = check.finish(); early.count > 0) {
        std::fprintf(stderr, "error: --graph: the step freed %zu tensor(s) allocated before it; it cannot be replayed\n",
                     early.count);
        return kExitRuntimeError;
      }
    } else {
      for (auto* p : params) p->zero_grad();
      step_body();
    }
    const std::int64_t step_syncs = backend.host_syncs(device.index) - syncs_before;
    sync();  // GPU kernels are asynchronous: the step ends when the stream is done
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (it >= warmup) {
      syncs += step_syncs;
      best = std::min(best, dt);
      total += dt;
    }
  }
  const double final_loss = loss.item(0);
  const double tokens_per_step = double(batch * seq);
  const double peak_bytes = double(backend.memory_stats(device.index).peak);
  const double tps = tokens_per_step * iters / total;
  const double tflops = llama3::flops_per_token(args, seq) * tps / 1e12;
  char mfu[32] = "n/a";
  if (peak_tflops > 0) std::snprintf(mfu, sizeof mfu, "%.1f%%", 100.0 * tflops / peak_tflops);
  std::printf("titan.cpp %s (%lld layers) on %s batch %lld seq %lld ac %s%s%s%s%s: loss %.4f, mean %.3f s/step, best %.3f s, "
              "%.0f tokens/s, %.2f TFLOP/s, MFU %s, peak %.0f MiB, %.1f host syncs/step\n",
              flavor.c_str(), (long long)args.n_layers, device.str().c_str(), (long long)batch, (long long)seq, ac_mode.c_str(),
              no_optimizer ? " fwd+bwd" : " full step", bf16 ? " bf16" : " f32",
              float8_recipe.empty() ? "" : (" float8 " + float8_recipe).c_str(), captured ? " cuda-graph" : "", final_loss,
              total / iters, best, tps, tflops,
              mfu,
              peak_bytes / (1 << 20), double(syncs) / iters);
  return 0;
}
