#include "thread_pool.h"

#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace primal {
namespace cpu {

namespace {

// Set while a thread executes a part, so nested regions run inline instead of deadlocking.
thread_local bool tlsInRegion = false;

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// Ops come back to back (microseconds apart) during a training step, so workers spin briefly
// before sleeping; spinning long would steal the core from OpenBLAS's own threads.
constexpr auto kSpinPause = std::chrono::microseconds(30);
constexpr auto kSpinYield = std::chrono::microseconds(200);

template <class Pred>
bool spinUntil(Pred pred) {
  auto start = std::chrono::steady_clock::now();
  for (unsigned it = 0;; ++it) {
    if (pred()) return true;
    if ((it & 63) == 63) {
      auto el = std::chrono::steady_clock::now() - start;
      if (el > kSpinYield) return false;
      if (el > kSpinPause) std::this_thread::yield();
    } else {
      cpuRelax();
    }
  }
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  if (threads <= 0) threads = 1;
  nthreads_ = threads;
  workers_.reserve(static_cast<size_t>(threads - 1));
  for (int t = 1; t < threads; ++t) workers_.emplace_back([this, t] { workerLoop(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(wakeMutex_);
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wakeCv_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::runOne(int tid) {
  try {
    fn_(ctx_, tid);
  } catch (...) {
    std::lock_guard<std::mutex> lk(errMutex_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::run(int parts, Trampoline fn, void* ctx) {
  if (parts > nthreads_) parts = nthreads_;
  if (parts <= 1 || tlsInRegion) {
    // Serial fallback keeps the same partition (and so the same results).
    for (int t = 0; t < (parts < 1 ? 1 : parts); ++t) fn(ctx, t);
    return;
  }
  std::lock_guard<std::mutex> callLock(callMutex_);
  fn_ = fn;
  ctx_ = ctx;
  parts_ = parts;
  error_ = nullptr;
  pending_.store(nthreads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lk(wakeMutex_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wakeCv_.notify_all();

  tlsInRegion = true;
  runOne(0);
  tlsInRegion = false;

  if (!spinUntil([&] { return pending_.load(std::memory_order_acquire) == 0; })) {
    std::unique_lock<std::mutex> lk(doneMutex_);
    doneCv_.wait(lk, [&] { return pending_.load(std::memory_order_acquire) == 0; });
  }
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void ThreadPool::workerLoop(int tid) {
  unsigned long long seen = 0;
  for (;;) {
    auto changed = [&] { return generation_.load(std::memory_order_acquire) != seen; };
    if (!spinUntil(changed)) {
      std::unique_lock<std::mutex> lk(wakeMutex_);
      wakeCv_.wait(lk, changed);
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_relaxed)) return;
    if (tid < parts_) {
      tlsInRegion = true;
      runOne(tid);
      tlsInRegion = false;
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lk(doneMutex_);
      doneCv_.notify_one();
    }
  }
}

}  // namespace cpu
}  // namespace primal
