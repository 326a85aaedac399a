#pragma once
// JobConfig: the typed configuration of one run, generated from schema.def so that each key is
// declared once. Access is plain C++ (`cfg.training.seq_len`, `cfg.float8.recipe_name`); the
// runtime key table in schema.hpp gives the same fields by name for loading and printing.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace titan::config {

// C++ type of each schema kind.
using Bool_t = bool;
using Int_t = std::int64_t;
using Float_t = double;
using String_t = std::string;
using Enum_t = std::string;
using List_t = std::vector<std::string>;
using OptInt_t = std::optional<std::int64_t>;
using OptFloat_t = std::optional<double>;
using OptString_t = std::optional<std::string>;
using OptEnum_t = std::optional<std::string>;

#include "config/schema.def"

#define TITAN_FIELD(kind, name, def, support, check, help) kind##_t name = def;
#define TITAN_SECTION_STRUCT(member, path, KEYS) \
  struct member##_section {                      \
    KEYS(TITAN_FIELD)                            \
  };
TITAN_SECTIONS(TITAN_SECTION_STRUCT)
#undef TITAN_SECTION_STRUCT
#undef TITAN_FIELD

struct JobConfig {
#define TITAN_SECTION_MEMBER(member, path, KEYS) member##_section member;
  TITAN_SECTIONS(TITAN_SECTION_MEMBER)
#undef TITAN_SECTION_MEMBER

  // Load metadata, not configuration: where each explicitly set key came from ("file.toml:12" or
  // "--training.steps"), and the warnings (deprecated spellings, keys with no effect) to print.
  std::map<std::string, std::string> sources;
  std::vector<std::string> warnings;
};

}  // namespace titan::config
