// Private header of the AVX2 files: rng.hpp's counter-based uniforms, eight at a time.
// Include only from *_avx2.cpp files (internal linkage only; see bits_avx2.hpp).
//
// uniform01(key, i) = (mix64(key + (i + 1) * golden) >> 40) * 2^-24. AVX2 has no 64-bit
// multiply, so each of mix64's two products is assembled from three 32x32->64 multiplies.
// tests/test_simd_dispatch.py checks every kernel using it against the scalar rng.hpp.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace laqcore {
namespace detail {
namespace {

// rng.hpp's constants and functions, restated with internal linkage (see bits_avx2.hpp on
// why AVX2 files do not call shared inline functions). tests check both against reference.py.
constexpr std::uint64_t kGoldenGamma = 0x9E3779B97F4A7C15ULL;
constexpr std::uint64_t kMix1 = 0xBF58476D1CE4E5B9ULL;
constexpr std::uint64_t kMix2 = 0x94D049BB133111EBULL;

inline std::uint64_t mix64_s(std::uint64_t z) {
    z = (z ^ (z >> 30)) * kMix1;
    z = (z ^ (z >> 27)) * kMix2;
    return z ^ (z >> 31);
}

inline float uniform01_s(std::uint64_t key, std::uint64_t i) {
    return static_cast<float>(mix64_s(key + (i + 1) * kGoldenGamma) >> 40) * (1.0f / 16777216.0f);
}

// a * m mod 2^64 per 64-bit lane, m = (m_hi << 32) | m_lo given as broadcast vectors.
inline __m256i mullo64(__m256i a, __m256i m_lo, __m256i m_hi) {
    const __m256i ll = _mm256_mul_epu32(a, m_lo);
    const __m256i hl = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m_lo);
    const __m256i lh = _mm256_mul_epu32(a, m_hi);
    return _mm256_add_epi64(ll, _mm256_slli_epi64(_mm256_add_epi64(hl, lh), 32));
}

struct Mixer {
    __m256i m1_lo = _mm256_set1_epi64x(static_cast<long long>(kMix1 & 0xFFFFFFFFu));
    __m256i m1_hi = _mm256_set1_epi64x(static_cast<long long>(kMix1 >> 32));
    __m256i m2_lo = _mm256_set1_epi64x(static_cast<long long>(kMix2 & 0xFFFFFFFFu));
    __m256i m2_hi = _mm256_set1_epi64x(static_cast<long long>(kMix2 >> 32));
    // mix64(z) >> 40 in each 64-bit lane. Only bits 40..63 of the result are kept, and the
    // final z ^ (z >> 31) leaves those bits unchanged, so that step is skipped.
    __m256i top24(__m256i z) const {
        z = mullo64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), m1_lo, m1_hi);
        z = mullo64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), m2_lo, m2_hi);
        return _mm256_srli_epi64(z, 40);
    }
};

// The uniforms of 8 consecutive counters i, i+1, ..., i+7, advancing by 8 per call.
struct Uniforms8 {
    __m256i z_a, z_b;  // key + (i + 1) * golden for lanes i..i+3 and i+4..i+7
    Uniforms8(std::uint64_t key, std::size_t i0)
        : z_a(_mm256_setr_epi64x(static_cast<long long>(key + (i0 + 1) * kGoldenGamma),
                                 static_cast<long long>(key + (i0 + 2) * kGoldenGamma),
                                 static_cast<long long>(key + (i0 + 3) * kGoldenGamma),
                                 static_cast<long long>(key + (i0 + 4) * kGoldenGamma))),
          z_b(_mm256_add_epi64(z_a, _mm256_set1_epi64x(static_cast<long long>(4 * kGoldenGamma)))) {
    }
    __m256 next(const Mixer& mix) {
        const __m256i low_dwords = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
        const __m256i ua = _mm256_permutevar8x32_epi32(mix.top24(z_a), low_dwords);
        const __m256i ub = _mm256_permutevar8x32_epi32(mix.top24(z_b), low_dwords);
        const __m256i step8 = _mm256_set1_epi64x(static_cast<long long>(8 * kGoldenGamma));
        z_a = _mm256_add_epi64(z_a, step8);
        z_b = _mm256_add_epi64(z_b, step8);
        // 24-bit integers convert exactly; the scale by 2^-24 is exact too.
        return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_blend_epi32(ua, ub, 0xF0)),
                             _mm256_set1_ps(1.0f / 16777216.0f));
    }
};

}  // namespace
}  // namespace detail
}  // namespace laqcore
