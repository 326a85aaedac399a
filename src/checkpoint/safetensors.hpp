#pragma once
// safetensors files (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
// then the raw little-endian tensor bytes. Used for checkpoints, HF import/export and golden files.
#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.hpp"

namespace titan::checkpoint {

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
};

// Reads every tensor. Throws UserError naming the file (and tensor) when the file is missing,
// truncated, or its header is malformed or points outside the file.
SafetensorsFile read_safetensors(const std::string& path);
// Only the header: each tensor's dtype and shape, and the metadata (no tensor data is read).
struct SafetensorsHeader {
  std::map<std::string, std::pair<DType, Shape>> tensors;
  std::map<std::string, std::uint64_t> data_begin;  // absolute file offset of each tensor's bytes
  std::map<std::string, std::string> metadata;
};
SafetensorsHeader read_safetensors_header(const std::string& path);
// The same from bytes in memory: `bytes` holds (at least) the file's first 8 + header-length
// bytes and `file_size` is the whole file's size (what the tensor offsets are checked against).
// Every entry is validated (dtype, non-negative shape without overflow, offsets inside the file
// and matching the shape); anything else is a UserError naming `path`. The fuzz target's entry.
SafetensorsHeader parse_safetensors_header(std::string_view bytes, std::uint64_t file_size, const std::string& path);
// Rows [begin, end) along dim 0 of tensor `name` of `path` (whose header is `h`), in its stored
// dtype: a ranged read of just those bytes.
Tensor read_safetensors_rows(const std::string& path, const SafetensorsHeader& h, const std::string& name,
                             std::int64_t begin, std::int64_t end);

void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Helpers for messages and files (shared with the checkpointer and HF interop).
// A JSON value or a string from a file, for an error line: at most ~60 characters, quoted, with
// control and non-ASCII bytes escaped (so one bad input never breaks the line or the terminal).
std::string preview(const nlohmann::json& value);
std::string preview_text(std::string_view text);
// nlohmann::json::parse with a nesting limit; a syntax error or deeper nesting is a UserError
// "`what` is not valid JSON (...)" (no library text).
nlohmann::json parse_json(std::string_view text, const std::string& what, int max_depth = 64);
// strerror-like text for an errno ("no space left on device", ...).
std::string errno_text(int err);
// Writes `parts` to `path` (created or truncated) with POSIX calls; a failure is a UserError
// (exit code 1) "`context`: cannot write 'path': no space left on device ..." naming the reason.
void write_file_parts(const std::string& path, const std::vector<std::string_view>& parts, const std::string& context);

// "F32", "BF16", "F8_E4M3", ... <-> DType.
std::string safetensors_dtype(DType dt);
DType dtype_from_safetensors(const std::string& name, const std::string& context);

}  // namespace titan::checkpoint
