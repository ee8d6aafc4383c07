#include "laqcore/sparse.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <vector>

#include "compress_common.hpp"
#include "laqcore/common.hpp"
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

// Shared by top-k and rand-k (header comment): builds the keys with primary(i, absbits),
// checks finiteness in the same pass, keeps the k largest, writes sorted indices + values.
template <class Primary>
void select_by_key(const float* x, std::size_t n, std::size_t k, std::uint32_t* idx,
                   float* values, const char* name, Primary&& primary) {
    check_selection_args(n, k);
    std::vector<std::uint64_t> keys(n);
    std::uint64_t* kp = keys.data();
    int bad = 0;
    const auto n_signed = static_cast<std::int64_t>(n);
#ifdef LAQCORE_HAVE_OPENMP
#pragma omp parallel for schedule(static) reduction(| : bad) if (n >= kMinParallel)
#endif
    for (std::int64_t is = 0; is < n_signed; ++is) {
        const auto i = static_cast<std::size_t>(is);
        const std::uint32_t ab = abs_bits(x[i]);
        bad |= ab >= kExpAllOnes ? 1 : 0;
        kp[i] = (static_cast<std::uint64_t>(primary(i, ab)) << 32) |
                (0xFFFFFFFFu - static_cast<std::uint32_t>(i));
    }
    LAQ_CHECK(!bad, name << " contains NaN or Inf");
    if (k < n) std::nth_element(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(k),
                                keys.end(), std::greater<std::uint64_t>());
    for (std::size_t j = 0; j < k; ++j) {
        idx[j] = 0xFFFFFFFFu - static_cast<std::uint32_t>(keys[j] & 0xFFFFFFFFu);
    }
    std::sort(idx, idx + k);
    for (std::size_t j = 0; j < k; ++j) values[j] = x[idx[j]];
}

}  // namespace

void topk_select(const float* x, std::size_t n, std::size_t k, std::uint32_t* idx, float* values,
                 const char* name) {
    select_by_key(x, n, k, idx, values, name,
                  [](std::size_t, std::uint32_t ab) { return ab; });
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
                  "position " << j << " holds " << idx[j] << " after " << idx[j - 1]);
    }
}

void sparse_scatter(const std::uint32_t* idx, const float* values, std::size_t k,
                    std::size_t n, float* out) {
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
