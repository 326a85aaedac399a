// libFuzzer target: a checkpoint's metadata.json, parsed from memory by parse_metadata, the same
// schema validation the loader runs before it uses any field (src/checkpoint/checkpointer.hpp).
// A bad file must be a titan::UserError; any other exception, crash or sanitizer report is a bug.
// When it validates, the promises the loader relies on hold.
#include <cstdint>
#include <string>
#include <string_view>

#include "checkpoint/checkpointer.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  using titan::fuzz::expect;
  return titan::fuzz::run_one([&] {
    const titan::checkpoint::Metadata m = titan::checkpoint::parse_metadata(text, "fuzz/step-1/metadata.json");
    const auto& p = m.progress;
    expect(p.step >= 0 && p.tokens_seen >= 0 && p.windows_consumed >= 0 && p.optimizer_steps >= 0 &&
               p.lr_scheduler_steps >= 0,
           "negative progress");
    expect(m.mesh_replicate * m.mesh_shard * m.mesh_tp == m.mesh_world, "mesh world != replicate x shard x tp");
    for (const auto& [name, t] : m.tensors) {
      const std::int64_t rows = t.shape.empty() ? 1 : t.shape[0];
      std::int64_t prev_end = 0;
      for (const auto& piece : t.pieces) {
        expect(m.files.count(piece.file) == 1, "a piece names an unlisted file");
        expect(0 <= piece.row_begin && piece.row_begin < piece.row_end && piece.row_end <= rows, "piece rows");
        expect(piece.row_begin >= prev_end, "pieces overlap or are unsorted");
        prev_end = piece.row_end;
      }
      expect(!m.model_only || name.rfind("model.", 0) == 0, "optimizer state in a model-only checkpoint");
    }
    for (const auto& [name, f] : m.files)
      expect(name.find('/') == std::string::npos && name.find("..") == std::string::npos && f.bytes >= 8, "file entry");
  });
}
