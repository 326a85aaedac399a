// libFuzzer target: tiktoken rank file parsing and validation ('<base64 token> <rank>' lines).
// A bad file must be a titan::UserError; any other exception, crash or sanitizer report is a bug.
// When the file loads, a short text must encode to ids inside the vocabulary and decode back.
#include <cstdint>
#include <string>

#include "data/bpe.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  return titan::fuzz::run_one([&] {
    auto tok = titan::data::TiktokenTokenizer::from_string(bytes, "fuzz/tokenizer.model");
    const std::string text = "Hello, world! abc 123 \xc3\xa9t\xc3\xa9 <|begin_of_text|>\n\t \xff\xfe x";
    const auto ids = tok->encode(text);
    for (auto id : ids) titan::fuzz::expect(id >= 0 && id < tok->vocab_size(), "encode gave an id outside the vocabulary");
    // Every byte is a token, so the ids always decode back to the text.
    titan::fuzz::expect(tok->decode(ids) == text, "decode(encode(text)) != text");
  });
}
