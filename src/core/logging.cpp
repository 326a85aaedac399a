#include "core/logging.hpp"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <unistd.h>

namespace titan {

namespace {

// Forwards to the console sink; while a status line is shown (a terminal only), each log line
// first erases it and then draws it again below, so the bar stays the last line on screen.
class StatusLineSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit StatusLineSink(std::shared_ptr<spdlog::sinks::sink> inner) : inner_(std::move(inner)) {}
  void set_status(const std::string& line) {
    std::lock_guard<std::mutex> lock(mutex_);
    status_ = line;
    std::fputs("\r\033[K", stderr);
    std::fputs(status_.c_str(), stderr);
    std::fflush(stderr);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (!status_.empty()) std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    inner_->log(msg);
    inner_->flush();
    if (!status_.empty()) {
      std::fputs(status_.c_str(), stderr);
      std::fflush(stderr);
    }
  }
  void flush_() override { inner_->flush(); }
  void set_pattern_(const std::string& pattern) override { inner_->set_pattern(pattern); }
  void set_formatter_(std::unique_ptr<spdlog::formatter> f) override { inner_->set_formatter(std::move(f)); }

 private:
  std::shared_ptr<spdlog::sinks::sink> inner_;
  std::string status_;
};

std::shared_ptr<StatusLineSink> g_status_sink;  // set when stderr is a terminal and this rank logs

}  // namespace

void init_logging(int rank, bool all_ranks, bool color) {
  std::shared_ptr<spdlog::sinks::sink> console;
  if (color) console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  else console = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  g_status_sink.reset();
  if (rank == 0 && isatty(STDERR_FILENO)) console = g_status_sink = std::make_shared<StatusLineSink>(console);
  auto logger = std::make_shared<spdlog::logger>("titan", console);
  const std::string who = rank == 0 ? "" : "[rank " + std::to_string(rank) + "] ";
  logger->set_pattern("[titan] %H:%M:%S %^%l%$ " + who + "%v");
  logger->set_level(rank == 0 || all_ranks ? spdlog::level::info : spdlog::level::err);
  spdlog::set_default_logger(logger);
}

bool has_status_line() { return g_status_sink != nullptr; }

void set_status_line(const std::string& line) {
  if (g_status_sink) g_status_sink->set_status(line);
}

}  // namespace titan
