// laqcore/rotation.hpp: randomized Hadamard rotation (Suresh, Yu, Kumar & McMahan 2017,
// "Distributed mean estimation with limited communication", section 4).
//
// For x of length n, let N = the smallest power of two >= n and x' = x zero-padded to N.
// The rotation is
//     y = (1 / sqrt(N)) * H_N * D * x',      D = diag(d_i),  d_i = +1 or -1,
// with H_N the Sylvester-Hadamard matrix (H_1 = [1], H_2k = [[H_k, H_k], [H_k, -H_k]]) and
// d_i = -1 iff bit (i mod 64) of random_bits(key, floor(i / 64)) (rng.hpp) is 1: a pure
// function of (key, i), one 64-bit draw per 64 signs. (1/sqrt(N)) H_N is orthogonal and symmetric,
// so the inverse is
//     x' = D * (1 / sqrt(N)) * H_N * y        and x = the first n entries.
// Rotating spreads a few large coordinates over all N (heavy tails become near-Gaussian), so
// a stochastic quantizer applied to y has a much smaller range, hence variance, than on x.
//
// Arithmetic (float32; identical for any thread count and SIMD level): fwht() applies the
// butterflies (a, b) -> (a + b, a - b) stage by stage, h = 1, 2, 4, ..., N/2, each pair in
// float32; every entry then gets one float32 multiplication by s = (float)(1 / sqrt(N))
// (computed in double, rounded once). The sign flip is exact. Stages are applied in the same
// order by every schedule (the first log2(kFwhtBlock) stages inside cache-sized blocks, the
// others across blocks), so each output is the same sequence of operations whatever the
// threads.
#pragma once

#include <cstddef>
#include <cstdint>

namespace laqcore {

// Stages h < kFwhtBlock run block by block on kFwhtBlock contiguous floats (L1-resident).
constexpr std::size_t kFwhtBlock = std::size_t{1} << 12;

// Smallest power of two >= n (n >= 1); throws std::invalid_argument above 2^62.
std::size_t rotation_padded_size(std::size_t n);

// In-place unnormalised Walsh-Hadamard transform (x <- H_N x) of x[N], N a power of two.
void fwht(float* x, std::size_t N);

// The largest |x_i| rotation_forward accepts for a rotation of length N: FLT_MAX / N^1.5.
// Below it no float32 sum of the transform or of its inverse can overflow: the forward
// partial sums are at most n max|x| <= N max|x|, every rotated entry (and so every bucket
// scale of the quantizer, max or l2 norm, and every decoded entry) at most sqrt(N) max|x|,
// and the inverse's partial sums at most N times that.
double rotation_input_limit(std::size_t N);

// out[N] = (1/sqrt(N)) H_N D x'  (x[n], N = rotation_padded_size(n)). Throws
// std::invalid_argument("x contains NaN or Inf") for a non-finite input and
// std::overflow_error for a finite one with max|x_i| above rotation_input_limit(N), whose
// transform or its inverse would overflow float32 (before this check: an inf decode).
void rotation_forward(const float* x, std::size_t n, std::uint64_t key, float* out);

// out[n] = the first n entries of D (1/sqrt(N)) H_N y; y[N] is overwritten (used as scratch).
void rotation_inverse(float* y, std::size_t n, std::uint64_t key, float* out);

}  // namespace laqcore
