#pragma once
// Fault injection for the fault-tolerance tests, from the config key debug.fault:
//   kill:RANK:STEP          world rank RANK dies by SIGKILL at the start of step STEP
//   hang:RANK:STEP          it stops answering (sleeps forever) there
//   kill_in_save:RANK:STEP  it dies in the middle of writing its checkpoint file for step STEP
//                           (the file is left half written, as by a crash)
// Unset or empty: no fault. Anything else is a UserError.
#include <cstdint>
#include <string>

namespace titan {

struct FaultInjection {
  enum class Kind { none, kill, hang, kill_in_save } kind = Kind::none;
  int rank = -1;
  std::int64_t step = -1;

  // Parses a debug.fault value; throws UserError naming the key for anything but the forms above.
  static FaultInjection parse(const std::string& spec);
  bool at(Kind k, int rank, std::int64_t step) const { return kind == k && rank == this->rank && step == this->step; }
  // kill / hang at the start of a step, when they name this rank and step.
  void at_step_start(int rank, std::int64_t step) const;
  // kill_in_save: truncates `path` to half its size and dies.
  void in_save(int rank, std::int64_t step, const std::string& path) const;
};

}  // namespace titan
