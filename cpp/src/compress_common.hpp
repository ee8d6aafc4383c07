// compress_common.hpp (private to cpp/src): loop skeletons shared by the compressor kernels
// (qsgd.cpp, terngrad.cpp, sign.cpp, sparse.cpp).
//
// * encode_packed / decode_packed: the codes of a packed format are produced (or consumed)
//   one chunk of kCodeChunk elements at a time into a stack buffer, which pack.hpp then
//   packs (unpacks). This fuses quantize+pack without duplicating the packing logic: the
//   codes never exist as an n-byte array, only as a chunk that stays in L1. kCodeChunk is a
//   multiple of 8, so every chunk starts on a byte boundary of the packed stream for any
//   code width, and chunks are independent (parallel over chunks).
// * blocked_reduce: the deterministic reduction rule of parallel.hpp (fixed blocks of
//   kReduceBlock elements, partials combined serially in block order) for any partial
//   type, e.g. (sum, max, non-finite flag) in one pass. With T = double and `+` it gives
//   exactly the same bits as blocked_sum.
// * Nothing may throw inside an OpenMP region: chunk bodies run under capture_first, which
//   stores the first exception and rethrows it after the region.
#pragma once

#include <cfloat>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <vector>

#include "laqcore/pack.hpp"
#include "laqcore/parallel.hpp"

namespace laqcore::detail {

// Elements per code chunk; a multiple of 8 (see above) and small enough for the stack.
constexpr std::size_t kCodeChunk = 4096;
static_assert(kCodeChunk % 8 == 0, "chunks must start on a byte boundary of the stream");

// True for NaN and +-Inf; written as one compare so it is branch-free in the hot loops.
inline bool not_finite(float v) {
    return !(v <= FLT_MAX && v >= -FLT_MAX);
}

// Runs body() and keeps the first exception thrown by any thread (see the header comment).
class ExceptionSlot {
  public:
    template <class Body>
    void run(Body&& body) noexcept {
        try {
            body();
        } catch (...) {
            const std::lock_guard<std::mutex> lock(mutex_);
            if (!error_) error_ = std::current_exception();
        }
    }
    void rethrow() const {
        if (error_) std::rethrow_exception(error_);
    }

  private:
    std::mutex mutex_;
    std::exception_ptr error_;
};

// Calls chunk(begin, end) for consecutive chunks of kCodeChunk elements of [0, n), in
// parallel for large n. Chunks are independent, so the result is thread-count invariant.
template <class ChunkFn>
void for_each_chunk(std::size_t n, ChunkFn&& chunk) {
    ExceptionSlot slot;
    for_each_block(
        n,
        [&](std::size_t, std::size_t begin, std::size_t end) {
            slot.run([&] { chunk(begin, end); });
        },
        kCodeChunk);
    slot.rethrow();
}

// Fused encode: code_of(begin, end, codes) writes codes[0 .. end-begin) for elements
// [begin, end); they are packed straight into packed[packed_size(n, bits)].
template <class CodeFn>
void encode_packed(std::size_t n, int bits, std::uint8_t* packed, CodeFn&& code_of) {
    for_each_chunk(n, [&](std::size_t begin, std::size_t end) {
        std::uint8_t codes[kCodeChunk];
        code_of(begin, end, codes);
        pack_bits(codes, end - begin, bits, packed + begin / 8 * static_cast<std::size_t>(bits));
    });
}

// Fused decode: use(begin, end, codes) receives the codes of elements [begin, end).
// The padding of the whole buffer is validated before any parallel work.
template <class UseFn>
void decode_packed(const std::uint8_t* packed, std::size_t n, int bits, UseFn&& use) {
    check_padding(packed, n, bits);
    for_each_chunk(n, [&](std::size_t begin, std::size_t end) {
        std::uint8_t codes[kCodeChunk];
        unpack_bits(packed + begin / 8 * static_cast<std::size_t>(bits), end - begin, bits, codes);
        use(begin, end, static_cast<const std::uint8_t*>(codes));
    });
}

// Deterministic reduction over [begin, end): partial(b, e) reduces one block of at most
// kReduceBlock elements; block results are folded in block order with combine, starting
// from init. Blocks run in parallel when the range is long and we are not already inside a
// parallel region; the result is the same either way.
template <class T, class Partial, class Combine>
T blocked_reduce(std::size_t begin, std::size_t end, T init, Partial&& partial, Combine&& combine) {
    const std::size_t n = end - begin;
    const std::size_t nb = num_blocks(n);
    if (nb == 0) return init;
    if (nb == 1) return combine(init, partial(begin, end));  // no allocation for small ranges
    std::vector<T> parts(nb, init);
    // Inside another parallel loop, run_parallel finds the pool busy and runs serially.
    parallel_for(nb, n >= kMinParallel, [&](std::size_t b) {
        const std::size_t lo = begin + b * kReduceBlock;
        const std::size_t hi = lo + kReduceBlock < end ? lo + kReduceBlock : end;
        parts[b] = partial(lo, hi);
    });
    T acc = init;
    for (const T& p : parts) acc = combine(acc, p);
    return acc;
}

// (sum, max |x|, non-finite seen) of a range, the statistics most compressors need.
struct RangeStats {
    double sum = 0.0;
    float max_abs = 0.0f;
    bool bad = false;
};

inline RangeStats combine_stats(const RangeStats& a, const RangeStats& b) {
    RangeStats r;
    r.sum = a.sum + b.sum;
    r.max_abs = a.max_abs > b.max_abs ? a.max_abs : b.max_abs;
    r.bad = a.bad || b.bad;
    return r;
}

}  // namespace laqcore::detail
