// Runs every registered case; prints one line per case ("ok", "FAIL" or "skip" and the name, then
// the failure or the skip reason indented on the next line) and a closing
// "N passed, N failed, N skipped" line. Exits 1 when any case failed.
// Usage: primal_core_test [--list] [--exclude TEXT]... [name-filter]
//   runs (--list: prints, one per line) the cases whose name contains the filter and none of the
//   --exclude texts (e.g. cases that run in a process of their own, so a device fault there
//   cannot take the others down).
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "testing.h"

int main(int argc, char** argv) {
  bool list = false;
  std::vector<std::string> exclude;
  int arg = 1;
  for (; arg < argc; ++arg) {
    if (std::strcmp(argv[arg], "--list") == 0) {
      list = true;
    } else if (std::strcmp(argv[arg], "--exclude") == 0 && arg + 1 < argc) {
      exclude.emplace_back(argv[++arg]);
    } else {
      break;
    }
  }
  if (arg < argc) primal_test::filter() = argv[arg];
  auto excluded = [&](const std::string& name) {
    for (const auto& e : exclude)
      if (name.find(e) != std::string::npos) return true;
    return false;
  };
  int passed = 0, failed = 0, skipped = 0;
  for (auto& c : primal_test::registry()) {
    if (!primal_test::filter().empty() && c.name.find(primal_test::filter()) == std::string::npos) continue;
    if (excluded(c.name)) continue;
    if (list) {
      std::printf("%s\n", c.name.c_str());
      continue;
    }
    try {
      c.fn();
      ++passed;
      std::printf("ok   %s\n", c.name.c_str());
    } catch (const primal_test::Skipped& s) {
      ++skipped;
      std::printf("skip %s\n     %s\n", c.name.c_str(), s.reason.c_str());
    } catch (const primal_test::Failure& f) {
      ++failed;
      std::printf("FAIL %s\n     %s\n", c.name.c_str(), f.what.c_str());
    } catch (const std::exception& e) {
      ++failed;
      std::printf("FAIL %s\n     exception: %s\n", c.name.c_str(), e.what());
    }
    std::fflush(stdout);
  }
  if (!list) std::printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed == 0 ? 0 : 1;
}
