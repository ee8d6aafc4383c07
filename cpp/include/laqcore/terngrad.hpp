// laqcore/terngrad.hpp: TernGrad ternarization (Wen et al. 2017; docs/algorithms.md "TernGrad").
//
// 1. Optional clipping (clip_factor c > 0): g_i <- sign(g_i) * min(|g_i|, c * sigma), with
//    sigma the population standard deviation of the whole tensor,
//        mean = S1 / n,  sigma = sqrt(S2 / n),  S1 = sum g_i,  S2 = sum (g_i - mean)^2,
//    both sums in double with parallel.hpp's fixed-block rule and LaneSum order inside a
//    block (thread-count and SIMD invariant), and
//    threshold = float(double(c) * sigma). c <= 0 disables clipping (threshold = +Inf), and
//    so does sigma = 0 (a constant tensor has nothing to clip; c * 0 would zero it).
// 2. Scaler s: the local one is max_i |g_i| after clipping, which equals
//    min(max_i |g_i|, threshold), so clipping never needs a pass of its own. For scaler
//    sharing across workers a shared s can be given instead; it must be >= the local one
//    (otherwise some probabilities would exceed 1 and the estimate would be biased).
// 3. Stochastic ternary code per coordinate (float32 arithmetic), u_i = uniform01(key, i):
//        a_i = min(|g_i|, threshold),  p_i = (s > 0 ? a_i / s : 0),  b_i = [u_i < p_i]
//        value = s * sign(g_i) * b_i  in {-s, 0, +s}     (unbiased: E[value] = clipped g_i)
// 4. Code mapping (2 bits, packed with pack.hpp's layout):
//        0 -> 0,   1 -> +s,   2 -> -s,   3 -> invalid (rejected when decoding).
// s == 0 (an all-zero tensor) gives all-zero codes and decodes to zeros.
#pragma once

#include <cstddef>
#include <cstdint>

namespace laqcore {

constexpr int kTernGradBits = 2;

// Local scaler (step 2) of x; writes the clipping threshold (step 1, +Inf without
// clipping) to *threshold. Throws std::invalid_argument("<name> contains NaN or Inf").
float terngrad_scaler(const float* x, std::size_t n, float clip_factor, float* threshold,
                      const char* name = "x");

// Steps 3-4 into packed[packed_size(n, 2)], given threshold and scaler s >= max clipped |x|.
void terngrad_encode(const float* x, std::size_t n, float threshold, float scaler,
                     std::uint64_t key, std::uint8_t* packed);

// All steps; shared_scaler < 0 means "use the local scaler". Returns the scaler used.
// Throws std::invalid_argument if a shared scaler is below the local one or not finite.
float terngrad_quantize(const float* x, std::size_t n, float clip_factor, float shared_scaler,
                        std::uint64_t key, std::uint8_t* packed, const char* name = "x");

// Decode into out[n]; throws std::invalid_argument for code 3, bad padding or a scaler
// that is negative or not finite.
void terngrad_dequantize(const std::uint8_t* packed, std::size_t n, float scaler, float* out);

}  // namespace laqcore
