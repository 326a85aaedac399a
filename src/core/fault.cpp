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

FaultInjection FaultInjection::from_environment() {
  FaultInjection f;
  const char* env = std::getenv("TITAN_FAULT");
  if (!env || !*env) return f;
  char kind[32] = {};
  long long step = -1;
  const std::string usage = std::string("TITAN_FAULT='") + env +
                            "' is not kill:RANK:STEP, hang:RANK:STEP or kill_in_save:RANK:STEP; unset it to train normally";
  if (std::sscanf(env, "%31[a-z_]:%d:%lld", kind, &f.rank, &step) != 3) throw UserError(usage);
  const std::string k = kind;
  if (k == "kill") f.kind = Kind::kill;
  else if (k == "hang") f.kind = Kind::hang;
  else if (k == "kill_in_save") f.kind = Kind::kill_in_save;
  else throw UserError(usage);
  f.step = step;
  spdlog::warn("fault injection: world rank {} will {} at step {} (TITAN_FAULT)", f.rank, k, f.step);
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
