// The back-off of polling waits (src/comm/poll_backoff.h, used by the NCCL communicator's wait):
// back-to-back polls first, then yields, then sleeps that double up to a cap; and a wait built on
// it ends once the work is done.
#include <atomic>
#include <chrono>
#include <thread>

#include "comm/poll_backoff.h"
#include "testing.h"

using primal::PollBackoff;
using us = std::chrono::microseconds;

PRIMAL_TEST("cpu/poll back-off: spin, yield, then sleeps doubling to 200 us; a wait ends when done") {
  const long quiet = PollBackoff::kSpinPolls + PollBackoff::kYieldPolls;
  for (long n = 1; n <= quiet; ++n) EXPECT_TRUE(PollBackoff::sleepAfter(n) == us{0});
  EXPECT_TRUE(PollBackoff::sleepAfter(quiet + 1) == us{5});
  EXPECT_TRUE(PollBackoff::sleepAfter(quiet + 2) == us{10});
  EXPECT_TRUE(PollBackoff::sleepAfter(quiet + 6) == us{160});
  EXPECT_TRUE(PollBackoff::sleepAfter(quiet + 7) == us{200});
  us last{0};
  for (long n = 1; n <= quiet + 100000; n += 37) {
    const us d = PollBackoff::sleepAfter(n);
    EXPECT_TRUE(d >= last && d <= us{200});
    last = d;
  }
  EXPECT_TRUE(PollBackoff::sleepAfter(1L << 40) == us{200});

  // A wait on work another thread finishes: it returns, having paused between its polls.
  std::atomic<bool> done{false};
  std::thread worker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    done = true;
  });
  PollBackoff b;
  while (!done.load()) b.pause();
  worker.join();
  EXPECT_TRUE(b.polls() > 0);
}
