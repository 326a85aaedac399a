#pragma once
// The plan of a run: everything decided before the first step (mesh, device, model shape and
// size, batch arithmetic). `run_train --dry-run` prints it; `--plan-json` writes it for tools.
#include <nlohmann/json.hpp>

#include <string>

#include "config/job_config.hpp"
#include "core/device.hpp"
#include "dist/parallel_dims.hpp"
#include "models/llama3/args.hpp"

namespace titan::train {

struct Plan {
  dist::ParallelDims dims;
  dist::BatchPlan batch;
  std::string device;  // what rank 0 trains on
  std::string model_name, flavor;
  llama3::ModelArgs model;
  llama3::ParamCount params;
  double flops_per_token = 0;
  std::int64_t seq_len = 0, steps = 0;
  std::vector<std::string> converters;
  std::string dump_folder;
};

// Throws UserError for an unknown flavor, bad parallel degrees or an indivisible batch.
Plan make_plan(const config::JobConfig& cfg, int world_size, const DeviceInfo& devices);

std::string plan_text(const Plan& plan);
nlohmann::json plan_json(const Plan& plan);

}  // namespace titan::train
