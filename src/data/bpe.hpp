#pragma once
// Byte-level BPE tokenizers (DESIGN.md section 7):
//   HfBpeTokenizer      HF tokenizer.json: BPE model with merges, byte-level pre-tokenizer
//                       (optionally after a Split regex), added/special tokens
//   TiktokenTokenizer   tiktoken rank files (base64 token bytes + rank per line, Llama 3's
//                       tokenizer.model), with Llama 3's pre-split regex and special tokens
// Both split text on special tokens first, pre-split each piece with a PCRE2 regex, and merge
// bytes pairwise by rank within each pre-split word.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "data/tokenizer.hpp"

namespace titan::data {

// A compiled PCRE2 pattern (UTF, Unicode properties, JIT) that splits text into its matches
// and the gaps between them ("isolated" behaviour).
class RegexSplitter {
 public:
  explicit RegexSplitter(const std::string& pattern);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  void* code_;  // pcre2_code_8*
};

// Llama 3's pre-tokenizer pattern (also tiktoken's cl100k-style split).
extern const char* const kLlama3SplitPattern;

// Text split on special tokens: segments with special_id >= 0 are one special token.
struct Segment {
  std::string_view text;
  std::int32_t special_id = -1;
};
std::vector<Segment> split_specials(std::string_view text, const std::vector<std::pair<std::string, std::int32_t>>& specials);

class HfBpeTokenizer final : public Tokenizer {
 public:
  // Reads `dir`/tokenizer.json (and tokenizer_config.json for bos_token/eos_token when present).
  explicit HfBpeTokenizer(const std::string& dir);
  ~HfBpeTokenizer() override;
  std::vector<std::int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<std::int32_t>& ids) const override;
  std::int64_t vocab_size() const override { return vocab_size_; }
  std::int32_t bos_id() const override { return bos_; }
  std::int32_t eos_id() const override { return eos_; }
  std::string fingerprint() const override { return fingerprint_; }

 private:
  void load(const std::string& dir, const std::string& path);
  void encode_word(const std::string& mapped, std::vector<std::int32_t>& out) const;

  std::unordered_map<std::string, std::int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, std::int32_t> merge_rank_;  // "left\x01right" -> rank
  std::vector<std::pair<std::string, std::int32_t>> specials_;
  std::vector<bool> is_special_;
  std::vector<std::unique_ptr<RegexSplitter>> splitters_;  // applied in sequence
  bool add_prefix_space_ = false, ignore_merges_ = false;
  std::int64_t vocab_size_ = 0;
  std::int32_t bos_ = -1, eos_ = -1;
  std::string fingerprint_;
  mutable std::unordered_map<std::string, std::vector<std::int32_t>> cache_;
};

class TiktokenTokenizer final : public Tokenizer {
 public:
  // Reads a rank file; Llama 3's 256 special tokens follow the ranks (<|begin_of_text|> first,
  // <|end_of_text|> second).
  explicit TiktokenTokenizer(const std::string& path);
  std::vector<std::int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<std::int32_t>& ids) const override;
  std::int64_t vocab_size() const override { return static_cast<std::int64_t>(id_to_bytes_.size()); }
  std::int32_t bos_id() const override { return base_; }
  std::int32_t eos_id() const override { return base_ + 1; }
  std::string fingerprint() const override { return fingerprint_; }

 private:
  std::unordered_map<std::string, std::int32_t> ranks_;
  std::vector<std::string> id_to_bytes_;
  std::vector<std::pair<std::string, std::int32_t>> specials_;
  std::int32_t base_ = 0;
  std::unique_ptr<RegexSplitter> splitter_;
  std::string fingerprint_;
};

}  // namespace titan::data
