// Which files of a shim directory a runner preloads, and where an installation keeps that
// directory: the one rule for gpu-broker-run (which puts the shims in front of a command it runs)
// and for gpu-broker cdi-spec (which writes the same environment into a container's).
//
// A shim library is a lib*.so.N file (the soname file, not a libX.so link) other than gpubroker's
// own internals (libgpubroker-*). They are found, not listed, so that a shim added later is
// preloaded without a change here.
//
//   launch::ShimLibraries shims;
//   shims.collect(launch::installed_shim_directory());
//   for (const auto& library : shims.paths()) ...   // /usr/lib/x86_64-linux-gnu/gpubroker/libcuda.so.1, ...
#pragma once

#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace gpubroker::launch {

// The shim libraries found so far, by absolute path, each name once: the first directory that
// holds a name wins.
class ShimLibraries {
 public:
  // Adds the shim libraries in `directory` in name order and, while `depth` > 0, those of its
  // subdirectories that deep (a build tree keeps each shim in a folder of its own). A missing or
  // unreadable directory adds nothing.
  void collect(const std::filesystem::path& directory, int depth = 0);

  [[nodiscard]] const std::vector<std::filesystem::path>& paths() const { return paths_; }
  [[nodiscard]] bool empty() const { return paths_.empty(); }
  // The directories that hold them, in the order of their first library.
  [[nodiscard]] std::vector<std::string> directories() const;

 private:
  std::vector<std::filesystem::path> paths_;
  std::set<std::string> names_;
};

// The installation's shim directory (shim_install_dir in meson.build), found from the running
// program as an installed program of bindir: the same relative position, so that a DESTDIR or a
// relocated install works as well as one in its prefix.
std::filesystem::path installed_shim_directory();

// The entries of a ':'-separated list such as LD_LIBRARY_PATH, empty ones dropped.
std::vector<std::string> search_path_entries(std::string_view list);

// `entries`, then the entries of `existing` (a ':'-separated list; null for none), each once.
std::string prepend_search_path(const std::vector<std::string>& entries, const char* existing);

}  // namespace gpubroker::launch
