// laqcore/parallel.hpp: OpenMP policy and deterministic reductions.
//
// Determinism rule: every kernel gives bit-identical output for any thread count.
//  * Element-wise work is trivially deterministic.
//  * max/min reductions are order independent.
//  * Floating-point sums are NOT: they are computed per fixed-size block of kReduceBlock
//    elements (in double), and the block partials are added serially in block order.
//    The block size never depends on the number of threads.
//  * Random numbers come from a counter-based generator keyed on the element index
//    (rng.hpp), never from per-thread generator state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <type_traits>

namespace laqcore {

// Scheduling: parallel loops run on laqcore's own thread pool (run_parallel below), which
// hands out fixed blocks one at a time and never waits for a thread the OS has not
// scheduled yet (a busy machine, more threads than free cores). Results do not depend on
// which thread runs a block (see the determinism rule above).
//
// Inputs smaller than this stay serial: forking threads costs more than it saves.
constexpr std::size_t kMinParallel = std::size_t{1} << 16;

// Fixed block length of deterministic sums (see above).
constexpr std::size_t kReduceBlock = std::size_t{1} << 14;

// Thread count of every parallel region, process-wide (any calling thread sees it). Starts
// from OMP_NUM_THREADS (else the cores OpenMP sees). set_num_threads throws
// std::invalid_argument outside [1, max_num_threads()]: max(kMaxThreadsFloor,
// kMaxThreadsPerCore * cores). (Tens of thousands of threads exhaust memory for stacks.)
constexpr int kMaxThreadsPerCore = 4;
constexpr int kMaxThreadsFloor = 64;
int get_num_threads();
void set_num_threads(int n);
int max_num_threads();
bool have_openmp();
// OpenMP spec date (e.g. 201511) or 0 without OpenMP.
int openmp_version();

inline std::size_t num_blocks(std::size_t n, std::size_t block = kReduceBlock) {
    return (n + block - 1) / block;
}

// Lane sums, the order of a sum *inside* a block: element i of the block (counted from the
// block start, which is a multiple of 8) goes to accumulator i % kSumLanes, and the lanes are
// combined as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)). Eight independent chains
// hide the latency of floating-point addition, and a SIMD variant reproduces the order
// exactly with two 4-wide double registers. Use it where a per-block sum is hot.
constexpr std::size_t kSumLanes = 8;
static_assert(kReduceBlock % kSumLanes == 0, "blocks must start on a lane boundary");

struct LaneSum {
    double lane[kSumLanes] = {};
    double total() const {
        return ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
               ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    }
};

// ---- the thread pool (thread_pool.cpp) --------------------------------------------------
// run_parallel(count, call, ctx) calls call(ctx, slot, i) once for every i in [0, count),
// on the calling thread and up to get_num_threads() - 1 pool threads; `slot` in
// [0, get_num_threads()) names the thread running the item (0: the caller), for per-thread
// scratch. Items are claimed one at a time, so threads that run take the items of one the
// OS has not scheduled yet, and the call returns without waiting for a helper that never
// started. call must not throw. Nested or concurrent calls run serially on their caller.
// At most max_slots threads take part (slot < max_slots): pass the number of scratch areas
// allocated, since another thread may change get_num_threads() meanwhile.
constexpr int kMaxSlots = 1 << 30;
using ItemFn = void (*)(void* ctx, int slot, std::size_t i);
void run_parallel(std::size_t count, ItemFn call, void* ctx, int max_slots);

// Runs fn(slot, i) for i in [0, count), in parallel when `parallel` is true (see above).
template <class Fn>
void parallel_for_slots(std::size_t count, bool parallel, Fn&& fn, int max_slots = kMaxSlots) {
    if (!parallel || count < 2) {
        for (std::size_t i = 0; i < count; ++i) fn(0, i);
        return;
    }
    using F = std::remove_reference_t<Fn>;
    run_parallel(
        count, [](void* ctx, int slot, std::size_t i) { (*static_cast<F*>(ctx))(slot, i); },
        const_cast<void*>(static_cast<const void*>(&fn)), max_slots);
}

// Runs fn(i) for i in [0, count), in parallel when `parallel` is true. fn must not throw.
template <class Fn>
void parallel_for(std::size_t count, bool parallel, Fn&& fn) {
    parallel_for_slots(count, parallel, [&fn](int, std::size_t i) { fn(i); });
}

// Runs fn(index, begin, end) over the fixed blocks of `block` elements (default
// kReduceBlock) of [0, n), in parallel for large n. Blocks never depend on the thread
// count, so per-block results (partial sums, maxima, packed bytes) are identical for any
// number of threads. fn must not throw (see ExceptionSlot in compress_common.hpp).
template <class Fn>
void for_each_block(std::size_t n, Fn&& fn, std::size_t block = kReduceBlock) {
    parallel_for(num_blocks(n, block), n >= kMinParallel, [&fn, n, block](std::size_t b) {
        const std::size_t begin = b * block;
        const std::size_t end = begin + block < n ? begin + block : n;
        fn(b, begin, end);
    });
}

// Deterministic blocked sum: partial(b) is called for each block [begin, end) (possibly in
// parallel) and must return that block's sum; blocks are then added in order.
template <class BlockFn>
double blocked_sum(std::size_t n, BlockFn&& partial) {
    const std::size_t nb = num_blocks(n);
    if (nb == 0) return 0.0;
    std::vector<double> parts(nb, 0.0);
    for_each_block(n, [&](std::size_t b, std::size_t begin, std::size_t end) {
        parts[b] = partial(begin, end);
    });
    double total = 0.0;
    for (double p : parts) total += p;
    return total;
}

}  // namespace laqcore
