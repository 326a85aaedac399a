// libFuzzer target: HF tokenizer.json (and tokenizer_config.json) parsing and validation.
// Input: tokenizer.json bytes, optionally followed by a NUL byte and tokenizer_config.json bytes.
// A bad file must be a titan::UserError; any other exception, crash or sanitizer report is a bug.
// When the file loads, a short text must encode, decode and round-trip through the ids.
#include <cstdint>
#include <string>

#include "data/bpe.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  const std::size_t nul = bytes.find('\0');
  const std::string json = bytes.substr(0, nul);
  const std::string config = nul == std::string::npos ? std::string() : bytes.substr(nul + 1);
  return titan::fuzz::run_one([&] {
    auto tok = titan::data::HfBpeTokenizer::from_string(json, config, "fuzz/tokenizer.json");
    const std::string text = "Hello, world! the abc 123 \xc3\xa9t\xc3\xa9 <|end_of_text|>\n\t x";
    const auto ids = tok->encode(text);
    for (auto id : ids) titan::fuzz::expect(id >= 0 && id < tok->vocab_size(), "encode gave an id outside the vocabulary");
    (void)tok->decode(ids);
    titan::fuzz::expect(tok->bos_id() >= 0 && tok->bos_id() < tok->vocab_size() && tok->eos_id() >= 0 &&
                            tok->eos_id() < tok->vocab_size(),
                        "BOS/EOS outside the vocabulary");
  });
}
