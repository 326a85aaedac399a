#pragma once
// What every fuzz target shares. Bad input must end in titan::UserError (the one clear line the
// user sees); any other exception, a broken promise of a parser that accepted its input, a crash
// or a sanitizer report aborts, and libFuzzer keeps the input that did it.
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "core/errors.hpp"

namespace titan::fuzz {

// Aborts with `what` unless `ok`: for what a parser promises about the input it accepted.
inline void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz: a parser accepted its input but broke a promise: %s\n", what);
    std::abort();
  }
}

// Runs `body` on one input, treating UserError as the expected answer.
template <class F>
int run_one(F&& body) {
  try {
    body();
  } catch (const UserError&) {
    // expected for bad input
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: unexpected exception (not a UserError): %s\n", e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "fuzz: unexpected non-standard exception\n");
    std::abort();
  }
  return 0;
}

}  // namespace titan::fuzz
