#include "laqcore/sparse.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <vector>

#include "compress_common.hpp"
#include "laqcore/common.hpp"
#include "laqcore/parallel.hpp"
#include "laqcore/rng.hpp"

namespace laqcore {
namespace {

constexpr std::uint32_t kAbsMask = 0x7FFFFFFFu;
constexpr std::uint32_t kExpAllOnes = 0x7F800000u;  // |bits| >= this: Inf or NaN

inline std::uint32_t abs_bits(float v) {
    std::uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    return u & kAbsMask;
}

void check_selection_args(std::size_t n, std::size_t k) {
    LAQ_CHECK(n >= 1, "x must not be empty");
    LAQ_CHECK(n <= kMaxSparseLength,
              "x has " << n << " elements; sparse payloads index with uint32, so at most "
                       << kMaxSparseLength);
    LAQ_CHECK(k >= 1 && k <= n, "k must be in [1, n] = [1, " << n << "], got " << k);
}

inline std::uint64_t make_select_key(std::uint32_t primary, std::size_t i) {
    return (static_cast<std::uint64_t>(primary) << 32) |
           (0xFFFFFFFFu - static_cast<std::uint32_t>(i));
}

// Small inputs: materialise all n keys and let std::nth_element find the k largest.
template <class KeyOf>
void select_small(const float* x, std::size_t n, std::size_t k, std::uint32_t* idx, float* values,
                  const char* name, KeyOf&& key_of) {
    std::vector<std::uint64_t> keys(n);
    unsigned bad = 0;
    for (std::size_t i = 0; i < n; ++i) {
        bad |= abs_bits(x[i]) >= kExpAllOnes ? 1u : 0u;
        keys[i] = key_of(i);
    }
    LAQ_CHECK(!bad, name << " contains NaN or Inf");
    if (k < n)
        std::nth_element(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(k), keys.end(),
                         std::greater<std::uint64_t>());
    for (std::size_t j = 0; j < k; ++j) {
        idx[j] = 0xFFFFFFFFu - static_cast<std::uint32_t>(keys[j] & 0xFFFFFFFFu);
    }
    std::sort(idx, idx + k);
    for (std::size_t j = 0; j < k; ++j) values[j] = x[idx[j]];
}

inline int popcount64(std::uint64_t w) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_popcountll(w);
#else
    int c = 0;
    for (; w; w &= w - 1) ++c;
    return c;
#endif
}

inline int lowest_bit64(std::uint64_t w) {  // w != 0
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(w);
#else
    int b = 0;
    while (!(w & 1u)) {
        w >>= 1;
        ++b;
    }
    return b;
#endif
}

// Parallel stream compaction over fixed blocks: calls emit(i, pos) for every i in [0, n)
// with pred(i), pos counting up from 0 in index order. pred is evaluated once per element:
// the first pass stores the hits as a bit mask (n/8 bytes) and counts them per block, the
// second walks the set bits only. `expected` is the number of hits the caller knows in
// advance; it is checked before anything is written.
template <class Pred, class Emit>
void compact(std::size_t n, std::size_t expected, Pred&& pred, Emit&& emit) {
    static_assert(kReduceBlock % 64 == 0, "blocks must hold whole mask words");
    const std::size_t nb = num_blocks(n);
    std::vector<std::uint64_t> mask((n + 63) / 64, 0);
    std::vector<std::size_t> start(nb + 1, 0);
    for_each_block(n, [&](std::size_t b, std::size_t lo, std::size_t hi) {
        std::size_t c = 0;
        for (std::size_t w0 = lo; w0 < hi; w0 += 64) {
            const std::size_t w_end = w0 + 64 < hi ? w0 + 64 : hi;
            std::uint64_t word = 0;
            for (std::size_t i = w0; i < w_end; ++i) {
                word |= static_cast<std::uint64_t>(pred(i) ? 1u : 0u) << (i - w0);
            }
            mask[w0 / 64] = word;
            c += static_cast<std::size_t>(popcount64(word));
        }
        start[b + 1] = c;
    });
    for (std::size_t b = 0; b < nb; ++b) start[b + 1] += start[b];
    LAQ_ASSERT(start[nb] == expected);
    for_each_block(n, [&](std::size_t b, std::size_t lo, std::size_t hi) {
        std::size_t pos = start[b];
        for (std::size_t w = lo / 64; w * 64 < hi; ++w) {
            for (std::uint64_t word = mask[w]; word; word &= word - 1) {
                emit(w * 64 + static_cast<std::size_t>(lowest_bit64(word)), pos++);
            }
        }
    });
}

// Large inputs: a radix step on the top 16 bits of the primaries instead of a full
// nth_element over n keys (O(n) either way, but this is three parallel streaming passes).
//   1. histogram of primary >> 16 (per-thread integer counts: exact in any order);
//   2. the bin T holding the k-th largest key; only its members (usually a tiny fraction)
//      go through nth_element, which yields the k-th largest key K*;
//   3. the selection is exactly {i : key_i >= K*} (keys are distinct), written in index
//      order by a parallel compaction, so the indices come out sorted.
template <class KeyOf>
void select_large(const float* x, std::size_t n, std::size_t k, std::uint32_t* idx, float* values,
                  const char* name, KeyOf&& key_of) {
    constexpr std::size_t kBins = std::size_t{1} << 16;
    const auto bin_of = [&](std::size_t i) { return static_cast<std::size_t>(key_of(i) >> 48); };
    // One histogram per thread slot (integer counts: the sum is the same whatever thread
    // counted which chunk).
    constexpr std::size_t kChunk = 16384;
    const int teams = get_num_threads();
    std::vector<std::uint32_t> local(static_cast<std::size_t>(teams) * kBins, 0);
    std::atomic<int> bad{0};  // the NaN/Inf check rides along with the histogram pass
    parallel_for_slots(
        num_blocks(n, kChunk), n >= kMinParallel,
        [&](int slot, std::size_t c) {
            std::uint32_t* h = local.data() + static_cast<std::size_t>(slot) * kBins;
            const std::size_t end = std::min(n, (c + 1) * kChunk);
            int seen = 0;
            for (std::size_t i = c * kChunk; i < end; ++i) {
                seen |= abs_bits(x[i]) >= kExpAllOnes ? 1 : 0;
                ++h[bin_of(i)];
            }
            if (seen) bad.store(1, std::memory_order_relaxed);
        },
        teams);
    LAQ_CHECK(!bad.load(), name << " contains NaN or Inf");
    std::vector<std::size_t> hist(kBins, 0);
    for (std::size_t t = 0; t < static_cast<std::size_t>(teams); ++t) {
        for (std::size_t b = 0; b < kBins; ++b) hist[b] += local[t * kBins + b];
    }
    std::size_t above = 0;  // keys in bins above T
    std::size_t bin_t = kBins - 1;
    while (above + hist[bin_t] < k) above += hist[bin_t--];  // terminates: total = n >= k
    const std::size_t need = k - above;                      // members of bin T that are kept, >= 1

    std::vector<std::uint64_t> cand(hist[bin_t]);
    compact(
        n, cand.size(), [&](std::size_t i) { return bin_of(i) == bin_t; },
        [&](std::size_t i, std::size_t pos) { cand[pos] = key_of(i); });
    std::nth_element(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(need - 1), cand.end(),
                     std::greater<std::uint64_t>());
    const std::uint64_t kth = cand[need - 1];
    compact(
        n, k, [&](std::size_t i) { return key_of(i) >= kth; },
        [&](std::size_t i, std::size_t pos) {
            idx[pos] = static_cast<std::uint32_t>(i);
            values[pos] = x[i];
        });
}

// Shared by top-k and rand-k (header comment): selects the k largest keys
// key_i = make_select_key(primary(i, |x_i| bits), i), rejecting NaN/Inf in its first pass.
template <class Primary>
void select_by_key(const float* x, std::size_t n, std::size_t k, std::uint32_t* idx, float* values,
                   const char* name, Primary&& primary) {
    check_selection_args(n, k);
    const auto key_of = [&](std::size_t i) {
        return make_select_key(primary(i, abs_bits(x[i])), i);
    };
    if (n < kMinParallel) {
        select_small(x, n, k, idx, values, name, key_of);
    } else {
        select_large(x, n, k, idx, values, name, key_of);
    }
}

}  // namespace

void topk_select(const float* x, std::size_t n, std::size_t k, std::uint32_t* idx, float* values,
                 const char* name) {
    select_by_key(x, n, k, idx, values, name, [](std::size_t, std::uint32_t ab) { return ab; });
}

void randk_select(const float* x, std::size_t n, std::size_t k, std::uint64_t key,
                  std::uint32_t* idx, float* values, const char* name) {
    select_by_key(x, n, k, idx, values, name, [key](std::size_t i, std::uint32_t) {
        return static_cast<std::uint32_t>(random_bits(key, i) >> 32);
    });
}

void check_sparse_indices(const std::uint32_t* idx, std::size_t k, std::size_t n) {
    LAQ_CHECK(k <= n, "sparse payload has " << k << " entries for a vector of length " << n);
    for (std::size_t j = 0; j < k; ++j) {
        LAQ_CHECK(idx[j] < n, "sparse index " << idx[j] << " at position " << j
                                              << " is out of range for length " << n);
        LAQ_CHECK(j == 0 || idx[j] > idx[j - 1],
                  "sparse indices must be strictly increasing (sorted, no duplicates); "
                  "position "
                      << j << " holds " << idx[j] << " after " << idx[j - 1]);
    }
}

void sparse_scatter(const std::uint32_t* idx, const float* values, std::size_t k, std::size_t n,
                    float* out) {
    check_sparse_indices(idx, k, n);
    std::fill(out, out + n, 0.0f);
    for (std::size_t j = 0; j < k; ++j) out[idx[j]] = values[j];
}

void dense_copy(const float* x, std::size_t n, float* out, const char* name) {
    detail::for_each_chunk(n, [&](std::size_t begin, std::size_t end) {
        unsigned nonfinite = 0;
        for (std::size_t i = begin; i < end; ++i) {
            nonfinite |= detail::not_finite(x[i]) ? 1u : 0u;
            out[i] = x[i];
        }
        // Thrown inside a chunk: for_each_chunk carries it out of the parallel region.
        LAQ_CHECK(!nonfinite, name << " contains NaN or Inf");
    });
}

}  // namespace laqcore
