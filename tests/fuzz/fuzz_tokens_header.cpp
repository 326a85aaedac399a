// libFuzzer target: .tokens files (32-byte header + tokens, src/data/dataset.hpp), read from
// memory with parse_token_file against a tokenizer of 300 and of 70,000 tokens. A bad file must be
// a titan::UserError; any other exception, crash or sanitizer report is a bug. When it loads,
// every token must lie inside the vocabulary the header names.
#include <cstdint>
#include <cstring>
#include <string_view>

#include "data/dataset.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (std::int64_t max_vocab : {std::int64_t{300}, std::int64_t{70000}}) {
    titan::fuzz::run_one([&] {
      const auto tokens = titan::data::parse_token_file(bytes, "fuzz.tokens", max_vocab);
      std::uint64_t vocab = 0;
      std::memcpy(&vocab, data + 24, 8);  // it loaded, so the header is there
      for (auto t : tokens)
        titan::fuzz::expect(t >= 0 && static_cast<std::uint64_t>(t) < vocab && t < max_vocab,
                            "a token outside the vocabulary");
    });
  }
  return 0;
}
