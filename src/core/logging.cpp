#include "core/logging.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <memory>
#include <string>

namespace titan {

void init_logging(int rank, bool all_ranks, bool color) {
  std::shared_ptr<spdlog::logger> logger;
  if (color)
    logger = std::make_shared<spdlog::logger>("titan", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  else
    logger = std::make_shared<spdlog::logger>("titan", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  const std::string who = rank == 0 ? "" : "[rank " + std::to_string(rank) + "] ";
  logger->set_pattern("[titan] %H:%M:%S %^%l%$ " + who + "%v");
  logger->set_level(rank == 0 || all_ranks ? spdlog::level::info : spdlog::level::err);
  spdlog::set_default_logger(logger);
}

}  // namespace titan
