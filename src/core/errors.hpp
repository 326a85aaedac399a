#pragma once
// Errors that reach the user as one line and an exit code (DESIGN.md section 10).
// Anything else that escapes to main is a bug and exits 1 with its message.
#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>

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

// A value the user gave (a key, a path, a token, a file's bytes) as it may appear in an error
// line: control and non-ASCII bytes escaped as \xNN, cut after `max_chars` with the full length
// said, so a huge or binary input never floods the terminal or hides the message.
inline std::string printable(std::string_view value, std::size_t max_chars = 60) {
  std::string out;
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (out.size() >= max_chars) {
      out += "... (" + std::to_string(value.size()) + " bytes)";
      break;
    }
    const unsigned char c = static_cast<unsigned char>(value[i]);
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace titan
