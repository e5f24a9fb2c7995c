// The op profiler when timestamps or ops fail: a failing end timestamp must not end the process
// (a destructor that throws calls std::terminate); the profiler's next call reports it instead,
// once. An op that throws is reported by its own exception and leaves the profiler usable.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "primal/error.h"
#include "primal/op_profile.h"
#include "testing.h"

using namespace primal;

namespace {

// A steady clock that can be told to refuse one future timestamp (as a CUDA event record does
// after a device error); counts the timestamps it took.
class FlakyClock final : public OpClock {
 public:
  size_t taken = 0;
  // The k-th record() call from now (1 = the next one) throws.
  void refuse(size_t k) { refuseIn_ = k; }
  size_t capacity() const override { return inner_.capacity(); }
  size_t record() override {
    if (refuseIn_ > 0 && --refuseIn_ == 0) throw Error("timestamp refused");
    ++taken;
    return inner_.record();
  }
  std::vector<double> elapsedMs() override { return inner_.elapsedMs(); }
  const char* kind() const override { return "flaky"; }

 private:
  size_t refuseIn_ = 0;
  SteadyOpClock inner_{64};
};

std::string errorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

uint64_t callsOf(const OpProfileReport& r, const char* name) {
  for (const OpStat& o : r.ops)
    if (o.name == name) return o.calls;
  return 0;
}

struct Fixture {
  FlakyClock* clock;
  std::unique_ptr<ProfilingBackend> p;
  std::vector<float> x, y;
  Fixture() : x(64, 1.0f), y(64, 1.0f) {
    auto c = std::make_unique<FlakyClock>();
    clock = c.get();
    p = std::make_unique<ProfilingBackend>(makeCpuBackend(1), std::move(c));
  }
};

}  // namespace

PRIMAL_TEST("trainer/op profile: a failed end timestamp is reported by the next call, not a crash") {
  Fixture f;
  ProfilingBackend& p = *f.p;
  const size_t n = f.x.size();
  // add's begin timestamp is taken, its end timestamp is refused: add still returns normally
  // (before, the Scope destructor threw and the process ended) and did its work.
  f.clock->refuse(2);
  p.add(f.y.data(), f.x.data(), n);
  EXPECT_EQ(f.y[0], 2.0f);
  // The next call reports it, and does not run.
  const std::string msg = errorOf([&] { p.scale(f.y.data(), 3.0f, n); });
  EXPECT_TRUE(msg.find("end timestamp of add") != std::string::npos);
  EXPECT_TRUE(msg.find("timestamp refused") != std::string::npos);
  EXPECT_EQ(f.y[0], 2.0f);
  // Reported once: the profiler goes on.
  p.scale(f.y.data(), 3.0f, n);
  EXPECT_EQ(f.y[0], 6.0f);
  p.endStep();
  OpProfileReport r = p.report();
  EXPECT_EQ(callsOf(r, "add"), uint64_t(1));
  EXPECT_EQ(callsOf(r, "scale"), uint64_t(1));
  EXPECT_EQ(r.steps, uint64_t(1));

  // endStep() and sync() report a pending failure too.
  f.clock->refuse(2);
  p.add(f.y.data(), f.x.data(), n);
  EXPECT_TRUE(errorOf([&] { p.endStep(); }).find("end timestamp of add") != std::string::npos);
  p.endStep();
  f.clock->refuse(2);
  p.add(f.y.data(), f.x.data(), n);
  EXPECT_TRUE(errorOf([&] { p.sync(); }).find("end timestamp of add") != std::string::npos);
  p.sync();
  EXPECT_EQ(f.y[0], 8.0f);
}

PRIMAL_TEST("trainer/op profile: an op that throws leaves the clock alone and the profiler usable") {
  Fixture f;
  ProfilingBackend& p = *f.p;
  std::vector<float> c(16, 0.0f);
  const size_t before = f.clock->taken;
  // lda < K: the CPU backend throws. Only the begin timestamp was taken.
  const std::string msg =
      errorOf([&] { p.gemm(false, false, 4, 4, 8, 1.0f, f.x.data(), 4, f.y.data(), 4, 0.0f, c.data(), 4); });
  EXPECT_TRUE(!msg.empty());
  EXPECT_TRUE(msg.find("op profiling") == std::string::npos);  // the op's own error
  EXPECT_EQ(f.clock->taken, before + 1);
  // No deferred error; later ops are timed as usual.
  p.add(f.y.data(), f.x.data(), f.x.size());
  EXPECT_EQ(f.clock->taken, before + 3);
  p.endStep();
  const OpProfileReport r = p.report();
  EXPECT_EQ(callsOf(r, "gemm"), uint64_t(1));
  EXPECT_EQ(callsOf(r, "add"), uint64_t(1));
  EXPECT_TRUE(r.busyMs >= 0.0);
}
