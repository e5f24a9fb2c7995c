// A minimal test registry for the core's own test executable (no Node, no external framework),
// so the same checks run on a GPU machine that has only a compiler.
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace primal_test {

struct Case {
  std::string name;
  std::function<void()> fn;
};

inline std::vector<Case>& registry() {
  static std::vector<Case> r;
  return r;
}

struct Register {
  Register(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

struct Failure {
  std::string what;
};

// Thrown by PRIMAL_SKIP: the case cannot run here (e.g. no GPU). The runner reports it as
// skipped with the reason, never as passed.
struct Skipped {
  std::string reason;
};

// Set by the runner: leave out cases whose name does not contain this filter.
inline std::string& filter() {
  static std::string f;
  return f;
}

// Sets an environment variable (e.g. one the CUDA backend reads when it is created) for one
// scope, restoring the previous value after.
class EnvScope {
 public:
  EnvScope(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv(name, value, 1);
  }
  ~EnvScope() {
    if (had_) setenv(name_.c_str(), old_.c_str(), 1);
    else unsetenv(name_.c_str());
  }
  EnvScope(const EnvScope&) = delete;
  EnvScope& operator=(const EnvScope&) = delete;

 private:
  std::string name_, old_;
  bool had_ = false;
};

}  // namespace primal_test

#define PRIMAL_CAT2(a, b) a##b
#define PRIMAL_CAT(a, b) PRIMAL_CAT2(a, b)
#define PRIMAL_TEST(name)                                                \
  static void PRIMAL_CAT(primal_test_fn_, __LINE__)();                   \
  static ::primal_test::Register PRIMAL_CAT(primal_test_reg_, __LINE__)( \
      name, PRIMAL_CAT(primal_test_fn_, __LINE__));                      \
  static void PRIMAL_CAT(primal_test_fn_, __LINE__)()

// Ends the current case as skipped, e.g. PRIMAL_SKIP("no GPU").
#define PRIMAL_SKIP(reason) \
  throw ::primal_test::Skipped { reason }

#define EXPECT_TRUE(cond)                                        \
  do {                                                           \
    if (!(cond)) {                                               \
      std::ostringstream os_;                                    \
      os_ << __FILE__ << ":" << __LINE__ << ": expected " #cond; \
      throw ::primal_test::Failure{os_.str()};                   \
    }                                                            \
  } while (0)

#define EXPECT_EQ(a, b)                                                                              \
  do {                                                                                               \
    auto va_ = (a);                                                                                  \
    auto vb_ = (b);                                                                                  \
    if (!(va_ == vb_)) {                                                                             \
      std::ostringstream os_;                                                                        \
      os_ << __FILE__ << ":" << __LINE__ << ": " #a " == " #b " failed: " << +va_ << " vs " << +vb_; \
      throw ::primal_test::Failure{os_.str()};                                                       \
    }                                                                                                \
  } while (0)

// |a-b| <= atol + rtol*|b|
#define EXPECT_NEAR(a, b, atol, rtol)                                                              \
  do {                                                                                             \
    double va_ = (a), vb_ = (b);                                                                   \
    if (!(std::fabs(va_ - vb_) <= (atol) + (rtol)*std::fabs(vb_))) {                               \
      std::ostringstream os_;                                                                      \
      os_.precision(9);                                                                            \
      os_ << __FILE__ << ":" << __LINE__ << ": " #a " ~= " #b " failed: " << va_ << " vs " << vb_; \
      throw ::primal_test::Failure{os_.str()};                                                     \
    }                                                                                              \
  } while (0)
