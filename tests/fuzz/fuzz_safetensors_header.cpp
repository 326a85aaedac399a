// libFuzzer target: a safetensors file's header (8-byte length + JSON), parsed from memory by
// parse_safetensors_header against a file of the input's size, then every tensor's chunk
// checksum list ("xxh3:<name>" in __metadata__) through parse_chunk_checksums, as a checkpoint
// load does. A bad file must be a titan::UserError; any other exception, crash or sanitizer
// report is a bug. When it parses, every tensor lies inside the file and a checksum list that
// parses has one hash per chunk.
#include <cstdint>
#include <string>
#include <string_view>

#include "checkpoint/checkpointer.hpp"
#include "checkpoint/safetensors.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  using titan::fuzz::expect;
  titan::checkpoint::SafetensorsHeader h;
  bool parsed = false;
  titan::fuzz::run_one([&] {
    h = titan::checkpoint::parse_safetensors_header(bytes, size, "fuzz.safetensors");
    parsed = true;
  });
  if (!parsed) return 0;
  for (const auto& [name, dtype_shape] : h.tensors) {
    const auto& [dtype, shape] = dtype_shape;
    std::uint64_t bytes_needed = titan::dtype_size(dtype);
    for (auto d : shape) bytes_needed *= static_cast<std::uint64_t>(d);
    const std::uint64_t begin = h.data_begin.at(name);
    expect(begin <= size && bytes_needed <= size - begin, "a tensor outside the file passed the header check");
    const auto sums = h.metadata.find("xxh3:" + name);
    if (sums == h.metadata.end()) continue;
    const std::int64_t rows = shape.empty() ? 1 : shape[0];  // (structured bindings cannot be captured in C++17/clang 14)
    const std::string tensor = name;
    titan::fuzz::run_one([&] {
      const auto [chunk_rows, hashes] =
          titan::checkpoint::parse_chunk_checksums(sums->second, rows, "fuzz.safetensors", tensor);
      expect(chunk_rows >= 1 && (rows == 0 || static_cast<std::int64_t>(hashes.size()) == (rows + chunk_rows - 1) / chunk_rows),
             "a checksum list inconsistent with the rows");
    });
  }
  return 0;
}
