// AVX2 scaled-sign block (scalar reference: sign_block_scalar in sign.cpp). Eight elements
// per step: one compare + movemask gives the byte of sign bits (bit j = element j, the
// pack.hpp layout for 1-bit codes), and |x| is added to the 8 LaneSum lanes in double.
#include <immintrin.h>

#include <cfloat>

#include "kernels_avx2.hpp"

namespace laqcore {
namespace detail {

double sign_block_avx2(const float* x, std::size_t count, std::uint8_t* packed, bool* nonfinite) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256 fmax = _mm256_set1_ps(FLT_MAX);
    const __m256 zero = _mm256_setzero_ps();
    __m256 finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    __m256d lo = _mm256_setzero_pd();
    __m256d hi = _mm256_setzero_pd();
    const std::size_t full = count / 8 * 8;
    for (std::size_t i = 0; i < full; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 a = _mm256_and_ps(v, abs_mask);
        finite = _mm256_and_ps(finite, _mm256_cmp_ps(a, fmax, _CMP_LE_OQ));  // NaN, Inf -> 0
        // x < 0 (so -0.0 gives 0, as the reference), not the raw sign bit.
        packed[i / 8] = static_cast<std::uint8_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ)));
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(a)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
    }
    double lane[8];
    _mm256_storeu_pd(lane, lo);
    _mm256_storeu_pd(lane + 4, hi);
    bool bad = _mm256_movemask_ps(finite) != 0xFF;
    if (full < count) {  // last partial byte; its padding bits stay zero
        std::uint8_t byte = 0;
        for (std::size_t i = full; i < count; ++i) {
            const float a = __builtin_fabsf(x[i]);
            bad |= !(a <= FLT_MAX);
            lane[i - full] += static_cast<double>(a);
            byte = static_cast<std::uint8_t>(byte | ((x[i] < 0.0f ? 1u : 0u) << (i - full)));
        }
        packed[full / 8] = byte;
    }
    *nonfinite = bad;
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

}  // namespace detail
}  // namespace laqcore
