// kvrun — the CPU worker pool (see kvrun/cpu/parallel.hpp).
//
// One job at a time. The caller publishes a job by bumping `gen_`; workers notice it while
// spinning (or are woken from a condition variable after they have gone to sleep), take ranges
// from an atomic counter, and report completion through `done_`. The caller runs ranges too, then
// waits (spinning, then sleeping) until every worker has acknowledged the job, so a worker never
// sees the fields of the next job while still working on the current one.
#include "kvrun/cpu/parallel.hpp"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kvrun/error.hpp"

namespace kvrun::cpu {
namespace {

thread_local bool t_in_parallel = false;

// How long an idle thread polls before sleeping. Decode runs hundreds of small ops per token with
// a little host work between them; polling across those gaps keeps dispatch at a few µs.
constexpr auto kSpin = std::chrono::microseconds(200);

template <class Pred>
bool spin_until(Pred&& done) {
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      _mm_pause();
    }
    if (std::chrono::steady_clock::now() - start > kSpin) return done();
  }
}

class Pool {
 public:
  Pool() { start(int(std::max(1u, std::thread::hardware_concurrency()))); }
  ~Pool() { stop(); }

  int threads() const noexcept { return nthreads_.load(std::memory_order_relaxed); }

  void resize(int n) {
    if (t_in_parallel) fail(ErrorKind::internal, "set_num_threads called from inside a parallel_for");
    std::lock_guard<std::mutex> lk(dispatch_);
    if (n == threads()) return;
    stop();
    start(n);
  }

  void run(int64_t n, int64_t grain, detail::RangeFn fn, void* ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int nt = threads();
    if (t_in_parallel || nt <= 1 || n <= grain) {
      fn(ctx, 0, n);
      return;
    }
    std::lock_guard<std::mutex> lk(dispatch_);
    nt = threads();
    int64_t units = (n + grain - 1) / grain;
    int64_t chunks = std::min<int64_t>(units, nt);  // >= 2 here: nt >= 2 and n > grain
    fn_ = fn;
    ctx_ = ctx;
    n_ = n;
    grain_ = grain;
    units_ = units;
    chunks_ = chunks;
    next_.store(0, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    error_ = nullptr;
    gen_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> g(m_); }
      cv_.notify_all();
    }
    t_in_parallel = true;
    work();
    t_in_parallel = false;
    const int nw = int(workers_.size());
    if (!spin_until([&] { return done_.load(std::memory_order_acquire) == nw; })) {
      std::unique_lock<std::mutex> g(dm_);
      main_sleeping_.store(true, std::memory_order_seq_cst);
      while (done_.load(std::memory_order_seq_cst) != nw) dcv_.wait(g);
      main_sleeping_.store(false, std::memory_order_relaxed);
    }
    if (error_) {
      std::exception_ptr e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }

 private:
  void start(int n) {
    if (n < 1) n = 1;
    stop_.store(false);
    nthreads_.store(n);
    workers_.reserve(size_t(n - 1));
    // A worker must start from the generation current now: one read later, inside the thread,
    // could already see the first job's generation and then wait for the next one forever.
    const uint64_t g = gen_.load();
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, g] { worker_loop(g); });
  }

  void stop() {
    if (workers_.empty()) return;
    {
      std::lock_guard<std::mutex> g(m_);
      stop_.store(true);
      gen_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  // Takes ranges until none are left.
  void work() {
    for (;;) {
      int64_t c = next_.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks_) return;
      if (failed_.load(std::memory_order_relaxed)) continue;
      int64_t u0 = c * units_ / chunks_, u1 = (c + 1) * units_ / chunks_;
      int64_t b = u0 * grain_, e = std::min(n_, u1 * grain_);
      try {
        fn_(ctx_, b, e);
      } catch (...) {
        std::lock_guard<std::mutex> g(err_m_);
        if (!error_) error_ = std::current_exception();
        failed_.store(true, std::memory_order_relaxed);
      }
    }
  }

  void worker_loop(uint64_t seen) {
    t_in_parallel = true;
    for (;;) {
      if (!spin_until([&] { return gen_.load(std::memory_order_acquire) != seen; })) {
        std::unique_lock<std::mutex> g(m_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        while (gen_.load(std::memory_order_seq_cst) == seen && !stop_.load()) cv_.wait(g);
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
      }
      if (stop_.load(std::memory_order_acquire)) return;
      seen = gen_.load(std::memory_order_acquire);
      work();
      int nw = int(workers_.size());
      if (done_.fetch_add(1, std::memory_order_seq_cst) + 1 == nw &&
          main_sleeping_.load(std::memory_order_seq_cst)) {
        { std::lock_guard<std::mutex> g(dm_); }
        dcv_.notify_one();
      }
    }
  }

  std::vector<std::thread> workers_;
  std::atomic<int> nthreads_{1};
  std::mutex dispatch_;  // one job at a time

  // the current job
  detail::RangeFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_ = 0, grain_ = 1, units_ = 0, chunks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<bool> failed_{false};
  std::mutex err_m_;
  std::exception_ptr error_;

  // waking workers
  std::atomic<uint64_t> gen_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex m_;
  std::condition_variable cv_;

  // waking the caller
  std::atomic<int> done_{0};
  std::atomic<bool> main_sleeping_{false};
  std::mutex dm_;
  std::condition_variable dcv_;
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

int num_threads() noexcept { return pool().threads(); }

void set_num_threads(int n) {
  if (n < 0) fail(ErrorKind::usage, "CPU thread count must be >= 0 (0 = all cores), got " + std::to_string(n));
  if (n == 0) n = int(std::max(1u, std::thread::hardware_concurrency()));
  pool().resize(n);
}

bool in_parallel() noexcept { return t_in_parallel; }

namespace detail {
void parallel_for_impl(int64_t n, int64_t grain, RangeFn fn, void* ctx) { pool().run(n, grain, fn, ctx); }
}  // namespace detail

}  // namespace kvrun::cpu
