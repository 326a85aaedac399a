#pragma once
// Small helpers shared by the unit tests.
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace titan::test {

// A TOML (or any) file in a fresh temporary folder, removed with the object.
class TempFile {
 public:
  TempFile(const std::string& name, const std::string& text) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "titan-test-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
    path_ = (dir_ / name).string();
    std::ofstream(path_) << text;
  }
  ~TempFile() { std::filesystem::remove_all(dir_); }
  const std::string& path() const { return path_; }

 private:
  std::filesystem::path dir_;
  std::string path_;
};

}  // namespace titan::test
