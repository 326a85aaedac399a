#pragma once
// safetensors files (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
// then the raw little-endian tensor bytes. Used for checkpoints, HF import/export and golden files.
#include <map>
#include <string>
#include <utility>

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
// Rows [begin, end) along dim 0 of tensor `name` of `path` (whose header is `h`), in its stored
// dtype: a ranged read of just those bytes.
Tensor read_safetensors_rows(const std::string& path, const SafetensorsHeader& h, const std::string& name,
                             std::int64_t begin, std::int64_t end);

void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// "F32", "BF16", "F8_E4M3", ... <-> DType.
std::string safetensors_dtype(DType dt);
DType dtype_from_safetensors(const std::string& name, const std::string& context);

}  // namespace titan::checkpoint
