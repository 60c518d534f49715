#include "launch/shim_libraries.h"

#include <algorithm>
#include <regex>

namespace gpubroker::launch {

namespace fs = std::filesystem;

namespace {

bool is_shim_library(const fs::directory_entry& entry) {
  static const std::regex soname_file(R"(lib[A-Za-z0-9_+.-]+\.so\.[0-9]+)");
  std::error_code ignored;
  const std::string name = entry.path().filename().string();
  return entry.is_regular_file(ignored) && !entry.is_symlink(ignored) && std::regex_match(name, soname_file) &&
         name.rfind("libgpubroker", 0) != 0;
}

}  // namespace

void ShimLibraries::collect(const fs::path& directory, int depth) {
  std::error_code error;
  std::vector<fs::directory_entry> entries;
  for (const auto& entry : fs::directory_iterator(directory, error)) entries.push_back(entry);
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.path() < b.path(); });
  for (const auto& entry : entries) {
    std::error_code ignored;
    if (depth > 0 && entry.is_directory(ignored) && !entry.is_symlink(ignored) &&
        entry.path().extension() != ".p") {  // meson's object directories
      collect(entry.path(), depth - 1);
    } else if (is_shim_library(entry) && names_.insert(entry.path().filename().string()).second) {
      paths_.push_back(fs::weakly_canonical(entry.path(), ignored));
    }
  }
}

std::vector<std::string> ShimLibraries::directories() const {
  std::vector<std::string> directories;
  for (const fs::path& library : paths_) {
    const std::string directory = library.parent_path().string();
    if (std::find(directories.begin(), directories.end(), directory) == directories.end()) directories.push_back(directory);
  }
  return directories;
}

fs::path installed_shim_directory() {
  std::error_code ignored;
  const fs::path self = fs::read_symlink("/proc/self/exe", ignored).parent_path();
  return (self / fs::path(GPUBROKER_INSTALL_SHIM_DIR).lexically_relative(GPUBROKER_INSTALL_BIN_DIR)).lexically_normal();
}

std::vector<std::string> search_path_entries(std::string_view list) {
  std::vector<std::string> entries;
  std::string entry;
  for (const char c : list) {
    if (c == ':') {
      if (!entry.empty()) entries.push_back(entry);
      entry.clear();
    } else {
      entry += c;
    }
  }
  if (!entry.empty()) entries.push_back(entry);
  return entries;
}

std::string prepend_search_path(const std::vector<std::string>& entries, const char* existing) {
  std::vector<std::string> all = entries;
  if (existing != nullptr) {
    for (std::string& entry : search_path_entries(existing)) all.push_back(std::move(entry));
  }
  std::string joined;
  std::set<std::string> seen;
  for (const std::string& entry : all) {
    if (!seen.insert(entry).second) continue;
    if (!joined.empty()) joined += ':';
    joined += entry;
  }
  return joined;
}

}  // namespace gpubroker::launch
