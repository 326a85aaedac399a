// libFuzzer target: .tokens files (32-byte header + tokens, src/data/dataset.hpp), read from
// memory with parse_token_file against a tokenizer of 300 and of 70,000 tokens. A bad file must be
// a titan::UserError; any other exception, crash or sanitizer report is a bug. When it loads,
// every token must lie inside the vocabulary the header names.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string_view>

#include "core/errors.hpp"
#include "data/dataset.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (std::int64_t max_vocab : {std::int64_t{300}, std::int64_t{70000}}) {
    try {
      const auto tokens = titan::data::parse_token_file(bytes, "fuzz.tokens", max_vocab);
      std::uint64_t vocab = 0;
      std::memcpy(&vocab, data + 24, 8);  // it loaded, so the header is there
      for (auto t : tokens)
        if (t < 0 || static_cast<std::uint64_t>(t) >= vocab || t >= max_vocab) {
          std::fprintf(stderr, "token %d outside the vocabulary\n", t);
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
  }
  return 0;
}
