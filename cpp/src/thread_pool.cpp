// The kernels' thread pool (parallel.hpp: run_parallel).
//
// Why not an OpenMP parallel region: a region ends with a barrier that waits for every
// thread of the team, including one the OS has not scheduled yet. With more threads than
// free cores (several ranks per node, a busy machine) each region then waits a scheduler
// time slice for it: measured 60x slower than one thread at n = 2^20. Here the calling
// thread works through the job's items itself; helpers, woken at the start, take items
// while any are left. When the items are gone the caller closes the job and waits only for
// helpers that are inside it (at most one item each); a helper that wakes after that finds
// nothing and goes back to sleep. Idle helpers sleep on a condition variable; the caller
// takes no lock.
//
// When a call shows that no core is free (the caller waited long for a preempted helper,
// or the helpers ran under a quarter of the items),
// the pool backs off: calls run serially for 100 ms, doubling up to 5 s while retries keep
// failing, so a kernel with more threads than free cores costs about what one thread does.
//
// One job at a time: a caller that finds the pool busy (another Python thread's kernel,
// or a nested parallel loop) runs its items itself.
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "laqcore/parallel.hpp"

namespace laqcore {
namespace {

struct Job {
    ItemFn call;
    void* ctx;
    std::size_t count;
    std::atomic<std::size_t> next{0};

    // Claims and runs items until none is left; returns how many this thread ran.
    std::size_t work(int slot) {
        std::size_t done = 0;
        for (;;) {
            const std::size_t i = next.fetch_add(1);
            if (i >= count) return done;
            call(ctx, slot, i);
            ++done;
        }
    }
};

class Pool {
  public:
    // Runs `job` on the caller (slot 0) and up to `helpers` helpers (slots 1..helpers).
    // The caller never takes a lock a helper may hold: a helper preempted while holding one
    // would stall the caller for a time slice (what this pool exists to avoid).
    void run(Job& job, int helpers) {
        while (static_cast<int>(spawned_) < helpers) {  // only the pool's owner gets here
            const int id = static_cast<int>(spawned_++);
            std::thread([this, id] { loop(id); }).detach();  // lives as long as the process
        }
        wanted_.store(helpers);
        job_.store(&job);
        epoch_.fetch_add(1);
        wake_.notify_all();  // a helper that misses it sits this job out: nobody waits for it
        const auto t0 = Clock::now();
        const std::size_t mine = job.work(0);
        job_.store(nullptr);  // helpers not inside the job stay out of it (see loop)
        const auto t1 = Clock::now();
        while (active_.load() != 0) std::this_thread::yield();
        const auto t2 = Clock::now();
        // A helper the OS preempted inside an item makes the caller wait for it (a time
        // slice on a busy machine). When that wait is long against the caller's own work,
        // no core is free: run the next calls serially for a while, doubling the while on
        // each failed retry (100 ms .. 5 s), and start over after a retry that went well.
        // Helpers that ran under a quarter of the items did not find a free core either
        // (they only cost the wake-ups and a share of the caller's core).
        const auto waited = t2 - t1;
        const bool idle_helpers = job.count >= 4 && mine * 4 > job.count * 3;
        if (idle_helpers || (waited > std::chrono::microseconds(100) && waited * 4 > t1 - t0)) {
            backoff_ = std::clamp(2 * backoff_, kMinBackoff, kMaxBackoff);
            serial_until_.store((t2 + backoff_).time_since_epoch().count());
        } else {
            backoff_ = Clock::duration::zero();
        }
    }

    // True while the pool backs off (see run): the caller should work alone.
    bool backing_off() const {
        return Clock::now().time_since_epoch().count() < serial_until_.load();
    }

    // Exclusive use of the pool, or false when another job runs.
    bool try_acquire() { return !busy_.test_and_set(std::memory_order_acquire); }
    void release() { busy_.clear(std::memory_order_release); }

  private:
    void loop(int id) {
        std::uint64_t seen = 0;
        for (;;) {
            {
                std::unique_lock<std::mutex> lock(sleep_);
                wake_.wait(lock, [&] { return epoch_.load() != seen; });
                seen = epoch_.load();
            }
            // Enter, then look: the caller clears job_ before it reads active_ (both
            // sequentially consistent), so either it waits for this helper or the helper
            // sees no job.
            active_.fetch_add(1);
            Job* job = job_.load();
            if (job != nullptr && id < wanted_.load()) job->work(id + 1);
            active_.fetch_sub(1);
        }
    }

    using Clock = std::chrono::steady_clock;
    static constexpr Clock::duration kMinBackoff = std::chrono::milliseconds(100);
    static constexpr Clock::duration kMaxBackoff = std::chrono::seconds(5);
    Clock::duration backoff_{0};               // only the pool's owner touches it
    std::atomic<Clock::rep> serial_until_{0};  // steady_clock ticks
    std::mutex sleep_;                         // only for helpers' condition-variable sleep
    std::condition_variable wake_;
    std::size_t spawned_ = 0;
    std::atomic<Job*> job_{nullptr};
    std::atomic<int> wanted_{0};
    std::atomic<std::uint64_t> epoch_{0};
    std::atomic<int> active_{0};
    std::atomic_flag busy_ = ATOMIC_FLAG_INIT;
};

// Never destroyed (detached helpers may still wait on it at exit). A forked child has none
// of the parent's threads: it starts a pool of its own.
std::atomic<Pool*> g_pool{nullptr};
std::once_flag g_atfork_once;

Pool& pool() {
    std::call_once(g_atfork_once,
                   [] { pthread_atfork(nullptr, nullptr, [] { g_pool.store(nullptr); }); });
    Pool* p = g_pool.load();
    if (p == nullptr) {
        auto* fresh = new Pool();
        if (g_pool.compare_exchange_strong(p, fresh)) {
            p = fresh;
        } else {
            delete fresh;
        }
    }
    return *p;
}

}  // namespace

void run_parallel(std::size_t count, ItemFn call, void* ctx, int max_slots) {
    const int threads = std::min(get_num_threads(), max_slots);
    const auto helpers = static_cast<int>(
        std::min<std::size_t>(static_cast<std::size_t>(threads) - 1, count > 0 ? count - 1 : 0));
    Pool& p = pool();
    if (helpers <= 0 || p.backing_off() || !p.try_acquire()) {
        for (std::size_t i = 0; i < count; ++i) call(ctx, 0, i);
        return;
    }
    Job job{call, ctx, count};
    p.run(job, helpers);
    p.release();
}

}  // namespace laqcore
