#include "checkpoint/checkpointer.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <xxhash.h>

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "checkpoint/safetensors.hpp"
#include "core/errors.hpp"
#include "core/fault.hpp"

namespace titan::checkpoint {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
double mib(std::int64_t b) { return double(b) / double(1 << 20); }

std::string rank_file(int rank) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "rank-%05d.safetensors", rank);
  return buf;
}

// Data (and, for a folder, its entries) on disk before anyone relies on it.
void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw UserError("checkpoint: cannot open '" + path + "' to sync it to disk: " + errno_text(errno), kExitRuntimeError);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0)
    throw UserError("checkpoint: cannot sync '" + path + "' to disk: " + errno_text(err) +
                        (err == ENOSPC || err == EDQUOT ? " (free some space, or point job.dump_folder at another disk)" : ""),
                    kExitRuntimeError);
}

// XXH3-64 of a file's bytes and its size.
std::pair<std::uint64_t, std::int64_t> hash_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError("checkpoint: cannot read '" + path + "'");
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  std::vector<char> buf(1 << 20);
  std::int64_t total = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = in.gcount();
    if (n <= 0) break;
    XXH3_64bits_update(st, buf.data(), static_cast<size_t>(n));
    total += n;
  }
  const std::uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return {h, total};
}

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Checksums of row chunks: each tensor piece in a rank file carries, in the file's metadata,
// "xxh3:<tensor>" = "<rows per chunk>:<hash>,<hash>,..." over consecutive chunks of at least
// kChecksumChunkBytes and at most kMaxChunksPerPiece per piece (so headers stay small for 70B
// models). A rank that loads rows reads (and verifies) only the chunks that hold them, so a
// resharded load never reads whole files.
constexpr std::int64_t kChecksumChunkBytes = 64 << 10;
constexpr std::int64_t kMaxChunksPerPiece = 256;

std::int64_t rows_of_piece(const Tensor& t) { return t.dim() == 0 ? 1 : t.size(0); }

std::string chunk_checksums(const Tensor& t) {
  const std::int64_t rows = rows_of_piece(t);
  const std::int64_t row_bytes = rows ? static_cast<std::int64_t>(t.nbytes()) / rows : 0;
  const std::int64_t chunk_rows = std::max({std::int64_t(1), row_bytes ? kChecksumChunkBytes / row_bytes : 1,
                                            (rows + kMaxChunksPerPiece - 1) / kMaxChunksPerPiece});
  std::string out = std::to_string(chunk_rows) + ":";
  const char* p = static_cast<const char*>(t.raw());
  for (std::int64_t r = 0; r < rows; r += chunk_rows) {
    const std::int64_t n = std::min(chunk_rows, rows - r) * row_bytes;
    out += (r ? "," : "") + hex(XXH3_64bits(p + r * row_bytes, static_cast<size_t>(n)));
  }
  return out;
}

std::string shape_csv(const Shape& s) {
  std::string out;
  for (auto d : s) out += (out.empty() ? "" : ",") + std::to_string(d);
  return out;
}

Shape parse_csv(const std::string& text) {
  Shape out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t next = text.find(',', pos);
    if (next == std::string::npos) next = text.size();
    out.push_back(std::stoll(text.substr(pos, next - pos)));
    pos = next + 1;
  }
  return out;
}

DType export_dtype(const std::string& name) {
  if (name == "bfloat16") return DType::bf16;
  if (name == "float16") return DType::f16;
  return DType::f32;
}

bool listed(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

}  // namespace

std::map<std::int64_t, std::string> complete_checkpoints(const std::string& folder, std::vector<std::string>* ignored) {
  std::map<std::int64_t, std::string> out;
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) return out;
  static const std::regex step_re(R"(step-(\d+))");
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    std::smatch m;
    const std::string name = it->path().filename().string();
    std::error_code e2;
    if (!std::regex_match(name, m, step_re) || !it->is_directory(e2) || !fs::exists(it->path() / "metadata.json", e2)) continue;
    // A canonical number that fits: step-99999999999999999999 or step-007 is nobody's save.
    const std::string digits = m[1];
    std::int64_t step = -1;
    if (digits.size() <= 18 && (digits.size() == 1 || digits[0] != '0')) step = std::stoll(digits);
    if (step < 0) {
      if (ignored)
        ignored->push_back("ignoring '" + it->path().string() + "': " + preview_text(name) +
                           " is not a step number titan.cpp writes (out of range or zero-padded); rename or remove it");
      continue;
    }
    out[step] = it->path().string();
  }
  return out;
}

// ---- metadata.json: schema and validation ---------------------------------------------------

namespace {

constexpr const char* kFormat = "titan.cpp sharded checkpoint";
constexpr std::int64_t kVersion = 1;
constexpr std::int64_t kMaxMetadataBytes = std::int64_t(256) << 20;
constexpr const char* kDamagedFix =
    "the checkpoint is damaged or not titan.cpp's: load another step (checkpoint.load_step) or move that folder away";

const char* safetensors_name_of(const std::string& dtype) {
  return dtype == "bfloat16" ? "BF16" : dtype == "float16" ? "F16" : "F32";
}

// Field checks that end in one line: the file, the field, its value (cut, escaped) and the fix.
class Schema {
 public:
  explicit Schema(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void bad(const std::string& field, const json* value, const std::string& must,
                        const std::string& fix = kDamagedFix) const {
    std::string msg = "checkpoint: '" + path_ + "': field " + field;
    msg += value ? " is " + preview(*value) + ", but it must be " + must : " is missing (it must be " + must + ")";
    throw UserError(msg + "; " + fix);
  }
  const json& need(const json& obj, const std::string& key, const std::string& field, const std::string& must) const {
    const auto it = obj.find(key);
    if (it == obj.end()) bad(field, nullptr, must);
    return *it;
  }
  std::int64_t integer(const json& v, const std::string& field, std::int64_t lo,
                       std::int64_t hi = std::numeric_limits<std::int64_t>::max()) const {
    const std::string must = hi == std::numeric_limits<std::int64_t>::max()
                                 ? "an integer >= " + std::to_string(lo)
                                 : "an integer in " + std::to_string(lo) + ".." + std::to_string(hi);
    if (v.is_number_unsigned()) {
      if (v.get<std::uint64_t>() > static_cast<std::uint64_t>(hi)) bad(field, &v, must);
      const auto x = static_cast<std::int64_t>(v.get<std::uint64_t>());
      if (x < lo) bad(field, &v, must);
      return x;
    }
    if (v.is_number_integer()) {
      const auto x = v.get<std::int64_t>();
      if (x < lo || x > hi) bad(field, &v, must);
      return x;
    }
    bad(field, &v, must);
  }
  std::int64_t integer_field(const json& obj, const std::string& key, const std::string& field, std::int64_t lo,
                             std::int64_t hi = std::numeric_limits<std::int64_t>::max()) const {
    return integer(need(obj, key, field, "an integer >= " + std::to_string(lo)), field, lo, hi);
  }
  const std::string& string(const json& v, const std::string& field, const std::string& must = "a string") const {
    if (!v.is_string()) bad(field, &v, must);
    return v.get_ref<const std::string&>();
  }
  const json& object(const json& v, const std::string& field, const std::string& must = "an object") const {
    if (!v.is_object()) bad(field, &v, must);
    return v;
  }
  const json& array(const json& v, const std::string& field, const std::string& must) const {
    if (!v.is_array()) bad(field, &v, must);
    return v;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// `field[key]` for messages, the key escaped.
std::string sub(const std::string& field, const std::string& key) { return field + "[" + preview_text(key) + "]"; }
std::string idx(const std::string& field, size_t i) { return field + "[" + std::to_string(i) + "]"; }

bool is_hex16(const std::string& s) {
  return s.size() == 16 && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f'); });
}

bool valid_rank_file_name(const std::string& name) {
  static const std::regex re(R"(rank-[0-9]{5,9}\.safetensors)");
  return std::regex_match(name, re);
}

bool valid_tensor_name(const std::string& name, bool model_only) {
  if (name.size() > 512) return false;
  if (!std::all_of(name.begin(), name.end(), [](char c) { return c > ' ' && c < 127; })) return false;
  for (const char* prefix : {"model.", "optimizer.exp_avg.", "optimizer.exp_avg_sq."}) {
    const std::string p = prefix;
    if (model_only && p != "model.") continue;
    if (name.size() > p.size() && name.compare(0, p.size(), p) == 0) return true;
  }
  return false;
}

}  // namespace

Metadata parse_metadata(std::string_view text, const std::string& path) {
  const Schema s(path);
  json j;
  try {
    j = parse_json(text, "checkpoint: '" + path + "'");
  } catch (const UserError& e) {
    throw UserError(std::string(e.what()) + "; " + kDamagedFix);
  }
  if (!j.is_object()) s.bad("(the whole file)", &j, "a JSON object");
  Metadata m;

  const json& format = s.need(j, "format", "format", "\"" + std::string(kFormat) + "\"");
  if (!format.is_string() || format.get_ref<const std::string&>() != kFormat)
    s.bad("format", &format, "\"" + std::string(kFormat) + "\"",
          "this is not a titan.cpp checkpoint: point checkpoint.load_step or initial_load_path at one");
  const json& version = s.need(j, "version", "version", "the integer " + std::to_string(kVersion));
  if (!version.is_number_integer() || version.get<std::int64_t>() != kVersion)
    s.bad("version", &version, "the integer " + std::to_string(kVersion) + " (the version this titan.cpp reads)",
          "it was written by another titan.cpp version: resume with that build, or use another checkpoint");

  TrainProgress& pr = m.progress;
  pr.step = s.integer_field(j, "step", "step", 0);
  pr.tokens_seen = s.integer_field(j, "tokens_seen", "tokens_seen", 0);
  pr.windows_consumed = s.integer_field(j, "windows_consumed", "windows_consumed", 0);
  pr.optimizer_steps = s.integer_field(j, "optimizer_steps", "optimizer_steps", 0);
  pr.lr_scheduler_steps = s.integer_field(j, "lr_scheduler_steps", "lr_scheduler_steps", 0);
  const json& seed = s.need(j, "seed", "seed", "an integer >= 0");
  if (seed.is_number_unsigned()) pr.seed = seed.get<std::uint64_t>();
  else if (seed.is_number_integer() && seed.get<std::int64_t>() >= 0) pr.seed = static_cast<std::uint64_t>(seed.get<std::int64_t>());
  else s.bad("seed", &seed, "an integer >= 0");

  const json& model_only = s.need(j, "model_only", "model_only", "true or false");
  if (!model_only.is_boolean()) s.bad("model_only", &model_only, "true or false");
  m.model_only = model_only.get<bool>();
  const json& dtype = s.need(j, "dtype", "dtype", "\"float32\", \"bfloat16\" or \"float16\"");
  m.dtype = s.string(dtype, "dtype", "\"float32\", \"bfloat16\" or \"float16\"");
  if (m.dtype != "float32" && m.dtype != "bfloat16" && m.dtype != "float16")
    s.bad("dtype", &dtype, "\"float32\", \"bfloat16\" or \"float16\"");
  if (!m.model_only && m.dtype != "float32") s.bad("dtype", &dtype, "\"float32\" in a full (not model-only) checkpoint");

  const json& mesh = s.object(s.need(j, "mesh", "mesh", "an object {world, replicate, shard, tp}"), "mesh");
  m.mesh_world = s.integer_field(mesh, "world", "mesh.world", 1, 1 << 24);
  m.mesh_replicate = s.integer_field(mesh, "replicate", "mesh.replicate", 1, 1 << 24);
  m.mesh_shard = s.integer_field(mesh, "shard", "mesh.shard", 1, 1 << 24);
  // tp: absent in checkpoints written before tensor parallelism (1).
  m.mesh_tp = mesh.contains("tp") ? s.integer_field(mesh, "tp", "mesh.tp", 1, 1 << 24) : 1;
  if (m.mesh_replicate * m.mesh_shard * m.mesh_tp != m.mesh_world)
    s.bad("mesh", &mesh, "a mesh with world = replicate x shard x tp");

  m.model = s.object(s.need(j, "model", "model", "an object (flavor and shape)"), "model");
  s.string(s.need(m.model, "flavor", "model.flavor", "a string"), "model.flavor");
  if (m.model.contains("name")) s.string(m.model["name"], "model.name");
  for (const auto& [k, v] : m.model.items())
    if (k != "flavor" && k != "name") s.integer(v, sub("model", k), 1);

  if (j.contains("data")) {  // written since the data checks exist; older saves lack it
    m.data = s.object(j["data"], "data");
    for (const auto& [k, v] : m.data.items()) {
      if (k == "seq_len") s.integer(v, "data.seq_len", 1);
      else if (k == "seed") s.integer(v, "data.seed", 0);
      else if (k == "num_tokens") s.integer(v, "data.num_tokens", 0);
      else s.string(v, sub("data", k));
    }
  }

  m.extra = s.object(s.need(j, "extra", "extra", "an object"), "extra");
  if (m.extra.contains("float8_delayed")) {
    const json& f8 = s.object(m.extra["float8_delayed"], "extra.float8_delayed", "an object of layer -> amax histories");
    for (const auto& [fqn, roles] : f8.items()) {
      const std::string field = sub("extra.float8_delayed", fqn);
      s.array(roles, field, "a list of 3 amax histories");
      if (roles.size() != 3) s.bad(field, &roles, "a list of 3 amax histories (input, weight, grad_output)");
      for (size_t r = 0; r < roles.size(); ++r) {
        s.array(roles[r], idx(field, r), "a list of float32 bit patterns");
        for (size_t i = 0; i < roles[r].size(); ++i) s.integer(roles[r][i], idx(idx(field, r), i), 0, 0xffffffffLL);
      }
    }
  }
  m.config = s.string(s.need(j, "config", "config", "a string (the resolved config as TOML)"), "config");

  const json& files = s.object(s.need(j, "files", "files", "an object of rank file -> {xxh3, bytes}"), "files");
  for (const auto& [name, info] : files.items()) {
    const std::string field = sub("files", name);
    if (!valid_rank_file_name(name)) {
      const json key = name;
      s.bad("files (a key)", &key, "a rank file name rank-NNNNN.safetensors");
    }
    s.object(info, field, "an object {xxh3, bytes}");
    FileInfo fi;
    const json& h = s.need(info, "xxh3", field + ".xxh3", "16 hex digits");
    fi.xxh3 = s.string(h, field + ".xxh3", "16 lowercase hex digits");
    if (!is_hex16(fi.xxh3)) s.bad(field + ".xxh3", &h, "16 lowercase hex digits");
    fi.bytes = s.integer_field(info, "bytes", field + ".bytes", 8);
    m.files.emplace(name, fi);
  }

  const json& tensors = s.object(s.need(j, "tensors", "tensors", "an object of tensor -> {shape, dtype, pieces}"), "tensors");
  const std::string want_dtype = safetensors_name_of(m.dtype);
  for (const auto& [name, entry] : tensors.items()) {
    const std::string field = sub("tensors", name);
    if (!valid_tensor_name(name, m.model_only)) {
      const json key = name;
      s.bad("tensors (a key)", &key,
            m.model_only ? "a model tensor name model.<fqn> (a model-only checkpoint holds nothing else)"
                         : "a tensor name model.<fqn> or optimizer.exp_avg[_sq].<fqn>");
    }
    s.object(entry, field, "an object {shape, dtype, pieces}");
    TensorInfo t;
    const json& shape = s.array(s.need(entry, "shape", field + ".shape", "a list of sizes"), field + ".shape", "a list of sizes");
    if (shape.size() > 8) s.bad(field + ".shape", &shape, "a list of at most 8 sizes");
    std::int64_t numel = 1;
    for (size_t i = 0; i < shape.size(); ++i) {
      const std::int64_t d = s.integer(shape[i], idx(field + ".shape", i), 0, std::int64_t(1) << 40);
      if (d && numel > (std::int64_t(1) << 50) / d) s.bad(field + ".shape", &shape, "the shape of a tensor that fits in memory");
      numel *= d;
      t.shape.push_back(d);
    }
    const json& dt = s.need(entry, "dtype", field + ".dtype", "\"" + want_dtype + "\"");
    t.dtype = s.string(dt, field + ".dtype", "\"" + want_dtype + "\"");
    if (t.dtype != want_dtype)
      s.bad(field + ".dtype", &dt, "\"" + want_dtype + "\", the checkpoint's dtype (\"" + m.dtype + "\")");
    const std::int64_t rows = t.shape.empty() ? 1 : t.shape[0];
    const json& pieces = s.array(s.need(entry, "pieces", field + ".pieces", "a list of {file, rows}"), field + ".pieces",
                                 "a list of {file, rows}");
    if (pieces.empty() && rows > 0) s.bad(field + ".pieces", &pieces, "a non-empty list of {file, rows}");
    for (size_t i = 0; i < pieces.size(); ++i) {
      const std::string pf = idx(field + ".pieces", i);
      s.object(pieces[i], pf, "an object {file, rows}");
      PieceInfo p;
      const json& file = s.need(pieces[i], "file", pf + ".file", "one of the files listed in \"files\"");
      p.file = s.string(file, pf + ".file", "one of the files listed in \"files\"");
      if (!m.files.count(p.file)) s.bad(pf + ".file", &file, "one of the files listed in \"files\"");
      const json& r = s.need(pieces[i], "rows", pf + ".rows", "[begin, end]");
      if (!r.is_array() || r.size() != 2) s.bad(pf + ".rows", &r, "[begin, end] with 0 <= begin < end <= " + std::to_string(rows));
      p.row_begin = s.integer(r[0], pf + ".rows[0]", 0, rows);
      p.row_end = s.integer(r[1], pf + ".rows[1]", 0, rows);
      if (p.row_begin >= p.row_end) s.bad(pf + ".rows", &r, "[begin, end] with 0 <= begin < end <= " + std::to_string(rows));
      t.pieces.push_back(p);
    }
    std::sort(t.pieces.begin(), t.pieces.end(), [](const PieceInfo& a, const PieceInfo& b) { return a.row_begin < b.row_begin; });
    for (size_t i = 1; i < t.pieces.size(); ++i)
      if (t.pieces[i].row_begin < t.pieces[i - 1].row_end)
        s.bad(field + ".pieces", &pieces, "pieces whose row ranges do not overlap");
    m.tensors.emplace(name, std::move(t));
  }
  return m;
}

Metadata read_metadata(const std::string& dir) {
  const std::string path = (fs::path(dir) / "metadata.json").string();
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st))
    throw UserError("checkpoint: '" + dir + "' is not a complete checkpoint (no metadata.json: a save that did not "
                    "finish, or the wrong folder)");
  if (!fs::is_regular_file(st))
    throw UserError("checkpoint: '" + path + "' is not a regular file (a directory or a device); " + kDamagedFix);
  const auto size = fs::file_size(path, ec);
  if (ec || size > static_cast<std::uintmax_t>(kMaxMetadataBytes))
    throw UserError("checkpoint: '" + path + "' cannot be read or is implausibly large (" +
                    (ec ? errno_text(ec.value()) : std::to_string(size) + " bytes") + "); " + kDamagedFix);
  std::ifstream in(path, std::ios::binary);
  std::string text(static_cast<size_t>(size), '\0');
  if (!in || !in.read(text.data(), static_cast<std::streamsize>(size)))
    throw UserError("checkpoint: '" + path + "' cannot be read; " + std::string(kDamagedFix));
  return parse_metadata(text, path);
}

std::pair<std::int64_t, std::vector<std::string>> parse_chunk_checksums(const std::string& spec, std::int64_t piece_rows,
                                                                        const std::string& file, const std::string& tensor) {
  auto bad = [&]() {
    return UserError("checkpoint: '" + file + "' is corrupt or truncated: bad checksum list " + preview_text(spec) +
                     " for tensor " + preview_text(tensor) + "; load another step (checkpoint.load_step)");
  };
  const size_t colon = spec.find(':');
  if (colon == std::string::npos || colon == 0 || colon > 18) throw bad();
  std::int64_t chunk_rows = 0;
  for (size_t i = 0; i < colon; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(spec[i]))) throw bad();
    chunk_rows = chunk_rows * 10 + (spec[i] - '0');
  }
  if (chunk_rows < 1) throw bad();
  chunk_rows = std::min(chunk_rows, std::max<std::int64_t>(piece_rows, 1));
  std::vector<std::string> hashes;
  for (size_t pos = colon + 1; pos < spec.size();) {
    const size_t comma = std::min(spec.find(',', pos), spec.size());
    hashes.push_back(spec.substr(pos, comma - pos));
    if (!is_hex16(hashes.back())) throw bad();
    pos = comma + 1;
    if (comma + 1 == spec.size()) throw bad();  // a trailing comma
  }
  const std::int64_t chunks = piece_rows == 0 ? 0 : (piece_rows + chunk_rows - 1) / chunk_rows;
  if (static_cast<std::int64_t>(hashes.size()) != chunks) throw bad();
  return {chunk_rows, hashes};
}

// A save in flight: the snapshot being written by this rank, and what finalize needs.
struct Checkpointer::Pending {
  std::int64_t step = 0;
  bool model_only = false;
  std::string dtype;
  std::string tmp_dir, final_dir;
  TrainProgress progress;
  json extra;
  std::map<std::string, Tensor> snapshot;
  std::map<std::string, std::string> file_meta;
  std::thread writer;
  std::atomic<bool> done{false};
  bool wrote = false, ok = true;
  std::string error;
  std::uint64_t hash = 0;
  std::int64_t bytes = 0;
  double write_seconds = 0, stall_seconds = 0;
  Clock::time_point start = Clock::now();
};

Checkpointer::Checkpointer(CheckpointOptions options, dist::DeviceMesh& mesh, json model_desc, std::string config_toml,
                           bool owns_folder)
    : opts_(std::move(options)),
      mesh_(mesh),
      model_desc_(std::move(model_desc)),
      config_toml_(std::move(config_toml)),
      owns_folder_(owns_folder),
      folder_(opts_.folder),
      async_(opts_.async),
      fault_(opts_.fault) {
  // A step-N.tmp folder is a save that never finished (a crash): never loaded, removed here.
  if (owns_folder && mesh_.world_group().rank() == 0) {
    std::error_code ec;
    if (fs::is_directory(folder_, ec))
      for (const auto& entry : fs::directory_iterator(folder_, ec))
        if (entry.is_directory(ec) && entry.path().extension() == ".tmp") {
          spdlog::warn("checkpoint: removing '{}', a save that did not finish", entry.path().string());
          fs::remove_all(entry.path(), ec);
        }
  }
  // No barrier here: nothing writes into a .tmp folder before the trainer's set-up agreement
  // (a collective every rank passes after this), and a collective here would hang the healthy
  // ranks when another one failed before reaching it.
}

Checkpointer::~Checkpointer() {
  if (pending_ && pending_->writer.joinable()) pending_->writer.join();  // an error unwinds: no half-finalized save
}

bool Checkpointer::due(std::int64_t step, std::int64_t last_step) const {
  if (!opts_.enable || opts_.load_only) return false;
  return step % opts_.interval == 0 || step == last_step ||
         (step == 1 && opts_.enable_first_step_checkpoint);
}

void Checkpointer::save(std::int64_t step, const TrainingState& state, bool last) {
  wait();  // never two saves at once
  auto p = std::make_unique<Pending>();
  const auto t0 = p->start;
  p->step = step;
  p->model_only = last && opts_.last_save_model_only;
  const DType dt = p->model_only ? export_dtype(opts_.export_dtype) : DType::f32;
  p->dtype = p->model_only ? opts_.export_dtype : "float32";
  p->final_dir = (fs::path(folder_) / ("step-" + std::to_string(step))).string();
  p->tmp_dir = p->final_dir + ".tmp";
  p->progress = state.progress;
  p->extra = state.extra;
  std::error_code ec;
  fs::create_directories(p->tmp_dir, ec);
  if (ec)
    throw UserError("checkpoint: cannot create '" + p->tmp_dir + "': " + errno_text(ec.value()) + "; check job.dump_folder",
                    kExitRuntimeError);
  // Replicas hold the same rows: the ranks of replicate index 0 write them.
  if (mesh_.replicate_index() == 0) {
    auto add = [&](const ShardedTensor& t) {
      if (t.row_end == t.row_begin) return;  // a rank whose shard is all padding
      // Async: a copy in host memory (all that training waits for). Sync: training waits for
      // the whole save anyway, so the file is written straight from the live tensors. GPU
      // state is always copied to the host (converted on the device first).
      if (!t.rows.device().is_cpu()) p->snapshot[t.name] = t.rows.to(dt).to(Device::cpu());
      else p->snapshot[t.name] = async_ || dt != t.rows.dtype() ? t.rows.to(dt) : t.rows;
      p->file_meta["rows:" + t.name] = std::to_string(t.row_begin) + "," + std::to_string(t.row_end);
      p->file_meta["shape:" + t.name] = shape_csv(t.global_shape);
    };
    for (const auto& t : state.model) add(t);
    if (!p->model_only)
      for (const auto& t : state.optimizer) add(t);
  }
  Pending* raw = p.get();
  const int rank = mesh_.world_group().rank();
  auto write = [raw, rank, step, fault = fault_]() {
    const auto tw = Clock::now();
    try {
      if (!raw->snapshot.empty()) {
        for (const auto& [name, t] : raw->snapshot) raw->file_meta["xxh3:" + name] = chunk_checksums(t);
        const std::string path = (fs::path(raw->tmp_dir) / rank_file(rank)).string();
        write_safetensors(path, raw->snapshot, raw->file_meta);
        fault.in_save(rank, step, path);
        fsync_path(path);
        std::tie(raw->hash, raw->bytes) = hash_file(path);
        raw->wrote = true;
      }
    } catch (const std::exception& e) {
      raw->ok = false;
      raw->error = e.what();
    }
    raw->snapshot.clear();  // the host copy is no longer needed
    raw->write_seconds = seconds_since(tw);
    raw->done = true;
  };
  pending_ = std::move(p);
  if (async_) {
    pending_->stall_seconds = seconds_since(t0);
    pending_->writer = std::thread(write);
  } else {
    write();
    wait();
  }
}

void Checkpointer::poll() {
  if (!pending_) return;
  Tensor not_done = Tensor::full({1}, pending_->done ? 0.0 : 1.0, DType::i64);
  mesh_.world_group().all_reduce(not_done, dist::ReduceOp::max);
  if (not_done.item(0) == 0) wait();
}

void Checkpointer::wait() {
  if (!pending_) return;
  finalize(*pending_);
  timing_ = {pending_->stall_seconds, pending_->write_seconds, pending_->bytes};
  pending_.reset();
}

void Checkpointer::finalize(Pending& p) {
  if (p.writer.joinable()) p.writer.join();
  dist::ProcessGroup& world = mesh_.world_group();
  const int n = world.size(), rank = world.rank();
  // Every rank's outcome, file hash and size, in one all-gather.
  Tensor mine = Tensor::empty({4}, DType::i64), all = Tensor::empty({4 * std::int64_t(n)}, DType::i64);
  std::int64_t* m = mine.data<std::int64_t>();
  m[0] = p.ok;
  m[1] = p.wrote;
  m[2] = static_cast<std::int64_t>(p.hash);
  m[3] = p.bytes;
  world.all_gather(mine, all);
  const std::int64_t* a = all.data<std::int64_t>();
  std::string failed;
  for (int r = 0; r < n; ++r)
    if (!a[4 * r]) failed += (failed.empty() ? "" : ", ") + std::to_string(r);
  if (!failed.empty())
    throw UserError("checkpoint: saving step " + std::to_string(p.step) + " failed on rank(s) " + failed +
                        (p.ok ? "" : " (here: " + p.error + ")") + "; the previous checkpoint is intact",
                    kExitRuntimeError);
  if (!async_) p.stall_seconds = seconds_since(p.start);  // a sync save blocks training for all of it
  if (rank == 0) {
    json meta;
    meta["format"] = "titan.cpp sharded checkpoint";
    meta["version"] = 1;
    meta["step"] = p.progress.step;
    meta["tokens_seen"] = p.progress.tokens_seen;
    meta["windows_consumed"] = p.progress.windows_consumed;
    meta["optimizer_steps"] = p.progress.optimizer_steps;
    meta["lr_scheduler_steps"] = p.progress.lr_scheduler_steps;
    meta["seed"] = p.progress.seed;
    meta["model_only"] = p.model_only;
    meta["dtype"] = p.dtype;
    meta["mesh"] = {{"world", n}, {"replicate", mesh_.replicate()}, {"shard", mesh_.shard()}, {"tp", mesh_.tp()}};
    meta["model"] = model_desc_;
    meta["data"] = [&] {
      json d = data_desc_;
      d.erase("seed");  // the seed has its own field
      return d;
    }();
    meta["extra"] = p.extra;
    meta["config"] = config_toml_;
    json files = json::object(), tensors = json::object();
    for (int r = 0; r < n; ++r) {
      if (!a[4 * r + 1]) continue;
      const std::string name = rank_file(r);
      files[name] = {{"xxh3", hex(static_cast<std::uint64_t>(a[4 * r + 2]))}, {"bytes", a[4 * r + 3]}};
      const SafetensorsHeader h = read_safetensors_header((fs::path(p.tmp_dir) / name).string());
      for (const auto& [tname, dtype_shape] : h.tensors) {
        const Shape rows = parse_csv(h.metadata.at("rows:" + tname));
        json& t = tensors[tname];
        t["shape"] = parse_csv(h.metadata.at("shape:" + tname));
        t["dtype"] = safetensors_dtype(dtype_shape.first);
        t["pieces"].push_back({{"file", name}, {"rows", rows}});
      }
    }
    meta["files"] = files;
    meta["tensors"] = tensors;
    const std::string meta_path = (fs::path(p.tmp_dir) / "metadata.json").string();
    write_file_parts(meta_path, {meta.dump(1), "\n"}, "checkpoint");
    fsync_path(meta_path);
    std::error_code ec;
    if (fs::exists(p.final_dir)) fs::remove_all(p.final_dir, ec);
    fs::rename(p.tmp_dir, p.final_dir, ec);
    if (ec)
      throw UserError("checkpoint: cannot rename '" + p.tmp_dir + "' to '" + p.final_dir + "': " + errno_text(ec.value()),
                      kExitRuntimeError);
    fsync_path(folder_);
    // keep_latest_k: only complete checkpoints are candidates; the newest k stay.
    if (opts_.keep_latest_k > 0) {
      auto complete = complete_checkpoints(folder_);
      while (static_cast<std::int64_t>(complete.size()) > opts_.keep_latest_k) {
        fs::remove_all(complete.begin()->second, ec);
        complete.erase(complete.begin());
      }
    }
    std::int64_t total = 0;
    for (int r = 0; r < n; ++r) total += a[4 * r + 3];
    spdlog::info("checkpoint: saved step {} to {} ({}{:.2f} MiB in {} file(s); this rank wrote {:.2f} MiB in {:.3f}s, "
                 "{:.1f} MiB/s; training stalled {:.3f}s{})",
                 p.step, p.final_dir, p.model_only ? "model only, " + p.dtype + ", " : "", mib(total), files.size(),
                 mib(p.bytes), p.write_seconds, p.write_seconds > 0 ? mib(p.bytes) / p.write_seconds : 0.0,
                 p.stall_seconds, async_ ? ", async snapshot" : "");
  }
  world.barrier();  // everyone proceeds knowing the checkpoint is complete
}

// ---- choosing and checking what to load -----------------------------------------------------

namespace {

std::string step_list(const std::vector<std::int64_t>& steps) {
  std::string out;
  for (auto s : steps) out += (out.empty() ? "step-" : ", step-") + std::to_string(s);
  return out;
}

// The step number of a folder named step-N (its metadata must say the same), or -1.
std::int64_t folder_step(const std::string& dir) {
  static const std::regex re(R"(step-(\d{1,18}))");
  std::smatch m;
  const std::string name = fs::path(dir).lexically_normal().filename().string().empty()
                               ? fs::path(dir).lexically_normal().parent_path().filename().string()
                               : fs::path(dir).lexically_normal().filename().string();
  return std::regex_match(name, m, re) ? std::stoll(m[1]) : -1;
}

Metadata read_checked(const std::string& dir) {
  Metadata meta = read_metadata(dir);
  const std::int64_t n = folder_step(dir);
  if (n >= 0 && n != meta.progress.step) {
    const json v = meta.progress.step;
    Schema((fs::path(dir) / "metadata.json").string())
        .bad("step", &v, std::to_string(n) + ", the step of its folder " + fs::path(dir).filename().string());
  }
  return meta;
}

// A value of the checkpoint's resolved config (TOML text), for checkpoints written before
// metadata.json recorded the data; nullopt when absent or unreadable.
std::optional<json> config_value(const std::string& toml_text, const std::string& key) {
  try {
    const toml::table t = toml::parse(toml_text);
    const toml::node_view<const toml::node> node = t.at_path(key);
    if (auto v = node.value<std::int64_t>(); v && node.is_integer()) return json(*v);
    if (auto v = node.value<std::string>()) return json(*v);
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

}  // namespace

const std::optional<Checkpointer::Selection>& Checkpointer::select() {
  if (!selected_) {
    selection_ = choose();
    selected_ = true;
  }
  return selection_;
}

std::optional<Checkpointer::Selection> Checkpointer::choose() {
  const auto& exclude = opts_.exclude_from_loading;
  // A run that trains and saves from what it loads continues that run's steps: a model-only
  // checkpoint (no optimizer, schedule, data position or step) cannot continue it.
  const bool saves = opts_.enable && !opts_.load_only && owns_folder_;
  const bool resumes = saves && !listed(exclude, "train_state");
  std::vector<std::string> ignored;
  const auto complete = complete_checkpoints(folder_, &ignored);
  for (const auto& line : ignored) spdlog::warn("checkpoint: {}", line);
  std::optional<Selection> sel;
  const std::int64_t want = opts_.load_step;
  if (want >= 0) {
    auto it = complete.find(want);
    if (it == complete.end()) {
      std::string have;
      for (auto& [s, dir] : complete) have += (have.empty() ? "" : ", ") + std::to_string(s);
      throw UserError("checkpoint.load_step = " + std::to_string(want) + ": '" + folder_ + "' holds no complete step-" +
                      std::to_string(want) + " (complete: " + (have.empty() ? "none" : have) +
                      "); pick one of them or -1 for the latest");
    }
    sel = Selection{it->second, read_checked(it->second), false, true};
    if (sel->meta.model_only && resumes)
      throw UserError("checkpoint.load_step = " + std::to_string(want) + ": '" + it->second +
                      "' is model-only (the last save of a finished run, checkpoint.last_save_model_only): it has no "
                      "optimizer, schedule or data position, so this run cannot resume from it; to train on from its "
                      "weights, start a new run in another job.dump_folder with --checkpoint.initial_load_path " +
                      it->second + ", or load a full step");
    sel->model_only = sel->meta.model_only;
  } else if (!complete.empty()) {
    // Newest first: skip malformed folders (when an older good one exists) and, for a resume,
    // model-only ones.
    std::vector<std::int64_t> model_only_steps, malformed_steps;
    std::optional<UserError> newest_error;
    for (auto it = complete.rbegin(); it != complete.rend() && !sel; ++it) {
      Metadata meta;
      try {
        meta = read_checked(it->second);
      } catch (const UserError& e) {
        spdlog::warn("checkpoint: skipping '{}', it cannot be loaded: {}", it->second, e.what());
        if (!newest_error) newest_error = e;
        malformed_steps.push_back(it->first);
        continue;
      }
      if (meta.model_only && resumes) {
        model_only_steps.push_back(it->first);
        continue;
      }
      sel = Selection{it->second, std::move(meta), false, true};
      sel->model_only = sel->meta.model_only;
    }
    if (!sel && newest_error) throw *newest_error;  // nothing good: the newest one's problem
    if (!sel)
      throw UserError("checkpoint: '" + folder_ + "' holds only model-only checkpoints (" + step_list(model_only_steps) +
                      ", the last save of a finished run: checkpoint.last_save_model_only); they have no optimizer, "
                      "schedule or data position, so this run cannot resume from them; to train on from their weights, "
                      "start a new run in another job.dump_folder with --checkpoint.initial_load_path " +
                      complete.rbegin()->second);
    if (!malformed_steps.empty())
      spdlog::warn("checkpoint: resuming from step-{}, the newest checkpoint that loads; {} skipped (see above)",
                   sel->meta.progress.step, step_list(malformed_steps));
    if (!model_only_steps.empty())
      spdlog::info("checkpoint: resuming from step-{}, the newest full checkpoint; skipped the newer model-only {} "
                   "(a model-only save starts a new run, it does not resume one)",
                   sel->meta.progress.step, step_list(model_only_steps));
  } else if (opts_.initial_load_path && !opts_.initial_load_in_hf) {
    // HF weights (initial_load_in_hf) are the model's business: the trainer imports them.
    const std::string& dir = *opts_.initial_load_path;
    sel = Selection{dir, read_checked(dir), false, false};
    sel->model_only = sel->meta.model_only || opts_.initial_load_model_only;
  }
  if (!sel) return sel;
  // Never overwrite another run's steps: a run that restarts at step 1 in a folder that already
  // holds saves would replace them one by one.
  if (sel->own && saves && (sel->model_only || listed(exclude, "train_state")) && complete.rbegin()->first >= 1) {
    std::vector<std::int64_t> steps;
    for (auto& [s, d] : complete)
      if (s >= 1) steps.push_back(s);
    throw UserError("checkpoint: this run would start again at step 1 (train_state is not loaded) and its saves would "
                    "overwrite " + step_list(steps) + " in '" + folder_ + "'; to start a new run from '" + sel->dir +
                    "', use another job.dump_folder with --checkpoint.initial_load_path " + sel->dir);
  }
  check_compatible(sel->dir, sel->meta, sel->model_only);
  return sel;
}

void Checkpointer::check_compatible(const std::string& dir, const Metadata& meta, bool model_only) const {
  // The model: flavor and shape, before anything is allocated.
  if (meta.model != model_desc_) {
    std::string diff;
    auto show = [](const json& obj, const std::string& k) { return obj.contains(k) ? preview(obj[k]) : std::string("(none)"); };
    // The keys a user sets, first. A description without "name" is a Llama 3 (older checkpoints).
    const json name = meta.model.value("name", json("llama3")), run_name = model_desc_.value("name", json("llama3"));
    if (name != run_name)
      diff = "model " + preview(name) + ", this run's " + preview(run_name);
    else if (meta.model.value("flavor", json()) != model_desc_.value("flavor", json()))
      diff = "flavor " + show(meta.model, "flavor") + ", this run's " + show(model_desc_, "flavor");
    for (const json* side : {&model_desc_, &meta.model})
      for (const auto& [k, v] : side->items())
        if (diff.empty() && (!meta.model.contains(k) || !model_desc_.contains(k) || meta.model[k] != model_desc_[k]))
          diff = k + " " + show(meta.model, k) + ", this run's " + show(model_desc_, k);
    const std::string flavor = meta.model.contains("flavor") ? preview(meta.model["flavor"]) : "(none)";
    throw UserError("checkpoint: '" + dir + "' holds a different model (" + diff + "; checkpoint " + preview(meta.model) +
                    "); use the checkpoint's " + (name != run_name ? "model.name " + preview(name) + " and " : std::string()) +
                    "model.flavor " + flavor +
                    ", or start a new run in another job.dump_folder (or checkpoint.folder)");
  }
  const auto& exclude = opts_.exclude_from_loading;
  if (model_only || listed(exclude, "dataloader")) return;  // the data starts afresh: nothing to continue
  const std::string fix = "; or exclude_from_loading = [\"dataloader\"] to start the data afresh, or a new job.dump_folder";
  // The data position continues only on the same data, cut the same way.
  const std::uint64_t seed = meta.progress.seed;
  const std::uint64_t our_seed = data_desc_.contains("seed") ? data_desc_["seed"].get<std::uint64_t>() : seed;
  if (seed != our_seed)
    throw UserError("checkpoint: '" + dir + "' was trained with debug.seed = " + std::to_string(seed) + ", this run has " +
                    std::to_string(our_seed) + ": the data order would not continue; set --debug.seed " +
                    std::to_string(seed) + " (or exclude_from_loading = [\"dataloader\"])");
  auto theirs = [&](const char* data_key, const char* config_key) -> std::optional<json> {
    if (meta.data.contains(data_key)) return meta.data[data_key];
    return config_key ? config_value(meta.config, config_key) : std::nullopt;
  };
  auto ours = [&](const char* key) -> std::optional<json> {
    return data_desc_.contains(key) ? std::optional<json>(data_desc_[key]) : std::nullopt;
  };
  if (auto a = theirs("seq_len", "training.seq_len"), b = ours("seq_len"); a && b && *a != *b)
    throw UserError("checkpoint: '" + dir + "' was saved by a run with training.seq_len = " + preview(*a) +
                    ", this run has " + preview(*b) + ": its data position would not continue; use --training.seq_len " +
                    preview(*a) + fix);
  if (auto a = theirs("tokenizer", nullptr), b = ours("tokenizer"); a && b && *a != *b)
    throw UserError("checkpoint: '" + dir + "' was trained with tokenizer " + preview(*a) + ", this run's is " +
                    preview(*b) + " (model.tokenizer, model.hf_assets_path): its data position would not continue; "
                    "use the checkpoint's tokenizer" + fix);
  const auto ds_a = theirs("dataset", "training.dataset"), ds_b = ours("dataset");
  const auto nt_a = theirs("num_tokens", nullptr), nt_b = ours("num_tokens");
  if ((ds_a && ds_b && *ds_a != *ds_b) || (nt_a && nt_b && *nt_a != *nt_b)) {
    auto describe = [](const std::optional<json>& name, const std::optional<json>& path, const std::optional<json>& n) {
      std::string s = name ? preview(*name) : "(unknown)";
      if (path && path->is_string() && !path->get_ref<const std::string&>().empty()) s += " at " + preview(*path);
      if (n) s += ", " + preview(*n) + " tokens";
      return s;
    };
    throw UserError("checkpoint: '" + dir + "' was trained on training.dataset " +
                    describe(ds_a, theirs("dataset_path", "training.dataset_path"), nt_a) + ", this run reads " +
                    describe(ds_b, ours("dataset_path"), nt_b) +
                    ": its data position would not continue; use the checkpoint's training.dataset / dataset_path" + fix);
  }
}

std::optional<Checkpointer::Loaded> Checkpointer::load(TrainingState& state) {
  const auto& sel = select();
  if (!sel) return std::nullopt;
  return load_from(*sel, state);
}

std::optional<Checkpointer::Loaded> Checkpointer::load_from(const Selection& sel, TrainingState& state) {
  const auto t0 = Clock::now();
  const std::string& dir = sel.dir;
  const Metadata& meta = sel.meta;
  Loaded loaded;
  loaded.path = dir;
  loaded.model_only = sel.model_only;
  const auto& exclude = opts_.exclude_from_loading;
  const std::string another = "; load another step (checkpoint.load_step)";

  // A file's size is checked against metadata.json and its header read at first use; tensor
  // bytes are read later, only the checksum chunks that hold this rank's rows.
  struct OpenFile {
    std::string path;
    SafetensorsHeader header;
    std::string xxh3;            // the whole file's, from metadata.json
    bool whole_verified = false;  // files without chunk checksums (format version 1)
  };
  std::map<std::string, OpenFile> files;
  std::int64_t bytes_read = 0;  // tensor bytes this rank read (its rows, rounded out to chunks)
  auto file = [&](const std::string& name) -> OpenFile& {
    auto it = files.find(name);
    if (it != files.end()) return it->second;
    const std::string path = (fs::path(dir) / name).string();
    const FileInfo& info = meta.files.at(name);  // the schema checked that every piece's file is listed
    std::error_code ec;
    const auto st = fs::status(path, ec);
    if (!fs::exists(st)) throw UserError("checkpoint: '" + path + "' is missing; the checkpoint is incomplete");
    if (!fs::is_regular_file(st))
      throw UserError("checkpoint: '" + path + "' is not a regular file (a directory or a device); the checkpoint is damaged" +
                      another);
    const auto size = fs::file_size(path, ec);
    if (ec) throw UserError("checkpoint: '" + path + "' cannot be read (" + errno_text(ec.value()) + ")" + another);
    const std::int64_t bytes = static_cast<std::int64_t>(size);
    if (bytes != info.bytes)
      throw UserError("checkpoint: '" + path + "' is corrupt or truncated: " + std::to_string(bytes) +
                      " bytes; metadata.json expects " + std::to_string(info.bytes) + another);
    SafetensorsHeader header;
    try {
      header = read_safetensors_header(path);
    } catch (const UserError& e) {
      throw UserError("checkpoint: " + std::string(e.what()) + another);
    }
    return files.emplace(name, OpenFile{path, std::move(header), info.xxh3}).first->second;
  };
  // Rows [b, e) of piece `name` (whose rows start at `first`) from a file, checksum-verified.
  auto read_rows = [&](OpenFile& f, const std::string& name, std::int64_t first, std::int64_t b, std::int64_t e,
                       std::int64_t row_elems) -> Tensor {
    const auto& [dtype, shape] = f.header.tensors.at(name);
    const std::int64_t piece_rows = shape.empty() ? 1 : shape[0];
    const std::int64_t row_bytes = row_elems * static_cast<std::int64_t>(dtype_size(dtype));
    const auto sums = f.header.metadata.find("xxh3:" + name);
    std::int64_t chunk_rows = piece_rows;
    std::vector<std::string> hashes;
    if (sums != f.header.metadata.end()) {
      std::tie(chunk_rows, hashes) = parse_chunk_checksums(sums->second, piece_rows, f.path, name);
    } else if (!f.whole_verified) {
      // Checkpoints written before chunk checksums: verify the whole file once instead.
      const auto [hash, bytes] = hash_file(f.path);
      if (hex(hash) != f.xxh3)
        throw UserError("checkpoint: '" + f.path + "' is corrupt or truncated: xxh3 " + hex(hash) + ", metadata.json expects " +
                        f.xxh3 + another);
      f.whole_verified = true;
    }
    const std::int64_t c0 = (b - first) / chunk_rows, c1 = (e - first + chunk_rows - 1) / chunk_rows;
    const std::int64_t r0 = c0 * chunk_rows, r1 = std::min(c1 * chunk_rows, piece_rows);
    Tensor buf = Tensor::empty({(r1 - r0) * row_elems}, dtype);
    std::ifstream in(f.path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(f.header.data_begin.at(name) + std::uint64_t(r0 * row_bytes)));
    if (!in.read(static_cast<char*>(buf.raw()), static_cast<std::streamsize>((r1 - r0) * row_bytes)))
      throw UserError("checkpoint: '" + f.path + "' is corrupt or truncated: tensor '" + name + "' cannot be read" + another);
    bytes_read += (r1 - r0) * row_bytes;
    for (std::int64_t c = c0; c < c1 && !f.whole_verified; ++c) {
      const std::int64_t a = c * chunk_rows, z = std::min(a + chunk_rows, piece_rows);
      const auto h = XXH3_64bits(static_cast<const char*>(buf.raw()) + (a - r0) * row_bytes, size_t((z - a) * row_bytes));
      if (static_cast<size_t>(c) >= hashes.size() || hex(h) != hashes[size_t(c)])
        throw UserError("checkpoint: '" + f.path + "' is corrupt or truncated: tensor '" + name + "' rows " +
                        std::to_string(first + a) + ".." + std::to_string(first + z) +
                        " do not match their checksum" + another);
    }
    return buf.view_range((b - first - r0) * row_elems, {(e - b) * row_elems});
  };
  // Copies the rows this rank owns from every piece that holds some of them.
  auto fill = [&](ShardedTensor& t) {
    const auto entry = meta.tensors.find(t.name);
    if (entry == meta.tensors.end())
      throw UserError("checkpoint: '" + dir + "' holds no tensor '" + t.name + "'" +
                      (loaded.model_only ? "" : " (add its kind to checkpoint.exclude_from_loading to start it fresh)"));
    const TensorInfo& info = entry->second;
    if (info.shape != t.global_shape)
      throw UserError("checkpoint: '" + dir + "' tensor '" + t.name + "' has shape " + shape_str(info.shape) +
                      " but this run's is " + shape_str(t.global_shape) + " (another model or flavor?)");
    const std::int64_t row_elems = t.rows.numel() / std::max<std::int64_t>(t.row_end - t.row_begin, 1);
    std::int64_t covered = 0;
    for (const PieceInfo& piece : info.pieces) {
      const std::int64_t b = std::max(piece.row_begin, t.row_begin), e = std::min(piece.row_end, t.row_end);
      if (b >= e) continue;
      OpenFile& f = file(piece.file);
      auto it = f.header.tensors.find(t.name);
      Shape expect = info.shape;
      if (!expect.empty()) expect[0] = piece.row_end - piece.row_begin;
      if (it == f.header.tensors.end() || it->second.second != expect)
        throw UserError("checkpoint: '" + f.path + "' lacks rows " + std::to_string(piece.row_begin) + ".." +
                        std::to_string(piece.row_end) + " of tensor '" + t.name + "' that metadata.json places there" +
                        another);
      if (safetensors_dtype(it->second.first) != info.dtype)
        throw UserError("checkpoint: '" + f.path + "' stores tensor '" + t.name + "' as " +
                        safetensors_dtype(it->second.first) + " but metadata.json says " + info.dtype +
                        "; the checkpoint is damaged" + another);
      const Tensor src = read_rows(f, t.name, piece.row_begin, b, e, row_elems);
      t.rows.view_range((b - t.row_begin) * row_elems, {(e - b) * row_elems}).copy_from(src);
      covered += e - b;
    }
    if (covered != t.row_end - t.row_begin)
      throw UserError("checkpoint: '" + dir + "' does not hold all rows " + std::to_string(t.row_begin) + ".." +
                      std::to_string(t.row_end) + " of tensor '" + t.name + "' (incomplete checkpoint)");
  };

  if (listed(exclude, "model")) loaded.skipped.push_back("model");
  else
    for (auto& t : state.model) fill(t);
  TrainProgress& pr = state.progress;
  if (loaded.model_only) {
    loaded.skipped.push_back("optimizer, lr_scheduler, dataloader and train_state (model-only checkpoint)");
  } else {
    if (listed(exclude, "optimizer")) loaded.skipped.push_back("optimizer");
    else {
      for (auto& t : state.optimizer) fill(t);
      pr.optimizer_steps = meta.progress.optimizer_steps;
    }
    if (listed(exclude, "lr_scheduler")) loaded.skipped.push_back("lr_scheduler");
    else pr.lr_scheduler_steps = meta.progress.lr_scheduler_steps;
    if (listed(exclude, "dataloader")) loaded.skipped.push_back("dataloader");
    else pr.windows_consumed = meta.progress.windows_consumed;
    if (listed(exclude, "train_state")) loaded.skipped.push_back("train_state");
    else {
      // float8 delayed scaling: the same layers must have histories (3 roles each).
      const json none = json::object();
      const json& ours = state.extra.contains("float8_delayed") ? state.extra["float8_delayed"] : none;
      const json& theirs = meta.extra.contains("float8_delayed") ? meta.extra["float8_delayed"] : none;
      std::set<std::string> a, b;
      for (const auto& [k, v] : ours.items()) a.insert(k);
      for (const auto& [k, v] : theirs.items()) b.insert(k);
      if (a != b)
        throw UserError("checkpoint: '" + dir + "' holds float8 delayed-scaling histories for " + std::to_string(b.size()) +
                        " layers, this run has " + std::to_string(a.size()) +
                        " (another float8 recipe or filter_fqns?); use the checkpoint's quantize.linear.float8 settings, "
                        "or start a new run in another job.dump_folder with checkpoint.initial_load_path");
      pr.step = meta.progress.step;
      pr.tokens_seen = meta.progress.tokens_seen;
      state.extra = meta.extra;
    }
  }
  loaded.progress = pr;
  spdlog::info("checkpoint: loaded '{}' (step {}{}) in {:.2f}s; {}; this rank read {:.2f} MiB", dir, meta.progress.step,
               loaded.model_only ? ", model only" : "", seconds_since(t0),
               loaded.skipped.empty() ? std::string("all state restored") : "not loaded: " + [&] {
                 std::string s;
                 for (auto& k : loaded.skipped) s += (s.empty() ? "" : ", ") + k;
                 return s;
               }(),
               double(bytes_read) / double(1 << 20));
  // No barrier: one rank's failure above must reach the trainer's agreement step, not leave the
  // others waiting in a collective (the trainer agrees right after the load).
  return loaded;
}

}  // namespace titan::checkpoint
