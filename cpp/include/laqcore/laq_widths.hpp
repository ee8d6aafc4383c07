// laqcore/laq_widths.hpp: LAQ with a bit width per block, allocated by rate and distortion
// (issue 13.3; docs/algorithms.md "A width per block in the library").
//
// The innovation v = g - q_prev (float32) is cut into blocks of `block` coordinates (the last
// one may be shorter). Block j gets a width w_j from a table of kWidthFields widths (the
// frame's table, w[0] = 0 < w[1] < w[2] < w[3] <= 8): width 0 sends nothing for the block
// (dQ_j = 0); a width w > 0 quantizes the block on LAQ's grid of 2^w points over
// [-R_j, R_j] (the formula of laq.hpp, radius R_j, bits w). The radius travels as a 3-bit
// exponent e_j against the frame's largest block maximum R_max (float32):
//     R_j = (float)(R_max * kRadiusScale[e_j]),  kRadiusScale[e] = float32(2^(-e/2)),
// e_j the largest e in 0..7 with R_j >= max_i |v_i| over the block (e = 0 always qualifies),
// so every code of the block lies on its grid.
//
// The widths minimise the frame's bits subject to ||dQ - v||^2 <= target (the errors in
// double, (double)dQ_i - (double)v_i), where
//     target = min(budget, cap * ||v||^2)
// (the caller's budget: the rule's err_coef * ||eps||^2 <= F * rhs becomes budget = F rhs /
// err_coef; the cap keeps an upload the clock forces from sending less than a (1 - cap) share
// of its innovation's energy). Block j at table entry k costs
//     bits_j(k) = kWidthFieldBits + (w_k > 0 ? kExponentBits + w_k * size_j : 0)
// and errs err_j(k) (err_j(0) = ||v_j||^2, each a sequential double sum over the block). The
// allocation is Lagrangian: for a multiplier lam, block j takes the k minimising
// err_j(k) + lam * bits_j(k) (the first such k); the total error (blocks summed in order) is
// non-increasing as lam falls, so lam is searched for the largest value whose total meets the
// target: first over integer powers of two 2^t, t in [-64, 64) (bisection on t, (lo + hi) >> 1),
// then 40 bisection steps of m = 0.5 * (a + b) in [2^t, 2^(t + 1)). Every lam tried whose
// total meets the target replaces the allocation; none does (or the widest width everywhere
// misses the target): every block with a nonzero maximum takes the widest width. Blocks whose
// maximum is 0 always take width 0. laqcore._reference.laq_widths_quantize does the same
// operations in numpy and reproduces the widths, and the whole body, bit for bit.
//
// Body (one little-endian bit stream, least significant bit first, zero padding bits to the
// byte): the ceil(n / block) table indices of kWidthFieldBits bits; then, for each block sent
// (w_j > 0) in order, its exponent (kExponentBits bits); then, for each block sent in order,
// its size_j codes of w_j bits.
//
// After the allocation: dQ_i = lut_j[c_i] (laq.hpp's float32 table for (R_j, w_j)), q_new_i =
// (float)(q_prev_i + dQ_i) for the blocks sent (others unchanged), err_sq = sum_i ((double)
// q_new_i - (double)g_i)^2 and innov_sq = sum_i (double)dQ_i^2, both sequential over i.
// Decoders add (float)(weight * lut_j[c]) in float32 (weight 1: exactly the apply).
//
// Single-threaded (the allocation's passes are sequential sums, so the result is the same for
// any thread count trivially): O(n |widths|) for the errors plus about 47 passes over the
// blocks for the search.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace laqcore {

constexpr int kWidthFields = 4;     // entries of a frame's width table
constexpr int kWidthFieldBits = 2;  // bits of a block's table index
constexpr int kExponentBits = 3;    // bits of a sent block's radius exponent
constexpr int kExponentLevels = 1 << kExponentBits;
// Largest block (the frame's block field is a uint16; a multiple of 8 in [8, kMaxWidthBlock]).
constexpr std::size_t kMaxWidthBlock = 32768;

// float32(2^(-e/2)), e = 0..7 (exact float32 literals: no libm call, the same everywhere).
float laq_widths_radius_scale(int e) noexcept;

struct LaqWidthsTable {
    int w[kWidthFields];
};

// Throws std::invalid_argument unless w[0] == 0 < w[1] < w[2] < w[3] <= 8.
void laq_check_width_table(const LaqWidthsTable& table);
// Throws std::invalid_argument unless block is a multiple of 8 in [8, kMaxWidthBlock].
void laq_check_width_block(std::size_t block);

struct LaqWidthsResult {
    float r_max = 0.0f;
    double err_sq = 0.0;
    double innov_sq = 0.0;
    std::vector<std::uint8_t> body;
};

// Quantizes grad - prev (prev may be nullptr: zeros) as described above. budget and cap must
// be >= 0 (budget may be +inf); throws std::invalid_argument for NaN/Inf input or bad
// arguments, std::overflow_error when a difference or a reconstruction overflows float32.
LaqWidthsResult laq_quantize_widths(const float* grad, const float* prev, std::size_t n,
                                    std::size_t block, const LaqWidthsTable& table, double budget,
                                    double cap);

// Body bytes a frame of these fields must have, after checking them: throws
// std::invalid_argument for a body shorter than its fields, of another length, with nonzero
// padding bits, or an r_max that is negative or not finite; a table or block checked as above.
std::size_t laq_widths_check(const std::uint8_t* body, std::size_t nbytes, std::size_t n,
                             std::size_t block, const LaqWidthsTable& table, float r_max);

// A checked body's per-block widths (int8, 0 for blocks not sent) and radii (0 for blocks not
// sent): ceil(n / block) of each.
void laq_widths_fields(const std::uint8_t* body, std::size_t n, std::size_t block,
                       const LaqWidthsTable& table, float r_max, std::int8_t* widths, float* radii);

// inout[i] += (float)(weight * dQ_i) in float32 for the blocks sent (a checked body);
// store = true writes out[i] = dQ_i everywhere instead (weight ignored).
void laq_widths_decode(const std::uint8_t* body, std::size_t n, std::size_t block,
                       const LaqWidthsTable& table, float r_max, float weight, bool store,
                       float* inout);

// sum_i (double)dQ_i^2 of a checked body, in the encoder's order (equal to its innov_sq).
double laq_widths_innov_sq(const std::uint8_t* body, std::size_t n, std::size_t block,
                           const LaqWidthsTable& table, float r_max);

}  // namespace laqcore
