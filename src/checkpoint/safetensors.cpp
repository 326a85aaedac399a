#include "checkpoint/safetensors.hpp"

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
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
  throw UserError(context + ": unsupported safetensors dtype " + preview_text(name));
}

std::string preview_text(std::string_view text) {
  // Cut first (a huge value costs nothing), then escape: json's dump quotes the string and writes
  // control and non-ASCII bytes as \uXXXX (invalid UTF-8 as U+FFFD).
  constexpr size_t kMax = 60;
  const bool cut = text.size() > kMax;
  std::string out = nlohmann::json(std::string(text.substr(0, kMax)))
                        .dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  if (out.size() > kMax + 24) out = out.substr(0, kMax + 20) + "\"";  // escapes made it long
  return cut ? out + "..." : out;
}

std::string preview(const nlohmann::json& value) {
  if (value.is_string()) return preview_text(value.get_ref<const std::string&>());
  std::string out = value.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
  return out.size() > 60 ? out.substr(0, 60) + "..." : out;
}

nlohmann::json parse_json(std::string_view text, const std::string& what, int max_depth) {
  // A callback sees the nesting depth of every value: refuse deep nesting before it is built.
  auto limit = [max_depth, &what](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > max_depth)
      throw UserError(what + " is not valid JSON here (nested deeper than " + std::to_string(max_depth) + " levels)");
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), limit);
  } catch (const nlohmann::json::parse_error& e) {
    throw UserError(what + " is not valid JSON (syntax error at byte " + std::to_string(e.byte) + ")");
  } catch (const nlohmann::json::exception&) {
    throw UserError(what + " is not valid JSON");
  }
}

std::string errno_text(int err) {
  switch (err) {
    case ENOSPC: return "no space left on device";
    case EDQUOT: return "disk quota exceeded";
    case EROFS: return "read-only file system";
    case EACCES: return "permission denied";
    case EIO: return "input/output error";
    default: break;
  }
  std::string s = std::strerror(err);
  if (!s.empty()) s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

void write_file_parts(const std::string& path, const std::vector<std::string_view>& parts, const std::string& context) {
  auto fail = [&](int err) {
    throw UserError(context + ": cannot write '" + path + "': " + errno_text(err) +
                        (err == ENOSPC || err == EDQUOT ? " (free some space, or point job.dump_folder at another disk)" : ""),
                    kExitRuntimeError);
  };
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(errno);
  for (std::string_view part : parts) {
    while (!part.empty()) {
      const ssize_t n = ::write(fd, part.data(), part.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : EIO;
        ::close(fd);
        fail(err);
      }
      part.remove_prefix(static_cast<size_t>(n));
    }
  }
  if (::close(fd) != 0 && errno != EINTR) fail(errno);  // NFS and quotas report late
}

namespace {

// Header parsing limits: the safetensors format caps the header at 100 MB; a tensor has at most
// 8 dimensions here; sizes beyond 2^62 bytes are a damaged header, never a real tensor.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
constexpr std::uint64_t kMaxTensorBytes = std::uint64_t(1) << 62;

// One tensor's entry in the header, validated against the file size.
struct Entry {
  DType dtype;
  Shape shape;
  std::uint64_t begin = 0, bytes = 0;  // absolute file offset and size of the data
};

void parse_entries(std::string_view bytes, std::uint64_t file_size, const std::string& path,
                   std::map<std::string, Entry>& entries, std::map<std::string, std::string>& metadata) {
  const std::string file = "safetensors: '" + path + "'";
  std::uint64_t header_len = 0;
  if (file_size < 8 || bytes.size() < 8)
    throw UserError(file + " is truncated or not a safetensors file (shorter than its 8-byte header length)");
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[size_t(i)]);
  if (header_len > file_size - 8 || header_len > kMaxHeaderBytes || bytes.size() - 8 < header_len)
    throw UserError(file + " is truncated or not a safetensors file (header length " + std::to_string(header_len) +
                    " for a file of " + std::to_string(file_size) + " bytes)");
  const nlohmann::json j = parse_json(bytes.substr(8, header_len), file + " header");
  if (!j.is_object()) throw UserError(file + " is not a safetensors file (its header is not a JSON object)");
  const std::uint64_t data_start = 8 + header_len;
  for (const auto& [name, entry] : j.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object() && !entry.is_null())
        throw UserError(file + " has a malformed header: __metadata__ is " + preview(entry) + ", not an object of strings");
      if (entry.is_object())
        for (const auto& [k, v] : entry.items()) {
          if (!v.is_string())
            throw UserError(file + " has a malformed header: __metadata__ " + preview_text(k) + " is " + preview(v) +
                            ", not a string");
          metadata[k] = v.get<std::string>();
        }
      continue;
    }
    const std::string ctx = file + " tensor " + preview_text(name);
    auto bad = [&](const std::string& what) -> UserError {
      return UserError(ctx + " has a malformed header entry: " + what + " (a damaged or non-safetensors file)");
    };
    if (!entry.is_object()) throw bad("it is " + preview(entry) + ", not an object");
    Entry e;
    const auto dt = entry.find("dtype");
    if (dt == entry.end() || !dt->is_string()) throw bad("\"dtype\" is missing or not a string");
    e.dtype = dtype_from_safetensors(dt->get<std::string>(), ctx);
    const auto shape = entry.find("shape");
    if (shape == entry.end() || !shape->is_array() || shape->size() > 8)
      throw bad("\"shape\" is missing or not a list of at most 8 sizes");
    std::uint64_t numel = 1;
    for (const auto& d : *shape) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<std::int64_t>() >= 0))
        throw bad("\"shape\" " + preview(*shape) + " holds " + preview(d) + ", not a size >= 0");
      const std::uint64_t v = d.get<std::uint64_t>();
      if (v > kMaxTensorBytes || (v && numel > kMaxTensorBytes / v)) throw bad("\"shape\" " + preview(*shape) + " is too large");
      numel *= v;
      e.shape.push_back(static_cast<std::int64_t>(v));
    }
    if (numel > kMaxTensorBytes / dtype_size(e.dtype)) throw bad("\"shape\" " + preview(*shape) + " is too large");
    e.bytes = numel * dtype_size(e.dtype);
    const auto off = entry.find("data_offsets");
    if (off == entry.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      throw bad("\"data_offsets\" is missing or not two offsets >= 0");
    const std::uint64_t b = (*off)[0].get<std::uint64_t>(), end = (*off)[1].get<std::uint64_t>();
    if (b > end || end - b != e.bytes || end > file_size - data_start)
      throw UserError(ctx + " points outside the file or has the wrong size (data_offsets " + preview(*off) + " for " +
                      std::to_string(e.bytes) + " bytes; file truncated?)");
    e.begin = data_start + b;
    entries.emplace(name, e);
  }
}

// Opens `path` and parses its header: every tensor entry (checked to lie inside the file) and
// the __metadata__ strings.
std::ifstream parse_header(const std::string& path, std::map<std::string, Entry>& entries,
                           std::map<std::string, std::string>& metadata) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (!ec && std::filesystem::exists(st) && !std::filesystem::is_regular_file(st))
    throw UserError("safetensors: '" + path + "' is not a regular file (a directory or a device?)");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw UserError("safetensors: cannot open '" + path + "'");
  const std::uint64_t file_size = static_cast<std::uint64_t>(in.tellg());
  in.seekg(0);
  std::string head(static_cast<size_t>(std::min<std::uint64_t>(file_size, 8)), '\0');
  if (!in.read(head.data(), static_cast<std::streamsize>(head.size())))
    throw UserError("safetensors: '" + path + "' cannot be read");
  std::uint64_t header_len = 0;
  for (int i = int(head.size()) - 1; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(head[size_t(i)]);
  if (head.size() == 8 && header_len <= file_size - 8 && header_len <= kMaxHeaderBytes) {
    head.resize(8 + header_len);
    if (!in.read(head.data() + 8, static_cast<std::streamsize>(header_len)))
      throw UserError("safetensors: '" + path + "' is truncated (its header cannot be read)");
  }
  parse_entries(head, file_size, path, entries, metadata);
  return in;
}

}  // namespace

SafetensorsHeader parse_safetensors_header(std::string_view bytes, std::uint64_t file_size, const std::string& path) {
  std::map<std::string, Entry> entries;
  SafetensorsHeader out;
  parse_entries(bytes, file_size, path, entries, out.metadata);
  for (const auto& [name, e] : entries) {
    out.tensors.emplace(name, std::make_pair(e.dtype, e.shape));
    out.data_begin.emplace(name, e.begin);
  }
  return out;
}

SafetensorsFile read_safetensors(const std::string& path) {
  std::map<std::string, Entry> entries;
  SafetensorsFile out;
  std::ifstream in = parse_header(path, entries, out.metadata);
  for (const auto& [name, e] : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    in.seekg(static_cast<std::streamoff>(e.begin));
    if (!in.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(e.bytes)))
      throw UserError("safetensors: '" + path + "' tensor " + preview_text(name) + ": read failed (file truncated?)");
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
  if (it == h.tensors.end()) throw UserError("safetensors: '" + path + "' has no tensor " + preview_text(name));
  const auto& [dtype, shape] = it->second;
  const std::int64_t rows = shape.empty() ? 1 : shape[0];
  if (begin < 0 || end < begin || end > rows)
    throw UserError("safetensors: '" + path + "' tensor " + preview_text(name) + " has " + std::to_string(rows) + " rows, not " +
                    std::to_string(begin) + ".." + std::to_string(end));
  Shape out_shape = shape.empty() ? Shape{1} : shape;
  out_shape[0] = end - begin;
  Tensor t = Tensor::empty(out_shape, dtype);
  const std::uint64_t row_bytes = rows ? static_cast<std::uint64_t>(numel_of(shape) / rows) * dtype_size(dtype) : 0;
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(h.data_begin.at(name) + std::uint64_t(begin) * row_bytes));
  if (!in.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(t.nbytes())))
    throw UserError("safetensors: '" + path + "' tensor " + preview_text(name) + ": read failed (file truncated?)");
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
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((std::uint64_t(header.size()) >> (8 * i)) & 0xff);
  std::vector<std::string_view> parts = {std::string_view(len, 8), header};
  for (const auto& [name, t] : tensors) parts.emplace_back(static_cast<const char*>(t.raw()), t.nbytes());
  write_file_parts(path, parts, "safetensors");
}

}  // namespace titan::checkpoint
