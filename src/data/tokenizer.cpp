#include "data/tokenizer.hpp"

#include <filesystem>

#include "core/errors.hpp"
#include "data/bpe.hpp"

namespace titan::data {

std::vector<std::int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<std::int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<std::int32_t>& ids) const {
  std::string out;
  for (auto id : ids)
    if (id >= 0 && id < 256) out.push_back(static_cast<char>(id));  // BOS/EOS decode to nothing
  return out;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& kind, const std::string& hf_assets_path) {
  if (kind == "byte") return std::make_unique<ByteTokenizer>();
  namespace fs = std::filesystem;
  const fs::path dir(hf_assets_path);
  if (fs::exists(dir / "tokenizer.json")) return std::make_unique<HfBpeTokenizer>(dir.string());
  if (fs::exists(dir / "tokenizer.model")) return std::make_unique<TiktokenTokenizer>((dir / "tokenizer.model").string());
  throw UserError("model.hf_assets_path = \"" + hf_assets_path +
                  "\" holds no tokenizer.json or tokenizer.model; point it at such a folder, or set "
                  "model.tokenizer = \"byte\" for the built-in byte-level tokenizer");
}

}  // namespace titan::data
