#include "laqcore/lazy_rule.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "laqcore/common.hpp"
#include "laqcore/parallel.hpp"

namespace laqcore {

namespace {

template <class T>
double squared_distance_impl(const T* a, const T* b, std::size_t n, const char* name_a,
                             const char* name_b) {
    const double total = blocked_sum(n, [&](std::size_t begin, std::size_t end) {
        LaneSum s;
        for (std::size_t i = begin; i < end; ++i) {
            const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
            s.lane[(i - begin) % kSumLanes] += d * d;
        }
        return s.total();
    });
    // A non-finite total means a non-finite input (or, for float64 data, an overflow): the
    // NaN/Inf check costs nothing in the normal case, and the error path names the culprit.
    if (!std::isfinite(total)) {
        for (std::size_t i = 0; i < n; ++i) {
            LAQ_CHECK(std::isfinite(a[i]),
                      name_a << " contains NaN or Inf (first at index " << i << ")");
        }
        for (std::size_t i = 0; i < n; ++i) {
            LAQ_CHECK(std::isfinite(b[i]),
                      name_b << " contains NaN or Inf (first at index " << i << ")");
        }
        LAQ_CHECK_RANGE(false, "||" << name_a << " - " << name_b << "||^2 overflows float64");
    }
    return total;
}

// ||next - stored||^2 and stored <- next in one pass (each block sums, then copies). The
// sum has squared_distance's order, so both functions agree bit for bit.
template <class T>
double advance_iterate_impl(T* stored, const T* next, std::size_t n) {
    const double total = blocked_sum(n, [&](std::size_t begin, std::size_t end) {
        LaneSum s;
        for (std::size_t i = begin; i < end; ++i) {
            const double d = static_cast<double>(next[i]) - static_cast<double>(stored[i]);
            s.lane[(i - begin) % kSumLanes] += d * d;
            stored[i] = next[i];
        }
        return s.total();
    });
    if (!std::isfinite(total)) {
        // stored now equals next: only next can hold the culprit (stored was finite before).
        for (std::size_t i = 0; i < n; ++i) {
            LAQ_CHECK(std::isfinite(next[i]),
                      "theta_new contains NaN or Inf (first at index " << i << ")");
        }
        LAQ_CHECK_RANGE(false, "||theta_new - theta_old||^2 overflows float64");
    }
    return total;
}

// ||a - b||^2 and ||a||^2 over [0, n), both in squared_distance's blocked order (the blocks
// and the order of their sums are blocked_sum's; two totals instead of one).
std::pair<double, double> distance_and_norm(const float* a, const float* b, std::size_t n) {
    const std::size_t nb = num_blocks(n);
    std::vector<double> dist(nb, 0.0), norm(nb, 0.0);
    for_each_block(n, [&](std::size_t blk, std::size_t begin, std::size_t end) {
        LaneSum d_sum, a_sum;
        for (std::size_t i = begin; i < end; ++i) {
            const double x = static_cast<double>(a[i]);
            const double d = x - static_cast<double>(b[i]);
            d_sum.lane[(i - begin) % kSumLanes] += d * d;
            a_sum.lane[(i - begin) % kSumLanes] += x * x;
        }
        dist[blk] = d_sum.total();
        norm[blk] = a_sum.total();
    });
    double dist_total = 0.0, norm_total = 0.0;
    for (std::size_t blk = 0; blk < nb; ++blk) {
        dist_total += dist[blk];
        norm_total += norm[blk];
    }
    return {dist_total, norm_total};
}

}  // namespace

void segment_squares(const float* a, const float* b, const std::int64_t* offsets,
                     std::size_t segments, double* dist_sq, double* a_sq) {
    for (std::size_t j = 0; j < segments; ++j) {
        const auto begin = static_cast<std::size_t>(offsets[j]);
        const auto length = static_cast<std::size_t>(offsets[j + 1]) - begin;
        const auto [dist, norm] = distance_and_norm(a + begin, b + begin, length);
        if (!std::isfinite(dist) || !std::isfinite(norm)) {
            // Finite float32 values cannot overflow a double sum: an input holds NaN or Inf.
            // The check over the whole vectors throws, naming the first one's index.
            squared_distance_impl(a, b, static_cast<std::size_t>(offsets[segments]), "a", "b");
            LAQ_CHECK(false, "a non-finite sum of finite inputs in segment " << j);
        }
        dist_sq[j] = dist;
        a_sq[j] = norm;
    }
}

void add_scaled(float* inout, const float* x, float weight, std::size_t n) {
    for_each_block(n, [&](std::size_t, std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) {
            const float product = x[i] * weight;  // rounded here: -ffp-contract=off
            inout[i] = inout[i] + product;
        }
    });
}

void add_scaled_difference(float* out, const float* x, const float* a, const float* b, float weight,
                           std::size_t n) {
    for_each_block(n, [&](std::size_t, std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) {
            const float difference = a[i] - b[i];  // each step rounded: -ffp-contract=off
            const float product = difference * weight;
            out[i] = x[i] + product;
        }
    });
}

double advance_iterate(float* stored, const float* next, std::size_t n) {
    return advance_iterate_impl(stored, next, n);
}

double advance_iterate(double* stored, const double* next, std::size_t n) {
    return advance_iterate_impl(stored, next, n);
}

double squared_distance(const float* a, const float* b, std::size_t n, const char* name_a,
                        const char* name_b) {
    return squared_distance_impl(a, b, n, name_a, name_b);
}

double squared_distance(const double* a, const double* b, std::size_t n, const char* name_a,
                        const char* name_b) {
    return squared_distance_impl(a, b, n, name_a, name_b);
}

IterateHistory::IterateHistory(std::size_t depth, std::vector<double> weights, double ck,
                               std::size_t num_terms)
    : depth_(depth), weights_(std::move(weights)), ck_(ck), num_terms_(num_terms) {
    LAQ_CHECK(depth >= 1, "D (history depth) must be >= 1, got " << depth);
    LAQ_CHECK(weights_.empty() || weights_.size() == depth,
              "xi must hold D = " << depth << " weights, got " << weights_.size());
    for (double w : weights_) {
        LAQ_CHECK(std::isfinite(w) && w >= 0.0, "xi weights must be finite and >= 0, got " << w);
    }
    LAQ_CHECK(std::isfinite(ck) && ck >= 0.0, "ck must be finite and >= 0, got " << ck);
    if (num_terms_ == 0) num_terms_ = depth;
    LAQ_CHECK(num_terms_ <= depth,
              "num_terms must be in [1, D = " << depth << "], got " << num_terms_);
    ring_.assign(depth, 0.0);
}

void IterateHistory::push(double diff_sq) {
    LAQ_CHECK(std::isfinite(diff_sq) && diff_sq >= 0.0,
              "diff_sq must be finite and >= 0, got " << diff_sq);
    ring_[head_] = diff_sq;
    head_ = (head_ + 1) % depth_;
    size_ = std::min(size_ + 1, depth_);
    ++count_;
}

double IterateHistory::weight(std::size_t d) const {
    if (d < 1 || d > num_terms_ || d > size_) return 0.0;
    if (!weights_.empty()) return weights_[d - 1];
    // Official table: ksi[:, i] = ck * (1/i), used with i = min(k, D).
    const auto i = static_cast<double>(std::min<std::uint64_t>(count_, depth_));
    return ck_ * (1.0 / i);
}

std::vector<double> IterateHistory::recent() const {
    std::vector<double> out(size_);
    for (std::size_t d = 0; d < size_; ++d) out[d] = ring_[(head_ + depth_ - 1 - d) % depth_];
    return out;
}

double IterateHistory::weighted_sum() const {
    double me = 0.0;
    const std::size_t terms = std::min(num_terms_, size_);
    for (std::size_t d = 1; d <= terms; ++d) {
        me = me + weight(d) * ring_[(head_ + depth_ - d) % depth_];
    }
    return me;
}

double IterateHistory::rhs(double alpha, std::size_t num_workers) const {
    LAQ_CHECK(std::isfinite(alpha) && alpha > 0.0, "alpha must be finite and > 0, got " << alpha);
    LAQ_CHECK(num_workers >= 1, "num_workers must be >= 1, got " << num_workers);
    const auto m = static_cast<double>(num_workers);
    const double me = weighted_sum();
    if (me == 0.0) return 0.0;  // 0 / (alpha^2 M^2) is 0 for every alpha > 0, not inf * 0 = NaN
    const double denom = (alpha * alpha) * (m * m);
    if (denom >= std::numeric_limits<double>::min()) return (1.0 / denom) * me;  // official
    // A tiny alpha (< ~1e-154): alpha^2 M^2 underflows (1/denom was inf, inf * me inf or NaN).
    // Divide the mantissas and add the exponents instead; inf only when the quotient overflows.
    int e_alpha = 0;
    int e_me = 0;
    const double f_alpha = std::frexp(alpha, &e_alpha);
    const double f_me = std::frexp(me, &e_me);
    return std::ldexp(f_me / ((f_alpha * f_alpha) * (m * m)), e_me - 2 * e_alpha);
}

void IterateHistory::restore(const std::vector<double>& recent, std::uint64_t count) {
    const std::size_t expect = static_cast<std::size_t>(std::min<std::uint64_t>(count, depth_));
    LAQ_CHECK(recent.size() == expect, "a history with count "
                                           << count << " and D = " << depth_ << " holds " << expect
                                           << " differences, got " << recent.size());
    for (double v : recent) {
        LAQ_CHECK(std::isfinite(v) && v >= 0.0,
                  "stored differences must be finite and >= 0, got " << v);
    }
    clear();
    for (std::size_t d = expect; d-- > 0;) push(recent[d]);  // oldest first
    count_ = count;
}

void IterateHistory::clear() {
    std::fill(ring_.begin(), ring_.end(), 0.0);
    head_ = 0;
    size_ = 0;
    count_ = 0;
}

}  // namespace laqcore
