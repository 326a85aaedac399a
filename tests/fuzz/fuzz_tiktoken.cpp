// libFuzzer target: tiktoken rank file parsing and validation ('<base64 token> <rank>' lines).
// A bad file must be a titan::UserError; any other exception, crash or sanitizer report is a bug.
// When the file loads, a short text must encode to ids inside the vocabulary and decode back.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "core/errors.hpp"
#include "data/bpe.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    auto tok = titan::data::TiktokenTokenizer::from_string(bytes, "fuzz/tokenizer.model");
    const std::string text = "Hello, world! abc 123 \xc3\xa9t\xc3\xa9 <|begin_of_text|>\n\t \xff\xfe x";
    const auto ids = tok->encode(text);
    for (auto id : ids)
      if (id < 0 || id >= tok->vocab_size()) {
        std::fprintf(stderr, "encode produced id %d outside the vocabulary of %lld\n", id, static_cast<long long>(tok->vocab_size()));
        std::abort();
      }
    // Every byte is a token, so the ids always decode back to the text.
    if (tok->decode(ids) != text) {
      std::fprintf(stderr, "decode(encode(text)) != text\n");
      std::abort();
    }
  } catch (const titan::UserError&) {
    // expected for bad input
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception (not a UserError): %s\n", e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "unexpected non-standard exception\n");
    std::abort();
  }
  return 0;
}
