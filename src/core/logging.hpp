#pragma once
// Console logging through spdlog to stderr (stdout stays clean for --job.print_config and
// --config-reference output) (DESIGN.md section 9): rank 0 logs, other ranks log only
// errors unless metrics.save_for_all_ranks; lines from a non-zero rank carry "[rank N]".
// On a terminal, rank 0 may also keep one status line (the training progress bar) under the log.
#include <spdlog/spdlog.h>

#include <string>

namespace titan {

void init_logging(int rank, bool all_ranks, bool color);

// Whether set_status_line shows anything: rank 0 with stderr on a terminal.
bool has_status_line();
// Replaces the status line (no newline; "" removes it). Log lines print above it.
void set_status_line(const std::string& line);

}  // namespace titan
