// Runs every registered case; prints one line per case ("ok", "FAIL" or "skip" and the name, then
// the failure or the skip reason indented on the next line) and a closing
// "N passed, N failed, N skipped" line. Exits 1 when any case failed.
// Usage: primal_core_test [name-filter]         run the cases whose name contains the filter
//        primal_core_test --list [name-filter]  print their names, one per line, run nothing
#include <cstdio>
#include <cstring>
#include <exception>

#include "testing.h"

int main(int argc, char** argv) {
  bool list = false;
  int arg = 1;
  if (arg < argc && std::strcmp(argv[arg], "--list") == 0) {
    list = true;
    ++arg;
  }
  if (arg < argc) primal_test::filter() = argv[arg];
  int passed = 0, failed = 0, skipped = 0;
  for (auto& c : primal_test::registry()) {
    if (!primal_test::filter().empty() && c.name.find(primal_test::filter()) == std::string::npos) continue;
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
