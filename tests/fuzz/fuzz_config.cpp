// Fuzz target: the config parsers (TOML file text, command line) with validation and the plan.
// Input: first byte even -> the rest is a TOML file; odd -> the rest is a command line, one
// argument per '\n'. Bad input must end in titan::UserError (fuzz_common.hpp).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/cli.hpp"
#include "config/toml_io.hpp"
#include "config/validate.hpp"
#include "fuzz_common.hpp"
#include "train/plan.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  return titan::fuzz::run_one([&] {
    titan::config::JobConfig cfg;
    if (data[0] % 2 == 0) {
      titan::config::apply_toml_text(cfg, body, "fuzz.toml");
    } else {
      std::vector<std::string> args;
      std::string arg;
      for (char c : body) {
        if (c == '\n') {
          args.push_back(arg);
          arg.clear();
        } else {
          arg.push_back(c);
        }
      }
      args.push_back(arg);
      titan::config::CommandLine cl = titan::config::parse_command_line(args);
      if (cl.show_help || cl.config_reference) return;
      cfg = cl.config;
    }
    titan::config::validate(cfg);
    (void)titan::train::make_plan(cfg, 8, titan::DeviceInfo{});
  });
}
