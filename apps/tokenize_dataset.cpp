// tokenize_dataset: pre-tokenizes a corpus into a titan.cpp token file (format in
// src/data/dataset.hpp and docs/training.md), for training.dataset_path.
//   tokenize_dataset --input data/ --output data.tokens [--hf_assets_path tests/assets/tokenizer | --tokenizer byte]
#include <CLI/CLI.hpp>

#include <cstdio>

#include "core/errors.hpp"
#include "data/dataset.hpp"

int main(int argc, char** argv) {
  CLI::App app{"Pre-tokenize JSONL/text files into a titan.cpp .tokens file"};
  std::string input, output, assets = "./tests/assets/tokenizer", kind = "auto";
  app.add_option("--input", input, "JSONL/text file or folder of them")->required();
  app.add_option("--output", output, "token file to write (.tokens)")->required();
  app.add_option("--hf_assets_path", assets, "folder with tokenizer.json or tokenizer.model");
  app.add_option("--tokenizer", kind, "auto or byte")->check(CLI::IsMember({"auto", "byte"}));
  CLI11_PARSE(app, argc, argv);
  try {
    auto tok = titan::data::load_tokenizer(kind, assets);
    std::vector<std::string> text_files;
    for (const auto& f : titan::data::resolve_dataset_files("", input))
      if (!f.ends_with(".tokens")) text_files.push_back(f);
    const auto tokens = titan::data::tokenize_documents(text_files, *tok);
    titan::data::write_token_file(output, tokens, tok->vocab_size());
    std::printf("wrote %s: %zu tokens from %zu files (vocabulary %lld)\n", output.c_str(), tokens.size(), text_files.size(),
                static_cast<long long>(tok->vocab_size()));
    return 0;
  } catch (const titan::UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.exit_code();
  }
}
