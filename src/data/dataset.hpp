#pragma once
// Token windows for training (DESIGN.md section 7).
//
// Documents (JSON lines with a "text" field, or plain text files, one document per file) are
// tokenized as [BOS] text [EOS] and concatenated in file order, followed by the tokens of any
// pre-tokenized .tokens files; the stream is cut into consecutive,
// non-overlapping windows of seq_len + 1 tokens (input = w[:-1], labels = w[1:]; a tail shorter
// than a window is dropped). Each epoch visits every window once, in an order shuffled by
// (seed, epoch). Window k of the stream is therefore a pure function of (dataset, tokenizer,
// seed, seq_len), and the loader's whole state is one number: windows consumed.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.hpp"
#include "data/tokenizer.hpp"

namespace titan::data {

// Pre-tokenized token files (".tokens"): a 32-byte little-endian header, then the tokens.
//   bytes 0-7   magic "TITANTOK"
//   bytes 8-11  u32 format version (1)
//   bytes 12-15 u32 bytes per token (2 = uint16, 4 = uint32)
//   bytes 16-23 u64 number of tokens
//   bytes 24-31 u64 vocabulary size of the tokenizer that made them
// The stream already holds each document's BOS/EOS. The same format caches the tokenization of
// text corpora in a .titan_cache/ folder next to the data, keyed by the files and the tokenizer.
void write_token_file(const std::string& path, const std::vector<std::int32_t>& tokens, std::int64_t vocab_size);
// Every header field is checked against the file size and `max_vocab_size`, every token against
// the header's vocabulary; a problem is one UserError line naming the file and the fix.
std::vector<std::int32_t> read_token_file(const std::string& path, std::int64_t max_vocab_size);
// The same from memory (tests, fuzzing); `name` is how error messages call the file.
std::vector<std::int32_t> parse_token_file(std::string_view bytes, const std::string& name, std::int64_t max_vocab_size);
struct TokenFileHeader {
  std::uint32_t version = 0, width = 0;
  std::uint64_t count = 0, vocab = 0;
};
// Checks the header (the file's first min(32, size) bytes) of a token file of `file_size` bytes.
TokenFileHeader check_token_header(std::string_view head, std::uint64_t file_size, const std::string& path,
                                   std::int64_t max_vocab_size);

// [BOS] tokens [EOS] of every document of the given JSONL/text files, in order.
std::vector<std::int32_t> tokenize_documents(const std::vector<std::string>& text_files, const Tokenizer& tok);

// "c4_test" and "c4_validation" name the corpus shipped in tests/assets/c4_test; `path`, when
// set, overrides the name. Returns the files to read, sorted. Throws UserError for a missing path.
std::vector<std::string> resolve_dataset_files(const std::string& name, const std::string& path);

class TokenWindows {
 public:
  // `use_cache`: read/write the tokenization cache next to text corpora.
  TokenWindows(const std::vector<std::string>& files, const Tokenizer& tok, std::int64_t seq_len, std::uint64_t seed,
               bool use_cache = true);
  bool from_cache() const { return from_cache_; }
  std::int64_t num_windows() const { return num_windows_; }
  std::int64_t num_tokens() const { return static_cast<std::int64_t>(tokens_.size()); }
  std::int64_t seq_len() const { return seq_len_; }
  // Copies window number `position` of the shuffled stream (positions run over all epochs) into
  // row `row` of inputs [rows, seq_len] and labels [rows, seq_len] (int64).
  void fill(std::int64_t position, Tensor& inputs, Tensor& labels, std::int64_t row) const;
  // Which stored window the stream shows at `position`.
  std::int64_t window_at(std::int64_t position) const;

 private:
  std::vector<std::int32_t> tokens_;
  std::int64_t seq_len_, num_windows_;
  std::uint64_t seed_;
  bool from_cache_ = false;
  mutable std::int64_t perm_epoch_ = -1;
  mutable std::vector<std::int64_t> perm_;
};

// The loader: hands each data-parallel rank its slice of every global batch. Global batch b
// covers stream positions [b * global, (b + 1) * global); micro-step m of rank r gets positions
// [b * global + (m * dp + r) * local, ... + local).
class DataLoader {
 public:
  DataLoader(const TokenWindows& windows, std::int64_t local_batch, std::int64_t dp_rank, std::int64_t dp_size,
             std::int64_t grad_accum);
  struct Batch {
    Tensor inputs, labels;  // [local_batch, seq_len] and [local_batch * seq_len], int64
  };
  // On `device` (built on the host, then copied there when it is a GPU).
  Batch micro_batch(std::int64_t micro_step, Device device = Device::cpu()) const;
  // Moves to the next global batch.
  void advance() { consumed_ += global(); }
  std::int64_t windows_consumed() const { return consumed_; }
  void set_windows_consumed(std::int64_t n) { consumed_ = n; }
  std::int64_t global() const { return local_ * dp_size_ * accum_; }

 private:
  const TokenWindows& windows_;
  std::int64_t local_, dp_rank_, dp_size_, accum_;
  std::int64_t consumed_ = 0;
};

}  // namespace titan::data
