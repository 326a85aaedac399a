#pragma once
// Tokenizers (DESIGN.md section 7). The built-in byte-level tokenizer needs no file: token ids
// 0..255 are the bytes, 256 is BOS and 257 is EOS. Tokenizers from model.hf_assets_path
// (tokenizer.json, tokenizer.model) plug in behind the same interface.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace titan::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Text to ids, without BOS/EOS.
  virtual std::vector<std::int32_t> encode(std::string_view text) const = 0;
  virtual std::string decode(const std::vector<std::int32_t>& ids) const = 0;
  virtual std::int64_t vocab_size() const = 0;
  virtual std::int32_t bos_id() const = 0;
  virtual std::int32_t eos_id() const = 0;
  // Identifies the tokenizer and its vocabulary (keys the tokenization cache, goes in checkpoints).
  virtual std::string fingerprint() const = 0;
};

class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<std::int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<std::int32_t>& ids) const override;
  std::int64_t vocab_size() const override { return 258; }
  std::int32_t bos_id() const override { return 256; }
  std::int32_t eos_id() const override { return 257; }
  std::string fingerprint() const override { return "byte-v1"; }
};

// model.tokenizer = "byte" gives the byte tokenizer; "auto" looks in hf_assets_path for
// tokenizer.json (HF byte-level BPE, preferred) or tokenizer.model (tiktoken). Throws UserError
// naming the folder when it holds neither.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& kind, const std::string& hf_assets_path);

}  // namespace titan::data
