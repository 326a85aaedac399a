// The HF tokenizer.json and tiktoken tokenizers against the real `tokenizers` and `tiktoken`
// packages (tests/golden/tokenizers.json, made by scripts/reference/make_tokenizer_assets.py).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <fstream>

#include "core/errors.hpp"
#include "data/bpe.hpp"
#include "test_helpers.hpp"

using namespace titan::data;

namespace {
const nlohmann::json& golden() {
  static const nlohmann::json j = nlohmann::json::parse(std::ifstream(std::string(TITAN_SOURCE_DIR) + "/tests/golden/tokenizers.json"));
  return j;
}
std::string assets(const char* sub) { return std::string(TITAN_SOURCE_DIR) + "/tests/assets/" + sub; }
}  // namespace

TEST_CASE("HF tokenizer.json: ids match the tokenizers package, decode inverts encode") {
  HfBpeTokenizer tok(assets("tokenizer"));
  const auto& meta = golden()["meta"];
  CHECK(tok.vocab_size() == meta["hf_vocab_size"].get<std::int64_t>());
  CHECK(tok.bos_id() == meta["hf_bos"].get<int>());
  CHECK(tok.eos_id() == meta["hf_eos"].get<int>());
  for (const auto& c : golden()["cases"]) {
    const std::string text = c["text"].get<std::string>();
    INFO(text);
    const auto ids = tok.encode(text);
    CHECK(ids == c["hf"].get<std::vector<std::int32_t>>());
    CHECK(tok.decode(ids) == text);
  }
  CHECK(tok.fingerprint().rfind("hf-", 0) == 0);
}

TEST_CASE("tiktoken rank file: ids match the tiktoken package, Llama 3 special tokens follow the ranks") {
  TiktokenTokenizer tok(assets("tiktoken/tokenizer.model"));
  const auto& meta = golden()["meta"];
  CHECK(tok.bos_id() == meta["tiktoken_bos"].get<int>());
  CHECK(tok.eos_id() == meta["tiktoken_eos"].get<int>());
  CHECK(tok.vocab_size() == meta["tiktoken_bos"].get<std::int64_t>() + 256);  // Llama 3 reserves 256 specials
  for (const auto& c : golden()["cases"]) {
    const std::string text = c["text"].get<std::string>();
    INFO(text);
    const auto ids = tok.encode(text);
    CHECK(ids == c["tiktoken"].get<std::vector<std::int32_t>>());
    CHECK(tok.decode(ids) == text);
  }
}

TEST_CASE("regex pre-split covers the text exactly, including invalid UTF-8") {
  RegexSplitter split(kLlama3SplitPattern);
  for (std::string text : {std::string("it's  12345 ok!!\n\n x"), std::string("bad \xff\xfe utf8 \xc3"), std::string("")}) {
    std::string joined;
    for (auto piece : split.split(text)) joined += piece;
    CHECK(joined == text);
  }
  auto pieces = split.split("Hello world 1234");
  CHECK(pieces.size() == 5);  // "Hello", " world", " ", "123", "4"
  CHECK(pieces[3] == "123");
}

TEST_CASE("tokenizer files that cannot be read give clear errors") {
  titan::test::TempFile bad("tokenizer.json", "{\"model\": {\"type\": \"Unigram\"}}");
  const std::string dir = bad.path().substr(0, bad.path().rfind('/'));
  CHECK_THROWS_WITH(HfBpeTokenizer(dir), Catch::Matchers::Contains("Unigram model"));
  titan::test::TempFile notjson("tokenizer.json", "{ not json");
  CHECK_THROWS_WITH(HfBpeTokenizer(notjson.path().substr(0, notjson.path().rfind('/'))), Catch::Matchers::Contains("not valid JSON"));
  titan::test::TempFile badrank("tokenizer.model", "QUJD\n");
  CHECK_THROWS_WITH(TiktokenTokenizer(badrank.path()), Catch::Matchers::Contains("tokenizer.model:1"));
  titan::test::TempFile negrank("tokenizer.model", "Qg== -1\n");
  CHECK_THROWS_WITH(TiktokenTokenizer(negrank.path()), Catch::Matchers::Contains("has no valid rank"));
  titan::test::TempFile nomodel("tokenizer.json", "{\"version\": \"1.0\"}");
  CHECK_THROWS_WITH(HfBpeTokenizer(nomodel.path().substr(0, nomodel.path().rfind('/'))),
                    Catch::Matchers::Contains("is not a tokenizer file titan.cpp can read"));
  auto t = load_tokenizer("auto", assets("tokenizer"));
  CHECK(t->fingerprint().rfind("hf-", 0) == 0);
  CHECK(load_tokenizer("auto", assets("tiktoken"))->fingerprint().rfind("tiktoken-", 0) == 0);
}
