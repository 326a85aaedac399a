#pragma once
// The plan of a run: everything decided before the first step (mesh, device, model shape and
// size, batch arithmetic). `run_train --dry-run` prints it; `--plan-json` writes it for tools.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <optional>
#include <string>

#include "config/job_config.hpp"
#include "core/device.hpp"
#include "dist/parallel_dims.hpp"
#include "models/llama3/args.hpp"
#include "float8/float8_linear.hpp"
#include "models/llama3/model.hpp"
#include "train/cpu_gemm.hpp"

namespace titan::train {

struct Plan {
  dist::ParallelDims dims;
  // fsdp_reshard_after_forward = N > 1 (hpZ): the group size; 0 for the named policies.
  std::int64_t hpz = 0;
  dist::BatchPlan batch;
  std::string device;       // what rank 0 trains on, described
  std::string device_kind;  // training.device resolved: "cpu" or "cuda"
  // mixed_precision_param / _reduce resolved ("auto": bf16 where native, else f16); f16 compute
  // means dynamic loss scaling.
  DType param_dtype = DType::bf16, reduce_dtype = DType::f32;
  std::string precision_note;  // how "auto" chose, for the plan
  bool on_gpu = false;  // the ranks train on GPUs (memory is checked against the GPU's)
  std::string model_name, flavor;
  llama3::ModelArgs model;
  llama3::ParamCount params;
  double flops_per_token = 0;
  std::int64_t seq_len = 0, steps = 0;
  std::vector<std::string> converters;
  std::string dump_folder;
  llama3::ActivationCheckpointing ac;
  std::int64_t checkpointed_blocks = 0;
  std::vector<std::string> parameter_shapes;  // "layers.{0..5}.attention.wq.weight [256, 256]", ...
  bool float8 = false;                        // model.converters lists quantize.linear.float8
  std::string float8_recipe;                  // recipe_name, or "tensorwise" when unset
  std::string float8_gemms;                   // what its GEMMs run (emulated, or cuBLASLt FP8)
  std::vector<float8::LinearDecision> linears;  // the converter's decision for every Linear
  // A CPU run's GEMM library, kernel and calibrated peak (training.cpu_gemm); unset on a GPU.
  std::optional<CpuGemm> cpu_gemm;

  // Per-rank memory of one training step (bytes, f32 master weights). params/grads/optimizer are
  // this rank's shards (padded to whole rows). `gathered` is FSDP's (on every mesh, 1x1 too): the
  // largest set of unit buffers alive at once (the largest unit, plus [norm, output] when it stays
  // gathered after forward; every unit under reshard "never") and the unsharded gradients of the
  // largest unit before its reduce-scatter; the CPU keeps gathered parameters in f32.
  struct Memory {
    std::int64_t params = 0, grads = 0, optimizer = 0, gathered = 0, activations = 0;
    // The step's peak: gradients are freed at the step's start and fill as backward frees the
    // activations, so the two barely overlap (measured: the peak is within a few % of this).
    std::int64_t total() const { return params + optimizer + gathered + std::max(grads, activations); }
    // training.enable_cpu_offload: params, grads and AdamW state live in host memory.
    bool offloaded = false;
    // What the training device holds: everything, or under offload the gathered units and the
    // activations (on the CPU backend both are host memory).
    std::int64_t device_total() const { return offloaded ? gathered + activations : total(); }
    std::int64_t host_state() const { return params + grads + optimizer; }
  } memory;
  // Bytes per optimizer step and rank by collective kind, as the step log counts them.
  struct Comm {
    std::int64_t fsdp_all_gather = 0, fsdp_reduce_scatter = 0, replicate_all_reduce = 0;
    std::int64_t tp_all_gather = 0, tp_reduce_scatter = 0;
    std::int64_t total() const {
      return fsdp_all_gather + fsdp_reduce_scatter + replicate_all_reduce + tp_all_gather + tp_reduce_scatter;
    }
  } comm;
};

// activation_checkpoint.mode / selective_ac_option as a policy.
llama3::ActivationCheckpointing activation_checkpointing_from(const config::JobConfig& cfg);

// Throws UserError for an unknown flavor, bad parallel degrees or an indivisible batch.
Plan make_plan(const config::JobConfig& cfg, int world_size, const DeviceInfo& devices);

std::string plan_text(const Plan& plan);
// 6163712 -> "6,163,712" (the plan's and the model printout's parameter counts).
std::string with_commas(std::int64_t v);
nlohmann::json plan_json(const Plan& plan);

}  // namespace titan::train
