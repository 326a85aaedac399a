// Checkpoint metadata and safetensors headers are validated before use (issue 19): every field's
// type and range, with one line naming the file, the field, the value and the fix; a full disk
// says so.
#include <catch2/catch.hpp>

#include <cerrno>
#include <cstring>
#include <functional>
#include <fstream>
#include <sstream>
#include <string>

#include "checkpoint/checkpointer.hpp"
#include "checkpoint/safetensors.hpp"
#include "core/errors.hpp"

using namespace titan;
using namespace titan::checkpoint;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const std::string kCorpus = std::string(TITAN_SOURCE_DIR) + "/tests/fuzz/corpus/";

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("checkpoint metadata: a real save validates, every field as written") {
  const Metadata m = parse_metadata(read_text(kCorpus + "checkpoint_metadata/valid_debugmodel_step1.json"), "m.json");
  CHECK(m.progress.step == 1);
  CHECK(m.progress.optimizer_steps == 1);
  CHECK_FALSE(m.model_only);
  CHECK(m.dtype == "float32");
  CHECK(m.model["flavor"] == "debugmodel");
  CHECK(m.data["seq_len"] == 32);
  REQUIRE(m.tensors.count("model.norm.weight"));
  const TensorInfo& t = m.tensors.at("model.norm.weight");
  CHECK(t.shape == Shape{256});
  REQUIRE(t.pieces.size() == 1);
  CHECK(t.pieces[0].row_begin == 0);
  CHECK(t.pieces[0].row_end == 256);
  CHECK(m.files.at("rank-00000.safetensors").bytes > 8);
  const Metadata mo = parse_metadata(read_text(kCorpus + "checkpoint_metadata/valid_model_only_bf16.json"), "m.json");
  CHECK(mo.model_only);
  CHECK(mo.tensors.at("model.norm.weight").dtype == "BF16");
}

TEST_CASE("checkpoint metadata: wrong fields are one line with the file, field, value and fix") {
  std::string text = read_text(kCorpus + "checkpoint_metadata/valid_debugmodel_step1.json");
  auto with = [&](const std::string& from, const std::string& to) {
    std::string t = text;
    const auto pos = t.find(from);
    REQUIRE(pos != std::string::npos);
    return t.replace(pos, from.size(), to);
  };
  auto err = [&](const std::string& t) { return error_of([&] { parse_metadata(t, "/ck/step-1/metadata.json"); }); };
  CHECK_THAT(err(with("\"step\": 1,", "\"step\": -1,")),
             Catch::Contains("'/ck/step-1/metadata.json': field step is -1, but it must be an integer >= 0; "
                             "the checkpoint is damaged"));
  CHECK_THAT(err(with("\"step\": 1,", "")), Catch::Contains("field step is missing"));
  CHECK_THAT(err(with("\"version\": 1", "\"version\": 2")), Catch::Contains("another titan.cpp version"));
  CHECK_THAT(err(with("\"windows_consumed\": ", "\"windows_consumed_x\": ")), Catch::Contains("field windows_consumed is missing"));
  CHECK_THAT(err(with("\"lr_scheduler_steps\": 1", "\"lr_scheduler_steps\": -2")), Catch::Contains("lr_scheduler_steps is -2"));
  CHECK_THAT(err(with("\"dtype\": \"F32\"", "\"dtype\": \"BF16\"")),
             Catch::Contains(".dtype is \"BF16\", but it must be \"F32\""));
  CHECK_THAT(err(with("\"optimizer_steps\": 1", "\"optimizer_steps\": true")), Catch::Contains("optimizer_steps is true"));
  // A huge or binary value is cut and escaped: the line stays one short line.
  const std::string huge = err(with("\"step\": 1,", "\"step\": \"" + std::string(100000, 'a') + "\\u0000\\n\",")) ;
  CHECK(huge.size() < 400);
  CHECK(huge.find('\n') == std::string::npos);
  CHECK_THAT(err("[" + std::string(1000, '[') + std::string(1001, ']')), Catch::Contains("nested deeper than 64"));
  CHECK_THAT(err("{\"step\": "), Catch::Contains("is not valid JSON (syntax error at byte"));
  CHECK_THAT(err(std::string("\xff\xfe\x00", 3)), Catch::Contains("is not valid JSON"));
}

TEST_CASE("checkpoint metadata: chunk checksum lists") {
  const auto [rows, hashes] = parse_chunk_checksums("2:0123456789abcdef,fedcba9876543210", 4, "f", "t");
  CHECK(rows == 2);
  CHECK(hashes.size() == 2);
  CHECK(parse_chunk_checksums("16384:0123456789abcdef", 256, "f", "t").first == 256);  // one chunk for a small piece
  for (const char* bad : {"", ":", "x:0123456789abcdef", "0:0123456789abcdef", "2:0123456789abcdef",
                          "2:0123456789abcdef,", "2:0123456789abcdef,,", "99999999999999999999:0123456789abcdef",
                          "4:0123456789ABCDEF"})
    CHECK_THAT(error_of([&] { parse_chunk_checksums(bad, 4, "f", "t"); }), Catch::Contains("bad checksum list"));
}

TEST_CASE("safetensors header: parsed from memory, every entry checked against the file") {
  const std::string valid = read_text(kCorpus + "safetensors_header/valid_two_tensors.safetensors");
  const SafetensorsHeader h = parse_safetensors_header(valid, valid.size(), "v.safetensors");
  REQUIRE(h.tensors.count("model.norm.weight"));
  CHECK(h.tensors.at("model.norm.weight").second == Shape{4});
  CHECK(h.tensors.at("x").first == DType::bf16);
  CHECK(h.metadata.at("format") == "pt");
  auto header = [](const std::string& json, size_t data_bytes) {
    std::string out(8, '\0');
    const std::uint64_t n = json.size();
    std::memcpy(out.data(), &n, 8);
    return out + json + std::string(data_bytes, '\0');
  };
  auto err = [&](const std::string& bytes) { return error_of([&] { parse_safetensors_header(bytes, bytes.size(), "b.st"); }); };
  CHECK_THAT(err(header(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)), Catch::Contains("not a size >= 0"));
  CHECK_THAT(err(header(R"({"a":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,4]}})", 4)),
             Catch::Contains("is too large"));
  CHECK_THAT(err(header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8)), Catch::Contains("points outside"));
  CHECK_THAT(err(header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4)), Catch::Contains("points outside"));
  CHECK_THAT(err(header(R"({"__metadata__":{"k":[1]}})", 0)), Catch::Contains("__metadata__ \"k\" is [1], not a string"));
  CHECK_THAT(err(header(R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", 1)),
             Catch::Contains("unsupported safetensors dtype \"Q4\""));
  CHECK_THAT(err(std::string("\x05\x00", 2)), Catch::Contains("shorter than its 8-byte header length"));
  CHECK_THAT(err(std::string(8, '\xff')), Catch::Contains("header length 18446744073709551615"));
}

TEST_CASE("a full disk says so: no space left on device") {
  // /dev/full answers every write with ENOSPC, as a full disk does.
  std::ifstream probe("/dev/full");
  if (!probe) {
    WARN("no /dev/full here: skipped");
    return;
  }
  const Tensor t = Tensor::full({1024}, 1.0);
  const std::string e = error_of([&] { write_safetensors("/dev/full", {{"t", t}}); });
  CHECK_THAT(e, Catch::Contains("safetensors: cannot write '/dev/full': no space left on device"));
  CHECK(errno_text(ENOSPC) == "no space left on device");
}
