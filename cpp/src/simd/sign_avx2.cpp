// AVX2 scaled-sign block (scalar reference: sign_block_scalar in sign.cpp). Eight elements
// per step: one compare + movemask gives the byte of sign bits (bit j = element j, the
// pack.hpp layout for 1-bit codes), and |x| is added to the 8 LaneSum lanes in double.
#include <immintrin.h>

#include <cfloat>

#include "kernels_avx2.hpp"
#include "lanes_avx2.hpp"

namespace laqcore {
namespace detail {

double sign_block_avx2(const float* x, std::size_t count, std::uint8_t* packed, bool* nonfinite) {
    const __m256 zero = _mm256_setzero_ps();
    FiniteAbs finite_abs;
    Lanes s;
    const std::size_t full = count / 8 * 8;
    for (std::size_t i = 0; i < full; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 a = finite_abs(v);
        // x < 0 (so -0.0 gives 0, as the reference), not the raw sign bit.
        packed[i / 8] =
            static_cast<std::uint8_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ)));
        s.add_widened(a);
    }
    s.spill();
    bool bad = finite_abs.any_nonfinite();
    if (full < count) {  // last partial byte; its padding bits stay zero
        std::uint8_t byte = 0;
        for (std::size_t i = full; i < count; ++i) {
            const float a = __builtin_fabsf(x[i]);
            bad |= !(a <= FLT_MAX);
            s.tail[i - full] += static_cast<double>(a);
            byte = static_cast<std::uint8_t>(byte | ((x[i] < 0.0f ? 1u : 0u) << (i - full)));
        }
        packed[full / 8] = byte;
    }
    *nonfinite = bad;
    return s.total();
}

}  // namespace detail
}  // namespace laqcore
