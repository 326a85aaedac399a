#include "checkpoint/safetensors.hpp"

#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>

#include "core/errors.hpp"

namespace titan::checkpoint {

std::string safetensors_dtype(DType dt) {
  switch (dt) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
    case DType::f8e4m3: return "F8_E4M3";
    case DType::f8e5m2: return "F8_E5M2";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
  }
  return "?";
}

DType dtype_from_safetensors(const std::string& name, const std::string& context) {
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::f8e4m3, DType::f8e5m2, DType::i32, DType::i64})
    if (safetensors_dtype(dt) == name) return dt;
  throw UserError(context + ": unsupported safetensors dtype '" + name + "'");
}

namespace {

// One tensor's entry in the header, validated against the file size.
struct Entry {
  DType dtype;
  Shape shape;
  std::uint64_t begin = 0, bytes = 0;  // absolute file offset and size of the data
};

// Opens `path` and parses its header: every tensor entry (checked to lie inside the file) and
// the __metadata__ strings.
std::ifstream parse_header(const std::string& path, std::map<std::string, Entry>& entries,
                           std::map<std::string, std::string>& metadata) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw UserError("safetensors: cannot open '" + path + "'");
  const std::uint64_t file_size = static_cast<std::uint64_t>(in.tellg());
  in.seekg(0);
  std::uint64_t header_len = 0;
  if (file_size < 8 || !in.read(reinterpret_cast<char*>(&header_len), 8) || header_len > file_size - 8)
    throw UserError("safetensors: '" + path + "' is truncated or not a safetensors file (bad header length)");
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header);
  } catch (const std::exception& e) {
    throw UserError("safetensors: '" + path + "' has a malformed JSON header (" + e.what() + ")");
  }
  const std::uint64_t data_start = 8 + header_len;
  for (auto& [name, entry] : j.items()) {
    if (name == "__metadata__") {
      for (auto& [k, v] : entry.items()) metadata[k] = v.get<std::string>();
      continue;
    }
    const std::string ctx = "safetensors: '" + path + "' tensor '" + name + "'";
    Entry e;
    try {
      e.dtype = dtype_from_safetensors(entry.at("dtype").get<std::string>(), ctx);
      e.shape = entry.at("shape").get<Shape>();
      const auto offsets = entry.at("data_offsets").get<std::vector<std::uint64_t>>();
      e.bytes = static_cast<std::uint64_t>(numel_of(e.shape)) * dtype_size(e.dtype);
      if (offsets.size() != 2 || offsets[1] - offsets[0] != e.bytes || data_start + offsets[1] > file_size)
        throw UserError(ctx + " points outside the file or has the wrong size (file truncated?)");
      e.begin = data_start + offsets[0];
    } catch (const nlohmann::json::exception& ex) {
      throw UserError(ctx + " has a malformed header entry (" + ex.what() + ")");
    }
    entries.emplace(name, e);
  }
  return in;
}

}  // namespace

SafetensorsFile read_safetensors(const std::string& path) {
  std::map<std::string, Entry> entries;
  SafetensorsFile out;
  std::ifstream in = parse_header(path, entries, out.metadata);
  for (const auto& [name, e] : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    in.seekg(static_cast<std::streamoff>(e.begin));
    if (!in.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(e.bytes)))
      throw UserError("safetensors: '" + path + "' tensor '" + name + "': read failed (file truncated?)");
    out.tensors.emplace(name, std::move(t));
  }
  return out;
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
  std::map<std::string, Entry> entries;
  SafetensorsHeader out;
  parse_header(path, entries, out.metadata);
  for (const auto& [name, e] : entries) {
    out.tensors.emplace(name, std::make_pair(e.dtype, e.shape));
    out.data_begin.emplace(name, e.begin);
  }
  return out;
}

Tensor read_safetensors_rows(const std::string& path, const SafetensorsHeader& h, const std::string& name,
                             std::int64_t begin, std::int64_t end) {
  const auto it = h.tensors.find(name);
  if (it == h.tensors.end()) throw UserError("safetensors: '" + path + "' has no tensor '" + name + "'");
  const auto& [dtype, shape] = it->second;
  const std::int64_t rows = shape.empty() ? 1 : shape[0];
  if (begin < 0 || end < begin || end > rows)
    throw UserError("safetensors: '" + path + "' tensor '" + name + "' has " + std::to_string(rows) + " rows, not " +
                    std::to_string(begin) + ".." + std::to_string(end));
  Shape out_shape = shape.empty() ? Shape{1} : shape;
  out_shape[0] = end - begin;
  Tensor t = Tensor::empty(out_shape, dtype);
  const std::uint64_t row_bytes = rows ? static_cast<std::uint64_t>(numel_of(shape) / rows) * dtype_size(dtype) : 0;
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(h.data_begin.at(name) + std::uint64_t(begin) * row_bytes));
  if (!in.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(t.nbytes())))
    throw UserError("safetensors: '" + path + "' tensor '" + name + "': read failed (file truncated?)");
  return t;
}

void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json j = nlohmann::json::object();
  if (!metadata.empty()) j["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    j[name] = {{"dtype", safetensors_dtype(t.dtype())}, {"shape", t.shape()}, {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string header = j.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // keep the data 8-byte aligned
  const std::uint64_t len = header.size();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(header.data(), static_cast<std::streamsize>(len));
  for (const auto& [name, t] : tensors) out.write(static_cast<const char*>(t.raw()), static_cast<std::streamsize>(t.nbytes()));
  if (!out) throw UserError("safetensors: cannot write '" + path + "'");
}

}  // namespace titan::checkpoint
