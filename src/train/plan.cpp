#include "train/plan.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "config/schema.hpp"
#include "config/validate.hpp"
#include "core/errors.hpp"
#include "ops/ops.hpp"

namespace titan::train {

std::string with_commas(std::int64_t v) {
  std::string digits = std::to_string(v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

namespace {

// v in the largest unit that keeps it >= 1: "1.30 GiB" (base 1024) or "6.16M" (base 1000).
std::string scaled(double v, double base, std::initializer_list<const char*> units, const char* sep) {
  auto unit = units.begin();
  while (v >= base && unit + 1 != units.end()) {
    v /= base;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%s%s", v, sep, *unit);
  return buf;
}
std::string bytes_str(std::int64_t b) { return scaled(static_cast<double>(b), 1024, {"B", "KiB", "MiB", "GiB", "TiB"}, " "); }
std::string human(double v) { return scaled(v, 1000, {"", "K", "M", "B", "T"}, ""); }

nlohmann::json linears_json(const Plan& p) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& d : p.linears)
    out.push_back({{"fqn", d.fqn}, {"shape", {d.out_features, d.in_features}}, {"float8", d.convert}, {"reason", d.reason}});
  return out;
}

}  // namespace

llama3::ActivationCheckpointing activation_checkpointing_from(const config::JobConfig& cfg) {
  using Mode = llama3::ActivationCheckpointing::Mode;
  const auto& ac = cfg.activation_checkpoint;
  if (ac.mode == "full") return {Mode::full, 1};
  if (ac.mode == "selective" && ac.selective_ac_option == "op")
    return {Mode::op, 1, ac.per_op_sac_force_recompute_mm_shapes_by_fqns};
  if (ac.mode == "selective") return {Mode::selective, std::stoll(ac.selective_ac_option)};  // validated: a positive int
  return {Mode::none, 1};
}

Plan make_plan(const config::JobConfig& cfg, int world_size, const DeviceInfo& devices) {
  Plan p;
  p.model_name = cfg.model.name;
  p.flavor = cfg.model.flavor;
  const llama3::ModelArgs* args = llama3::find_flavor(cfg.model.name, cfg.model.flavor);
  if (!args) {
    std::vector<std::string> names;
    std::string list;
    for (const auto& f : llama3::flavors(cfg.model.name)) {
      names.push_back(f.name);
      list += (list.empty() ? "" : ", ") + f.name;
    }
    std::string msg = "config: model.flavor = \"" + printable(cfg.model.flavor) + "\" (" + config::source_of(cfg, "model.flavor") +
                      ") is not a " + cfg.model.name + " flavor: one of " + list;
    if (auto near = config::closest_match(cfg.model.flavor, names)) msg += "; did you mean \"" + *near + "\"?";
    throw UserError(msg);
  }
  p.model = *args;
  // RoPE tables cover the longest sequence the run will see (validation may use a longer one).
  p.model.max_seq_len = cfg.validation.enable ? std::max(cfg.training.seq_len, cfg.validation.seq_len) : cfg.training.seq_len;
  p.params = llama3::count_parameters(p.model);
  p.flops_per_token = llama3::flops_per_token(p.model, cfg.training.seq_len);
  p.dims = dist::resolve_parallel_dims(cfg.parallelism.data_parallel_replicate_degree,
                                       cfg.parallelism.data_parallel_shard_degree,
                                       cfg.parallelism.tensor_parallel_degree, world_size);
  if (p.dims.tp > 1) {
    const std::int64_t T = p.dims.tp;
    auto need = [&](std::int64_t n, const std::string& what, const std::string& why) {
      if (n % T != 0)
        throw UserError("parallelism: tensor_parallel_degree = " + std::to_string(T) + " must divide " + what + " (" +
                        std::to_string(n) + "): " + why + "; choose a TP degree that divides it");
    };
    const std::string heads = "each TP rank computes whole heads";
    need(p.model.n_heads, "the model's n_heads", heads);
    need(p.model.kv_heads(), "the model's n_kv_heads", heads);
    need(p.model.ffn_hidden(), "the feed-forward hidden size", "w1, w2 and w3 are split on it");
    need(p.model.vocab_size, "the vocabulary size", "the embedding and output are split on it");
    need(cfg.training.seq_len, "training.seq_len", "sequence parallel splits the sequence");
    if (cfg.validation.enable) need(cfg.validation.seq_len, "validation.seq_len", "sequence parallel splits the sequence");
  }
  p.batch = dist::resolve_batch(cfg.training.local_batch_size, cfg.training.global_batch_size, p.dims);
  {
    // fsdp_reshard_after_forward = N (validated as a positive integer): FSDP2's int, a non-trivial
    // divisor of the shard degree.
    const std::string& r = cfg.parallelism.fsdp_reshard_after_forward;
    if (!r.empty() && r[0] >= '0' && r[0] <= '9') {
      p.hpz = std::stoll(r);
      const std::int64_t S = p.dims.shard;
      if (p.hpz < 2 || p.hpz >= S || S % p.hpz != 0)
        throw UserError("parallelism: fsdp_reshard_after_forward = " + r + " must be a divisor of data_parallel_shard_degree (" +
                        std::to_string(S) + ") other than 1 and " + std::to_string(S) +
                        ": the ranks (e.g. one node's) that keep the parameters sharded between forward and backward; "
                        "or use default, always or never");
    }
  }
  p.device_kind = resolve_device(cfg.training.device, devices);
  p.device = describe_device(p.device_kind, devices, 0);
  p.on_gpu = p.device_kind == "cuda" && devices.cuda_devices > 0;
  {
    auto dtype_of = [](const std::string& name) {
      return name == "bfloat16" ? DType::bf16 : name == "float16" ? DType::f16 : DType::f32;
    };
    const std::string& mp = cfg.training.mixed_precision_param;
    if (mp == "auto") {
      // The CPU emulates bf16 (its ops round to it), so it counts as native; a GPU before sm_80 does not.
      const bool native = p.device_kind != "cuda" || devices.cuda_devices == 0 || devices.gpu_native_bf16;
      p.param_dtype = native ? DType::bf16 : DType::f16;
      p.precision_note = native ? "auto: bfloat16, which " + std::string(p.device_kind == "cuda" ? "this GPU computes natively"
                                                                                                  : "the CPU emulates")
                                : "auto: float16 with dynamic loss scaling (this GPU has no native bfloat16)";
    } else {
      p.param_dtype = dtype_of(mp);
    }
    p.reduce_dtype = dtype_of(cfg.training.mixed_precision_reduce);
  }
  if (cfg.comm.backend == "nccl" && p.device_kind != "cuda")
    throw UserError("comm.backend = \"nccl\" needs training on a GPU (training.device resolved to " + p.device_kind +
                    "); use comm.backend = \"auto\" (MPI for the CPU) or train on CUDA");
  // The GEMM library is installed here, before the first GEMM of the run (and its peak measured).
  if (p.device_kind == "cpu") p.cpu_gemm = select_cpu_gemm(cfg.training.cpu_gemm, cfg.training.cpu_bf16_gemm);
  p.seq_len = cfg.training.seq_len;
  p.steps = cfg.training.steps;
  p.converters = cfg.model.converters;
  p.dump_folder = cfg.job.dump_folder;
  p.ac = activation_checkpointing_from(cfg);
  for (std::int64_t i = 0; i < p.model.n_layers; ++i) p.checkpointed_blocks += p.ac.applies_to(i) ? 1 : 0;
  p.float8 = std::find(p.converters.begin(), p.converters.end(), "quantize.linear.float8") != p.converters.end();
  p.float8_recipe = cfg.float8.recipe_name.value_or("tensorwise");
  if (p.float8 && p.dims.tp > 1 && p.float8_recipe != "tensorwise")
    throw UserError("quantize.linear.float8.recipe_name = \"" + p.float8_recipe + "\" with tensor_parallel_degree = " +
                    std::to_string(p.dims.tp) + " is not implemented: float8 with tensor parallelism is tensorwise only in "
                    "titan.cpp; use the tensorwise recipe or tensor_parallel_degree = 1");
  p.float8_gemms = ops::scaled_mm_implementation(p.device_kind == "cuda" ? Device::cuda(0) : Device::cpu(), cfg.float8.emulate);
  std::int64_t shard_elems = 0, largest_unit = 0, root_unit = 0, all_units = 0;
  {
    nn::MetaGuard meta;  // shapes only: a 405B plan allocates nothing
    llama3::Transformer model(p.model);
    p.parameter_shapes = llama3::describe_parameters(model);
    if (p.float8) {
      p.linears = float8::plan_float8(model, cfg.float8.filter_fqns, p.float8_recipe);
      if (std::none_of(p.linears.begin(), p.linears.end(), [](const auto& d) { return d.convert; }))
        spdlog::warn("float8: no Linear of this model qualifies for conversion (see the table); training runs in high precision");
    }
    // Tensor parallel first (parameters become their TP-local parts, as apply_tp), then FSDP
    // shards dim 0 of every one (padded to whole rows per rank); units as apply_fsdp.
    const std::int64_t S = p.dims.shard, T = p.dims.tp;
    std::map<std::string, std::int64_t> unit_elems;
    for (auto& [fqn, var] : model.named_parameters()) {
      Shape shape = var->shape();
      if (T > 1 && fqn.find("norm") == std::string::npos) {
        const bool rowwise = fqn.ends_with("wo.weight") || fqn.ends_with("w2.weight");
        shape[rowwise ? 1 : 0] /= T;
      }
      const std::int64_t rows = shape[0], row_elems = numel_of(shape) / rows;
      if (rows < S)
        throw UserError("parallelism: data_parallel_shard_degree = " + std::to_string(S) + " exceeds the " +
                        std::to_string(rows) + " rows of '" + fqn + "', which FSDP shards on dim 0; use a shard degree "
                        "of at most " + std::to_string(rows) + " (and data_parallel_replicate_degree for the other ranks)");
      shard_elems += (rows + S - 1) / S * row_elems;
      std::string unit = fqn.substr(0, fqn.find('.'));
      if (unit == "layers") unit = fqn.substr(0, fqn.find('.', 7));
      else if (unit != "tok_embeddings") unit = "root";
      unit_elems[unit] += S * ((rows + S - 1) / S) * row_elems;
    }
    for (auto& [unit, n] : unit_elems) {
      largest_unit = std::max(largest_unit, n);
      all_units += n;
    }
    root_unit = unit_elems["root"];
  }
  p.memory.params = 4 * shard_elems;
  p.memory.grads = 4 * shard_elems;
  p.memory.optimizer = 8 * shard_elems;  // AdamW: two f32 moments
  p.memory.offloaded = cfg.training.enable_cpu_offload;
  {
    // FSDP on every mesh (a single process is a 1x1 one): the gathered units alive at once, in
    // the param dtype (bf16 under bf16 mixed precision, on every device), plus the unsharded f32
    // gradients of the largest unit.
    const std::string& policy = cfg.parallelism.fsdp_reshard_after_forward;
    const std::int64_t alive = policy == "never" ? all_units : largest_unit + (policy != "always" ? root_unit : 0);
    const std::int64_t param_bytes = std::int64_t(dtype_size(p.param_dtype));
    p.memory.gathered = param_bytes * alive + 4 * largest_unit;
    // hpZ: every resharding unit's 1/N copy lives from its forward to its backward (all of them
    // at once when backward starts).
    if (p.hpz > 1) p.memory.gathered += param_bytes * (all_units - root_unit) / p.hpz;
  }
  p.memory.activations =
      llama3::activation_bytes(p.model, p.batch.local_batch, p.seq_len, p.checkpointed_blocks,
                               std::int64_t(dtype_size(p.param_dtype)), /*widening_ops=*/!p.on_gpu,
                               /*per_op_sac=*/p.ac.mode == llama3::ActivationCheckpointing::Mode::op);
  // Tensor parallel with sequence parallel divides every saved activation by T except the
  // all-gathered inputs of attention, the feed-forward and the output (the whole sequence, once
  // each per block): an estimate, not measured like the FSDP one.
  if (p.dims.tp > 1) {
    const std::int64_t act_bytes = std::int64_t(dtype_size(p.param_dtype));
    const std::int64_t gathered_inputs = act_bytes * p.batch.local_batch * p.seq_len * p.model.dim *
                                         (2 * (p.model.n_layers - p.checkpointed_blocks) + 1);
    p.memory.activations = p.memory.activations / p.dims.tp + gathered_inputs * (p.dims.tp - 1) / p.dims.tp;
  }
  // Communication per optimizer step and rank, by kind, in the step log's terms (CommStats: an
  // all-gather counts its gathered buffer, a reduce-scatter its input).
  {
    const std::int64_t micro = p.batch.grad_accum;
    const std::int64_t wire = std::int64_t(dtype_size(p.param_dtype));
    if (p.dims.shard > 1) {
      // Every unit gathered in forward and again in backward, but [norm, output] under the
      // default and "never" policies, which stay gathered (and "never": every unit stays).
      const std::string& policy = cfg.parallelism.fsdp_reshard_after_forward;
      const std::int64_t regathered = policy == "never" ? 0 : policy == "always" ? all_units : all_units - root_unit;  // N: as default
      p.comm.fsdp_all_gather = micro * wire * (all_units + regathered);
      p.comm.fsdp_reduce_scatter = 4 * all_units;  // f32, after the last micro-batch
    }
    if (p.dims.replicate > 1) p.comm.replicate_all_reduce = 4 * shard_elems;
    if (p.dims.tp > 1) {
      // Sequence parallel: per block an all-gather and a reduce-scatter around attention and the
      // feed-forward in forward, the same in backward, and the forward's two again in a block
      // that activation checkpointing recomputes; the embedding's reduce-scatter and the output's
      // all-gather, forward and backward. Each moves one [B, S, dim] activation (all-gathers in
      // the activation dtype, reduce-scatters in f32).
      // A forward all-gather whose consumers are all float8 (tensorwise) Linears travels as e4m3,
      // a backward one bringing a float8 Linear's output gradient as e5m2.
      const std::int64_t act = p.batch.local_batch * p.seq_len * p.model.dim;
      const std::int64_t n = 4 * p.model.n_layers + 2 * p.checkpointed_blocks + 2;
      std::map<std::string, bool> f8;
      for (const auto& d : p.linears) f8[d.fqn] = d.convert;
      auto input_wire = [&](std::initializer_list<std::string> consumers) {
        for (const auto& c : consumers)
          if (!f8[c]) return wire;
        return std::int64_t(1);
      };
      std::int64_t forward = input_wire({"output"});
      for (std::int64_t i = 0; i < p.model.n_layers; ++i) {
        const std::string b = "layers." + std::to_string(i) + ".";
        const std::int64_t block = input_wire({b + "attention.wq", b + "attention.wk", b + "attention.wv"}) +
                                   input_wire({b + "feed_forward.w1", b + "feed_forward.w3"});
        forward += block * (p.ac.applies_to(i) ? 2 : 1);  // a checkpointed block gathers again in its recompute
      }
      // Gradients of the reduce-scatters: wo's and w2's as e5m2 when they are float8 (tensorwise), the embedding's in high precision.
      std::int64_t backward = wire;
      for (std::int64_t i = 0; i < p.model.n_layers; ++i) {
        const std::string b = "layers." + std::to_string(i) + ".";
        backward += input_wire({b + "attention.wo"}) + input_wire({b + "feed_forward.w2"});
      }
      p.comm.tp_all_gather = micro * (forward + backward) * act;
      // Without loss parallel the vocabulary-sharded logits are all-gathered too (forward only).
      if (cfg.parallelism.disable_loss_parallel) p.comm.tp_all_gather += micro * wire * act / p.model.dim * p.model.vocab_size;
      p.comm.tp_reduce_scatter = micro * n * 4 * act;
    }
  }
  return p;
}

std::string plan_text(const Plan& p) {
  const auto& m = p.model;
  std::string conv;
  for (const auto& c : p.converters) conv += (conv.empty() ? "" : ", ") + c;
  char buf[4096];
  std::snprintf(
      buf, sizeof buf,
      "plan:\n"
      "  world        %d rank(s), mesh (replicate %d, shard %d, tp %d): %s\n"
      "  device       %s\n"
      "  model        %s %s: dim %lld, %lld layers, %lld heads (%lld kv, head_dim %lld), ffn hidden %lld, vocab %lld\n"
      "  parameters   %s (%s), of which embedding %s; %s training FLOPs/token at seq_len %lld\n"
      "  batch        local %lld x dp %d x grad_accum %lld = global %lld sequences of %lld tokens\n"
      "  steps        %lld\n"
      "  converters   %s\n"
      "  outputs      %s\n"
      "  memory/rank  %s at the peak: params %s + AdamW state %s (f32, sharded over %d) + FSDP gathered units %s + "
      "the larger of grads %s and activations %s (%lld of %lld blocks checkpointed%s)\n",
      p.dims.world, p.dims.replicate, p.dims.shard, p.dims.tp, p.dims.describe().c_str(), p.device.c_str(), p.model_name.c_str(),
      p.flavor.c_str(), (long long)m.dim, (long long)m.n_layers, (long long)m.n_heads, (long long)m.kv_heads(),
      (long long)m.head_dim(), (long long)m.ffn_hidden(), (long long)m.vocab_size, with_commas(p.params.total).c_str(),
      human(static_cast<double>(p.params.total)).c_str(), with_commas(p.params.embedding).c_str(),
      human(p.flops_per_token).c_str(), (long long)p.seq_len, (long long)p.batch.local_batch, p.dims.dp(),
      (long long)p.batch.grad_accum, (long long)p.batch.global_batch, (long long)p.seq_len, (long long)p.steps,
      conv.empty() ? "none" : conv.c_str(), p.dump_folder.c_str(), bytes_str(p.memory.total()).c_str(),
      bytes_str(p.memory.params).c_str(), bytes_str(p.memory.optimizer).c_str(), p.dims.shard,
      bytes_str(p.memory.gathered).c_str(), bytes_str(p.memory.grads).c_str(), bytes_str(p.memory.activations).c_str(), (long long)p.checkpointed_blocks, (long long)m.n_layers,
      p.ac.mode == llama3::ActivationCheckpointing::Mode::op ? ", per op" : "");
  std::string text = buf;
  text += "  precision    compute " + std::string(dtype_name(p.param_dtype)) + ", reduce " + std::string(dtype_name(p.reduce_dtype)) +
          ", master weights and AdamW float32" +
          (p.param_dtype == DType::f16 ? ", dynamic loss scaling (GradScaler)" : "") +
          (p.precision_note.empty() ? "" : " (" + p.precision_note + ")") + "\n";
  if (p.dims.tp > 1)
    text += "  tensor par.  TP " + std::to_string(p.dims.tp) + " (ranks of a TP group adjacent): TorchTitan's Llama plan, sequence "
            "parallel, colwise wq/wk/wv/w1/w3/output, rowwise wo/w2, vocab-sharded tok_embeddings\n";
  const auto& c = p.comm;
  if (c.total() > 0) {
    text += "  comm/step    ";
    std::string parts;
    auto part = [&](const char* what, std::int64_t b) {
      if (b > 0) parts += (parts.empty() ? "" : ", ") + std::string(what) + " " + bytes_str(b);
    };
    part("FSDP all-gather", c.fsdp_all_gather);
    part("FSDP reduce-scatter", c.fsdp_reduce_scatter);
    part("replicate all-reduce", c.replicate_all_reduce);
    part("TP all-gather", c.tp_all_gather);
    part("TP reduce-scatter", c.tp_reduce_scatter);
    text += parts + " per rank\n";
  }
  if (p.memory.offloaded)
    text += p.device_kind == "cuda"
                ? "  cpu offload  the device holds " + bytes_str(p.memory.device_total()) +
                      " per rank (gathered units + activations); params, grads and AdamW state, " +
                      bytes_str(p.memory.host_state()) + ", stay in host memory and AdamW runs on the host\n"
                : std::string("  cpu offload  training on the CPU: the sharded state is in host memory already (the same "
                              "path, no copies)\n");
  if (p.cpu_gemm) text += "  cpu gemm     " + p.cpu_gemm->describe() + "\n";
  text += "  parameters\n";
  for (const auto& line : p.parameter_shapes) text += "    " + line + "\n";
  if (p.float8) {
    int converted = 0;
    text += "  float8       recipe " + p.float8_recipe + " (" + p.float8_gemms + "); Linear layers:\n";
    for (const auto& d : p.linears) {
      std::snprintf(buf, sizeof buf, "    %-34s [%6lld, %6lld]  %s\n", d.fqn.c_str(), (long long)d.out_features,
                    (long long)d.in_features, d.reason.c_str());
      text += buf;
      converted += d.convert;
    }
    text += "    " + std::to_string(converted) + " of " + std::to_string(p.linears.size()) + " Linear layers converted\n";
  }
  return text;
}

nlohmann::json plan_json(const Plan& p) {
  const auto& m = p.model;
  return {
      {"world_size", p.dims.world},
      {"mesh", {{"replicate", p.dims.replicate}, {"shard", p.dims.shard}, {"tp", p.dims.tp}, {"kind", p.dims.describe()}}},
      {"comm_per_step_bytes",
       {{"fsdp_all_gather", p.comm.fsdp_all_gather},
        {"fsdp_reduce_scatter", p.comm.fsdp_reduce_scatter},
        {"replicate_all_reduce", p.comm.replicate_all_reduce},
        {"tp_all_gather", p.comm.tp_all_gather},
        {"tp_reduce_scatter", p.comm.tp_reduce_scatter}}},
      {"device", p.device},
      {"device_kind", p.device_kind},
      {"precision", {{"param", std::string(dtype_name(p.param_dtype))}, {"reduce", std::string(dtype_name(p.reduce_dtype))},
                     {"loss_scaling", p.param_dtype == DType::f16}}},
      {"cpu_gemm", p.cpu_gemm ? nlohmann::json{{"library", p.cpu_gemm->library}, {"kernel", p.cpu_gemm->kernel},
                                               {"generic", p.cpu_gemm->generic}, {"threads", p.cpu_gemm->threads},
                                               {"peak_flops_per_core", p.cpu_gemm->peak_flops_per_core()},
                                               {"bf16", p.cpu_gemm->bf16}, {"cpu", p.cpu_gemm->cpu}}
                              : nlohmann::json()},
      {"model",
       {{"name", p.model_name},
        {"flavor", p.flavor},
        {"dim", m.dim},
        {"n_layers", m.n_layers},
        {"n_heads", m.n_heads},
        {"n_kv_heads", m.kv_heads()},
        {"ffn_hidden", m.ffn_hidden()},
        {"vocab_size", m.vocab_size},
        {"params", p.params.total},
        {"embedding_params", p.params.embedding},
        {"flops_per_token", p.flops_per_token}}},
      {"training",
       {{"steps", p.steps},
        {"seq_len", p.seq_len},
        {"local_batch_size", p.batch.local_batch},
        {"global_batch_size", p.batch.global_batch},
        {"grad_accum_steps", p.batch.grad_accum}}},
      {"converters", p.converters},
      {"dump_folder", p.dump_folder},
      {"activation_checkpointed_blocks", p.checkpointed_blocks},
      {"memory_per_rank_bytes",
       {{"params", p.memory.params},
        {"grads", p.memory.grads},
        {"optimizer", p.memory.optimizer},
        {"gathered", p.memory.gathered},
        {"activations", p.memory.activations},
        {"total", p.memory.total()},
        {"device_total", p.memory.device_total()},
        {"offloaded_to_host", p.memory.offloaded ? p.memory.host_state() : 0}}},
      {"parameters", p.parameter_shapes},
      {"float8", p.float8 ? nlohmann::json{{"recipe", p.float8_recipe}, {"linears", linears_json(p)}} : nlohmann::json(nullptr)},
  };
}

}  // namespace titan::train
