// tokenize_dataset: pre-tokenizes a corpus into a titan.cpp token file (format in
// src/data/dataset.hpp and docs/training.md), for training.dataset_path.
//   tokenize_dataset --input data/ --output data.tokens [--hf_assets_path tests/assets/tokenizer | --tokenizer byte]
// Every failure is one "error: ..." line on stderr: exit 2 for a mistake the user can fix (usage,
// paths, a bad tokenizer or corpus), 3 for a tokenizer this build cannot read yet, 1 otherwise.
// The input is never written: an --output that is (or names the same file as) an input refuses.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <new>

#include "core/errors.hpp"
#include "data/dataset.hpp"

namespace fs = std::filesystem;
using titan::UserError;

namespace {

// Whether `a` and `b` name the same file: the same inode when both exist, else the same
// normalized absolute path (so "data/./c.jsonl", "data/../data/c.jsonl" and a symlink all match).
bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec)) {
    const bool eq = fs::equivalent(a, b, ec);
    if (!ec) return eq;
  }
  const fs::path ca = fs::weakly_canonical(a, ec);
  if (ec) return false;
  const fs::path cb = fs::weakly_canonical(b, ec);
  return !ec && ca == cb;
}

int run(int argc, char** argv) {
  CLI::App app{"Pre-tokenize JSONL/text files into a titan.cpp .tokens file"};
  std::string input, output, assets = "./tests/assets/tokenizer", kind = "auto";
  app.add_option("--input", input, "JSONL/text file or folder of them")->required();
  app.add_option("--output", output, "token file to write (.tokens)")->required();
  app.add_option("--hf_assets_path", assets, "folder with tokenizer.json or tokenizer.model");
  app.add_option("--tokenizer", kind, "auto or byte")->check(CLI::IsMember({"auto", "byte"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    throw UserError(std::string("tokenize_dataset: ") + titan::printable(e.what(), 200) +
                    " (usage: tokenize_dataset --input FILE_OR_FOLDER --output FILE.tokens [--hf_assets_path DIR | "
                    "--tokenizer byte]; --help lists the options)");
  }
  if (output.empty()) throw UserError("tokenize_dataset: --output is empty; name the .tokens file to write");
  std::error_code ec;
  if (fs::is_directory(output, ec))
    throw UserError("tokenize_dataset: --output '" + titan::printable(output, 200) +
                    "' is a folder; name the .tokens file to write (e.g. " + titan::printable(output, 200) + "/corpus.tokens)");
  // Before anything is read or written: the output must not be the input or one of its files.
  if (same_file(input, output))
    throw UserError("tokenize_dataset: --output '" + titan::printable(output, 200) + "' is the input file '" +
                    titan::printable(input, 200) + "'; writing it would destroy the corpus: choose another --output");
  const std::vector<std::string> files = titan::data::resolve_dataset_files("", input);
  std::vector<std::string> text_files;
  std::size_t skipped = 0;
  for (const auto& f : files) {
    if (same_file(f, output))
      throw UserError("tokenize_dataset: --output '" + titan::printable(output, 200) + "' is the input file '" +
                      titan::printable(f, 200) + "'; writing it would destroy the corpus: choose another --output");
    if (fs::path(f).extension() == ".tokens")
      ++skipped;
    else
      text_files.push_back(f);
  }
  if (text_files.empty())
    throw UserError("tokenize_dataset: the input '" + titan::printable(input, 200) +
                    "' is already tokenized (.tokens files only); train from it directly with training.dataset_path, "
                    "or point --input at JSONL/text files");
  if (skipped)
    std::fprintf(stderr, "note: skipping %zu .tokens file(s) of the input: they are already tokenized\n", skipped);
  auto tok = titan::data::load_tokenizer(kind, assets);
  const auto tokens = titan::data::tokenize_documents(text_files, *tok);
  titan::data::write_token_file(output, tokens, tok->vocab_size());
  std::printf("wrote %s: %zu tokens from %zu files (vocabulary %lld)\n", output.c_str(), tokens.size(), text_files.size(),
              static_cast<long long>(tok->vocab_size()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Whatever goes wrong is one line; nothing escapes as an abort (exit 134).
  try {
    return run(argc, argv);
  } catch (const UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: tokenize_dataset: out of memory; tokenize the corpus in smaller parts\n");
  } catch (const fs::filesystem_error& e) {
    std::fprintf(stderr, "error: tokenize_dataset: file system error on '%s': %s\n", titan::printable(e.path1().string(), 200).c_str(),
                 e.code().message().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: tokenize_dataset: internal error: %s (please report it)\n", titan::printable(e.what(), 200).c_str());
  } catch (...) {
    std::fprintf(stderr, "error: tokenize_dataset: internal error (unknown exception; please report it)\n");
  }
  return titan::kExitRuntimeError;
}
