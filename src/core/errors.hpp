#pragma once
// Errors that reach the user as one line and an exit code (DESIGN.md section 10).
// Anything else that escapes to main is a bug and exits 1 with its message.
#include <stdexcept>
#include <string>

namespace titan {

// Process exit codes of run_train.
enum ExitCode : int {
  kExitOk = 0,
  kExitRuntimeError = 1,   // I/O failure, numerical fault, a bug
  kExitUsageError = 2,     // bad config, CLI, file or checkpoint: the user can fix it
  kExitNotImplemented = 3  // a valid request for something this build cannot do yet
};

// A mistake the user can fix (config, CLI, path, shape, divisibility). `what()` is the whole line.
class UserError : public std::runtime_error {
 public:
  explicit UserError(const std::string& message, int exit_code = kExitUsageError)
      : std::runtime_error(message), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

// Thrown on the healthy ranks when an agreement step finds that another rank failed: the exit
// code is already agreed, and the failed rank reported its own error.
class PeerFailure : public UserError {
 public:
  using UserError::UserError;
};

}  // namespace titan
