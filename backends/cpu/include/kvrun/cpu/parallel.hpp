// kvrun — the process-wide CPU worker pool, shared by every CPU kernel (backend and plugins).
//
// parallel_for splits [0, n) into at most num_threads() contiguous ranges (each a multiple of
// `grain` except the last) and runs fn(begin, end) on them: the calling thread takes part, the
// others run on pool workers. It returns when every range is done. Workers spin for a short while
// after a job (decode issues many small ops back to back) and then sleep; dispatch costs a few µs.
//
// - n <= grain, one thread, or a call from inside a running parallel_for (nested) runs fn(0, n)
//   on the calling thread.
// - An exception thrown by fn is rethrown on the calling thread after all ranges have stopped
//   (the first one wins; ranges not yet started are skipped).
// - Calls from several host threads at once are serialized (one job at a time).
#pragma once

#include <cstdint>
#include <functional>
#include <type_traits>
#include <utility>

namespace kvrun::cpu {

// Threads used by parallel_for, counting the caller (>= 1).
int num_threads() noexcept;
// Resizes the pool: n threads in all (0 = std::thread::hardware_concurrency()). Must not be called
// from inside a parallel_for. Throws Error(usage) for n < 0.
void set_num_threads(int n);
// True on a thread that is currently running a parallel_for range (nested calls run serially).
bool in_parallel() noexcept;

namespace detail {
using RangeFn = void (*)(void* ctx, int64_t begin, int64_t end);
void parallel_for_impl(int64_t n, int64_t grain, RangeFn fn, void* ctx);
}  // namespace detail

// fn: callable as fn(int64_t begin, int64_t end). Not copied; no allocation.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& fn) {
  using Fn = std::remove_reference_t<F>;
  detail::parallel_for_impl(
      n, grain, [](void* ctx, int64_t b, int64_t e) { (*static_cast<Fn*>(ctx))(b, e); },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

}  // namespace kvrun::cpu
