// hf_check: runs titan.cpp's Llama on HF safetensors, to prove the HF interop against
// transformers (scripts/reference/make_hf_golden.py made the golden files in tests/golden/hf_tiny).
//
//   hf_check HF_DIR --logits OUT.safetensors      logits of the tokens in HF_DIR/../hf_tiny_logits
//   hf_check HF_DIR --check-logits GOLDEN [--rtol R]   compare them with GOLDEN's (transformers')
//   hf_check HF_DIR --export OUT_DIR              import, then export again (HF -> ours -> HF)
//   hf_check HF_DIR --check-roundtrip             the export holds the same bits as HF_DIR
// The tokens come from GOLDEN (or the --tokens file): tensor "tokens", int64 [S].
// Exit 0 when every check passes, 1 when one fails (with the numbers), 2 for bad input.
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "autograd/functions.hpp"
#include "checkpoint/safetensors.hpp"
#include "core/errors.hpp"
#include "models/llama3/hf.hpp"
#include "models/llama3/model.hpp"
#include "ops/ops.hpp"

namespace fs = std::filesystem;
using namespace titan;

namespace {

struct Loaded {
  std::unique_ptr<llama3::Transformer> model;
  llama3::ModelArgs args;
};

Loaded load(const std::string& dir, std::int64_t seq_len) {
  const std::string cfg_path = (fs::path(dir) / "config.json").string();
  std::ifstream in(cfg_path);
  if (!in) throw UserError("hf_check: cannot read '" + cfg_path + "'");
  Loaded l;
  l.args = llama3::args_from_hf_config(nlohmann::json::parse(in), cfg_path);
  l.args.max_seq_len = seq_len;
  l.model = std::make_unique<llama3::Transformer>(l.args);
  const auto weights = llama3::read_hf(dir, l.args);
  for (auto& [fqn, p] : l.model->named_parameters()) {
    auto it = weights.find(fqn);
    if (it == weights.end()) throw UserError("hf_check: '" + dir + "' has no " + llama3::to_hf_name(fqn));
    if (it->second.shape() != p->shape())
      throw UserError("hf_check: " + llama3::to_hf_name(fqn) + " has shape " + shape_str(it->second.shape()));
    p->data().copy_from(it->second);
  }
  return l;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 3) throw UserError("usage: hf_check HF_DIR (--logits OUT | --check-logits GOLDEN [--rtol R] | --export DIR | --check-roundtrip)...");
    const std::string dir = argv[1];
    std::string golden, logits_out, export_dir, tokens_file;
    bool roundtrip = false;
    double rtol = 1e-4;
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw UserError("hf_check: " + a + " needs a value");
        return argv[++i];
      };
      if (a == "--logits") logits_out = next();
      else if (a == "--check-logits") golden = next();
      else if (a == "--tokens") tokens_file = next();
      else if (a == "--rtol") rtol = std::stod(next());
      else if (a == "--export") export_dir = next();
      else if (a == "--check-roundtrip") roundtrip = true;
      else throw UserError("hf_check: unknown argument '" + a + "'");
    }
    if (tokens_file.empty()) tokens_file = golden;
    int failures = 0;
    if (!tokens_file.empty()) {
      const auto ref = checkpoint::read_safetensors(tokens_file);
      const Tensor tokens = ref.tensors.at("tokens");
      const std::int64_t S = tokens.numel();
      Loaded l = load(dir, S);
      autograd::NoGradGuard no_grad;
      const Tensor logits = l.model->forward_tokens(tokens.view({1, S})).data();
      ops::raise_device_errors(logits.device());  // a token outside the vocabulary is an error here too
      if (!logits_out.empty()) checkpoint::write_safetensors(logits_out, {{"logits", logits}, {"tokens", tokens}});
      if (!golden.empty()) {
        const Tensor want = ref.tensors.at("logits");
        double worst = 0, scale = 0;
        for (std::int64_t i = 0; i < want.numel(); ++i) scale = std::max(scale, std::abs(want.item(i)));
        for (std::int64_t i = 0; i < want.numel(); ++i)
          worst = std::max(worst, std::abs(logits.item(i) - want.item(i)) / scale);
        std::printf("logits: %lld values, max |ours - transformers| / max|logit| = %.3g (tolerance %.g)\n",
                    (long long)want.numel(), worst, rtol);
        failures += !(worst <= rtol) || want.numel() != logits.numel();
      }
    }
    if (!export_dir.empty() || roundtrip) {
      const std::string out = export_dir.empty() ? (fs::temp_directory_path() / "hf_check_roundtrip").string() : export_dir;
      Loaded l = load(dir, 8);
      std::map<std::string, Tensor> params;
      for (auto& [fqn, p] : l.model->named_parameters()) params.emplace(fqn, p->data());
      // Exported in the dtype the HF files hold (their first tensor's).
      const auto original = checkpoint::read_safetensors((fs::path(dir) / "model.safetensors").string());
      const DType dt = original.tensors.begin()->second.dtype();
      llama3::write_hf(out, params, l.args, dt);
      if (roundtrip) {
        const auto again = checkpoint::read_safetensors((fs::path(out) / "model.safetensors").string());
        int differ = 0, compared = 0;
        for (const auto& [name, t] : original.tensors) {
          if (!llama3::from_hf_name(name)) continue;
          auto it = again.tensors.find(name);
          const bool same = it != again.tensors.end() && it->second.shape() == t.shape() && it->second.dtype() == t.dtype() &&
                            std::memcmp(it->second.raw(), t.raw(), t.nbytes()) == 0;
          if (!same) std::printf("round trip: %s differs\n", name.c_str());
          differ += !same;
          ++compared;
        }
        std::printf("round trip HF -> titan.cpp -> HF: %d of %d tensors bit-identical\n", compared - differ, compared);
        failures += differ > 0 || compared == 0;
      }
    }
    return failures ? 1 : 0;
  } catch (const UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
