// Tokenizer, token windows and the loader: the stream is a pure function of (data, tokenizer,
// seed), ranks take disjoint slices of each global batch, and bad data gives clear errors.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#include "core/errors.hpp"
#include "data/dataset.hpp"
#include "test_helpers.hpp"

using namespace titan;
using namespace titan::data;
using Catch::Matchers::Contains;
using titan::test::TempFile;

TEST_CASE("byte tokenizer: bytes in, bytes out, BOS/EOS outside the byte range") {
  ByteTokenizer tok;
  const std::string text = "Grüße, \"world\"\n";
  auto ids = tok.encode(text);
  CHECK(ids.size() == text.size());
  CHECK(ids[2] == 0xC3);  // UTF-8 bytes of ü
  CHECK(tok.decode(ids) == text);
  CHECK(tok.bos_id() == 256);
  CHECK(tok.eos_id() == 257);
  CHECK(tok.decode({tok.bos_id(), 'h', 'i', tok.eos_id()}) == "hi");
}

TEST_CASE("token windows: BOS + text + EOS per document, cut into seq_len + 1 windows, shuffled by seed") {
  TempFile f("docs.jsonl", "{\"text\": \"abc\"}\n{\"text\": \"defgh\", \"id\": 2}\n\n{\"text\": \"ij\"}\n");
  ByteTokenizer tok;
  // Stream: B a b c E B d e f g h E B i j E = 16 tokens -> 3 windows of 5.
  TokenWindows w({f.path()}, tok, 4, 1);
  CHECK(w.num_tokens() == 16);
  CHECK(w.num_windows() == 3);
  std::set<std::int64_t> seen;
  for (int p = 0; p < 3; ++p) seen.insert(w.window_at(p));
  CHECK(seen == std::set<std::int64_t>{0, 1, 2});  // an epoch visits every window once
  Tensor in = Tensor::empty({1, 4}, DType::i64), lb = Tensor::empty({4}, DType::i64);
  for (int p = 0; p < 3; ++p) {
    w.fill(p, in, lb, 0);
    if (w.window_at(p) == 1) {  // tokens 5..9: B d e f g -> inputs B d e f, labels d e f g
      CHECK(in.to_vector() == std::vector<double>{256, 'd', 'e', 'f'});
      CHECK(lb.to_vector() == std::vector<double>{'d', 'e', 'f', 'g'});
    }
  }
  // Same seed, same order; the order is a function of the seed.
  TokenWindows again({f.path()}, tok, 4, 1);
  for (int p = 0; p < 9; ++p) CHECK(again.window_at(p) == w.window_at(p));
}

TEST_CASE("shuffle: different seeds and epochs give different orders of the same windows") {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "{\"text\": \"document number " + std::to_string(i) + "\"}\n";
  TempFile f("many.jsonl", text);
  ByteTokenizer tok;
  TokenWindows a({f.path()}, tok, 16, 1), b({f.path()}, tok, 16, 2);
  const std::int64_t n = a.num_windows();
  REQUIRE(n > 50);
  int same_seed = 0, same_epoch = 0;
  for (std::int64_t p = 0; p < n; ++p) {
    same_seed += a.window_at(p) == b.window_at(p);
    same_epoch += a.window_at(p) == a.window_at(p + n);
  }
  CHECK(same_seed < n / 4);
  CHECK(same_epoch < n / 4);
}

TEST_CASE("loader: data-parallel ranks take disjoint slices that together form the single-rank batch") {
  std::string text;
  for (int i = 0; i < 100; ++i) text += "{\"text\": \"sample " + std::to_string(i * 7) + " of the corpus\"}\n";
  TempFile f("d.jsonl", text);
  ByteTokenizer tok;
  TokenWindows w({f.path()}, tok, 8, 3);
  DataLoader single(w, 4, 0, 1, 2);  // local 4, accumulation 2: global 8
  DataLoader r0(w, 2, 0, 2, 2), r1(w, 2, 1, 2, 2);  // 2 ranks x local 2 x accumulation 2: global 8
  CHECK(single.global() == 8);
  CHECK(r0.global() == 8);
  for (int step = 0; step < 3; ++step) {
    std::vector<double> want, got;
    for (int m = 0; m < 2; ++m) {
      auto s = single.micro_batch(m).inputs.to_vector();
      want.insert(want.end(), s.begin(), s.end());
      for (DataLoader* r : {&r0, &r1}) {
        auto g = r->micro_batch(m).inputs.to_vector();
        got.insert(got.end(), g.begin(), g.end());
      }
    }
    std::multiset<double> a(want.begin(), want.end()), b(got.begin(), got.end());
    CHECK(a == b);  // the same windows, split differently
    single.advance();
    r0.advance();
    r1.advance();
  }
  CHECK(single.windows_consumed() == 24);
}

TEST_CASE("dataset errors name the file and line") {
  ByteTokenizer tok;
  TempFile bad("bad.jsonl", "{\"text\": \"ok\"}\nnot json\n");
  CHECK_THROWS_WITH(TokenWindows({bad.path()}, tok, 2, 0), Contains("bad.jsonl:2 is not valid JSON"));
  TempFile notext("nt.jsonl", "{\"body\": \"x\"}\n");
  CHECK_THROWS_WITH(TokenWindows({notext.path()}, tok, 2, 0), Contains("nt.jsonl:1 has no string \"text\" field"));
  TempFile tiny("tiny.jsonl", "{\"text\": \"x\"}\n");
  CHECK_THROWS_WITH(TokenWindows({tiny.path()}, tok, 64, 0), Contains("fewer than one window"));
  CHECK_THROWS_WITH(resolve_dataset_files("c4_test", "/no/such/data"), Contains("does not exist"));
  CHECK_THROWS_WITH(resolve_dataset_files("wikipedia", ""), Contains("set training.dataset_path"));
  CHECK_THROWS_AS(load_tokenizer("auto", "/no/such/folder"), UserError);
  CHECK(resolve_dataset_files("c4_test", "").size() == 1);
}

TEST_CASE("token files: written tokens read back; the same windows as the text they came from") {
  std::string text;
  for (int i = 0; i < 50; ++i) text += "{\"text\": \"line " + std::to_string(i) + " of text\"}\n";
  TempFile f("t.jsonl", text);
  ByteTokenizer tok;
  const auto tokens = tokenize_documents({f.path()}, tok);
  const std::string tok_path = f.path() + ".tokens";
  write_token_file(tok_path, tokens, tok.vocab_size());
  CHECK(read_token_file(tok_path, tok.vocab_size()) == tokens);
  TokenWindows from_text({f.path()}, tok, 8, 4, false), from_tokens({tok_path}, tok, 8, 4, false);
  REQUIRE(from_text.num_windows() == from_tokens.num_windows());
  Tensor a = Tensor::empty({1, 8}, DType::i64), al = Tensor::empty({8}, DType::i64);
  Tensor b = Tensor::empty({1, 8}, DType::i64), bl = Tensor::empty({8}, DType::i64);
  for (std::int64_t p = 0; p < from_text.num_windows(); ++p) {
    from_text.fill(p, a, al, 0);
    from_tokens.fill(p, b, bl, 0);
    CHECK(a.to_vector() == b.to_vector());
  }
  CHECK_THROWS_WITH(read_token_file(tok_path, 100), Contains("more than the model's tokenizer has"));
  TempFile truncated("bad.tokens", std::string("TITANTOK\x01\0\0\0\x02\0\0\0\x10\0\0\0\0\0\0\0\x02\x01\0\0\0\0\0\0", 32) + "ab");
  CHECK_THROWS_WITH(read_token_file(truncated.path(), 1000), Contains("is truncated"));
  TempFile junk("junk.tokens", "not a token file at all, just text....");
  CHECK_THROWS_WITH(read_token_file(junk.path(), 1000), Contains("is not a titan.cpp token file"));
}

TEST_CASE("tokenization cache: written next to the data, reused, keyed by the tokenizer") {
  std::string text;
  for (int i = 0; i < 30; ++i) text += "{\"text\": \"cached document " + std::to_string(i) + "\"}\n";
  TempFile f("c.jsonl", text);
  ByteTokenizer byte_tok;
  TokenWindows first({f.path()}, byte_tok, 8, 1);
  CHECK(!first.from_cache());
  TokenWindows second({f.path()}, byte_tok, 8, 1);
  CHECK(second.from_cache());
  CHECK(second.num_tokens() == first.num_tokens());
  for (std::int64_t p = 0; p < first.num_windows(); ++p) CHECK(second.window_at(p) == first.window_at(p));
  auto hf = load_tokenizer("auto", std::string(TITAN_SOURCE_DIR) + "/tests/assets/tokenizer");
  TokenWindows other({f.path()}, *hf, 4, 1);
  CHECK(!other.from_cache());  // another tokenizer: another cache entry
  CHECK(other.num_tokens() < first.num_tokens());
}

TEST_CASE("review fixes: the cache folder is not data; token files are range-checked") {
  TempFile f("a.jsonl", "{\"text\": \"first document of the folder\"}\n{\"text\": \"second one\"}\n");
  const std::string dir = f.path().substr(0, f.path().rfind('/'));
  ByteTokenizer tok;
  TokenWindows first(resolve_dataset_files("", dir), tok, 4, 1);
  TokenWindows second(resolve_dataset_files("", dir), tok, 4, 1);  // the cache now exists in dir/.titan_cache
  CHECK(second.from_cache());
  CHECK(second.num_tokens() == first.num_tokens());
  CHECK(resolve_dataset_files("", dir).size() == 1);
  const std::string bad = dir + "/bad.tokens";
  write_token_file(bad, {1, 2, 300}, 258);  // 300 is outside the 258-token vocabulary it claims
  CHECK_THROWS_WITH(read_token_file(bad, 258), Contains("holds token 300 at position 2"));
}

// ---------------- issue 19: token files and the tokenization cache ----------------

TEST_CASE("token files: a body longer than the header says is 'trailing bytes', not 'truncated'") {
  ByteTokenizer tok;
  TempFile f("t.jsonl", "{\"text\": \"some text\"}\n");
  const std::string path = f.path() + ".tokens";
  write_token_file(path, {256, 1, 2, 257}, tok.vocab_size());
  { std::ofstream(path, std::ios::binary | std::ios::app) << "xyz"; }  // 3 bytes appended
  const std::string msg = [&] {
    try {
      read_token_file(path, tok.vocab_size());
    } catch (const UserError& e) {
      return std::string(e.what());
    }
    return std::string();
  }();
  CHECK_THAT(msg, Contains("has 3 trailing bytes after the 4 tokens its header counts (header count mismatch"));
  CHECK_THAT(msg, Contains("re-create it with tokenize_dataset"));
  CHECK_THAT(msg, !Contains("truncated"));
}

TEST_CASE("tokenization cache: a corrupt cache file says to delete it, naming it") {
  std::string text;
  for (int i = 0; i < 20; ++i) text += "{\"text\": \"cache me " + std::to_string(i) + "\"}\n";
  TempFile f("c.jsonl", text);
  ByteTokenizer tok;
  TokenWindows first({f.path()}, tok, 4, 1);
  const auto cache_dir = std::filesystem::path(f.path()).parent_path() / ".titan_cache";
  std::string cache;
  for (const auto& e : std::filesystem::directory_iterator(cache_dir)) cache = e.path().string();
  REQUIRE(!cache.empty());
  for (const std::string& junk : {std::string("garbage"), std::string("TITANTOK\x01\0\0\0\x02\0\0\0\x09\0\0\0\0\0\0\0\x02\x01\0\0\0\0\0\0", 32)}) {
    std::ofstream(cache, std::ios::binary | std::ios::trunc) << junk;
    try {
      TokenWindows again({f.path()}, tok, 4, 1);
      FAIL("a corrupt cache was accepted");
    } catch (const UserError& e) {
      const std::string msg = e.what();
      CHECK_THAT(msg, Contains("tokenization cache '" + cache + "'"));
      CHECK_THAT(msg, Contains("delete it (rm '" + cache + "') and rerun"));
      CHECK(msg.find('\n') == std::string::npos);
    }
  }
  std::filesystem::remove(cache);
  TokenWindows rebuilt({f.path()}, tok, 4, 1);  // deleting it is the fix
  CHECK(!rebuilt.from_cache());
  CHECK(rebuilt.num_tokens() == first.num_tokens());
}

TEST_CASE("every bad .tokens file of tests/bad_inputs is one clear line naming the file") {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::string(TITAN_SOURCE_DIR) + "/tests/bad_inputs/tokenizers")) {
    const std::string path = e.path().string();
    if (e.path().extension() != ".tokens" || e.path().filename().string().rfind("tokens_", 0) != 0) continue;
    std::string expect;
    {
      std::ifstream in(path + ".expect");
      std::getline(in, expect);
    }
    INFO(path);
    std::string msg;
    try {
      read_token_file(path, 300);
    } catch (const UserError& err) {
      msg = err.what();
    }
    CHECK_THAT(msg, Contains(expect));
    CHECK_THAT(msg, Contains(path));
    CHECK(msg.find('\n') == std::string::npos);
    // The same bytes from memory (the fuzz entry point) give the same line.
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string mem;
    try {
      parse_token_file(bytes, path, 300);
    } catch (const UserError& err) {
      mem = err.what();
    }
    CHECK(mem == msg);
    ++n;
  }
  CHECK(n >= 15);
}

TEST_CASE("dataset folders: listing errors and a folder without data are clear lines") {
  TempFile f("notes.md", "not data");
  const std::string dir = f.path().substr(0, f.path().rfind('/'));
  CHECK_THROWS_WITH(resolve_dataset_files("", dir), Contains("holds no .jsonl, .json, .txt or .tokens files"));
  CHECK_THROWS_WITH(read_token_file(dir, 300), Contains("is not a regular file"));
  CHECK_THROWS_WITH(read_token_file(dir + "/none.tokens", 300), Contains("does not exist"));
}
