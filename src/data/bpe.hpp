#pragma once
// Byte-level BPE tokenizers (DESIGN.md section 7):
//   HfBpeTokenizer      HF tokenizer.json: BPE model with merges, byte-level pre-tokenizer
//                       (optionally after a Split regex), added/special tokens
//   TiktokenTokenizer   tiktoken rank files (base64 token bytes + rank per line, Llama 3's
//                       tokenizer.model), with Llama 3's pre-split regex and special tokens
// Both split text on special tokens first, pre-split each piece with a PCRE2 regex, and merge
// bytes pairwise by rank within each pre-split word.
#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
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

// Symbols of one pre-tokenized word during BPE: [start, end) byte ranges of the word in a doubly
// linked list, each with its token id. Nodes are indexed by their first position.
struct BpeSymbol {
  std::uint32_t start = 0, end = 0;
  std::int32_t prev = -1, next = -1;
  std::int32_t id = -1;
  bool alive = true;
};

// Merges adjacent symbols by rank, lowest rank first and the leftmost pair among equal ranks
// (the order HF tokenizers and tiktoken use), in O(n log n): a min-heap of candidate pairs keyed
// by (rank, left position) over the linked list, with stale candidates skipped when popped.
// `pair(left, right)` returns {rank, merged id}, rank < 0 for "no merge". `symbols` holds the
// word's initial symbols in order, linked; afterwards the live ones, in list order from index 0,
// are the result.
class BpeMerger {
 public:
  template <class PairFn>
  static void merge(std::vector<BpeSymbol>& symbols, PairFn&& pair);
  // The textbook loop (scan every adjacent pair, merge the best, repeat): O(n^2) in the word's
  // length, the algorithm titan.cpp used before. The same result; kept as the benchmark's baseline.
  template <class PairFn>
  static void merge_quadratic(std::vector<BpeSymbol>& symbols, PairFn&& pair);
};

class HfBpeTokenizer final : public Tokenizer {
 public:
  // Reads `dir`/tokenizer.json (and tokenizer_config.json for bos_token/eos_token when present).
  // Every entry is validated; a problem is a UserError naming the file, the entry and the fix.
  explicit HfBpeTokenizer(const std::string& dir);
  // The same from memory (tests, fuzzing): `json_text` is tokenizer.json, `config_text`
  // tokenizer_config.json (empty: none); `name` is how error messages call the file.
  static std::unique_ptr<HfBpeTokenizer> from_string(const std::string& json_text, const std::string& config_text = "",
                                                     const std::string& name = "tokenizer.json");
  ~HfBpeTokenizer() override;
  std::vector<std::int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<std::int32_t>& ids) const override;
  std::int64_t vocab_size() const override { return vocab_size_; }
  std::int32_t bos_id() const override { return bos_; }
  std::int32_t eos_id() const override { return eos_; }
  std::string fingerprint() const override { return fingerprint_; }
  // Benchmark baseline: merge with BpeMerger::merge_quadratic instead (same ids, O(n^2)).
  void use_quadratic_merge(bool on) {
    quadratic_ = on;
    cache_.clear();
  }

 private:
  HfBpeTokenizer() = default;
  void load(const std::string& text, const std::string* config_text, const std::string& path, const std::string& config_path);
  void encode_word(std::string_view word, std::vector<std::int32_t>& out) const;

  std::unordered_map<std::string, std::int32_t> vocab_;  // model vocabulary and added tokens
  std::vector<std::string> id_to_token_;
  // (left id << 32 | right id) -> {rank, merged id}
  std::unordered_map<std::uint64_t, std::pair<std::int32_t, std::int32_t>> merges_;
  std::array<std::int32_t, 256> byte_id_{};  // id of each byte's byte-level symbol
  std::vector<std::pair<std::string, std::int32_t>> specials_;
  std::vector<bool> is_special_;
  std::vector<std::unique_ptr<RegexSplitter>> splitters_;  // applied in sequence
  bool add_prefix_space_ = false, ignore_merges_ = false, quadratic_ = false;
  std::int64_t vocab_size_ = 0;
  std::int32_t bos_ = -1, eos_ = -1;
  std::string fingerprint_;
  mutable std::unordered_map<std::string, std::vector<std::int32_t>> cache_;
};

class TiktokenTokenizer final : public Tokenizer {
 public:
  // Reads a rank file; Llama 3's 256 special tokens follow the ranks (<|begin_of_text|> first,
  // <|end_of_text|> second). Every line is validated (base64, rank, duplicates, the 256 single
  // bytes present, ranks 0..N-1 with none missing); a problem is one UserError line.
  explicit TiktokenTokenizer(const std::string& path);
  // The same from memory (tests, fuzzing); `name` is how error messages call the file.
  static std::unique_ptr<TiktokenTokenizer> from_string(const std::string& text, const std::string& name = "tokenizer.model");
  std::vector<std::int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<std::int32_t>& ids) const override;
  std::int64_t vocab_size() const override { return static_cast<std::int64_t>(id_to_bytes_.size()); }
  std::int32_t bos_id() const override { return base_; }
  std::int32_t eos_id() const override { return base_ + 1; }
  std::string fingerprint() const override { return fingerprint_; }
  // Benchmark baseline: merge with BpeMerger::merge_quadratic instead (same ids, O(n^2)).
  void use_quadratic_merge(bool on) { quadratic_ = on; }

 private:
  TiktokenTokenizer() = default;
  void load(const std::string& text, const std::string& path);

  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::int32_t, Hash, std::equal_to<>> ranks_;
  std::vector<std::string> id_to_bytes_;
  std::vector<std::pair<std::string, std::int32_t>> specials_;
  std::int32_t base_ = 0;
  bool quadratic_ = false;
  std::unique_ptr<RegexSplitter> splitter_;
  std::string fingerprint_;
};

// Largest token id (or tiktoken rank) a tokenizer file may use.
constexpr std::int64_t kMaxTokenId = (1 << 24) - 1;

template <class PairFn>
void BpeMerger::merge(std::vector<BpeSymbol>& symbols, PairFn&& pair) {
  struct Candidate {
    std::int64_t rank;
    std::int32_t left, right;
    std::uint32_t right_end;
    std::int32_t id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::vector<Candidate> heap;
  heap.reserve(symbols.size());
  auto offer = [&](std::int32_t l, std::int32_t r) {
    const auto [rank, id] = pair(symbols[static_cast<size_t>(l)], symbols[static_cast<size_t>(r)]);
    if (rank < 0) return;
    heap.push_back({rank, l, r, symbols[static_cast<size_t>(r)].end, id});
    std::push_heap(heap.begin(), heap.end(), std::greater<>());
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) offer(static_cast<std::int32_t>(i), static_cast<std::int32_t>(i + 1));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const Candidate c = heap.back();
    heap.pop_back();
    BpeSymbol& l = symbols[static_cast<size_t>(c.left)];
    // Stale: the left symbol was merged away, or either side grew since the pair was offered.
    if (!l.alive || l.next != c.right || symbols[static_cast<size_t>(c.right)].end != c.right_end) continue;
    BpeSymbol& r = symbols[static_cast<size_t>(c.right)];
    l.end = r.end;
    l.id = c.id;
    l.next = r.next;
    r.alive = false;
    if (l.next >= 0) symbols[static_cast<size_t>(l.next)].prev = c.left;
    if (l.prev >= 0) offer(l.prev, c.left);
    if (l.next >= 0) offer(c.left, l.next);
  }
}

template <class PairFn>
void BpeMerger::merge_quadratic(std::vector<BpeSymbol>& symbols, PairFn&& pair) {
  while (true) {
    std::int64_t best = -1;
    std::int32_t at = -1, best_id = -1;
    for (std::int32_t i = symbols.empty() ? -1 : 0; i >= 0 && symbols[static_cast<size_t>(i)].next >= 0;
         i = symbols[static_cast<size_t>(i)].next) {
      const BpeSymbol& l = symbols[static_cast<size_t>(i)];
      const auto [rank, id] = pair(l, symbols[static_cast<size_t>(l.next)]);
      if (rank >= 0 && (best < 0 || rank < best)) {
        best = rank;
        at = i;
        best_id = id;
      }
    }
    if (best < 0) return;
    BpeSymbol& l = symbols[static_cast<size_t>(at)];
    BpeSymbol& r = symbols[static_cast<size_t>(l.next)];
    l.end = r.end;
    l.id = best_id;
    l.next = r.next;
    r.alive = false;
    if (l.next >= 0) symbols[static_cast<size_t>(l.next)].prev = at;
  }
}

}  // namespace titan::data
