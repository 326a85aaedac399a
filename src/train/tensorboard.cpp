#include "train/tensorboard.hpp"

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <unistd.h>

#include "core/errors.hpp"
#include "train/metrics.hpp"

namespace titan::train {

namespace {

const std::array<std::uint32_t, 256>& crc_table() {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

// Protobuf wire format: field key = (field number << 3) | wire type (0 varint, 1 fixed64,
// 2 length-delimited, 5 fixed32).
void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char(v | 0x80));
    v >>= 7;
  }
  out.push_back(char(v));
}
template <typename T>
void put_fixed(std::string& out, T v) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));  // x86 and every target here are little endian, as protobuf is
  out.append(bytes, sizeof(T));
}
void put_bytes(std::string& out, int field, std::string_view data) {
  put_varint(out, std::uint64_t(field) << 3 | 2);
  put_varint(out, data.size());
  out.append(data);
}

double unix_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::uint32_t crc32c(std::string_view data) {
  std::uint32_t c = 0xffffffffu;
  for (unsigned char b : data) c = crc_table()[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

std::uint32_t masked_crc32c(std::string_view data) {
  const std::uint32_t c = crc32c(data);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string tfrecord(std::string_view data) {
  std::string len;
  put_fixed<std::uint64_t>(len, data.size());
  std::string out = len;
  put_fixed<std::uint32_t>(out, masked_crc32c(len));
  out.append(data);
  put_fixed<std::uint32_t>(out, masked_crc32c(data));
  return out;
}

std::string tb_event(double wall_time, std::int64_t step, const std::vector<std::pair<std::string, double>>& scalars,
                     std::string_view file_version) {
  std::string ev;
  put_varint(ev, 1 << 3 | 1);
  put_fixed<double>(ev, wall_time);
  if (step != 0) {  // proto3 leaves zero-valued plain fields out, as the tensorboard package does
    put_varint(ev, 2 << 3 | 0);
    put_varint(ev, std::uint64_t(step));
  }
  if (!file_version.empty()) {
    put_bytes(ev, 3, file_version);
    return ev;
  }
  std::string summary;
  for (const auto& [tag, value] : scalars) {
    std::string v;
    put_bytes(v, 1, tag);
    put_varint(v, 2 << 3 | 5);
    put_fixed<float>(v, float(value));
    put_bytes(summary, 1, v);
  }
  put_bytes(ev, 5, summary);
  return ev;
}

TensorBoardWriter::TensorBoardWriter(const std::string& folder) {
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  const double now = unix_seconds();
  path_ = (std::filesystem::path(folder) / ("events.out.tfevents." + std::to_string(static_cast<long long>(now)) + "." +
                                            host + "." + std::to_string(getpid()) + ".0"))
              .string();
  out_.open(path_, std::ios::binary | std::ios::app);
  if (!out_)
    throw UserError("metrics: cannot write the TensorBoard file '" + path_ +
                    "'; check job.dump_folder and metrics.save_tb_folder");
  write(tfrecord(tb_event(now, 0, {}, "brain.Event:2")));
}

void TensorBoardWriter::add_scalars(std::int64_t step, const std::vector<std::pair<std::string, double>>& scalars) {
  const double now = unix_seconds();
  std::string records;
  for (const auto& s : scalars) records += tfrecord(tb_event(now, step, {s}));
  write(records);
}

void TensorBoardWriter::write(const std::string& record) {
  out_.write(record.data(), std::streamsize(record.size()));
  flush_or_throw(out_, path_);
}

}  // namespace titan::train
