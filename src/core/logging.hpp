#pragma once
// Console logging through spdlog to stderr (stdout stays clean for --job.print_config and
// --config-reference output) (DESIGN.md section 9): rank 0 logs, other ranks log only
// errors unless metrics.save_for_all_ranks; lines from a non-zero rank carry "[rank N]".
#include <spdlog/spdlog.h>

namespace titan {

void init_logging(int rank, bool all_ranks, bool color);

}  // namespace titan
