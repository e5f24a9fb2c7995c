// A small persistent thread pool for the CPU backend. Work is split statically (thread t always
// gets the same slice of the same problem), so every op is bit-identical run to run; the
// reductions that feed the trainer additionally use chunk sizes that do not depend on the thread
// count at all.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace primal {
namespace cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads <= 0: std::thread::hardware_concurrency()
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return nthreads_; }

  // Calls fn(tid) once for every tid in [0, parts) (parts <= size()), the caller being tid 0;
  // returns when all are done. The first exception thrown by any part is rethrown here.
  // Called from inside a parallel region it runs the parts one after another on the current
  // thread (same partition, so the same results).
  template <class F>
  void runParts(int parts, F&& fn) {
    using Fn = typename std::remove_reference<F>::type;
    run(
        parts, [](void* ctx, int tid) { (*static_cast<Fn*>(ctx))(tid); }, (void*)&fn);
  }

  // Static partition of [0, n) into at most size() contiguous ranges of >= grain items each;
  // fn(begin, end) per range.
  template <class F>
  void parallelFor(size_t n, F&& fn, size_t grain = 1) {
    if (n == 0) return;
    size_t parts = partsFor(n, grain);
    if (parts <= 1) {
      fn(size_t(0), n);
      return;
    }
    runParts(static_cast<int>(parts), [&](int tid) {
      size_t b = n * static_cast<size_t>(tid) / parts;
      size_t e = n * static_cast<size_t>(tid + 1) / parts;
      if (b < e) fn(b, e);
    });
  }

  size_t partsFor(size_t n, size_t grain) const {
    if (grain == 0) grain = 1;
    size_t parts = n / grain;
    if (parts < 1) parts = 1;
    if (parts > static_cast<size_t>(nthreads_)) parts = static_cast<size_t>(nthreads_);
    return parts;
  }

 private:
  using Trampoline = void (*)(void*, int);
  void run(int parts, Trampoline fn, void* ctx);
  void workerLoop(int tid);
  void runOne(int tid);

  int nthreads_;
  std::vector<std::thread> workers_;
  std::mutex callMutex_;  // one parallel region at a time (callers from different threads)

  // Current job.
  Trampoline fn_ = nullptr;
  void* ctx_ = nullptr;
  int parts_ = 0;
  std::atomic<unsigned long long> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};

  std::mutex wakeMutex_;
  std::condition_variable wakeCv_;
  std::mutex doneMutex_;
  std::condition_variable doneCv_;

  std::mutex errMutex_;
  std::exception_ptr error_;
};

}  // namespace cpu
}  // namespace primal
