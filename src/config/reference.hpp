#pragma once
#include <string>

namespace titan::config {
// docs/config.md, generated from the schema (run_train --config-reference). A test keeps the
// committed file equal to this output.
std::string config_reference_markdown();
}  // namespace titan::config
