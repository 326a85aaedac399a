#include "train/model_print.hpp"

#include <map>

#include "float8/float8_linear.hpp"
#include "nn/layers.hpp"
#include "train/plan.hpp"

namespace titan::train {

namespace {

// torchao's CastConfig.short_str(): scaling type, granularity, dtype ("dyn_ten_e4m3").
std::string cast_str(const float8::CastConfig& c, bool delayed) {
  if (!c.enabled) return "dis_ten_e4m3";
  std::string s = delayed ? "del" : "dyn";
  s += c.granularity == float8::Granularity::axiswise ? "_axs" : "_ten";
  s += c.dtype == DType::f8e5m2 ? "_e5m2" : "_e4m3";
  return s;
}

bool same_cast(const float8::CastConfig& a, const float8::CastConfig& b) {
  return a.enabled == b.enabled && a.granularity == b.granularity && a.dtype == b.dtype;
}

// torchao's Float8Linear.extra_repr() cast_configs: i, w, go, then the backward GEMMs' casts
// where they differ.
std::string cast_configs(const float8::Recipe& r) {
  const bool d = r.delayed;
  std::string s = "i:" + cast_str(r.input, d) + ",w:" + cast_str(r.weight, d) + ",go:" + cast_str(r.grad_output, d);
  if (!same_cast(r.input_for_grad_weight, r.input)) s += ",i_gw:" + cast_str(r.input_for_grad_weight, d);
  if (!same_cast(r.weight_for_grad_input, r.weight)) s += ",w_gi:" + cast_str(r.weight_for_grad_input, d);
  if (!same_cast(r.grad_output_for_grad_weight, r.grad_output))
    s += ",go_gw:" + cast_str(r.grad_output_for_grad_weight, d);
  return s;
}

// The text inside Type(...) for a leaf.
std::string leaf_details(nn::Module& m) {
  if (auto* f8 = dynamic_cast<float8::Float8Linear*>(&m))
    return "in_features=" + std::to_string(f8->in_features()) + ", out_features=" + std::to_string(f8->out_features()) +
           ", bias=False, recipe=" + f8->recipe().name + ", cast_configs=" + cast_configs(f8->recipe());
  if (auto* lin = dynamic_cast<nn::Linear*>(&m))
    return "in_features=" + std::to_string(lin->in_features()) + ", out_features=" + std::to_string(lin->out_features()) +
           ", bias=False";
  if (auto* emb = dynamic_cast<nn::Embedding*>(&m))
    return std::to_string(emb->weight.shape()[0]) + ", " + std::to_string(emb->weight.shape()[1]);
  if (auto* norm = dynamic_cast<nn::RMSNorm*>(&m)) return "(" + std::to_string(norm->weight.shape()[0]) + ",)";
  return "";
}

void print(nn::Module& m, const std::string& label, int depth, std::string& out, std::map<std::string, int>& counts,
           std::int64_t& params) {
  const std::string indent(size_t(depth) * 2, ' ');
  ++counts[m.type_name()];
  out += indent + label + m.type_name() + "(";
  auto children = m.named_children();
  if (children.empty()) {
    out += leaf_details(m) + ")";
    std::string annotation;
    for (auto& [fqn, p] : m.named_parameters()) {
      std::int64_t n = 1;
      for (auto d : p->shape()) n *= d;
      params += n;
      annotation += (annotation.empty() ? "  # " : ", ") + fqn + " " + shape_str(p->shape());
    }
    out += annotation + "\n";
    return;
  }
  out += "\n";
  for (auto& [name, c] : children) print(*c, "(" + name + "): ", depth + 1, out, counts, params);
  out += indent + ")\n";
}

}  // namespace

std::string describe_model(nn::Module& root) {
  std::string out;
  std::map<std::string, int> counts;
  std::int64_t params = 0;
  print(root, "", 0, out, counts, params);
  int total = 0;
  std::string kinds;
  for (const auto& [type, n] : counts) {
    total += n;
    kinds += (kinds.empty() ? "" : ", ") + std::to_string(n) + " " + type;
  }
  out += std::to_string(total) + " modules (" + kinds + "), " + with_commas(params) + " parameters";
  return out;
}

}  // namespace titan::train
