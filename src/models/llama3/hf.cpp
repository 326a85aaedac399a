#include "models/llama3/hf.hpp"

#include <cmath>
#include <cstring>
#include <algorithm>
#include <sstream>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <stdexcept>

#include "checkpoint/safetensors.hpp"
#include "core/errors.hpp"

namespace titan::llama3 {

namespace {

// TorchTitan suffix within a block <-> HF suffix within a block.
const std::pair<const char*, const char*> kBlockNames[] = {
    {"attention.wq.weight", "self_attn.q_proj.weight"},   {"attention.wk.weight", "self_attn.k_proj.weight"},
    {"attention.wv.weight", "self_attn.v_proj.weight"},   {"attention.wo.weight", "self_attn.o_proj.weight"},
    {"feed_forward.w1.weight", "mlp.gate_proj.weight"},   {"feed_forward.w2.weight", "mlp.down_proj.weight"},
    {"feed_forward.w3.weight", "mlp.up_proj.weight"},     {"attention_norm.weight", "input_layernorm.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
};
const std::pair<const char*, const char*> kTopNames[] = {
    {"tok_embeddings.weight", "model.embed_tokens.weight"}, {"norm.weight", "model.norm.weight"}, {"output.weight", "lm_head.weight"}};

}  // namespace

std::string to_hf_name(const std::string& fqn) {
  for (auto [ours, hf] : kTopNames)
    if (fqn == ours) return hf;
  static const std::regex block(R"(layers\.(\d+)\.(.+))");
  std::smatch m;
  if (std::regex_match(fqn, m, block))
    for (auto [ours, hf] : kBlockNames)
      if (m[2] == ours) return "model.layers." + m[1].str() + "." + hf;
  throw std::invalid_argument("hf: no HF name for parameter '" + fqn + "'");
}

std::optional<std::string> from_hf_name(const std::string& hf_name) {
  for (auto [ours, hf] : kTopNames)
    if (hf_name == hf) return ours;
  static const std::regex block(R"(model\.layers\.(\d+)\.(.+))");
  std::smatch m;
  if (std::regex_match(hf_name, m, block))
    for (auto [ours, hf] : kBlockNames)
      if (m[2] == hf) return "layers." + m[1].str() + "." + ours;
  return std::nullopt;
}

std::optional<std::int64_t> rope_heads(const std::string& fqn, const ModelArgs& args) {
  if (fqn.ends_with("attention.wq.weight")) return args.n_heads;
  if (fqn.ends_with("attention.wk.weight")) return args.kv_heads();
  return std::nullopt;
}

Tensor permute_rope_rows(const Tensor& w, std::int64_t n_heads, bool to_hf) {
  const std::int64_t rows = w.size(0), cols = w.numel() / rows, head_dim = rows / n_heads, half = head_dim / 2;
  const Tensor src = w.to(w.dtype()) /* contiguous copy */;
  Tensor out = Tensor::empty(w.shape(), w.dtype());
  const std::size_t row_bytes = static_cast<std::size_t>(cols) * dtype_size(w.dtype());
  const char* s = static_cast<const char*>(src.raw());
  char* d = static_cast<char*>(out.raw());
  for (std::int64_t h = 0; h < n_heads; ++h)
    for (std::int64_t i = 0; i < half; ++i)
      for (std::int64_t j = 0; j < 2; ++j) {
        const std::int64_t meta_row = h * head_dim + 2 * i + j, hf_row = h * head_dim + j * half + i;
        const std::int64_t from = to_hf ? meta_row : hf_row, to = to_hf ? hf_row : meta_row;
        std::memcpy(d + to * row_bytes, s + from * row_bytes, row_bytes);
      }
  return out;
}

nlohmann::json hf_config(const ModelArgs& a, DType dtype) {
  nlohmann::json c = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_size", a.dim},
      {"intermediate_size", a.ffn_hidden()},
      {"num_hidden_layers", a.n_layers},
      {"num_attention_heads", a.n_heads},
      {"num_key_value_heads", a.kv_heads()},
      {"head_dim", a.head_dim()},
      {"vocab_size", a.vocab_size},
      {"rms_norm_eps", a.norm_eps},
      {"rope_theta", a.rope_theta},
      // Positions the model serves: what it trained on, or Llama 3.1's original context when scaled.
      {"max_position_embeddings",
       a.rope_scaling ? std::max<std::int64_t>(a.max_seq_len, std::int64_t(a.rope_scaling->original_max_position_embeddings))
                      : a.max_seq_len},
      {"hidden_act", "silu"},
      {"tie_word_embeddings", false},
      {"attention_bias", false},
      {"mlp_bias", false},
      {"torch_dtype", dtype == DType::bf16 ? "bfloat16" : dtype == DType::f16 ? "float16" : "float32"},
  };
  if (a.rope_scaling)
    c["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", a.rope_scaling->scaling_factor},
                         {"low_freq_factor", a.rope_scaling->low_freq_factor},
                         {"high_freq_factor", a.rope_scaling->high_freq_factor},
                         {"original_max_position_embeddings", std::int64_t(a.rope_scaling->original_max_position_embeddings)}};
  else
    c["rope_scaling"] = nullptr;
  return c;
}

namespace {

// Typed fields of config.json: a wrong type or range is one line naming the key and the value.
struct HfFields {
  const nlohmann::json& c;
  const std::string& path;
  [[noreturn]] void bad(const std::string& key, const nlohmann::json& v, const std::string& must) const {
    throw UserError("hf: '" + path + "' \"" + key + "\" is " + checkpoint::preview(v) + ", but it must be " + must +
                    "; is it a Llama config.json?");
  }
  const nlohmann::json& need(const char* key) const {
    if (!c.is_object() || !c.contains(key))
      throw UserError("hf: '" + path + "' has no \"" + std::string(key) + "\"; is it a Llama config.json?");
    return c.at(key);
  }
  std::int64_t positive(const char* key, const nlohmann::json& v) const {
    if (!v.is_number_integer() || v.get<std::int64_t>() < 1 || v.get<std::int64_t>() > (std::int64_t(1) << 32))
      bad(key, v, "a positive integer");
    return v.get<std::int64_t>();
  }
  std::int64_t positive(const char* key) const { return positive(key, need(key)); }
  double number(const char* key, const nlohmann::json& v) const {
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0) bad(key, v, "a positive number");
    return v.get<double>();
  }
};

}  // namespace

ModelArgs args_from_hf_config(const nlohmann::json& c, const std::string& path) {
  const HfFields f{c, path};
  auto need = [&](const char* key) -> const nlohmann::json& { return f.need(key); };
  ModelArgs a;
  try {
    a.dim = f.positive("hidden_size");
    a.n_layers = f.positive("num_hidden_layers");
    a.n_heads = f.positive("num_attention_heads");
    a.n_kv_heads = c.contains("num_key_value_heads") && !c["num_key_value_heads"].is_null()
                       ? f.positive("num_key_value_heads")
                       : a.n_heads;
    a.vocab_size = f.positive("vocab_size");
    a.norm_eps = c.contains("rms_norm_eps") ? f.number("rms_norm_eps", c["rms_norm_eps"]) : 1e-5;
    a.rope_theta = c.contains("rope_theta") ? f.number("rope_theta", c["rope_theta"]) : 10000.0;
    if (a.dim % a.n_heads != 0 || a.n_heads % a.kv_heads() != 0)
      throw UserError("hf: '" + path + "' hidden_size " + std::to_string(a.dim) + ", num_attention_heads " +
                      std::to_string(a.n_heads) + " and num_key_value_heads " + std::to_string(a.kv_heads()) +
                      " do not divide evenly; is it a Llama config.json?");
    const std::int64_t hidden = f.positive("intermediate_size");
    (void)need;
    // The SwiGLU width is derived, not stored: choose multiple_of so that it comes out as `hidden`.
    a.multiple_of = hidden;
    a.ffn_dim_multiplier = std::nullopt;
    if (a.ffn_hidden() != hidden)
      throw UserError("hf: '" + path + "' intermediate_size " + std::to_string(hidden) + " is below 8/3 x hidden_size, "
                      "which titan.cpp's Llama cannot represent");
    if (c.contains("head_dim") && !c["head_dim"].is_null() && f.positive("head_dim") != a.head_dim())
      throw UserError("hf: '" + path + "' head_dim differs from hidden_size / num_attention_heads");
    const auto& rs = c.contains("rope_scaling") ? c["rope_scaling"] : nlohmann::json();
    if (rs.is_null()) {
      a.rope_scaling = std::nullopt;
    } else {
      if (!rs.is_object()) f.bad("rope_scaling", rs, "an object or null");
      const auto type = rs.contains("rope_type") ? rs["rope_type"] : rs.contains("type") ? rs["type"] : nlohmann::json();
      if (!type.is_string() || type.get<std::string>() != "llama3")
        throw UserError("hf: '" + path + "' rope_scaling type " + checkpoint::preview(type) +
                        " is not \"llama3\" (the only RoPE scaling titan.cpp's Llama has)");
      auto num = [&](const char* k, double dflt) { return rs.contains(k) ? f.number(k, rs[k]) : dflt; };
      a.rope_scaling = ops::RopeScaling{num("factor", 8.0), num("low_freq_factor", 1.0), num("high_freq_factor", 4.0),
                                        num("original_max_position_embeddings", 8192.0)};
    }
    if (c.contains("tie_word_embeddings") && !c["tie_word_embeddings"].is_boolean())
      f.bad("tie_word_embeddings", c["tie_word_embeddings"], "true or false");
    if (c.value("tie_word_embeddings", false))
      throw UserError("hf: '" + path + "' ties lm_head to the embeddings; titan.cpp's Llama keeps them separate");
  } catch (const nlohmann::json::exception&) {
    throw UserError("hf: '" + path + "' has a malformed value; is it a Llama config.json?");
  }
  return a;
}

void check_hf_config_matches(const nlohmann::json& c, const ModelArgs& m, const std::string& path, const std::string& key,
                             const std::string& flavor) {
  const std::string fix = "; use HF weights of the model that model.flavor " + flavor +
                          " describes, or a flavor with the same settings";
  auto close = [](double a, double b) { return std::abs(a - b) <= 1e-6 * std::max(std::abs(a), std::abs(b)); };
  auto num = [](double v) {
    std::ostringstream o;
    o << v;
    return o.str();
  };
  const nlohmann::json type = c.contains("model_type") ? c["model_type"] : nlohmann::json();
  if (!type.is_string() || type.get<std::string>() != "llama")
    throw UserError(key + ": '" + path + "' has model_type " + (c.contains("model_type") ? checkpoint::preview(type) : "(none)") +
                    ", model.flavor " + flavor + " is a \"llama\"" + fix);
  const ModelArgs hf = args_from_hf_config(c, path);
  if (!close(hf.rope_theta, m.rope_theta))
    throw UserError(key + ": '" + path + "' has rope_theta " + num(hf.rope_theta) + ", model.flavor " + flavor + " has " +
                    num(m.rope_theta) + fix);
  if (!close(hf.norm_eps, m.norm_eps))
    throw UserError(key + ": '" + path + "' has rms_norm_eps " + num(hf.norm_eps) + ", model.flavor " + flavor + " has " +
                    num(m.norm_eps) + fix);
  auto scaling = [&](const std::optional<ops::RopeScaling>& r) {
    if (!r) return std::string("none (null)");
    return "llama3 (factor " + num(r->scaling_factor) + ", low_freq_factor " + num(r->low_freq_factor) +
           ", high_freq_factor " + num(r->high_freq_factor) + ", original_max_position_embeddings " +
           num(r->original_max_position_embeddings) + ")";
  };
  const bool same = hf.rope_scaling.has_value() == m.rope_scaling.has_value() &&
                    (!hf.rope_scaling ||
                     (close(hf.rope_scaling->scaling_factor, m.rope_scaling->scaling_factor) &&
                      close(hf.rope_scaling->low_freq_factor, m.rope_scaling->low_freq_factor) &&
                      close(hf.rope_scaling->high_freq_factor, m.rope_scaling->high_freq_factor) &&
                      close(hf.rope_scaling->original_max_position_embeddings, m.rope_scaling->original_max_position_embeddings)));
  if (!same)
    throw UserError(key + ": '" + path + "' has rope_scaling " + scaling(hf.rope_scaling) + ", model.flavor " + flavor +
                    " has " + scaling(m.rope_scaling) + fix);
}

}  // namespace titan::llama3

namespace titan::llama3 {

void write_hf(const std::string& dir, const std::map<std::string, Tensor>& params, const ModelArgs& args, DType dtype) {
  std::map<std::string, Tensor> out;
  for (const auto& [fqn, t] : params) {
    Tensor w = t.to(dtype);
    if (auto heads = rope_heads(fqn, args)) w = permute_rope_rows(w, *heads, true);
    out.emplace(to_hf_name(fqn), std::move(w));
  }
  std::filesystem::create_directories(dir);
  checkpoint::write_safetensors((std::filesystem::path(dir) / "model.safetensors").string(), out, {{"format", "pt"}});
  checkpoint::write_file_parts((std::filesystem::path(dir) / "config.json").string(), {hf_config(args, dtype).dump(2), "\n"},
                               "hf");
}

namespace {

// The safetensors files of an HF model folder.
std::vector<std::string> hf_files(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index)) {
    std::ifstream in(index);
    std::set<std::string> names;
    try {
      for (auto& [tensor, file] : nlohmann::json::parse(in).at("weight_map").items()) names.insert(file.get<std::string>());
    } catch (const std::exception& e) {
      throw UserError("hf: '" + index.string() + "' is not a safetensors index (" + e.what() + ")");
    }
    for (const auto& f : names) files.push_back((fs::path(dir) / f).string());
  } else if (fs::exists(fs::path(dir) / "model.safetensors")) {
    files.push_back((fs::path(dir) / "model.safetensors").string());
  } else {
    throw UserError("hf: '" + dir + "' holds neither model.safetensors nor model.safetensors.index.json; point "
                    "checkpoint.initial_load_path at an HF model folder");
  }
  return files;
}

void check_rope_shape(const std::string& path, const std::string& hf_name, const Shape& shape, std::int64_t heads) {
  if (shape.size() != 2 || shape[0] % (heads * 2) != 0)
    throw UserError("hf: '" + path + "' tensor '" + hf_name + "' has shape " + shape_str(shape) + ", which is not " +
                    std::to_string(heads) + " heads of even size");
}

}  // namespace

std::map<std::string, HfRows> read_hf_rows(const std::string& dir, const ModelArgs& args,
                                           const std::map<std::string, std::pair<std::int64_t, std::int64_t>>& wanted) {
  std::map<std::string, HfRows> out;
  for (const auto& path : hf_files(dir)) {
    const checkpoint::SafetensorsHeader h = checkpoint::read_safetensors_header(path);
    for (const auto& [hf_name, dtype_shape] : h.tensors) {
      const auto fqn = from_hf_name(hf_name);
      if (!fqn || !wanted.count(*fqn)) continue;
      const Shape& shape = dtype_shape.second;
      auto [b, e] = wanted.at(*fqn);
      HfRows r{shape, Tensor()};
      const std::int64_t rows = shape.empty() ? 1 : shape[0];
      if (e <= rows && b == e) {  // a rank whose shard is all padding
        Shape empty = shape;
        empty[0] = 0;
        r.rows = Tensor::empty(empty, dtype_shape.first);
      } else if (e <= rows) {
        if (auto heads = rope_heads(*fqn, args)) {
          // Our row order differs from HF's only within a head: read the whole heads that hold
          // [b, e), put them in our order, keep [b, e).
          check_rope_shape(path, hf_name, shape, *heads);
          const std::int64_t head_dim = rows / *heads, h0 = b / head_dim, h1 = (e + head_dim - 1) / head_dim;
          const Tensor block = checkpoint::read_safetensors_rows(path, h, hf_name, h0 * head_dim, h1 * head_dim);
          r.rows = permute_rope_rows(block, h1 - h0, false).slice_rows(b - h0 * head_dim, e - h0 * head_dim);
        } else {
          r.rows = checkpoint::read_safetensors_rows(path, h, hf_name, b, e);
        }
      }
      out[*fqn] = r;
    }
  }
  return out;
}

std::map<std::string, Tensor> read_hf(const std::string& dir, const ModelArgs& args) {
  std::map<std::string, Tensor> out;
  for (const auto& path : hf_files(dir))
    for (auto& [hf_name, t] : checkpoint::read_safetensors(path).tensors) {
      auto fqn = from_hf_name(hf_name);
      if (!fqn) continue;  // buffers such as rotary_emb.inv_freq
      Tensor w = t;
      if (auto heads = rope_heads(*fqn, args)) {
        check_rope_shape(path, hf_name, w.shape(), *heads);
        w = permute_rope_rows(w, *heads, false);
      }
      out[*fqn] = w;
    }
  return out;
}

}  // namespace titan::llama3
