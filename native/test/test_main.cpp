// Runs every registered case; prints one line per case and a closing "N passed, N failed" line.
// Usage: primal_core_test [name-filter]
#include <cstdio>
#include <exception>

#include "testing.h"

int main(int argc, char** argv) {
  if (argc > 1) primal_test::filter() = argv[1];
  int passed = 0, failed = 0;
  for (auto& c : primal_test::registry()) {
    if (!primal_test::filter().empty() && c.name.find(primal_test::filter()) == std::string::npos)
      continue;
    try {
      c.fn();
      ++passed;
      std::printf("ok   %s\n", c.name.c_str());
    } catch (const primal_test::Failure& f) {
      ++failed;
      std::printf("FAIL %s\n     %s\n", c.name.c_str(), f.what.c_str());
    } catch (const std::exception& e) {
      ++failed;
      std::printf("FAIL %s\n     exception: %s\n", c.name.c_str(), e.what());
    }
    std::fflush(stdout);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
