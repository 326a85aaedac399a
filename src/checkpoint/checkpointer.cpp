#include "checkpoint/checkpointer.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>

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
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw UserError("checkpoint: cannot open '" + path + "' to sync it to disk", kExitRuntimeError);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw UserError("checkpoint: cannot sync '" + path + "' to disk (disk full or failing?)", kExitRuntimeError);
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

std::map<std::int64_t, std::string> complete_checkpoints(const std::string& folder) {
  std::map<std::int64_t, std::string> out;
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) return out;
  static const std::regex step_re(R"(step-(\d+))");
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && std::regex_match(name, m, step_re) && fs::exists(entry.path() / "metadata.json"))
      out[std::stoll(m[1])] = entry.path().string();
  }
  return out;
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

Checkpointer::Checkpointer(const config::JobConfig& cfg, dist::DeviceMesh& mesh, json model_desc, std::string config_toml,
                           bool owns_folder)
    : cfg_(cfg),
      mesh_(mesh),
      model_desc_(std::move(model_desc)),
      config_toml_(std::move(config_toml)),
      folder_((fs::path(cfg.job.dump_folder) / cfg.checkpoint.folder).string()),
      async_(cfg.checkpoint.async_mode != "disabled"),
      fault_(FaultInjection::parse(cfg.debug.fault)) {
  // A step-N.tmp folder is a save that never finished (a crash): never loaded, removed here.
  if (owns_folder && mesh_.world_group().rank() == 0) {
    std::error_code ec;
    if (fs::is_directory(folder_, ec))
      for (const auto& entry : fs::directory_iterator(folder_, ec))
        if (entry.is_directory() && entry.path().extension() == ".tmp") {
          spdlog::warn("checkpoint: removing '{}', a save that did not finish", entry.path().string());
          fs::remove_all(entry.path(), ec);
        }
  }
  mesh_.world_group().barrier();
}

Checkpointer::~Checkpointer() {
  if (pending_ && pending_->writer.joinable()) pending_->writer.join();  // an error unwinds: no half-finalized save
}

bool Checkpointer::due(std::int64_t step, std::int64_t last_step) const {
  if (!cfg_.checkpoint.enable || cfg_.checkpoint.load_only) return false;
  return step % cfg_.checkpoint.interval == 0 || step == last_step ||
         (step == 1 && cfg_.checkpoint.enable_first_step_checkpoint);
}

void Checkpointer::save(std::int64_t step, const TrainingState& state, bool last) {
  wait();  // never two saves at once
  auto p = std::make_unique<Pending>();
  const auto t0 = p->start;
  p->step = step;
  p->model_only = last && cfg_.checkpoint.last_save_model_only;
  const DType dt = p->model_only ? export_dtype(cfg_.checkpoint.export_dtype) : DType::f32;
  p->dtype = p->model_only ? cfg_.checkpoint.export_dtype : "float32";
  p->final_dir = (fs::path(folder_) / ("step-" + std::to_string(step))).string();
  p->tmp_dir = p->final_dir + ".tmp";
  p->progress = state.progress;
  p->extra = state.extra;
  std::error_code ec;
  fs::create_directories(p->tmp_dir, ec);
  if (ec) throw UserError("checkpoint: cannot create '" + p->tmp_dir + "' (" + ec.message() + "); check job.dump_folder");
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
    meta["mesh"] = {{"world", n}, {"replicate", mesh_.replicate()}, {"shard", mesh_.shard()}};
    meta["model"] = model_desc_;
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
    {
      std::ofstream out(meta_path);
      out << meta.dump(1) << "\n";
      if (!out) throw UserError("checkpoint: cannot write '" + meta_path + "'", kExitRuntimeError);
    }
    fsync_path(meta_path);
    std::error_code ec;
    if (fs::exists(p.final_dir)) fs::remove_all(p.final_dir, ec);
    fs::rename(p.tmp_dir, p.final_dir, ec);
    if (ec) throw UserError("checkpoint: cannot rename '" + p.tmp_dir + "' to '" + p.final_dir + "' (" + ec.message() + ")",
                            kExitRuntimeError);
    fsync_path(folder_);
    // keep_latest_k: only complete checkpoints are candidates; the newest k stay.
    if (cfg_.checkpoint.keep_latest_k > 0) {
      auto complete = complete_checkpoints(folder_);
      while (static_cast<std::int64_t>(complete.size()) > cfg_.checkpoint.keep_latest_k) {
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

std::optional<Checkpointer::Loaded> Checkpointer::load(TrainingState& state) {
  const auto complete = complete_checkpoints(folder_);
  const std::int64_t want = cfg_.checkpoint.load_step;
  if (want >= 0) {
    auto it = complete.find(want);
    if (it == complete.end()) {
      std::string have;
      for (auto& [s, dir] : complete) have += (have.empty() ? "" : ", ") + std::to_string(s);
      throw UserError("checkpoint.load_step = " + std::to_string(want) + ": '" + folder_ + "' holds no complete step-" +
                      std::to_string(want) + " (complete: " + (have.empty() ? "none" : have) +
                      "); pick one of them or -1 for the latest");
    }
    return load_from(it->second, state, false);
  }
  if (!complete.empty()) return load_from(complete.rbegin()->second, state, false);
  // HF weights (initial_load_in_hf) are the model's business: the trainer imports them.
  if (cfg_.checkpoint.initial_load_path && !cfg_.checkpoint.initial_load_in_hf)
    return load_from(*cfg_.checkpoint.initial_load_path, state, cfg_.checkpoint.initial_load_model_only);
  return std::nullopt;
}

std::optional<Checkpointer::Loaded> Checkpointer::load_from(const std::string& dir, TrainingState& state,
                                                             bool model_only_requested) {
  const auto t0 = Clock::now();
  const std::string meta_path = (fs::path(dir) / "metadata.json").string();
  json meta;
  {
    std::ifstream in(meta_path);
    if (!in)
      throw UserError("checkpoint: '" + dir + "' is not a complete checkpoint (no metadata.json: a save that did not "
                      "finish, or the wrong folder)");
    try {
      meta = json::parse(in);
      (void)meta.at("tensors").items();
      (void)meta.at("files").items();
    } catch (const std::exception& e) {
      throw UserError("checkpoint: '" + meta_path + "' is not valid checkpoint metadata (" + e.what() + ")");
    }
  }
  if (meta.value("model", json()) != model_desc_)
    throw UserError("checkpoint: '" + dir + "' holds a different model (" + meta.value("model", json()).dump() +
                    ") than this run's (" + model_desc_.dump() + "); use the same model.flavor, or another checkpoint");
  Loaded loaded;
  loaded.path = dir;
  loaded.model_only = meta.value("model_only", false) || model_only_requested;
  const auto& exclude = cfg_.checkpoint.exclude_from_loading;
  const std::uint64_t seed = meta.value("seed", std::uint64_t(0));
  if (!loaded.model_only && !listed(exclude, "dataloader") && seed != state.progress.seed)
    throw UserError("checkpoint: '" + dir + "' was trained with debug.seed = " + std::to_string(seed) + ", this run has " +
                    std::to_string(state.progress.seed) + ": the data order would not continue; set --debug.seed " +
                    std::to_string(seed) + " (or exclude_from_loading = [\"dataloader\"])");

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
    const json& info = meta["files"].contains(name) ? meta["files"][name] : json();
    if (info.is_null()) throw UserError("checkpoint: '" + meta_path + "' names file '" + name + "' without its checksum");
    if (!fs::exists(path)) throw UserError("checkpoint: '" + path + "' is missing; the checkpoint is incomplete");
    const std::int64_t bytes = static_cast<std::int64_t>(fs::file_size(path));
    if (bytes != info.value("bytes", std::int64_t(-1)))
      throw UserError("checkpoint: '" + path + "' is corrupt or truncated: " + std::to_string(bytes) +
                      " bytes; metadata.json expects " + std::to_string(info.value("bytes", std::int64_t(-1))) +
                      "; load another step (checkpoint.load_step)");
    return files.emplace(name, OpenFile{path, read_safetensors_header(path), info.value("xxh3", std::string())})
        .first->second;
  };
  // Rows [b, e) of piece `name` (whose rows start at `first`) from a file, checksum-verified.
  auto read_rows = [&](OpenFile& f, const std::string& name, std::int64_t first, std::int64_t b, std::int64_t e,
                       std::int64_t row_elems) -> Tensor {
    const auto& [dtype, shape] = f.header.tensors.at(name);
    const std::int64_t piece_rows = shape.empty() ? 1 : shape[0];
    const std::int64_t row_bytes = row_elems * static_cast<std::int64_t>(dtype_size(dtype));
    const auto sums = f.header.metadata.find("xxh3:" + name);
    // Checkpoints written before chunk checksums: verify the whole file once instead.
    const std::string spec = sums != f.header.metadata.end() ? sums->second : std::to_string(piece_rows) + ":";
    if (sums == f.header.metadata.end() && !f.whole_verified) {
      const auto [hash, bytes] = hash_file(f.path);
      if (hex(hash) != f.xxh3)
        throw UserError("checkpoint: '" + f.path + "' is corrupt or truncated: xxh3 " + hex(hash) + ", metadata.json expects " +
                        f.xxh3 + "; load another step (checkpoint.load_step)");
      f.whole_verified = true;
    }
    std::int64_t chunk_rows = 0;
    try {
      chunk_rows = std::max<std::int64_t>(1, std::stoll(spec.substr(0, spec.find(':'))));
    } catch (const std::exception&) {
      throw UserError("checkpoint: '" + f.path + "' is corrupt or truncated: bad checksum list for tensor '" + name +
                      "'; load another step (checkpoint.load_step)");
    }
    std::vector<std::string> hashes;
    for (size_t pos = spec.find(':') + 1; pos <= spec.size();) {
      const size_t comma = std::min(spec.find(',', pos), spec.size());
      hashes.push_back(spec.substr(pos, comma - pos));
      pos = comma + 1;
    }
    const std::int64_t c0 = (b - first) / chunk_rows, c1 = (e - first + chunk_rows - 1) / chunk_rows;
    const std::int64_t r0 = c0 * chunk_rows, r1 = std::min(c1 * chunk_rows, piece_rows);
    Tensor buf = Tensor::empty({(r1 - r0) * row_elems}, dtype);
    std::ifstream in(f.path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(f.header.data_begin.at(name) + std::uint64_t(r0 * row_bytes)));
    if (!in.read(static_cast<char*>(buf.raw()), static_cast<std::streamsize>((r1 - r0) * row_bytes)))
      throw UserError("checkpoint: '" + f.path + "' is corrupt or truncated: tensor '" + name + "' cannot be read");
    bytes_read += (r1 - r0) * row_bytes;
    for (std::int64_t c = c0; c < c1 && !f.whole_verified; ++c) {
      const std::int64_t a = c * chunk_rows, z = std::min(a + chunk_rows, piece_rows);
      const auto h = XXH3_64bits(static_cast<const char*>(buf.raw()) + (a - r0) * row_bytes, size_t((z - a) * row_bytes));
      if (static_cast<size_t>(c) >= hashes.size() || hex(h) != hashes[size_t(c)])
        throw UserError("checkpoint: '" + f.path + "' is corrupt or truncated: tensor '" + name + "' rows " +
                        std::to_string(first + a) + ".." + std::to_string(first + z) +
                        " do not match their checksum; load another step (checkpoint.load_step)");
    }
    return buf.view_range((b - first - r0) * row_elems, {(e - b) * row_elems});
  };
  // Copies the rows this rank owns from every piece that holds some of them.
  auto fill = [&](ShardedTensor& t) {
    if (!meta["tensors"].contains(t.name))
      throw UserError("checkpoint: '" + dir + "' holds no tensor '" + t.name + "'" +
                      (loaded.model_only ? "" : " (add its kind to checkpoint.exclude_from_loading to start it fresh)"));
    const json& entry = meta["tensors"][t.name];
    const Shape shape = entry.at("shape").get<Shape>();
    if (shape != t.global_shape)
      throw UserError("checkpoint: '" + dir + "' tensor '" + t.name + "' has shape " + shape_str(shape) +
                      " but this run's is " + shape_str(t.global_shape) + " (another model or flavor?)");
    const std::int64_t row_elems = t.rows.numel() / std::max<std::int64_t>(t.row_end - t.row_begin, 1);
    std::int64_t covered = 0;
    for (const json& piece : entry.at("pieces")) {
      const auto rows = piece.at("rows").get<std::vector<std::int64_t>>();
      const std::int64_t b = std::max(rows.at(0), t.row_begin), e = std::min(rows.at(1), t.row_end);
      if (b >= e) continue;
      const std::string fname = piece.at("file").get<std::string>();
      OpenFile& f = file(fname);
      auto it = f.header.tensors.find(t.name);
      if (it == f.header.tensors.end() || numel_of(it->second.second) != (rows[1] - rows[0]) * row_elems)
        throw UserError("checkpoint: '" + (fs::path(dir) / fname).string() + "' lacks rows " + std::to_string(rows[0]) +
                        ".." + std::to_string(rows[1]) + " of tensor '" + t.name + "' that metadata.json places there");
      const Tensor src = read_rows(f, t.name, rows[0], b, e, row_elems);
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
      pr.optimizer_steps = meta.value("optimizer_steps", std::int64_t(0));
    }
    if (listed(exclude, "lr_scheduler")) loaded.skipped.push_back("lr_scheduler");
    else pr.lr_scheduler_steps = meta.value("lr_scheduler_steps", std::int64_t(0));
    if (listed(exclude, "dataloader")) loaded.skipped.push_back("dataloader");
    else pr.windows_consumed = meta.value("windows_consumed", std::int64_t(0));
    if (listed(exclude, "train_state")) loaded.skipped.push_back("train_state");
    else {
      pr.step = meta.value("step", std::int64_t(0));
      pr.tokens_seen = meta.value("tokens_seen", std::int64_t(0));
      state.extra = meta.value("extra", json::object());
    }
  }
  loaded.progress = pr;
  spdlog::info("checkpoint: loaded '{}' (step {}{}) in {:.2f}s; {}; this rank read {:.2f} MiB", dir,
               meta.value("step", 0), loaded.model_only ? ", model only" : "", seconds_since(t0),
               loaded.skipped.empty() ? std::string("all state restored") : "not loaded: " + [&] {
                 std::string s;
                 for (auto& k : loaded.skipped) s += (s.empty() ? "" : ", ") + k;
                 return s;
               }(),
               double(bytes_read) / double(1 << 20));
  mesh_.world_group().barrier();
  return loaded;
}

}  // namespace titan::checkpoint
