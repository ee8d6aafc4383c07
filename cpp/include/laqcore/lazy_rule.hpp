// laqcore/lazy_rule.hpp: the right-hand side of the LAQ/LAG upload ("innovation") test.
//
// LAQ (docs/algorithms.md "Lazy upload rule", as the official code) uploads worker m's innovation
// when
//     ||dQ_m||^2 >= (1 / (alpha^2 M^2)) * sum_{d=1..D} xi_d ||theta^{k+1-d} - theta^{k-d}||^2
//                   + 3 (||eps_m||^2 + ||eps_hat_m||^2)        or  clock_m >= t_bar.
// This header provides the two native pieces of that test:
//   * squared_distance(a, b): ||a - b||^2 for float32 or float64 vectors (deterministic blocked
//     sum in double, NaN/Inf check fused into the pass), so the server gets
//     ||theta^{k+1} - theta^k||^2 without temporaries.
//   * IterateHistory: a ring buffer of the last D values of ||theta^{k+1-d} - theta^{k-d}||^2
//     and the weighted sum  me = sum_d xi_d * diff_d  over them.
//
// Weights. Two modes:
//   * Official LAQ schedule (no explicit weights): after `count` pushes,
//         xi_d = ck * (1.0 / min(count, D))        for d = 1..min(count, D),
//     written exactly as the official code builds its table (ksi = ck * (1/i)), so during the
//     warm-up (count <= D) the available differences are averaged with weight ck/count, and
//     afterwards xi_d = ck/D (0.08 for the defaults D = 10, ck = 0.8). With no push yet the
//     sum is 0 (the official code's theta^0 - theta^{-1} term is 0).
//   * Explicit weights xi_1..xi_D (e.g. LAG's xi_d = 1/D): fixed; differences not pushed yet
//     count as 0, as in the LAG code's zero-initialised history.
// num_terms (default D) limits the sum to the num_terms most recent differences; the SLAQ
// script sums d = 1..D-1 only (num_terms = D - 1, with the same ck/D weights once count >= D).
// During its first D-1 iterations the SLAQ script indexes its shift buffer with the LAQ
// script's absolute indices, which mixes zero columns into the sum; that artefact is not
// reproduced (this class uses the LAQ warm-up for both).
//
// Summation order: me is accumulated from the most recent difference (d = 1) to the oldest,
// one term w_d * diff_d at a time, as the official loop does; rhs = (1/(alpha^2 M^2)) * me with
// alpha^2 M^2 computed as (alpha * alpha) * (M * M). Where that product is not a normal double
// (alpha below ~1e-154) rhs is me / (alpha^2 M^2) computed from the mantissas and exponents,
// and 0 when me is 0 (the official expression gives inf * 0 = NaN there).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace laqcore {

// ||a - b||^2 over n values, each difference and square in double, blocked sum with LaneSum
// order (identical for any thread count). Throws std::invalid_argument("<name_a> contains NaN
// or Inf") (or name_b) if an input is not finite, or if the sum overflows a double (possible
// for float64 inputs only). The float64 version exists because a server that keeps theta in
// float64 takes steps far below float32 resolution near convergence.
double squared_distance(const float* a, const float* b, std::size_t n, const char* name_a = "a",
                        const char* name_b = "b");
double squared_distance(const double* a, const double* b, std::size_t n, const char* name_a = "a",
                        const char* name_b = "b");

// The server's per-iteration step of the rule's history, fused: returns
// ||next - stored||^2 (squared_distance's order and result, bit for bit) and copies next into
// stored in the same pass, so the caller keeps the previous iterate without a second sweep.
// Throws std::invalid_argument("theta_new contains NaN or Inf ...") for a non-finite next (or
// a float64 overflow); stored then already holds next and must be treated as invalid.
double advance_iterate(float* stored, const float* next, std::size_t n);
double advance_iterate(double* stored, const double* next, std::size_t n);

// Per segment j = [offsets[j], offsets[j+1]) of two float32 vectors, in one pass over both:
// dist_sq[j] = ||a_j - b_j||^2 (squared_distance(a_j, b_j) bit for bit: the same blocks,
// counted from the segment's start, and lanes) and a_sq[j] = ||a_j||^2 (the same order).
// offsets holds segments + 1 nondecreasing values from 0 to the vectors' length (the caller
// checks it). The DDP hook's stale cap per parameter tensor uses it: a would-be skip is
// refused if some tensor's innovation ||g_l - q_prev_l||^2 exceeds cap * ||g_l||^2. Throws
// std::invalid_argument naming the vector that holds NaN or Inf.
void segment_squares(const float* a, const float* b, const std::int64_t* offsets,
                     std::size_t segments, double* dist_sq, double* a_sq);

// inout[i] = inout[i] + (x[i] * weight) for i < n in float32, the product rounded to float32
// before the sum (no fused multiply-add): numpy's `inout += x * np.float32(weight)` bit for
// bit, in one pass and without numpy's n-float temporary. The DDP hook's error feedback,
// g <- g + w r, uses it (tests/test_lazy.py checks it against numpy). weight must be finite
// (the caller checks it).
void add_scaled(float* inout, const float* x, float weight, std::size_t n);

// out[i] = x[i] + ((a[i] - b[i]) * weight) for i < n in float32, each operation rounded to
// float32 in that order (no fused multiply-add): numpy's `r = a - b; out = x + r *
// np.float32(weight)` bit for bit, in one pass, without materialising r. The DDP hook's error
// feedback uses it to gather the bucket and add w (g'_prev - q_prev) at once, the residual
// kept implicit as the previous step's gradient and the current q_prev. out may be x (or a,
// or b) itself; a partial overlap is the caller's error (the binding refuses it).
void add_scaled_difference(float* out, const float* x, const float* a, const float* b, float weight,
                           std::size_t n);

class IterateHistory {
  public:
    // depth = D >= 1. weights: empty for the official ck schedule, else exactly D finite
    // values >= 0. ck: finite, >= 0 (ignored with explicit weights). num_terms: 0 means D,
    // else 1..D.
    IterateHistory(std::size_t depth, std::vector<double> weights, double ck,
                   std::size_t num_terms);

    // Records ||theta^{k+1} - theta^k||^2 (finite, >= 0); drops the oldest beyond D.
    void push(double diff_sq);
    // sum_{d=1..num_terms} xi_d * diff_d (diff_1 = most recent push).
    double weighted_sum() const;
    // (1 / (alpha^2 M^2)) * weighted_sum(). alpha finite > 0, num_workers >= 1.
    double rhs(double alpha, std::size_t num_workers) const;
    // Weight of the d-th most recent difference (1-based) at the current count; 0 if d is
    // beyond num_terms or beyond what has been pushed.
    double weight(std::size_t d) const;

    std::size_t depth() const { return depth_; }
    std::size_t num_terms() const { return num_terms_; }
    std::size_t size() const { return size_; }
    std::uint64_t count() const { return count_; }
    bool explicit_weights() const { return !weights_.empty(); }
    double ck() const { return ck_; }
    const std::vector<double>& weights() const { return weights_; }
    // Stored differences, most recent first (size() values).
    std::vector<double> recent() const;
    void clear();
    // Replaces the contents: `recent` (most recent first) must hold exactly min(count, D)
    // finite values >= 0. Restores a history saved with recent() and count() exactly (the
    // weights depend on count), e.g. from a checkpoint.
    void restore(const std::vector<double>& recent, std::uint64_t count);

  private:
    std::size_t depth_;
    std::vector<double> weights_;
    double ck_;
    std::size_t num_terms_;
    std::vector<double> ring_;
    std::size_t head_ = 0;  // slot of the next push
    std::size_t size_ = 0;
    std::uint64_t count_ = 0;
};

}  // namespace laqcore
