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

#ifdef LAQCORE_HAVE_OPENMP
#include <omp.h>
#endif

namespace laqcore {

// Inputs smaller than this stay serial: forking threads costs more than it saves.
constexpr std::size_t kMinParallel = std::size_t{1} << 16;

// Fixed block length of deterministic sums (see above).
constexpr std::size_t kReduceBlock = std::size_t{1} << 14;

int get_num_threads();
void set_num_threads(int n);
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

// Runs fn(index, begin, end) over the fixed blocks of `block` elements (default
// kReduceBlock) of [0, n), in parallel for large n. Blocks never depend on the thread
// count, so per-block results (partial sums, maxima, packed bytes) are identical for any
// number of threads. fn must not throw (see ExceptionSlot in compress_common.hpp).
template <class Fn>
void for_each_block(std::size_t n, Fn&& fn, std::size_t block = kReduceBlock) {
    const auto nb = static_cast<std::int64_t>(num_blocks(n, block));
#ifdef LAQCORE_HAVE_OPENMP
#pragma omp parallel for schedule(static) if (n >= kMinParallel)
#endif
    for (std::int64_t b = 0; b < nb; ++b) {
        const std::size_t begin = static_cast<std::size_t>(b) * block;
        const std::size_t end = begin + block < n ? begin + block : n;
        fn(static_cast<std::size_t>(b), begin, end);
    }
}

// Runs fn(i) for i in [0, count), in parallel (static schedule) when `parallel` is true.
// fn must not throw.
template <class Fn>
void parallel_for(std::size_t count, bool parallel, Fn&& fn) {
    const auto c = static_cast<std::int64_t>(count);
#ifdef LAQCORE_HAVE_OPENMP
#pragma omp parallel for schedule(static) if (parallel)
#else
    (void)parallel;
#endif
    for (std::int64_t i = 0; i < c; ++i) fn(static_cast<std::size_t>(i));
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
