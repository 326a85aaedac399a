#include "data/bpe.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <nlohmann/json.hpp>
#include <xxhash.h>

#include <algorithm>
#include <charconv>
#include <array>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/errors.hpp"

namespace titan::data {

const char* const kLlama3SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// GPT-2's pattern, used by a ByteLevel pre-tokenizer with use_regex = true.
static const char* const kGpt2SplitPattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError("tokenizer: cannot read '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string hash_hex(const std::string& bytes) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(XXH3_64bits(bytes.data(), bytes.size())));
  return buf;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// GPT-2's byte-level map: printable bytes stand for themselves, the other 68 bytes map to
// code points 256, 257, ... so every byte is one visible character.
struct ByteLevelMap {
  std::array<std::string, 256> to_unicode;
  std::unordered_map<std::string, std::uint8_t> to_byte;
  ByteLevelMap() {
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      append_utf8(to_unicode[b], printable ? static_cast<std::uint32_t>(b) : static_cast<std::uint32_t>(next++));
      to_byte[to_unicode[b]] = static_cast<std::uint8_t>(b);
    }
  }
};
const ByteLevelMap& byte_level() {
  static const ByteLevelMap m;
  return m;
}

// Splits a UTF-8 string into its characters.
std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

// Repeatedly merges the adjacent pair of lowest rank; `rank(a, b)` returns max() for no merge.
template <class RankFn>
void bpe_merge(std::vector<std::string>& parts, RankFn&& rank) {
  while (parts.size() > 1) {
    std::int64_t best = std::numeric_limits<std::int64_t>::max();
    size_t at = 0;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      const std::int64_t r = rank(parts[i], parts[i + 1]);
      if (r < best) {
        best = r;
        at = i;
      }
    }
    if (best == std::numeric_limits<std::int64_t>::max()) break;
    parts[at] += parts[at + 1];
    parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(at) + 1);
  }
}

std::string base64_decode(std::string_view in) {
  static const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::uint32_t buf = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    const size_t v = chars.find(c);
    if (v == std::string::npos) throw UserError("tokenizer: invalid base64 token '" + std::string(in) + "'");
    buf = (buf << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buf >> bits) & 0xFF));
    }
  }
  return out;
}

}  // namespace

RegexSplitter::RegexSplitter(const std::string& pattern) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &offset, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw UserError("tokenizer: pre-tokenizer regex does not compile at offset " + std::to_string(offset) + ": " +
                    reinterpret_cast<char*>(msg));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  code_ = code;
}

RegexSplitter::~RegexSplitter() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

std::vector<std::string_view> RegexSplitter::split(std::string_view text) const {
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start < text.size()) {
    const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), start, 0, md, nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t s = ov[0], e = ov[1];
    if (s > start) out.push_back(text.substr(start, s - start));  // a gap the pattern did not cover
    if (e > s) {
      out.push_back(text.substr(s, e - s));
      start = e;
    } else {
      start = s + 1;  // empty match: step over one byte (kept with the next gap)
      if (s >= text.size()) break;
      out.push_back(text.substr(s, 1));
    }
  }
  if (start < text.size()) out.push_back(text.substr(start));
  pcre2_match_data_free(md);
  return out;
}

std::vector<Segment> split_specials(std::string_view text, const std::vector<std::pair<std::string, std::int32_t>>& specials) {
  std::vector<Segment> out;
  size_t plain = 0, i = 0;
  while (i < text.size()) {
    const std::pair<std::string, std::int32_t>* hit = nullptr;
    for (const auto& sp : specials)  // longest match wins (specials are sorted longest first)
      if (!sp.first.empty() && text.compare(i, sp.first.size(), sp.first) == 0) {
        hit = &sp;
        break;
      }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > plain) out.push_back({text.substr(plain, i - plain), -1});
    out.push_back({text.substr(i, hit->first.size()), hit->second});
    i += hit->first.size();
    plain = i;
  }
  if (plain < text.size()) out.push_back({text.substr(plain), -1});
  return out;
}

// ---------------- HF tokenizer.json ----------------

HfBpeTokenizer::~HfBpeTokenizer() = default;

HfBpeTokenizer::HfBpeTokenizer(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "tokenizer.json").string();
  try {
    load(dir, path);
  } catch (const nlohmann::json::exception& e) {
    throw UserError("tokenizer: '" + path + "' (or its tokenizer_config.json) is not a tokenizer file titan.cpp can read: " +
                    e.what());
  }
}

void HfBpeTokenizer::load(const std::string& dir, const std::string& path) {
  const std::string text = read_file(path);
  fingerprint_ = "hf-" + hash_hex(text);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw UserError("tokenizer: '" + path + "' is not valid JSON (" + e.what() + ")");
  }
  const auto& model = j.at("model");
  if (model.value("type", "") != "BPE")
    throw UserError("tokenizer: '" + path + "' has a " + model.value("type", std::string("?")) +
                    " model; titan.cpp reads byte-level BPE tokenizers", kExitNotImplemented);
  if (model.value("byte_fallback", false))
    throw UserError("tokenizer: '" + path + "' uses byte_fallback (SentencePiece-style BPE), which titan.cpp does not read yet",
                    kExitNotImplemented);
  if (!j.value("normalizer", nlohmann::json()).is_null())
    throw UserError("tokenizer: '" + path + "' has a normalizer, which titan.cpp does not apply yet", kExitNotImplemented);
  ignore_merges_ = model.value("ignore_merges", false);
  for (auto& [tok, id] : model.at("vocab").items()) vocab_[tok] = id.get<std::int32_t>();
  std::int32_t rank = 0;
  for (const auto& m : model.at("merges")) {
    std::string left, right;
    if (m.is_string()) {  // "left right" (older format)
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      left = s.substr(0, sp);
      right = s.substr(sp + 1);
    } else {  // ["left", "right"]
      left = m.at(0).get<std::string>();
      right = m.at(1).get<std::string>();
    }
    merge_rank_.emplace(left + '\x01' + right, rank++);
  }
  std::int32_t max_id = -1;
  for (auto& [tok, id] : vocab_) max_id = std::max(max_id, id);
  for (const auto& a : j.value("added_tokens", nlohmann::json::array())) {
    const std::string content = a.at("content").get<std::string>();
    const std::int32_t id = a.at("id").get<std::int32_t>();
    vocab_[content] = id;
    specials_.emplace_back(content, id);
    max_id = std::max(max_id, id);
  }
  std::sort(specials_.begin(), specials_.end(), [](auto& a, auto& b) { return a.first.size() > b.first.size(); });
  vocab_size_ = max_id + 1;
  id_to_token_.resize(static_cast<size_t>(vocab_size_));
  is_special_.assign(static_cast<size_t>(vocab_size_), false);
  for (auto& [tok, id] : vocab_) id_to_token_[id] = tok;
  for (auto& [content, id] : specials_) is_special_[id] = true;

  // Pre-tokenizer: a ByteLevel step (with or without its own regex), optionally after Split steps.
  auto add_step = [&](const nlohmann::json& step) {
    const std::string type = step.value("type", "");
    if (type == "Split") {
      if (step.value("behavior", "") != "Isolated" || step.value("invert", false) || !step.at("pattern").contains("Regex"))
        throw UserError("tokenizer: '" + path + "': only Split pre-tokenizers with a Regex and behavior Isolated are supported",
                        kExitNotImplemented);
      splitters_.push_back(std::make_unique<RegexSplitter>(step.at("pattern").at("Regex").get<std::string>()));
    } else if (type == "ByteLevel") {
      add_prefix_space_ = step.value("add_prefix_space", false);
      if (step.value("use_regex", true)) splitters_.push_back(std::make_unique<RegexSplitter>(kGpt2SplitPattern));
    } else {
      throw UserError("tokenizer: '" + path + "': pre-tokenizer " + type + " is not supported", kExitNotImplemented);
    }
  };
  const auto& pre = j.value("pre_tokenizer", nlohmann::json());
  if (pre.is_null()) throw UserError("tokenizer: '" + path + "' has no pre_tokenizer; byte-level BPE needs one", kExitNotImplemented);
  if (pre.value("type", "") == "Sequence")
    for (const auto& step : pre.at("pretokenizers")) add_step(step);
  else
    add_step(pre);

  // BOS/EOS: tokenizer_config.json if present, else the usual Llama 3 / GPT names.
  auto find_id = [&](const std::string& tok) { auto it = vocab_.find(tok); return it == vocab_.end() ? -1 : it->second; };
  const std::filesystem::path cfg_path = std::filesystem::path(dir) / "tokenizer_config.json";
  if (std::filesystem::exists(cfg_path)) {
    const auto cfg = nlohmann::json::parse(read_file(cfg_path.string()));
    auto name = [](const nlohmann::json& v) { return v.is_object() ? v.value("content", "") : v.is_string() ? v.get<std::string>() : ""; };
    if (cfg.contains("bos_token")) bos_ = find_id(name(cfg["bos_token"]));
    if (cfg.contains("eos_token")) eos_ = find_id(name(cfg["eos_token"]));
  }
  for (const char* b : {"<|begin_of_text|>", "<s>", "<|endoftext|>"})
    if (bos_ < 0) bos_ = find_id(b);
  for (const char* e : {"<|end_of_text|>", "</s>", "<|endoftext|>"})
    if (eos_ < 0) eos_ = find_id(e);
  if (bos_ < 0 || eos_ < 0)
    throw UserError("tokenizer: '" + path + "' defines no BOS/EOS token (tokenizer_config.json bos_token/eos_token, or "
                    "<|begin_of_text|>/<|end_of_text|>)");
  // BOS/EOS come from tokenizer_config.json too: they are part of what the tokenizer produces.
  fingerprint_ += "-" + std::to_string(bos_) + "-" + std::to_string(eos_);
}

void HfBpeTokenizer::encode_word(const std::string& mapped, std::vector<std::int32_t>& out) const {
  if (auto it = cache_.find(mapped); it != cache_.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  std::vector<std::int32_t> ids;
  auto whole = vocab_.find(mapped);
  if (ignore_merges_ && whole != vocab_.end()) {
    ids.push_back(whole->second);
  } else {
    std::vector<std::string> parts = utf8_chars(mapped);
    bpe_merge(parts, [&](const std::string& a, const std::string& b) -> std::int64_t {
      auto it = merge_rank_.find(a + '\x01' + b);
      return it == merge_rank_.end() ? std::numeric_limits<std::int64_t>::max() : it->second;
    });
    for (const auto& p : parts) {
      auto it = vocab_.find(p);
      if (it == vocab_.end()) throw std::runtime_error("tokenizer: symbol missing from the vocabulary after BPE");
      ids.push_back(it->second);
    }
  }
  if (mapped.size() < 256 && cache_.size() < 200000) cache_.emplace(mapped, ids);
  out.insert(out.end(), ids.begin(), ids.end());
}

std::vector<std::int32_t> HfBpeTokenizer::encode(std::string_view text) const {
  std::vector<std::int32_t> out;
  const auto& bl = byte_level();
  for (const Segment& seg : split_specials(text, specials_)) {
    if (seg.special_id >= 0) {
      out.push_back(seg.special_id);
      continue;
    }
    std::string piece(seg.text);
    if (add_prefix_space_ && !piece.empty() && piece[0] != ' ') piece.insert(piece.begin(), ' ');
    std::vector<std::string_view> words{piece};
    for (const auto& splitter : splitters_) {
      std::vector<std::string_view> next;
      for (auto w : words)
        for (auto sub : splitter->split(w)) next.push_back(sub);
      words = std::move(next);
    }
    for (auto w : words) {
      std::string mapped;
      for (unsigned char c : w) mapped += bl.to_unicode[c];
      encode_word(mapped, out);
    }
  }
  return out;
}

std::string HfBpeTokenizer::decode(const std::vector<std::int32_t>& ids) const {
  std::string out;
  const auto& bl = byte_level();
  for (auto id : ids) {
    if (id < 0 || id >= vocab_size_) continue;
    if (is_special_[id]) {
      out += id_to_token_[id];
      continue;
    }
    for (const auto& ch : utf8_chars(id_to_token_[id])) {
      auto it = bl.to_byte.find(ch);
      if (it != bl.to_byte.end()) out.push_back(static_cast<char>(it->second));
    }
  }
  return out;
}

// ---------------- tiktoken ----------------

TiktokenTokenizer::TiktokenTokenizer(const std::string& path) {
  const std::string text = read_file(path);
  fingerprint_ = "tiktoken-" + hash_hex(text);
  std::istringstream in(text);
  std::string line;
  std::int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string::npos)
      throw UserError("tokenizer: " + path + ":" + std::to_string(line_no) + " is not '<base64 token> <rank>'");
    const std::string bytes = base64_decode(std::string_view(line).substr(0, sp));
    std::int32_t rank = -1;
    const char* first = line.data() + sp + 1;
    const char* last = line.data() + line.size();
    auto res = std::from_chars(first, last, rank);
    if (res.ec != std::errc() || res.ptr != last || rank < 0 || rank >= (1 << 30))
      throw UserError("tokenizer: " + path + ":" + std::to_string(line_no) +
                      " has no valid rank (expected '<base64 token> <rank>' with 0 <= rank; is this a tiktoken file?)");
    ranks_[bytes] = rank;
    if (static_cast<size_t>(rank) >= id_to_bytes_.size()) id_to_bytes_.resize(static_cast<size_t>(rank) + 1);
    id_to_bytes_[rank] = bytes;
  }
  if (ranks_.empty()) throw UserError("tokenizer: '" + path + "' holds no tokens");
  base_ = static_cast<std::int32_t>(id_to_bytes_.size());
  // Llama 3's special tokens, in its order.
  std::vector<std::string> names = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                                    "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
                                    "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"};
  for (int i = 2; names.size() < 256; ++i) names.push_back("<|reserved_special_token_" + std::to_string(i) + "|>");
  for (size_t i = 0; i < names.size(); ++i) {
    specials_.emplace_back(names[i], base_ + static_cast<std::int32_t>(i));
    id_to_bytes_.push_back(names[i]);
  }
  std::sort(specials_.begin(), specials_.end(), [](auto& a, auto& b) { return a.first.size() > b.first.size(); });
  splitter_ = std::make_unique<RegexSplitter>(kLlama3SplitPattern);
}

std::vector<std::int32_t> TiktokenTokenizer::encode(std::string_view text) const {
  std::vector<std::int32_t> out;
  for (const Segment& seg : split_specials(text, specials_)) {
    if (seg.special_id >= 0) {
      out.push_back(seg.special_id);
      continue;
    }
    for (auto word : splitter_->split(seg.text)) {
      if (auto it = ranks_.find(std::string(word)); it != ranks_.end()) {
        out.push_back(it->second);
        continue;
      }
      std::vector<std::string> parts;
      for (char c : word) parts.emplace_back(1, c);
      bpe_merge(parts, [&](const std::string& a, const std::string& b) -> std::int64_t {
        auto it = ranks_.find(a + b);
        return it == ranks_.end() ? std::numeric_limits<std::int64_t>::max() : it->second;
      });
      for (const auto& p : parts) out.push_back(ranks_.at(p));
    }
  }
  return out;
}

std::string TiktokenTokenizer::decode(const std::vector<std::int32_t>& ids) const {
  std::string out;
  for (auto id : ids)
    if (id >= 0 && static_cast<size_t>(id) < id_to_bytes_.size()) out += id_to_bytes_[id];
  return out;
}

}  // namespace titan::data
