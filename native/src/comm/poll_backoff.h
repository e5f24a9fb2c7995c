// Back-off for a thread that polls for asynchronous work to finish (the NCCL communicator waits
// for its stream this way so it can also check for a failed peer): the first polls run back to
// back (a short collective is seen at once), the next ones yield the core, and after that the
// thread sleeps between polls, 5 us doubling up to 200 us. A long wait then costs a few thousand
// polls per second instead of a whole core per rank, and adds at most 200 us after the work ends.
#pragma once
#include <chrono>
#include <thread>

namespace primal {

class PollBackoff {
 public:
  static constexpr long kSpinPolls = 64;   // polls back to back
  static constexpr long kYieldPolls = 64;  // then polls with a yield between them
  static constexpr std::chrono::microseconds kFirstSleep{5}, kMaxSleep{200};

  // The sleep after unsuccessful poll number n (1-based); zero while spinning or yielding.
  static std::chrono::microseconds sleepAfter(long n) {
    if (n <= kSpinPolls + kYieldPolls) return std::chrono::microseconds{0};
    std::chrono::microseconds d = kFirstSleep;
    for (long i = kSpinPolls + kYieldPolls + 1; i < n && d < kMaxSleep; ++i) d *= 2;
    return d < kMaxSleep ? d : kMaxSleep;
  }

  // Call after each poll that found the work unfinished.
  void pause() {
    ++polls_;
    if (polls_ <= kSpinPolls) return;
    if (polls_ <= kSpinPolls + kYieldPolls) {
      std::this_thread::yield();
      return;
    }
    std::this_thread::sleep_for(sleepAfter(polls_));
  }
  long polls() const { return polls_; }

 private:
  long polls_ = 0;
};

}  // namespace primal
