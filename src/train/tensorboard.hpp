#pragma once
// TensorBoard event files (metrics.enable_tensorboard), written without TensorFlow or protobuf.
//
// An event file is a sequence of TFRecords, each
//   uint64 length (little endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
// with masked_crc(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 and CRC-32C (Castagnoli, reflected
// polynomial 0x82f63b78). Each record's data is a serialized tensorflow.Event protobuf:
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
// The first record carries file_version "brain.Event:2"; then one Event per scalar, as
// torch.utils.tensorboard's add_scalar writes them. File name as TensorFlow's:
// events.out.tfevents.{unix seconds}.{host}.{pid}.0
#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace titan::train {

std::uint32_t crc32c(std::string_view data);
std::uint32_t masked_crc32c(std::string_view data);
// One TFRecord around `data`.
std::string tfrecord(std::string_view data);
// A serialized Event with `scalars` as one Summary (each a Value with simple_value), or with
// file_version when `file_version` is non-empty.
std::string tb_event(double wall_time, std::int64_t step, const std::vector<std::pair<std::string, double>>& scalars,
                     std::string_view file_version = {});

class TensorBoardWriter {
 public:
  // Creates `folder` and a new event file in it.
  explicit TensorBoardWriter(const std::string& folder);
  // Appends one Event per scalar and flushes, so a crash loses nothing logged.
  void add_scalars(std::int64_t step, const std::vector<std::pair<std::string, double>>& scalars);
  const std::string& path() const { return path_; }

 private:
  void write(const std::string& record);
  std::string path_;
  std::ofstream out_;
};

}  // namespace titan::train
