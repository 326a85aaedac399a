#include "data/dataset.hpp"

#include <nlohmann/json.hpp>

#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "core/errors.hpp"
#include "core/rng.hpp"

#ifndef TITAN_SOURCE_DIR
#define TITAN_SOURCE_DIR "."
#endif

namespace titan::data {

namespace fs = std::filesystem;

namespace {

bool is_data_file(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".jsonl" || ext == ".json" || ext == ".txt" || ext == ".tokens";
}

bool is_token_file(const std::string& path) { return fs::path(path).extension() == ".tokens"; }

constexpr char kMagic[8] = {'T', 'I', 'T', 'A', 'N', 'T', 'O', 'K'};

// Cache file for the tokenization of `files` by `tok`: keyed by their paths, sizes, mtimes and
// the tokenizer's fingerprint, so any change to either makes a new key.
fs::path cache_path(const std::vector<std::string>& files, const Tokenizer& tok) {
  std::string key = tok.fingerprint();
  for (const auto& f : files) {
    std::error_code ec;
    key += "|" + fs::absolute(f, ec).string() + ":" + std::to_string(fs::file_size(f, ec)) + ":" +
           std::to_string(fs::last_write_time(f, ec).time_since_epoch().count());
  }
  char name[40];
  std::snprintf(name, sizeof name, "%016llx.tokens", static_cast<unsigned long long>(XXH3_64bits(key.data(), key.size())));
  return fs::path(files.front()).parent_path() / ".titan_cache" / name;
}

// Calls f(text) for every document in `file`.
template <class F>
void for_each_document(const std::string& file, F&& f) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw UserError("dataset: cannot read '" + file + "'");
  if (fs::path(file).extension() == ".txt") {
    std::stringstream ss;
    ss << in.rdbuf();
    f(ss.str());
    return;
  }
  std::string line;
  std::int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const std::exception&) {
      throw UserError("dataset: " + file + ":" + std::to_string(line_no) + " is not valid JSON (expected one {\"text\": ...} object per line)");
    }
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
      throw UserError("dataset: " + file + ":" + std::to_string(line_no) + " has no string \"text\" field");
    f(j["text"].get<std::string>());
  }
}

}  // namespace

void write_token_file(const std::string& path, const std::vector<std::int32_t>& tokens, std::int64_t vocab_size) {
  const std::uint32_t version = 1, width = vocab_size <= 65536 ? 2 : 4;
  const std::uint64_t count = tokens.size(), vocab = static_cast<std::uint64_t>(vocab_size);
  // A per-process temporary name: several ranks may write the same cache entry at once.
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(kMagic, 8);
    out.write(reinterpret_cast<const char*>(&version), 4);
    out.write(reinterpret_cast<const char*>(&width), 4);
    out.write(reinterpret_cast<const char*>(&count), 8);
    out.write(reinterpret_cast<const char*>(&vocab), 8);
    if (width == 2) {
      std::vector<std::uint16_t> narrow(tokens.begin(), tokens.end());
      out.write(reinterpret_cast<const char*>(narrow.data()), static_cast<std::streamsize>(narrow.size() * 2));
    } else {
      out.write(reinterpret_cast<const char*>(tokens.data()), static_cast<std::streamsize>(tokens.size() * 4));
    }
    if (!out) {
      const std::string why = std::strerror(errno);
      std::error_code ec;
      out.close();
      fs::remove(tmp, ec);
      throw UserError("dataset: cannot write token file '" + printable(path, 200) + "' (" + why +
                      "); check the folder exists, is writable and has space");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);  // atomic: a reader never sees a half-written file
  if (ec) {
    const std::string why = ec.message();
    fs::remove(tmp, ec);
    throw UserError("dataset: cannot write token file '" + printable(path, 200) + "' (" + why + ")");
  }
}

namespace {

// How errors name a token file and what they tell the user to do: a user's .tokens file is
// re-created with tokenize_dataset, a corrupt tokenization cache is deleted.
struct TokenFileKind {
  std::string name;  // "token file 'x'" or "tokenization cache 'x'"
  std::string fix;
};
TokenFileKind token_file_kind(const std::string& path, bool cache) {
  const std::string quoted = "'" + printable(path, 200) + "'";
  if (cache)
    return {"tokenization cache " + quoted,
            "the cache is corrupt: delete it (rm " + quoted + ") and rerun; it is rebuilt from the data"};
  return {"token file " + quoted, "re-create it with tokenize_dataset"};
}

TokenFileHeader check_header(std::string_view head, std::uint64_t file_size, const TokenFileKind& k,
                             std::int64_t max_vocab_size) {
  const std::string& name = k.name;
  if (head.size() < 32 || std::memcmp(head.data(), kMagic, 8) != 0)
    throw UserError("dataset: " + name + " is not a titan.cpp token file (" +
                    (head.size() < 32 ? std::to_string(file_size) + " bytes, shorter than the 32-byte header"
                                      : std::string("it does not start with TITANTOK")) +
                    "); " + k.fix + " (format in docs/training.md)");
  TokenFileHeader h;
  std::memcpy(&h.version, head.data() + 8, 4);
  std::memcpy(&h.width, head.data() + 12, 4);
  std::memcpy(&h.count, head.data() + 16, 8);
  std::memcpy(&h.vocab, head.data() + 24, 8);
  if (h.version != 1)
    throw UserError("dataset: token file " + name + " has format version " + std::to_string(h.version) +
                    "; this build reads version 1: " + k.fix);
  if (h.width != 2 && h.width != 4)
    throw UserError("dataset: token file " + name + " says " + std::to_string(h.width) +
                    " bytes per token (2 or 4 expected): the header is damaged; " + k.fix);
  const std::uint64_t body = file_size - 32;
  if (h.count > body / h.width)
    throw UserError("dataset: token file " + name + " is truncated: the header promises " + std::to_string(h.count) +
                    " tokens (" + std::to_string(h.width) + " bytes each) but the file holds " + std::to_string(body) +
                    " bytes after the header; " + k.fix);
  if (body != h.count * h.width)
    throw UserError("dataset: token file " + name + " has " + std::to_string(body - h.count * h.width) +
                    " trailing bytes after the " + std::to_string(h.count) +
                    " tokens its header counts (header count mismatch: something was appended, or the header is "
                    "wrong); " + k.fix);
  if (h.vocab > static_cast<std::uint64_t>(std::max<std::int64_t>(max_vocab_size, 0)))
    throw UserError("dataset: token file " + name + " was made by a tokenizer with " + std::to_string(h.vocab) +
                    " tokens, more than the model's tokenizer has (" + std::to_string(max_vocab_size) +
                    "); " + (k.fix.rfind("re-create", 0) == 0 ? std::string("re-tokenize the corpus with the model's tokenizer") : k.fix));
  return h;
}

void check_token_range(const std::vector<std::int32_t>& tokens, std::uint64_t vocab, const TokenFileKind& k) {
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || static_cast<std::uint64_t>(tokens[i]) >= vocab)
      throw UserError("dataset: " + k.name + " holds token " + std::to_string(tokens[i]) + " at position " +
                      std::to_string(i) + ", outside its vocabulary of " + std::to_string(vocab) + "; the file is damaged: " +
                      k.fix);
}

std::vector<std::int32_t> read_tokens(const std::string& path, std::int64_t max_vocab_size, bool cache) {
  const TokenFileKind k = token_file_kind(path, cache);
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw UserError("dataset: " + k.name + " " + (fs::exists(path, ec) ? "is not a regular file" : "does not exist") +
                    "; check training.dataset_path");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw UserError("dataset: cannot read " + k.name + " (" + std::strerror(errno) + ")");
  const std::uint64_t size = static_cast<std::uint64_t>(in.tellg());
  in.seekg(0);
  char head[32] = {};
  const std::size_t head_size = static_cast<std::size_t>(std::min<std::uint64_t>(size, 32));
  in.read(head, static_cast<std::streamsize>(head_size));
  const TokenFileHeader h = check_header(std::string_view(head, head_size), size, k, max_vocab_size);
  std::vector<std::int32_t> tokens(h.count);
  if (h.width == 2) {
    std::vector<std::uint16_t> narrow(h.count);
    in.read(reinterpret_cast<char*>(narrow.data()), static_cast<std::streamsize>(h.count * 2));
    std::copy(narrow.begin(), narrow.end(), tokens.begin());
  } else {
    in.read(reinterpret_cast<char*>(tokens.data()), static_cast<std::streamsize>(h.count * 4));
  }
  if (!in) throw UserError("dataset: cannot read " + k.name + " (I/O error while reading its tokens)");
  check_token_range(tokens, h.vocab, k);
  return tokens;
}

}  // namespace

TokenFileHeader check_token_header(std::string_view head, std::uint64_t file_size, const std::string& path,
                                   std::int64_t max_vocab_size) {
  return check_header(head, file_size, token_file_kind(path, false), max_vocab_size);
}

std::vector<std::int32_t> parse_token_file(std::string_view bytes, const std::string& name, std::int64_t max_vocab_size) {
  const TokenFileKind k = token_file_kind(name, false);
  const TokenFileHeader h = check_header(bytes.substr(0, std::min<std::size_t>(bytes.size(), 32)), bytes.size(), k, max_vocab_size);
  std::vector<std::int32_t> tokens(h.count);
  const char* body = bytes.data() + 32;
  for (std::uint64_t i = 0; i < h.count; ++i) {
    if (h.width == 2) {
      std::uint16_t v;
      std::memcpy(&v, body + 2 * i, 2);
      tokens[i] = v;
    } else {
      std::memcpy(&tokens[i], body + 4 * i, 4);
    }
  }
  check_token_range(tokens, h.vocab, k);
  return tokens;
}

std::vector<std::int32_t> read_token_file(const std::string& path, std::int64_t max_vocab_size) {
  return read_tokens(path, max_vocab_size, false);
}

std::vector<std::int32_t> tokenize_documents(const std::vector<std::string>& text_files, const Tokenizer& tok) {
  std::vector<std::int32_t> tokens;
  for (const auto& file : text_files)
    for_each_document(file, [&](const std::string& text) {
      tokens.push_back(tok.bos_id());
      auto ids = tok.encode(text);
      tokens.insert(tokens.end(), ids.begin(), ids.end());
      tokens.push_back(tok.eos_id());
    });
  return tokens;
}

std::vector<std::string> resolve_dataset_files(const std::string& name, const std::string& path) {
  fs::path root;
  if (!path.empty()) {
    root = path;
  } else if (name == "c4_test" || name == "c4_validation") {
    const fs::path rel = fs::path("tests/assets/c4_test") / (name + ".jsonl");
    root = fs::exists(rel) ? rel : fs::path(TITAN_SOURCE_DIR) / rel;
  } else {
    throw UserError("training.dataset = \"" + name + "\" is not a dataset titan.cpp knows (c4_test, c4_validation); "
                    "set training.dataset_path to a JSONL/text file or a folder of them");
  }
  std::error_code ec;
  if (!fs::exists(root, ec))
    throw UserError("dataset: '" + printable(root.string(), 200) + "' does not exist; check training.dataset_path");
  std::vector<std::string> files;
  if (fs::is_directory(root, ec)) {
    auto it = fs::recursive_directory_iterator(root, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      // Hidden folders (our .titan_cache among them) are not data.
      std::error_code ec2;
      if (it->is_directory(ec2) && it->path().filename().string().rfind('.', 0) == 0) {
        it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file(ec2) && is_data_file(it->path())) files.push_back(it->path().string());
    }
    if (ec)
      throw UserError("dataset: cannot list folder '" + printable(root.string(), 200) + "' (" + ec.message() +
                      "); check its permissions");
    std::sort(files.begin(), files.end());
    if (files.empty())
      throw UserError("dataset: folder '" + printable(root.string(), 200) + "' holds no .jsonl, .json, .txt or .tokens files");
  } else {
    files.push_back(root.string());
  }
  return files;
}

TokenWindows::TokenWindows(const std::vector<std::string>& files, const Tokenizer& tok, std::int64_t seq_len,
                           std::uint64_t seed, bool use_cache)
    : seq_len_(seq_len), seed_(seed) {
  std::vector<std::string> text_files;
  for (const auto& f : files)
    if (!is_token_file(f)) text_files.push_back(f);
  const fs::path cache = text_files.empty() ? fs::path() : cache_path(text_files, tok);
  std::vector<std::int32_t> text_tokens;
  std::error_code exists_ec;
  if (use_cache && !cache.empty() && fs::exists(cache, exists_ec)) {
    text_tokens = read_tokens(cache.string(), tok.vocab_size(), true);
    from_cache_ = true;
  } else {
    text_tokens = tokenize_documents(text_files, tok);
    if (use_cache && !cache.empty()) {
      std::error_code ec;
      fs::create_directories(cache.parent_path(), ec);
      try {
        write_token_file(cache.string(), text_tokens, tok.vocab_size());
      } catch (const std::exception&) {
        // A read-only data folder only costs the next run a re-tokenization.
      }
    }
  }
  // Text documents first (from the cache or just tokenized), then token files in their order.
  tokens_ = std::move(text_tokens);
  for (const auto& f : files)
    if (is_token_file(f)) {
      auto t = read_token_file(f, tok.vocab_size());
      tokens_.insert(tokens_.end(), t.begin(), t.end());
    }
  num_windows_ = static_cast<std::int64_t>(tokens_.size()) / (seq_len + 1);
  if (num_windows_ == 0)
    throw UserError("dataset: " + std::to_string(tokens_.size()) + " tokens are fewer than one window of seq_len + 1 = " +
                    std::to_string(seq_len + 1) + "; use more data or a shorter training.seq_len");
}

std::int64_t TokenWindows::window_at(std::int64_t position) const {
  const std::int64_t epoch = position / num_windows_, within = position % num_windows_;
  if (epoch != perm_epoch_) {
    // Fisher-Yates driven by Philox: the epoch's order depends only on (seed, epoch).
    perm_.resize(static_cast<size_t>(num_windows_));
    for (std::int64_t i = 0; i < num_windows_; ++i) perm_[i] = i;
    const auto key = rng::make_key(seed_, "data.epoch." + std::to_string(epoch));
    for (std::int64_t i = num_windows_ - 1; i > 0; --i) {
      const auto j = static_cast<std::int64_t>(rng::uniform(key, static_cast<std::uint64_t>(i)) * double(i + 1));
      std::swap(perm_[i], perm_[std::min(j, i)]);
    }
    perm_epoch_ = epoch;
  }
  return perm_[within];
}

void TokenWindows::fill(std::int64_t position, Tensor& inputs, Tensor& labels, std::int64_t row) const {
  const std::int32_t* w = tokens_.data() + window_at(position) * (seq_len_ + 1);
  std::int64_t* in = inputs.data<std::int64_t>() + row * seq_len_;
  std::int64_t* lb = labels.data<std::int64_t>() + row * seq_len_;
  for (std::int64_t i = 0; i < seq_len_; ++i) {
    in[i] = w[i];
    lb[i] = w[i + 1];
  }
}

DataLoader::DataLoader(const TokenWindows& windows, std::int64_t local_batch, std::int64_t dp_rank, std::int64_t dp_size,
                       std::int64_t grad_accum)
    : windows_(windows), local_(local_batch), dp_rank_(dp_rank), dp_size_(dp_size), accum_(grad_accum) {}

DataLoader::Batch DataLoader::micro_batch(std::int64_t micro_step, Device device) const {
  const std::int64_t S = windows_.seq_len();
  Batch b{Tensor::empty({local_, S}, DType::i64), Tensor::empty({local_ * S}, DType::i64)};
  const std::int64_t first = consumed_ + (micro_step * dp_size_ + dp_rank_) * local_;
  for (std::int64_t r = 0; r < local_; ++r) windows_.fill(first + r, b.inputs, b.labels, r);
  if (!device.is_cpu()) b = {b.inputs.to(device), b.labels.to(device)};  // filled on the host, uploaded once
  return b;
}

}  // namespace titan::data
