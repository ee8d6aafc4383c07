// laqcore/sign.hpp: scaled sign compression (EF-SGD, Karimireddy et al. 2019;
// docs/algorithms.md "Sign, sparsifiers, error feedback").
//
//     C(x) = (||x||_1 / n) * sign(x)
//
// Wire form: one float32 scale = float(S / n), S = sum |x_i| in double with parallel.hpp's
// fixed-block rule and LaneSum order inside a block (thread-count and SIMD invariant), plus one bit
// per coordinate packed with pack.hpp's layout: bit 1 = negative (x_i < 0), bit 0 = non-negative. A
// single bit cannot express sign(0) = 0, so zeros (and -0.0) are sent as +scale; the scale keeps C
// a delta-compressor regardless, which is what error feedback needs. Codes do not depend on the
// scale, so the kernel packs the bits and sums |x| in one pass.
#pragma once

#include <cstddef>
#include <cstdint>

namespace laqcore {

// Packs the sign bits into packed[packed_size(n, 1)] and returns the scale.
// Throws std::invalid_argument("<name> contains NaN or Inf") or if n == 0.
float sign_compress(const float* x, std::size_t n, std::uint8_t* packed, const char* name = "x");

// out[i] = bit ? -scale : +scale. Throws for bad padding or a negative / non-finite scale.
void sign_decompress(const std::uint8_t* packed, std::size_t n, float scale, float* out);

}  // namespace laqcore
