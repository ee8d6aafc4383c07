// laqcore/qsgd.hpp: QSGD stochastic quantization (Alistarh et al. 2017; docs/algorithms.md "QSGD").
//
// Buckets: the input of length n is split into num_buckets = ceil(n / bucket_size) buckets of
// bucket_size consecutive coordinates (the last one may be shorter). Bucket j has its own
// float32 scale:
//   * norm = L2:  scale_j = float(sqrt(sum_i x_i^2)), the squares summed in double in
//                 fixed blocks of kReduceBlock elements, LaneSum order inside a block
//                 (parallel.hpp's rule), so the scale is identical for any thread count
//                 and SIMD level;
//   * norm = Max: scale_j = max_i |x_i|.
//
// Stochastic rounding with s = `levels` levels, for x_i in bucket j (float32 arithmetic):
//     r_i   = (|x_i| / scale_j) * s                 (0 when scale_j == 0)
//     l_i   = floor(r_i)
//     level = min(l_i + [u_i < r_i - l_i], s)       u_i = uniform01(key, i)
// so E[level] = r_i (unbiased; the min only guards float rounding of r_i above s).
// u_i is keyed on the *global* element index i, never on the thread or chunk.
//
// Code of coordinate i: code = 2 * level + neg, neg = 1 iff x_i < 0 and level > 0 (a zero
// level is always stored with neg = 0, so codes are canonical). Codes have
//     code_bits = 1 + ceil(log2(s + 1))  bits (2 for s = 1, ..., 8 for s = 127),
// and are packed with pack.hpp's layout; s > 127 would need more than 8 bits and is rejected.
//
// Dequantization: x_hat_i = (neg ? -1 : 1) * min(float(level) * (scale_j / float(s)), scale_j)
// (the min only catches a rounded product above scale_j, e.g. inf for scale_j near FLT_MAX).
// A code whose level exceeds s can only come from a corrupt buffer and is rejected.
#pragma once

#include <cstddef>
#include <cstdint>

namespace laqcore {

enum class QsgdNorm : int { kL2 = 0, kMax = 1 };

constexpr int kQsgdMaxLevels = 127;

// Bits per (sign, level) code for s levels; throws std::invalid_argument unless 1 <= s <= 127.
int qsgd_code_bits(int levels);

// ceil(n / bucket_size); throws if bucket_size == 0.
std::size_t qsgd_num_buckets(std::size_t n, std::size_t bucket_size);

// Per-bucket scales into scales[qsgd_num_buckets(n, bucket_size)]. Throws
// std::invalid_argument("<name> contains NaN or Inf") if x has a non-finite value, and
// also if an L2 scale would overflow float32 (only possible for |x_i| near FLT_MAX).
void qsgd_scales(const float* x, std::size_t n, std::size_t bucket_size, QsgdNorm norm,
                 float* scales, const char* name = "x");

// Stochastic rounding + packing (one fused pass) given the scales from qsgd_scales.
// packed has packed_size(n, qsgd_code_bits(levels)) bytes.
void qsgd_encode(const float* x, std::size_t n, int levels, std::size_t bucket_size,
                 const float* scales, std::uint64_t key, std::uint8_t* packed);

// qsgd_scales followed by qsgd_encode.
void qsgd_quantize(const float* x, std::size_t n, int levels, std::size_t bucket_size,
                   QsgdNorm norm, std::uint64_t key, float* scales, std::uint8_t* packed,
                   const char* name = "x");

// Unpack + dequantize into out[n]. Throws std::invalid_argument for a corrupt buffer
// (non-zero padding, a level above s) or a negative / non-finite scale.
void qsgd_dequantize(const std::uint8_t* packed, const float* scales, std::size_t n, int levels,
                     std::size_t bucket_size, float* out);

}  // namespace laqcore
