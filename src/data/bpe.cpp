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
#include <optional>
#include <sstream>
#include <cerrno>
#include <cstring>

#include "core/errors.hpp"

namespace titan::data {

const char* const kLlama3SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// GPT-2's pattern, used by a ByteLevel pre-tokenizer with use_regex = true.
static const char* const kGpt2SplitPattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

using json = nlohmann::json;

// Error lines: "tokenizer: '<file>' <entry and problem>; <fix>" (values cut and escaped by printable).
[[noreturn]] void fail(const std::string& file, const std::string& what, int code = kExitUsageError) {
  throw UserError("tokenizer: '" + printable(file, 200) + "' " + what, code);
}
std::string quote(std::string_view s) { return "'" + printable(s) + "'"; }

std::string read_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail(path, "is a folder, not a tokenizer file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot be read (" + std::string(std::strerror(errno)) + "); check the path and its permissions");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(path, "cannot be read (I/O error)");
  return ss.str();
}

// JSON with a clear line on a syntax error (never the parser's own text).
json parse_json(const std::string& text, const std::string& path) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    size_t line = 1, col = 1;
    const size_t at = std::min<size_t>(e.byte > 0 ? e.byte - 1 : 0, text.size());
    for (size_t i = 0; i < at; ++i) {
      if (text[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    fail(path, "is not valid JSON: it breaks at line " + std::to_string(line) + ", column " + std::to_string(col) +
                   (at >= text.size() ? " (the file ends early)" : "") + "; re-download or re-export it");
  }
}

// What a JSON value is, for error lines: "a string ('abc')", "the number 1.5", "an object", ...
std::string describe(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return v.get<bool>() ? "true" : "false";
    case json::value_t::string: return "the string " + quote(v.get_ref<const std::string&>());
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return "the number " + printable(v.dump());
    case json::value_t::array: return "a list";
    case json::value_t::object: return "an object";
    default: return "an unreadable value";
  }
}

const json* field(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

// Optional string/bool fields: missing or null gives the default, another type is an error.
std::string opt_string(const std::string& path, const json& obj, const char* key, const std::string& where,
                       const std::string& def = "") {
  const json* v = field(obj, key);
  if (!v || v->is_null()) return def;
  if (!v->is_string())
    fail(path, where + "." + key + " is " + describe(*v) + ", expected a string; fix the entry or re-export the tokenizer");
  return v->get<std::string>();
}
bool opt_bool(const std::string& path, const json& obj, const char* key, const std::string& where, bool def) {
  const json* v = field(obj, key);
  if (!v || v->is_null()) return def;
  if (!v->is_boolean())
    fail(path, where + "." + key + " is " + describe(*v) + ", expected true or false; fix the entry or re-export the tokenizer");
  return v->get<bool>();
}

// A token id from the file: an integer in [0, kMaxTokenId].
std::int32_t token_id(const std::string& path, const json& v, const std::string& where) {
  if (!v.is_number_integer())
    fail(path, where + " is " + describe(v) + ", expected an integer token id; fix the entry or re-export the tokenizer");
  const bool ok = v.is_number_unsigned() ? v.get<std::uint64_t>() <= static_cast<std::uint64_t>(kMaxTokenId)
                                         : v.get<std::int64_t>() >= 0 && v.get<std::int64_t>() <= kMaxTokenId;
  if (!ok)
    fail(path, where + " has id " + printable(v.dump()) + "; token ids run from 0 to " + std::to_string(kMaxTokenId) +
                   ": fix the entry or re-export the tokenizer");
  return static_cast<std::int32_t>(v.get<std::int64_t>());
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

// One symbol per byte of `word`, linked in order, with ids from `id_of_byte`.
template <class IdFn>
std::vector<BpeSymbol> byte_symbols(std::string_view word, IdFn&& id_of_byte) {
  if (word.size() > static_cast<size_t>(std::numeric_limits<std::int32_t>::max()))
    throw UserError("tokenizer: one pre-tokenized word of " + std::to_string(word.size()) +
                    " bytes is more than titan.cpp can merge (2 GiB); split the document");
  std::vector<BpeSymbol> syms(word.size());
  for (size_t i = 0; i < word.size(); ++i) {
    BpeSymbol& s = syms[i];
    s.start = static_cast<std::uint32_t>(i);
    s.end = static_cast<std::uint32_t>(i + 1);
    s.prev = static_cast<std::int32_t>(i) - 1;
    s.next = i + 1 < word.size() ? static_cast<std::int32_t>(i + 1) : -1;
    s.id = id_of_byte(static_cast<unsigned char>(word[i]));
  }
  return syms;
}

void append_ids(const std::vector<BpeSymbol>& syms, std::vector<std::int32_t>& out) {
  for (std::int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[static_cast<size_t>(i)].next) out.push_back(syms[static_cast<size_t>(i)].id);
}

// Strict base64 (tiktoken writes padded standard base64); nullopt when malformed.
std::optional<std::string> base64_decode(std::string_view in) {
  static const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (in.empty() || in.size() % 4 != 0) return std::nullopt;
  size_t pad = 0;
  while (pad < 2 && pad < in.size() && in[in.size() - 1 - pad] == '=') ++pad;
  std::string out;
  std::uint32_t buf = 0;
  int bits = 0;
  for (size_t i = 0; i + pad < in.size(); ++i) {
    const size_t v = chars.find(in[i]);
    if (v == std::string::npos) return std::nullopt;
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
    throw UserError("does not compile at offset " + std::to_string(offset) + " (" + reinterpret_cast<char*>(msg) +
                    "); fix the pattern");
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
  // Only positions holding the first byte of some special token can start one.
  std::array<bool, 256> first{};
  for (const auto& sp : specials)
    if (!sp.first.empty()) first[static_cast<unsigned char>(sp.first[0])] = true;
  size_t plain = 0, i = 0;
  while (i < text.size()) {
    if (!first[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
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
  namespace fs = std::filesystem;
  const std::string path = (fs::path(dir) / "tokenizer.json").string();
  const std::string config_path = (fs::path(dir) / "tokenizer_config.json").string();
  const std::string text = read_file(path);
  std::error_code ec;
  std::string config;
  const bool has_config = fs::exists(config_path, ec);
  if (has_config) config = read_file(config_path);
  load(text, has_config ? &config : nullptr, path, config_path);
}

std::unique_ptr<HfBpeTokenizer> HfBpeTokenizer::from_string(const std::string& json_text, const std::string& config_text,
                                                            const std::string& name) {
  std::unique_ptr<HfBpeTokenizer> tok(new HfBpeTokenizer());
  tok->load(json_text, config_text.empty() ? nullptr : &config_text, name, "tokenizer_config.json");
  return tok;
}

void HfBpeTokenizer::load(const std::string& text, const std::string* config_text, const std::string& path,
                          const std::string& config_path) {
  try {
    fingerprint_ = "hf-" + hash_hex(text);
    const json j = parse_json(text, path);
    if (!j.is_object())
      fail(path, "is not a tokenizer file titan.cpp can read: its top level is " + describe(j) +
                     ", not an object (expected a Hugging Face tokenizer.json)");
    const json* model_p = field(j, "model");
    if (!model_p || !model_p->is_object())
      fail(path, "is not a tokenizer file titan.cpp can read: it has no \"model\" object (expected a Hugging Face "
                 "tokenizer.json with a BPE model)");
    const json& model = *model_p;
    const std::string type = opt_string(path, model, "type", "model");
    if (type != "BPE")
      fail(path, type.empty() ? "has a model without a type; titan.cpp reads byte-level BPE tokenizers (model.type \"BPE\")"
                              : "has a " + printable(type) + " model; titan.cpp reads byte-level BPE tokenizers",
           kExitNotImplemented);
    if (opt_bool(path, model, "byte_fallback", "model", false))
      fail(path, "uses byte_fallback (SentencePiece-style BPE), which titan.cpp does not read yet", kExitNotImplemented);
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (!opt_string(path, model, key, "model").empty())
        fail(path, std::string("sets model.") + key + ", which titan.cpp does not apply yet", kExitNotImplemented);
    if (const json* norm = field(j, "normalizer"); norm && !norm->is_null())
      fail(path, "has a normalizer, which titan.cpp does not apply yet", kExitNotImplemented);
    ignore_merges_ = opt_bool(path, model, "ignore_merges", "model", false);

    // The model vocabulary: token -> id, each id once.
    const json* vocab = field(model, "vocab");
    if (!vocab || !vocab->is_object())
      fail(path, "has " + (vocab ? "a model.vocab that is " + describe(*vocab) : std::string("no model.vocab")) +
                     "; a BPE model needs its vocabulary as an object of token -> id (re-export the tokenizer)");
    if (vocab->empty()) fail(path, "has an empty model.vocab; a BPE model needs its vocabulary (re-export the tokenizer)");
    std::unordered_map<std::int32_t, std::string> owner;  // id -> which entry holds it, for duplicate errors
    std::int32_t max_id = -1;
    for (auto it = vocab->begin(); it != vocab->end(); ++it) {
      const std::string where = "model.vocab[" + quote(it.key()) + "]";
      const std::int32_t id = token_id(path, it.value(), where);
      if (auto [o, fresh] = owner.emplace(id, where); !fresh)
        fail(path, o->second + " and " + where + " both have id " + std::to_string(id) +
                       "; every id names one token (the file is damaged or hand-edited: re-export it)");
      vocab_[it.key()] = id;
      max_id = std::max(max_id, id);
    }
    const std::unordered_map<std::string, std::int32_t> model_vocab = vocab_;
    auto model_id = [&](const std::string& tok) {
      auto it = model_vocab.find(tok);
      return it == model_vocab.end() ? -1 : it->second;
    };
    const auto& bl = byte_level();
    for (int b = 0; b < 256; ++b) {
      byte_id_[static_cast<size_t>(b)] = model_id(bl.to_unicode[static_cast<size_t>(b)]);
      if (byte_id_[static_cast<size_t>(b)] < 0) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", b);
        fail(path, std::string("has no token for byte ") + hex + " (byte-level symbol " + quote(bl.to_unicode[static_cast<size_t>(b)]) +
                       ") in model.vocab; titan.cpp reads byte-level BPE vocabularies that hold all 256 byte symbols");
      }
    }

    // Merges: "left right" or ["left", "right"]; both parts and their concatenation in the vocabulary.
    const json* merges = field(model, "merges");
    if (!merges || !merges->is_array())
      fail(path, "has " + (merges ? "a model.merges that is " + describe(*merges) : std::string("no model.merges")) +
                     "; a BPE model needs its merges as a list (an empty list [] for none)");
    std::unordered_map<std::uint64_t, size_t> merge_index;
    for (size_t i = 0; i < merges->size(); ++i) {
      const json& m = (*merges)[i];
      const std::string where = "model.merges[" + std::to_string(i) + "]";
      std::string left, right;
      if (m.is_string()) {  // "left right" (older format)
        const std::string& s = m.get_ref<const std::string&>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 == s.size() || s.find(' ', sp + 1) != std::string::npos)
          fail(path, where + " = " + quote(s) + " is not two tokens separated by one space; fix or remove the entry");
        left = s.substr(0, sp);
        right = s.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["left", "right"]
        left = m[0].get<std::string>();
        right = m[1].get<std::string>();
      } else {
        fail(path, where + " is " + describe(m) + "; a merge is \"left right\" or [\"left\", \"right\"]");
      }
      const std::string pair = quote(left + " " + right);
      const std::int32_t l = model_id(left), r = model_id(right), merged = model_id(left + right);
      if (l < 0) fail(path, where + " = " + pair + ": " + quote(left) + " is not in model.vocab; fix or remove the merge");
      if (r < 0) fail(path, where + " = " + pair + ": " + quote(right) + " is not in model.vocab; fix or remove the merge");
      if (merged < 0)
        fail(path, where + " = " + pair + ": the merged token " + quote(left + right) +
                       " is not in model.vocab; fix or remove the merge");
      if (i > static_cast<size_t>(kMaxTokenId)) fail(path, "has more than " + std::to_string(kMaxTokenId) + " merges");
      const std::uint64_t key = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(l)) << 32) | static_cast<std::uint32_t>(r);
      if (auto [o, fresh] = merge_index.emplace(key, i); !fresh)
        fail(path, where + " = " + pair + " repeats model.merges[" + std::to_string(o->second) +
                       "]; each pair is merged once: remove the repeat");
      merges_.emplace(key, std::make_pair(static_cast<std::int32_t>(i), merged));
    }

    // Added (special) tokens: matched in the text before pre-tokenization.
    const json* added = field(j, "added_tokens");
    if (added && !added->is_null() && !added->is_array())
      fail(path, "has added_tokens that is " + describe(*added) + ", expected a list of {\"id\": ..., \"content\": ...}");
    std::unordered_map<std::string, std::string> added_where;  // content -> entry, for duplicates
    if (added && added->is_array()) {
      for (size_t i = 0; i < added->size(); ++i) {
        const json& a = (*added)[i];
        const std::string where = "added_tokens[" + std::to_string(i) + "]";
        if (!a.is_object()) fail(path, where + " is " + describe(a) + ", expected an object with \"id\" and \"content\"");
        const json* content_p = field(a, "content");
        if (!content_p || !content_p->is_string() || content_p->get_ref<const std::string&>().empty())
          fail(path, where + ".content is " + (content_p ? describe(*content_p) : std::string("missing")) +
                         ", expected the token's text (a non-empty string)");
        const std::string content = content_p->get<std::string>();
        const json* id_p = field(a, "id");
        if (!id_p) fail(path, where + " (" + quote(content) + ") has no \"id\"; give the token its id or re-export the tokenizer");
        const std::int32_t id = token_id(path, *id_p, where + ".id");
        const std::string named = where + " " + quote(content);
        if (auto [o, fresh] = added_where.emplace(content, where); !fresh)
          fail(path, named + " repeats " + o->second + "; remove the repeat");
        if (const std::int32_t in_vocab = model_id(content); in_vocab >= 0 && in_vocab != id)
          fail(path, named + " has id " + std::to_string(id) + " but model.vocab gives it id " + std::to_string(in_vocab) +
                         "; the two must agree (the file is damaged or hand-edited: re-export it)");
        if (auto [o, fresh] = owner.emplace(id, named); !fresh && model_id(content) != id)
          fail(path, named + " has id " + std::to_string(id) + ", which " + o->second +
                         " already uses; every id names one token (re-export the tokenizer)");
        vocab_[content] = id;
        specials_.emplace_back(content, id);
        max_id = std::max(max_id, id);
      }
    }
    std::sort(specials_.begin(), specials_.end(), [](auto& a, auto& b) { return a.first.size() > b.first.size(); });
    const std::int64_t defined = static_cast<std::int64_t>(owner.size());
    if (max_id + 1 > 2 * defined + 1024)
      fail(path, "numbers its tokens with large gaps: the largest id is " + std::to_string(max_id) + " but only " +
                     std::to_string(defined) + " ids are defined; ids should run from 0 without large gaps (re-export the tokenizer)");
    vocab_size_ = max_id + 1;
    id_to_token_.resize(static_cast<size_t>(vocab_size_));
    is_special_.assign(static_cast<size_t>(vocab_size_), false);
    for (auto& [tok, id] : vocab_) id_to_token_[static_cast<size_t>(id)] = tok;
    for (auto& [content, id] : specials_) is_special_[static_cast<size_t>(id)] = true;

    // Pre-tokenizer: a ByteLevel step (with or without its own regex), optionally after Split steps.
    auto add_step = [&](const json& step, const std::string& where) {
      if (!step.is_object()) fail(path, where + " is " + describe(step) + ", expected an object with a \"type\"");
      const std::string type = opt_string(path, step, "type", where);
      if (type == "Split") {
        const json* pattern = field(step, "pattern");
        const json* regex = pattern ? field(*pattern, "Regex") : nullptr;
        if (opt_string(path, step, "behavior", where) != "Isolated" || opt_bool(path, step, "invert", where, false) || !regex)
          fail(path, where + ": only Split pre-tokenizers with a Regex pattern and behavior Isolated are supported",
               kExitNotImplemented);
        if (!regex->is_string()) fail(path, where + ".pattern.Regex is " + describe(*regex) + ", expected a string");
        try {
          splitters_.push_back(std::make_unique<RegexSplitter>(regex->get<std::string>()));
        } catch (const UserError& e) {
          fail(path, where + ".pattern.Regex " + quote(regex->get<std::string>()) + ": " + e.what());
        }
      } else if (type == "ByteLevel") {
        add_prefix_space_ = opt_bool(path, step, "add_prefix_space", where, false);
        if (opt_bool(path, step, "use_regex", where, true)) splitters_.push_back(std::make_unique<RegexSplitter>(kGpt2SplitPattern));
      } else {
        fail(path, where + ": pre-tokenizer " + (type.empty() ? std::string("without a type") : quote(type)) + " is not supported",
             kExitNotImplemented);
      }
    };
    const json* pre = field(j, "pre_tokenizer");
    if (!pre || pre->is_null()) fail(path, "has no pre_tokenizer; byte-level BPE needs one", kExitNotImplemented);
    if (pre->is_object() && opt_string(path, *pre, "type", "pre_tokenizer") == "Sequence") {
      const json* steps = field(*pre, "pretokenizers");
      if (!steps || !steps->is_array())
        fail(path, "has a Sequence pre_tokenizer whose pretokenizers is " + (steps ? describe(*steps) : std::string("missing")) +
                       ", expected a list");
      for (size_t i = 0; i < steps->size(); ++i) add_step((*steps)[i], "pre_tokenizer.pretokenizers[" + std::to_string(i) + "]");
    } else {
      add_step(*pre, "pre_tokenizer");
    }

    // BOS/EOS: tokenizer_config.json if present (a named token must exist), else the usual
    // Llama 3 / GPT names.
    auto find_id = [&](const std::string& tok) {
      auto it = vocab_.find(tok);
      return it == vocab_.end() ? -1 : it->second;
    };
    if (config_text) {
      const json cfg = parse_json(*config_text, config_path);
      if (!cfg.is_object()) fail(config_path, "is " + describe(cfg) + ", expected a JSON object (tokenizer_config.json)");
      for (const char* key : {"bos_token", "eos_token"}) {
        const json* v = field(cfg, key);
        if (!v || v->is_null()) continue;
        std::string name;
        if (v->is_string()) {
          name = v->get<std::string>();
        } else if (v->is_object() && field(*v, "content") && field(*v, "content")->is_string()) {
          name = field(*v, "content")->get<std::string>();
        } else {
          fail(config_path, std::string(key) + " is " + describe(*v) + ", expected the token's text or {\"content\": ...}");
        }
        const std::int32_t id = find_id(name);
        if (id < 0)
          fail(config_path, std::string(key) + " " + quote(name) + " is not in the vocabulary of '" + printable(path, 200) +
                                "'; set " + key + " to one of its tokens (or add the token to added_tokens)");
        (std::string(key) == "bos_token" ? bos_ : eos_) = id;
      }
    }
    for (const char* b : {"<|begin_of_text|>", "<s>", "<|endoftext|>"})
      if (bos_ < 0) bos_ = find_id(b);
    for (const char* e : {"<|end_of_text|>", "</s>", "<|endoftext|>"})
      if (eos_ < 0) eos_ = find_id(e);
    if (bos_ < 0 || eos_ < 0)
      fail(path, "defines no BOS/EOS token (tokenizer_config.json bos_token/eos_token, or "
                 "<|begin_of_text|>/<|end_of_text|>)");
    // BOS/EOS come from tokenizer_config.json too: they are part of what the tokenizer produces.
    fingerprint_ += "-" + std::to_string(bos_) + "-" + std::to_string(eos_);
  } catch (const json::exception&) {
    // Every field is checked above; this only keeps the library's text away from the user.
    fail(path, "is not a tokenizer file titan.cpp can read (a field has an unexpected JSON type); re-export it");
  }
}

void HfBpeTokenizer::encode_word(std::string_view word, std::vector<std::int32_t>& out) const {
  const bool cacheable = word.size() < 256;
  if (cacheable) {
    if (auto it = cache_.find(std::string(word)); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<std::int32_t> ids;
  bool whole_word = false;
  if (ignore_merges_) {
    std::string mapped;
    for (unsigned char c : word) mapped += byte_level().to_unicode[c];
    if (auto whole = vocab_.find(mapped); whole != vocab_.end()) {
      ids.push_back(whole->second);
      whole_word = true;
    }
  }
  if (!whole_word) {
    auto syms = byte_symbols(word, [&](unsigned char b) { return byte_id_[b]; });
    auto pair = [&](const BpeSymbol& l, const BpeSymbol& r) -> std::pair<std::int64_t, std::int32_t> {
      const std::uint64_t key = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(l.id)) << 32) | static_cast<std::uint32_t>(r.id);
      auto it = merges_.find(key);
      if (it == merges_.end()) return {-1, -1};
      return {it->second.first, it->second.second};
    };
    quadratic_ ? BpeMerger::merge_quadratic(syms, pair) : BpeMerger::merge(syms, pair);
    append_ids(syms, ids);
  }
  if (cacheable && cache_.size() < 200000) cache_.emplace(std::string(word), ids);
  out.insert(out.end(), ids.begin(), ids.end());
}

std::vector<std::int32_t> HfBpeTokenizer::encode(std::string_view text) const {
  std::vector<std::int32_t> out;
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
    for (auto w : words) encode_word(w, out);
  }
  return out;
}

std::string HfBpeTokenizer::decode(const std::vector<std::int32_t>& ids) const {
  std::string out;
  const auto& bl = byte_level();
  for (auto id : ids) {
    if (id < 0 || id >= vocab_size_) continue;
    if (is_special_[static_cast<size_t>(id)]) {
      out += id_to_token_[static_cast<size_t>(id)];
      continue;
    }
    for (const auto& ch : utf8_chars(id_to_token_[static_cast<size_t>(id)])) {
      auto it = bl.to_byte.find(ch);
      if (it != bl.to_byte.end()) out.push_back(static_cast<char>(it->second));
    }
  }
  return out;
}

// ---------------- tiktoken ----------------

TiktokenTokenizer::TiktokenTokenizer(const std::string& path) { load(read_file(path), path); }

std::unique_ptr<TiktokenTokenizer> TiktokenTokenizer::from_string(const std::string& text, const std::string& name) {
  std::unique_ptr<TiktokenTokenizer> tok(new TiktokenTokenizer());
  tok->load(text, name);
  return tok;
}

void TiktokenTokenizer::load(const std::string& text, const std::string& path) {
  fingerprint_ = "tiktoken-" + hash_hex(text);
  auto fail_line = [&](std::int64_t line_no, const std::string& what) {
    throw UserError("tokenizer: " + printable(path, 200) + ":" + std::to_string(line_no) + " " + what);
  };
  // Ranks run 0..N-1 for N tokens, so a rank of N or more is an error before anything is sized by it.
  size_t n_tokens = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    if (nl > pos && !(nl == pos + 1 && text[pos] == '\r')) ++n_tokens;
    pos = nl + 1;
  }
  if (n_tokens > static_cast<size_t>(kMaxTokenId) + 1)
    fail(path, "holds " + std::to_string(n_tokens) + " tokens, more than titan.cpp reads (" + std::to_string(kMaxTokenId + 1) + ")");
  std::vector<std::string> by_rank(n_tokens);
  std::vector<std::int64_t> line_of_rank(n_tokens, 0);  // 0: rank not seen yet
  std::unordered_map<std::string, std::int64_t> line_of_token;
  std::int64_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string_view line(text.data() + pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string::npos)
      fail_line(line_no, quote(line) + " is not '<base64 token> <rank>' (is this a tiktoken file? a SentencePiece "
                                       "tokenizer.model is not supported)");
    const auto bytes = base64_decode(line.substr(0, sp));
    if (!bytes || bytes->empty())
      fail_line(line_no, "token " + quote(line.substr(0, sp)) + " is not valid base64 of a non-empty token (is this a tiktoken file?)");
    std::int64_t rank = -1;
    const char* first = line.data() + sp + 1;
    const char* last = line.data() + line.size();
    auto res = std::from_chars(first, last, rank);
    if (res.ec != std::errc() || res.ptr != last || rank < 0)
      fail_line(line_no, "has no valid rank (" + quote(line.substr(sp + 1)) +
                             "; expected '<base64 token> <rank>' with a rank from 0; is this a tiktoken file?)");
    if (auto [o, fresh] = line_of_token.emplace(*bytes, line_no); !fresh)
      fail_line(line_no, "repeats the token of line " + std::to_string(o->second) + " (" + quote(*bytes) +
                             "); every token appears once: the file is damaged");
    if (static_cast<size_t>(rank) >= n_tokens)
      fail_line(line_no, "has rank " + std::to_string(rank) + ", but the file holds " + std::to_string(n_tokens) +
                             " tokens; ranks run 0..N-1 without gaps (the file is incomplete or damaged)");
    if (line_of_rank[static_cast<size_t>(rank)] != 0)
      fail_line(line_no, "repeats rank " + std::to_string(rank) + " of line " + std::to_string(line_of_rank[static_cast<size_t>(rank)]) +
                             "; every rank is used once: the file is damaged");
    line_of_rank[static_cast<size_t>(rank)] = line_no;
    by_rank[static_cast<size_t>(rank)] = *bytes;
  }
  if (line_of_token.empty()) fail(path, "holds no tokens; a tiktoken rank file has one '<base64 token> <rank>' per line");
  // N lines, N distinct ranks below N: none can be missing. Kept as a guard.
  for (size_t r = 0; r < by_rank.size(); ++r)
    if (line_of_rank[r] == 0)
      fail(path, "has no token of rank " + std::to_string(r) + "; ranks run 0..N-1 without gaps: the file is incomplete or damaged");
  for (int b = 0; b < 256; ++b)
    if (!line_of_token.count(std::string(1, static_cast<char>(b)))) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", b);
      fail(path, std::string("has no token for the single byte ") + hex +
                     "; a tiktoken rank file holds all 256 bytes (is it complete?)");
    }
  for (size_t r = 0; r < by_rank.size(); ++r) ranks_.emplace(by_rank[r], static_cast<std::int32_t>(r));
  id_to_bytes_ = std::move(by_rank);
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
      if (auto it = ranks_.find(word); it != ranks_.end()) {
        out.push_back(it->second);
        continue;
      }
      auto syms = byte_symbols(word, [&](unsigned char b) { return ranks_.find(std::string_view(reinterpret_cast<const char*>(&b), 1))->second; });
      auto pair = [&](const BpeSymbol& l, const BpeSymbol& r) -> std::pair<std::int64_t, std::int32_t> {
        auto it = ranks_.find(word.substr(l.start, r.end - l.start));
        if (it == ranks_.end()) return {-1, -1};
        return {it->second, it->second};
      };
      quadratic_ ? BpeMerger::merge_quadratic(syms, pair) : BpeMerger::merge(syms, pair);
      append_ids(syms, out);
    }
  }
  return out;
}

std::string TiktokenTokenizer::decode(const std::vector<std::int32_t>& ids) const {
  std::string out;
  for (auto id : ids)
    if (id >= 0 && static_cast<size_t>(id) < id_to_bytes_.size()) out += id_to_bytes_[static_cast<size_t>(id)];
  return out;
}

}  // namespace titan::data
