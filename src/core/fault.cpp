#include "core/fault.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "core/errors.hpp"

namespace titan {

FaultInjection FaultInjection::parse(const std::string& spec) {
  FaultInjection f;
  if (spec.empty()) return f;
  char kind[32] = {};
  long long step = -1;
  int used = 0;
  const std::string usage = "debug.fault = '" + printable(spec) +
                            "' is not kill:RANK:STEP, hang:RANK:STEP or kill_in_save:RANK:STEP; leave it empty to train normally";
  if (std::sscanf(spec.c_str(), "%31[a-z_]:%d:%lld%n", kind, &f.rank, &step, &used) != 3 ||
      used != static_cast<int>(spec.size()))
    throw UserError(usage);
  const std::string k = kind;
  if (k == "kill") f.kind = Kind::kill;
  else if (k == "hang") f.kind = Kind::hang;
  else if (k == "kill_in_save") f.kind = Kind::kill_in_save;
  else throw UserError(usage);
  f.step = step;
  return f;
}

void FaultInjection::at_step_start(int r, std::int64_t s) const {
  if (!at(Kind::kill, r, s) && !at(Kind::hang, r, s)) return;
  spdlog::default_logger()->flush();
  if (kind == Kind::kill) std::raise(SIGKILL);
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(60));
}

void FaultInjection::in_save(int r, std::int64_t s, const std::string& path) const {
  if (!at(Kind::kill_in_save, r, s)) return;
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec) std::filesystem::resize_file(path, size / 2, ec);
  spdlog::default_logger()->flush();
  std::raise(SIGKILL);
}

}  // namespace titan
