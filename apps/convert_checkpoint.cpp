// convert_checkpoint: a titan.cpp checkpoint step (any mesh) -> HF Llama safetensors + config.json.
//   convert_checkpoint STEP_DIR OUT_DIR [float32|bfloat16|float16]
// Reads every rank's rows of the model from STEP_DIR (checked against metadata.json's checksums),
// assembles the full tensors and writes them with HF names and the q/k RoPE permutation
// (scripts/convert_to_hf.sh wraps it). Optimizer state is not exported.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>

#include "checkpoint/checkpointer.hpp"
#include "core/errors.hpp"
#include "dist/world.hpp"
#include "models/llama3/hf.hpp"
#include "models/llama3/model.hpp"

namespace fs = std::filesystem;
using namespace titan;

int main(int argc, char** argv) {
  dist::World world(&argc, &argv);
  try {
    if (argc < 3 || argc > 4) throw UserError("usage: convert_checkpoint STEP_DIR OUT_DIR [float32|bfloat16|float16]");
    const fs::path step_dir = fs::path(argv[1]).lexically_normal();
    const std::string out = argv[2], dtype_name = argc == 4 ? argv[3] : "float32";
    const DType dtype = dtype_name == "bfloat16" ? DType::bf16 : dtype_name == "float16" ? DType::f16 : DType::f32;
    if (dtype == DType::f32 && dtype_name != "float32") throw UserError("convert_checkpoint: dtype '" + dtype_name + "' is not float32, bfloat16 or float16");
    std::smatch m;
    const std::string name = step_dir.filename().string();
    if (!std::regex_match(name, m, std::regex(R"(step-(\d+))")))
      throw UserError("convert_checkpoint: '" + step_dir.string() + "' is not a step-N checkpoint folder");
    if (!fs::is_regular_file(step_dir / "metadata.json"))
      throw UserError("convert_checkpoint: '" + step_dir.string() + "' has no metadata.json (an unfinished save?)");
    // The loader's schema check: a bad field is one line naming it, never a library's text.
    const checkpoint::Metadata meta = checkpoint::read_metadata(step_dir.string());
    const auto flavor_it = meta.model.find("flavor");
    const std::string flavor = flavor_it != meta.model.end() && flavor_it->is_string() ? flavor_it->get<std::string>() : "";
    // Checkpoints name the model only when it is not llama3 (older ones predate the name).
    const std::string model_name = meta.model.value("name", std::string("llama3"));
    const llama3::ModelArgs* args = llama3::find_flavor(model_name, flavor);
    if (!args)
      throw UserError("convert_checkpoint: unknown " + printable(model_name) + " flavor '" + printable(flavor) + "' in metadata.json");

    // Load the model part as a one-rank run would, through the same code as resuming.
    checkpoint::CheckpointOptions opts;
    opts.folder = (step_dir.parent_path() / ".").string();
    opts.load_step = std::stoll(m[1]);
    opts.exclude_from_loading = {"optimizer", "lr_scheduler", "dataloader", "train_state"};
    dist::DeviceMesh mesh(world, 1, world.size());
    llama3::Transformer model(*args);
    checkpoint::TrainingState state;
    std::map<std::string, Tensor> params;
    for (auto& [fqn, p] : model.named_parameters()) {
      state.model.push_back({"model." + fqn, p->shape(), 0, p->shape()[0], p->data()});
      params.emplace(fqn, p->data());
    }
    checkpoint::Checkpointer ckpt(opts, mesh, meta.model, "", /*owns_folder=*/false);
    if (!ckpt.load(state)) throw UserError("convert_checkpoint: nothing loaded from '" + step_dir.string() + "'");
    llama3::write_hf(out, params, *args, dtype);
    std::printf("wrote %s (HF LlamaForCausalLM, %s, %zu tensors) from %s\n", out.c_str(), dtype_name.c_str(), params.size(),
                step_dir.string().c_str());
    return 0;
  } catch (const UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: internal error: %s\n", printable(e.what(), 200).c_str());
    return 1;
  }
}
