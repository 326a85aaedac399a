// bench_tokenizer: BPE encoding speed of the HF tokenizer.json and tiktoken tokenizers on one
// unbroken pre-tokenized word (10 KB, 100 KB, 1 MB of letters: the case that was quadratic) and
// on ordinary text (the shipped C4-style corpus). Prints bytes, tokens, seconds and tokens/s.
//   bench_tokenizer [--hf_assets_path tests/assets/tokenizer] [--tiktoken tests/assets/tiktoken/tokenizer.model]
//                   [--text tests/assets/c4_test/c4_test.jsonl] [--sizes 10240,102400,1048576] [--repeat 3]
//                   [--baseline_max_bytes 10240]
// Inputs up to --baseline_max_bytes are also encoded with the O(n^2) merge the tokenizers used
// before (BpeMerger::merge_quadratic, same ids), for the "baseline s" and "speedup" columns.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <memory>

#include "core/errors.hpp"
#include "data/bpe.hpp"

namespace {

// Pseudo-random lowercase letters: one \p{L}+ match, so the pre-tokenizer hands BPE a single word.
std::string unbroken_word(size_t bytes) {
  std::string s(bytes, 'a');
  std::uint64_t x = 0x9E3779B97F4A7C15ull;
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>('a' + x % 26);
  }
  return s;
}

std::string corpus_text(const std::string& path, size_t max_bytes) {
  std::ifstream in(path);
  if (!in) throw titan::UserError("bench_tokenizer: cannot read '" + path + "'");
  std::string text, line;
  while (text.size() < max_bytes && std::getline(in, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("text") && j["text"].is_string()) text += j["text"].get<std::string>() + "\n";
  }
  return text;
}

double best_seconds(const titan::data::Tokenizer& tok, const std::string& text, int repeat, size_t& tokens) {
  double best = 1e300;
  for (int r = 0; r < repeat; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    tokens = tok.encode(text).size();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

struct Bench {
  const char* name;
  std::unique_ptr<titan::data::Tokenizer> tok;
  std::function<void(bool)> quadratic;  // switches the tokenizer to the O(n^2) baseline merge
};

void run(Bench& b, const std::string& label, const std::string& text, int repeat, size_t baseline_max) {
  size_t tokens = 0, base_tokens = 0;
  const double s = best_seconds(*b.tok, text, repeat, tokens);
  std::printf("%-9s %-22s %10zu %10zu %10.4f %12.0f", b.name, label.c_str(), text.size(), tokens, s,
              static_cast<double>(tokens) / std::max(s, 1e-9));
  if (text.size() <= baseline_max) {
    b.quadratic(true);
    const double q = best_seconds(*b.tok, text, 1, base_tokens);
    b.quadratic(false);
    if (base_tokens != tokens) throw std::runtime_error("the baseline merge gave another token count");
    std::printf(" %12.4f %9.0fx", q, q / std::max(s, 1e-9));
  } else {
    std::printf(" %12s %10s", "-", "-");
  }
  std::printf("\n");
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_tokenizer: BPE encoding speed on long unbroken words and ordinary text"};
  std::string hf = "tests/assets/tokenizer", tiktoken = "tests/assets/tiktoken/tokenizer.model";
  std::string text_path = "tests/assets/c4_test/c4_test.jsonl";
  std::vector<size_t> sizes = {10 * 1024, 100 * 1024, 1024 * 1024};
  int repeat = 3;
  size_t baseline_max = 10 * 1024;
  app.add_option("--hf_assets_path", hf, "folder with tokenizer.json (empty: skip)");
  app.add_option("--tiktoken", tiktoken, "tiktoken rank file (empty: skip)");
  app.add_option("--text", text_path, "JSONL corpus for the ordinary-text case (empty: skip)");
  app.add_option("--sizes", sizes, "unbroken word sizes in bytes")->delimiter(',');
  app.add_option("--repeat", repeat, "runs per case (the best is shown)")->check(CLI::Range(1, 100));
  app.add_option("--baseline_max_bytes", baseline_max,
                 "also time the O(n^2) baseline merge (one run) on inputs up to this size; it takes ~46 s at 100 KB");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "error: bench_tokenizer: %s\n", e.what());
    return titan::kExitUsageError;
  }
  try {
    std::vector<Bench> benches;
    if (!hf.empty()) {
      auto t = std::make_unique<titan::data::HfBpeTokenizer>(hf);
      auto* p = t.get();
      benches.push_back({"hf", std::move(t), [p](bool on) { p->use_quadratic_merge(on); }});
    }
    if (!tiktoken.empty()) {
      auto t = std::make_unique<titan::data::TiktokenTokenizer>(tiktoken);
      auto* p = t.get();
      benches.push_back({"tiktoken", std::move(t), [p](bool on) { p->use_quadratic_merge(on); }});
    }
    // The C4-style corpus as one text; it is far larger than the default baseline limit, so
    // give --baseline_max_bytes 4194304 to time the baseline on it too.
    const std::string text = text_path.empty() ? std::string() : corpus_text(text_path, 4u << 20);
    std::printf("%-9s %-22s %10s %10s %10s %12s %12s %10s\n", "tokenizer", "input", "bytes", "tokens", "seconds", "tokens/s",
                "baseline s", "speedup");
    for (auto& b : benches) {
      for (size_t n : sizes) {
        char label[64];
        if (n % (1024 * 1024) == 0)
          std::snprintf(label, sizeof label, "unbroken word %zu MB", n / (1024 * 1024));
        else if (n % 1024 == 0)
          std::snprintf(label, sizeof label, "unbroken word %zu KB", n / 1024);
        else
          std::snprintf(label, sizeof label, "unbroken word %zu B", n);
        run(b, label, unbroken_word(n), repeat, baseline_max);
      }
      if (!text.empty()) run(b, "ordinary text (C4)", text, repeat, baseline_max);
    }
    return 0;
  } catch (const titan::UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.exit_code();
  }
}
