// The frequency table of the entropy coder: histogram, normalisation to 2^m, choice of m,
// and its exp-Golomb serialisation (layout in cpp/include/laqcore/entropy.hpp).
#include "entropy_table.hpp"

#include "entropy_kernels.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "laqcore/common.hpp"
#include "laqcore/entropy.hpp"
#include "laqcore/parallel.hpp"

namespace laqcore {
namespace detail {
namespace {

// Highest precision the encoder picks: the decoder's slot table (2^m entries) stays in L1,
// and the bulk loops' packed tables hold 12-bit fields (entropy_kernels.hpp).
constexpr int kChooseMaxPrecision = kRansSlotMaxPrecision;
constexpr int kMaxGolombOrder = 15;

int bit_length(std::uint64_t v) {
#if defined(__GNUC__) || defined(__clang__)
    return v == 0 ? 0 : 64 - __builtin_clzll(v);
#else
    int w = 0;
    while (v != 0) {
        ++w;
        v >>= 1;
    }
    return w;
#endif
}

int ceil_log2(std::uint64_t v) {
    return v <= 1 ? 0 : bit_length(v - 1);
}

// log2(f) for every frequency the encoder's precisions allow (f <= 2^kChooseMaxPrecision),
// computed once by std::log2 itself: the estimate below sums exactly the same doubles as
// calling it per symbol and precision, which was most of a small stream's encoding time.
const double* log2_of_frequency() {
    static const std::vector<double> table = [] {
        std::vector<double> t((std::size_t{1} << kChooseMaxPrecision) + 1, 0.0);
        for (std::size_t f = 1; f < t.size(); ++f) t[f] = std::log2(static_cast<double>(f));
        return t;
    }();
    return table.data();
}

std::size_t implied_symbol(const std::vector<std::uint32_t>& freq) {
    return static_cast<std::size_t>(std::max_element(freq.begin(), freq.end()) - freq.begin());
}

// Table bits for the best order k; k_out receives it. The exp-Golomb code of f at order k
// has 2 w - 1 + k bits, w = bit_length((f >> k) + 1). With L = bit_length(f) and
// J = bit_length(~f mod 2^L) (L minus the length of f's run of leading ones),
// w = max(L - k, 0) + [k >= J]: f >> k has max(L - k, 0) bits, and adding 1 makes one more
// exactly when f >> k is 0 or all ones, i.e. when k >= J. So the sums for every order come
// from the counts of L and J: one pass over the table instead of one per order.
std::uint64_t table_bits(const std::vector<std::uint32_t>& freq, int alphabet_bits, int& k_out) {
    const std::size_t skip = implied_symbol(freq);
    constexpr int kLengths = 33;  // bit lengths of uint32 values
    std::uint64_t by_length[kLengths] = {};
    std::uint64_t by_ones[kLengths] = {};
    std::uint64_t coded = 0;
    for (std::size_t s = 0; s < freq.size(); ++s) {
        if (s == skip) continue;
        const std::uint64_t f = freq[s];
        const int len = bit_length(f);
        ++by_length[len];
        ++by_ones[bit_length(~f & ((std::uint64_t{1} << len) - 1))];
        ++coded;
    }
    std::uint64_t best = ~std::uint64_t{0};
    std::uint64_t carried = 0;  // symbols with J <= k
    for (int k = 0; k <= kMaxGolombOrder; ++k) {
        carried += by_ones[k];
        std::uint64_t w = carried;
        for (int len = k + 1; len < kLengths; ++len) {
            w += by_length[len] * static_cast<std::uint64_t>(len - k);
        }
        // Sum over the coded symbols of 2 w - 1 + k (every w >= 1).
        const std::uint64_t bits = 4 + static_cast<std::uint64_t>(alphabet_bits) + 2 * w +
                                   coded * static_cast<std::uint64_t>(k) - coded;
        if (bits < best) {
            best = bits;
            k_out = k;
        }
    }
    return best;
}

class BitWriter {
  public:
    explicit BitWriter(std::vector<std::uint8_t>& out) : out_(out) {}
    void put(std::uint64_t value, int nbits) {
        for (int i = 0; i < nbits; ++i) {
            if (used_ == 0) out_.push_back(0);
            out_.back() = static_cast<std::uint8_t>(out_.back() | (((value >> i) & 1u) << used_));
            used_ = (used_ + 1) & 7;
        }
    }

  private:
    std::vector<std::uint8_t>& out_;
    int used_ = 0;
};

class BitReader {
  public:
    BitReader(const std::uint8_t* data, std::size_t size, std::size_t pos)
        : data_(data), size_(size), pos_(pos) {}
    std::uint64_t get(int nbits) {
        std::uint64_t v = 0;
        for (int i = 0; i < nbits; ++i) {
            LAQ_CHECK(pos_ < size_, "corrupt entropy-coded stream: frequency table truncated");
            v |= static_cast<std::uint64_t>((data_[pos_] >> used_) & 1u) << i;
            if (++used_ == 8) {
                used_ = 0;
                ++pos_;
            }
        }
        return v;
    }
    // Position after the padding of the current byte; the padding bits must be zero.
    std::size_t finish() {
        if (used_ != 0) {
            LAQ_CHECK((data_[pos_] >> used_) == 0,
                      "corrupt entropy-coded stream: non-zero table padding");
            ++pos_;
        }
        return pos_;
    }

  private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_;
    int used_ = 0;
};

}  // namespace

std::vector<std::uint64_t> entropy_histogram(const std::uint8_t* symbols, std::size_t count) {
    const std::size_t nb = num_blocks(count, kEntropyChunk);
    std::vector<std::uint32_t> parts(nb * 256, 0);
    for_each_block(
        count,
        [&](std::size_t b, std::size_t begin, std::size_t end) {
            // Four interleaved sub-histograms break the store-to-load chains of runs of one
            // symbol.
            std::uint32_t h[4][256] = {};
            std::size_t i = begin;
            for (; i + 4 <= end; i += 4) {
                ++h[0][symbols[i]];
                ++h[1][symbols[i + 1]];
                ++h[2][symbols[i + 2]];
                ++h[3][symbols[i + 3]];
            }
            for (; i < end; ++i) ++h[0][symbols[i]];
            for (int s = 0; s < 256; ++s) {
                parts[b * 256 + static_cast<std::size_t>(s)] =
                    h[0][s] + h[1][s] + h[2][s] + h[3][s];
            }
        },
        kEntropyChunk);
    std::vector<std::uint64_t> counts(256, 0);
    for (std::size_t b = 0; b < nb; ++b) {
        for (std::size_t s = 0; s < 256; ++s) counts[s] += parts[b * 256 + s];
    }
    return counts;
}

std::vector<std::uint32_t> entropy_normalise(const std::vector<std::uint64_t>& counts, int m) {
    const std::uint64_t total = std::accumulate(counts.begin(), counts.end(), std::uint64_t{0});
    const std::size_t present = static_cast<std::size_t>(
        std::count_if(counts.begin(), counts.end(), [](std::uint64_t c) { return c != 0; }));
    LAQ_ASSERT(total > 0 && m >= 1 && m <= kEntropyMaxPrecision);
    LAQ_ASSERT(present <= (std::size_t{1} << m));
    const std::uint64_t M = std::uint64_t{1} << m;
    const std::size_t K = counts.size();
    std::vector<std::uint32_t> freq(K, 0);
    std::vector<std::uint64_t> rem(K, 0);
    std::uint64_t sum = 0;
    // floor(scaled / total) from a reciprocal, then corrected to the exact quotient (the
    // estimate is off by at most one; a 64-bit division per symbol and precision was a
    // large part of choosing a table).
    const double inv = 1.0 / static_cast<double>(total);
    for (std::size_t s = 0; s < K; ++s) {
        // counts[s] * M < 2^64: total symbols < 2^48 in practice (asserted by the caller's
        // sizes), M <= 2^15; so is (q + 1) * total for q <= M.
        const std::uint64_t scaled = counts[s] * M;
        auto q = static_cast<std::uint64_t>(static_cast<double>(scaled) * inv);
        while (q > 0 && q * total > scaled) --q;
        while ((q + 1) * total <= scaled) ++q;
        freq[s] = static_cast<std::uint32_t>(q);
        rem[s] = scaled - q * total;
        sum += freq[s];
    }
    // Largest remainders get the missing units (ties: lower symbol first). Fewer than K
    // units are missing (each floor loses less than one), so only the first M - sum symbols
    // of that order are needed: a selection under the total order (remainder descending,
    // symbol ascending) finds exactly the set a stable sort by remainder would put first.
    const auto missing = static_cast<std::size_t>(M - sum);
    LAQ_ASSERT(missing <= K);
    if (missing > 0) {
        std::vector<std::size_t> order(K);
        std::iota(order.begin(), order.end(), std::size_t{0});
        const auto before = [&](std::size_t a, std::size_t b) {
            return rem[a] > rem[b] || (rem[a] == rem[b] && a < b);
        };
        const auto cut = order.begin() + static_cast<std::ptrdiff_t>(missing);
        if (missing < K) std::nth_element(order.begin(), cut - 1, order.end(), before);
        for (auto it = order.begin(); it != cut; ++it) ++freq[*it];
    }
    // Every present symbol needs a non-zero frequency: each one at zero takes a unit from the
    // symbol that is then the largest (ties: the lowest). The symbols raised to 1 never are
    // that largest (it holds at least 2 whenever a unit is taken, or the sum could not be M),
    // so the takings are `zeros` times "decrement the largest". Their result in one go: with
    // D(T) = sum_s max(f_s - T, 0) and T the smallest level with D(T) <= zeros, the first
    // D(T) takings bring every f_s > T down to T, and the r = zeros - D(T) others (fewer
    // than the symbols now at T, as D(T - 1) > zeros) take one unit from each of the r
    // lowest symbols at T, the ties' order.
    std::size_t zeros = 0;
    for (std::size_t s = 0; s < K; ++s) zeros += counts[s] != 0 && freq[s] == 0 ? 1 : 0;
    if (zeros > 0) {
        const auto above = [&](std::uint32_t level) {
            std::uint64_t d = 0;
            for (std::size_t s = 0; s < K; ++s) d += freq[s] > level ? freq[s] - level : 0;
            return d;
        };
        std::uint32_t lo = 0, hi = *std::max_element(freq.begin(), freq.end());
        while (lo < hi) {  // smallest T in [lo, hi] with D(T) <= zeros (D(max f) = 0)
            const std::uint32_t mid = lo + (hi - lo) / 2;
            if (above(mid) <= zeros) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        const std::uint32_t level = lo;
        std::uint64_t r = zeros - above(level);
        LAQ_ASSERT(level >= (r > 0 ? 2u : 1u));
        for (std::size_t s = 0; s < K; ++s) {
            if (freq[s] >= level) {
                freq[s] = level - (r > 0 ? 1u : 0u);
                r -= r > 0 ? 1 : 0;
            }
        }
        for (std::size_t s = 0; s < K; ++s) {
            if (counts[s] != 0 && freq[s] == 0) freq[s] = 1;
        }
    }
    return freq;
}

EntropyTable entropy_choose_table(const std::vector<std::uint64_t>& counts, int alphabet_bits,
                                  double& est_bits) {
    const std::size_t K = std::size_t{1} << alphabet_bits;
    LAQ_ASSERT(counts.size() >= K);
    std::vector<std::uint64_t> c(counts.begin(), counts.begin() + static_cast<std::ptrdiff_t>(K));
    const std::uint64_t total = std::accumulate(c.begin(), c.end(), std::uint64_t{0});
    const std::uint64_t present = static_cast<std::uint64_t>(
        std::count_if(c.begin(), c.end(), [](std::uint64_t v) { return v != 0; }));
    LAQ_ASSERT(total > 0);
    const int m_lo = std::max(1, ceil_log2(present));
    const int m_hi = std::max(m_lo, std::min(kChooseMaxPrecision, ceil_log2(total) + 1));
    EntropyTable best;
    est_bits = HUGE_VAL;
    const double* log2f = log2_of_frequency();
    for (int m = m_lo; m <= m_hi; ++m) {
        std::vector<std::uint32_t> freq = entropy_normalise(c, m);
        int k = 0;
        double bits = static_cast<double>(table_bits(freq, alphabet_bits, k));
        for (std::size_t s = 0; s < K; ++s) {
            if (c[s] != 0) bits += static_cast<double>(c[s]) * (m - log2f[freq[s]]);
        }
        if (bits < est_bits) {
            est_bits = bits;
            best.m = m;
            best.alphabet_bits = alphabet_bits;
            best.freq = std::move(freq);
        }
    }
    return best;
}

void entropy_write_table(const EntropyTable& table, std::vector<std::uint8_t>& out) {
    int k = 0;
    table_bits(table.freq, table.alphabet_bits, k);
    const std::size_t skip = implied_symbol(table.freq);
    BitWriter w(out);
    w.put(static_cast<std::uint64_t>(k), 4);
    w.put(skip, table.alphabet_bits);
    for (std::size_t s = 0; s < table.freq.size(); ++s) {
        if (s == skip) continue;
        const std::uint64_t f = table.freq[s];
        const std::uint64_t u = (f >> k) + 1;
        const int wlen = bit_length(u);
        w.put(0, wlen - 1);
        w.put(1, 1);
        w.put(u, wlen - 1);  // low bits of u below its leading one
        w.put(f, k);
    }
}

EntropyTable entropy_read_table(const std::uint8_t* data, std::size_t size, std::size_t& pos, int m,
                                int alphabet_bits) {
    const std::size_t K = std::size_t{1} << alphabet_bits;
    const std::uint64_t M = std::uint64_t{1} << m;
    BitReader r(data, size, pos);
    const int k = static_cast<int>(r.get(4));
    const std::size_t skip = static_cast<std::size_t>(r.get(alphabet_bits));
    EntropyTable t;
    t.m = m;
    t.alphabet_bits = alphabet_bits;
    t.freq.assign(K, 0);
    std::uint64_t sum = 0;
    for (std::size_t s = 0; s < K; ++s) {
        if (s == skip) continue;
        int zeros = 0;
        while (r.get(1) == 0) {
            ++zeros;
            LAQ_CHECK(zeros <= kEntropyMaxPrecision + 1,
                      "corrupt entropy-coded stream: frequency code too long");
        }
        const std::uint64_t u = (std::uint64_t{1} << zeros) | r.get(zeros);
        const std::uint64_t f = ((u - 1) << k) | r.get(k);
        sum += f;
        LAQ_CHECK(sum < M, "corrupt entropy-coded stream: frequencies exceed 2^" << m);
        t.freq[s] = static_cast<std::uint32_t>(f);
    }
    t.freq[skip] = static_cast<std::uint32_t>(M - sum);
    pos = r.finish();
    return t;
}

}  // namespace detail
}  // namespace laqcore
