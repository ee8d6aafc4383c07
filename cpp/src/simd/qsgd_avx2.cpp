// AVX2 QSGD code loop (scalar reference: qsgd_codes_scalar in qsgd.cpp; formula in qsgd.hpp).
// Eight coordinates per step, with exactly the reference's float32 operations, and the
// uniforms of rng.hpp computed in 64-bit lanes: AVX2 has no 64-bit multiply, so
// mix64's two products are assembled from three 32x32->64 multiplies each.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels_avx2.hpp"

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

inline std::uint8_t code_s(float v, float scale, float s, int levels, float u) {
    float r = scale > 0.0f ? (__builtin_fabsf(v) / scale) * s : 0.0f;
    r = r < s ? r : s;
    const int l = static_cast<int>(r);
    int level = l + (u < r - static_cast<float>(l) ? 1 : 0);
    level = level < levels ? level : levels;
    const int neg = (v < 0.0f && level > 0) ? 1 : 0;
    return static_cast<std::uint8_t>(2 * level + neg);
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

// Codes of x[i0, i1), all in one bucket of scale `scale`.
void codes_run(const float* x, std::size_t i0, std::size_t i1, float scale, int levels,
               std::uint64_t key, std::uint8_t* out, const Mixer& mix) {
    const float s = static_cast<float>(levels);
    const __m256 vs = _mm256_set1_ps(s);
    const __m256 vscale = _mm256_set1_ps(scale);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256 inv24 = _mm256_set1_ps(1.0f / 16777216.0f);
    const __m256i vlevels = _mm256_set1_epi32(levels);
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i gather_lo = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);  // low dwords
    const __m256i step8 = _mm256_set1_epi64x(static_cast<long long>(8 * kGoldenGamma));
    const bool positive = scale > 0.0f;
    // Counters key + (i + 1) * golden of lanes i .. i+3 (z_a) and i+4 .. i+7 (z_b).
    __m256i z_a = _mm256_setr_epi64x(
        static_cast<long long>(key + (i0 + 1) * kGoldenGamma),
        static_cast<long long>(key + (i0 + 2) * kGoldenGamma),
        static_cast<long long>(key + (i0 + 3) * kGoldenGamma),
        static_cast<long long>(key + (i0 + 4) * kGoldenGamma));
    __m256i z_b = _mm256_add_epi64(z_a, _mm256_set1_epi64x(static_cast<long long>(4 * kGoldenGamma)));
    std::size_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        __m256 r = positive ? _mm256_mul_ps(_mm256_div_ps(_mm256_and_ps(v, abs_mask), vscale), vs)
                            : _mm256_setzero_ps();
        r = _mm256_min_ps(r, vs);  // r < s ? r : s
        const __m256i l = _mm256_cvttps_epi32(r);
        const __m256 frac = _mm256_sub_ps(r, _mm256_cvtepi32_ps(l));
        // 24-bit uniforms: the low dword of each 64-bit lane, lanes a then b.
        const __m256i ua = _mm256_permutevar8x32_epi32(mix.top24(z_a), gather_lo);
        const __m256i ub = _mm256_permutevar8x32_epi32(mix.top24(z_b), gather_lo);
        const __m256i u24 = _mm256_blend_epi32(ua, ub, 0xF0);
        const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(u24), inv24);
        z_a = _mm256_add_epi64(z_a, step8);
        z_b = _mm256_add_epi64(z_b, step8);
        // level = min(l + [u < frac], levels); neg = v < 0 and level > 0.
        const __m256i up = _mm256_castps_si256(_mm256_cmp_ps(u, frac, _CMP_LT_OQ));  // -1 / 0
        const __m256i level = _mm256_min_epi32(_mm256_sub_epi32(l, up), vlevels);
        const __m256i negative = _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
        const __m256i neg = _mm256_and_si256(
            _mm256_and_si256(negative, _mm256_cmpgt_epi32(level, _mm256_setzero_si256())), one);
        const __m256i code = _mm256_add_epi32(_mm256_add_epi32(level, level), neg);
        const __m128i c16 = _mm_packus_epi32(_mm256_castsi256_si128(code),
                                             _mm256_extracti128_si256(code, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out + (i - i0)), _mm_packus_epi16(c16, c16));
    }
    for (; i < i1; ++i) out[i - i0] = code_s(x[i], scale, s, levels, uniform01_s(key, i));
}

}  // namespace

void qsgd_codes_avx2(const float* x, std::size_t begin, std::size_t end, std::size_t n,
                     const float* scales, std::size_t bucket_size, int levels,
                     std::uint64_t key, std::uint8_t* codes) {
    const Mixer mix;
    std::size_t i = begin;
    while (i < end) {
        // One bucket's part of [begin, end): constant scale.
        const std::size_t j = i / bucket_size;
        const std::size_t bucket_stop = n - j * bucket_size > bucket_size ? (j + 1) * bucket_size : n;
        const std::size_t stop = bucket_stop < end ? bucket_stop : end;
        codes_run(x, i, stop, scales[j], levels, key, codes + (i - begin), mix);
        i = stop;
    }
}

}  // namespace detail
}  // namespace laqcore
