// TensorBoard event files (train/tensorboard.hpp): CRC-32C against its published check value, the
// TFRecord framing read back with its CRCs, and the bytes of whole events against a golden file
// the `tensorboard` package wrote (scripts/reference/make_tensorboard_golden.py).
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>
#include <unistd.h>

#include "train/tensorboard.hpp"

using namespace titan::train;

namespace {

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

template <typename T>
T load(const std::string& s, std::size_t at) {
  T v;
  REQUIRE(at + sizeof(T) <= s.size());
  std::memcpy(&v, s.data() + at, sizeof(T));
  return v;
}

// Splits a TFRecord stream into its payloads, checking both CRCs of every record.
std::vector<std::string> read_records(const std::string& bytes) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < bytes.size()) {
    const auto len = load<std::uint64_t>(bytes, at);
    CHECK(load<std::uint32_t>(bytes, at + 8) == masked_crc32c(bytes.substr(at, 8)));
    REQUIRE(at + 12 + len + 4 <= bytes.size());
    std::string data = bytes.substr(at + 12, len);
    CHECK(load<std::uint32_t>(bytes, at + 12 + len) == masked_crc32c(data));
    out.push_back(std::move(data));
    at += 12 + len + 4;
  }
  return out;
}

}  // namespace

TEST_CASE("crc32c matches the Castagnoli check value") {
  CHECK(crc32c("123456789") == 0xE3069283u);  // the standard check input (RFC 3720 B.4 family)
  CHECK(crc32c("") == 0u);
  // 32 bytes of zeros: RFC 3720's iSCSI test vector.
  CHECK(crc32c(std::string(32, '\0')) == 0x8A9136AAu);
}

TEST_CASE("tfrecord frames the payload with length and masked CRCs") {
  const std::string payload = "hello tensorboard";
  const std::string rec = tfrecord(payload);
  REQUIRE(rec.size() == 8 + 4 + payload.size() + 4);
  const auto records = read_records(rec);
  REQUIRE(records.size() == 1);
  CHECK(records[0] == payload);
  // A flipped payload byte no longer matches its CRC.
  std::string bad = rec;
  bad[14] ^= 1;
  CHECK(masked_crc32c(bad.substr(12, payload.size())) != load<std::uint32_t>(bad, 12 + payload.size()));
}

TEST_CASE("events are byte-identical to the tensorboard package's") {
  const std::string golden = read_file(std::filesystem::path(TITAN_SOURCE_DIR) / "tests/golden/tensorboard.tfevents");
  std::string ours;
  ours += tfrecord(tb_event(1700000000.25, 0, {}, "brain.Event:2"));
  ours += tfrecord(tb_event(1700000001.5, 7, {{"loss_metrics/global_avg_loss", 3.25}}));
  ours += tfrecord(tb_event(1700000001.5, 300, {{"mfu(%)", 0.0}}));
  ours += tfrecord(tb_event(1700000002.125, std::int64_t(1) << 40, {{"lr", -1.5e-4}}));
  CHECK(read_records(golden).size() == 4);
  CHECK(ours == golden);
}

TEST_CASE("TensorBoardWriter appends a version record, then one event per scalar") {
  const auto dir = std::filesystem::temp_directory_path() / ("titan_tb_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  {
    TensorBoardWriter w((dir / "run").string());
    CHECK(std::filesystem::path(w.path()).filename().string().rfind("events.out.tfevents.", 0) == 0);
    w.add_scalars(1, {{"grad_norm", 2.0}, {"lr", 1e-3}});
    w.add_scalars(2, {{"grad_norm", 1.5}});
    // Flushed per call: the file is complete before the writer closes (nothing lost on a crash).
    const auto records = read_records(read_file(w.path()));
    REQUIRE(records.size() == 4);
    CHECK(records[0].find("brain.Event:2") != std::string::npos);
    CHECK(records[1].find("grad_norm") != std::string::npos);
    CHECK(records[2].find("lr") != std::string::npos);
    CHECK(records[3].find("grad_norm") != std::string::npos);
  }
  std::filesystem::remove_all(dir);
}
