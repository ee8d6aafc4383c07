// AVX2 QSGD code loop (scalar reference: qsgd_codes_scalar in qsgd.cpp; formula in qsgd.hpp).
// Eight coordinates per step, with exactly the reference's float32 operations, and the
// uniforms of rng.hpp computed in 64-bit lanes (rng_avx2.hpp).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels_avx2.hpp"
#include "rng_avx2.hpp"

namespace laqcore {
namespace detail {
namespace {

inline std::uint8_t code_s(float v, float scale, float s, int levels, float u) {
    float r = scale > 0.0f ? (__builtin_fabsf(v) / scale) * s : 0.0f;
    r = r < s ? r : s;
    const int l = static_cast<int>(r);
    int level = l + (u < r - static_cast<float>(l) ? 1 : 0);
    level = level < levels ? level : levels;
    const int neg = (v < 0.0f && level > 0) ? 1 : 0;
    return static_cast<std::uint8_t>(2 * level + neg);
}

// Codes of x[i0, i1), all in one bucket of scale `scale`.
void codes_run(const float* x, std::size_t i0, std::size_t i1, float scale, int levels,
               std::uint64_t key, std::uint8_t* out, const Mixer& mix) {
    const float s = static_cast<float>(levels);
    const __m256 vs = _mm256_set1_ps(s);
    const __m256 vscale = _mm256_set1_ps(scale);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256i vlevels = _mm256_set1_epi32(levels);
    const __m256i one = _mm256_set1_epi32(1);
    const bool positive = scale > 0.0f;
    Uniforms8 uniforms(key, i0);
    std::size_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        __m256 r = positive ? _mm256_mul_ps(_mm256_div_ps(_mm256_and_ps(v, abs_mask), vscale), vs)
                            : _mm256_setzero_ps();
        r = _mm256_min_ps(r, vs);  // r < s ? r : s
        const __m256i l = _mm256_cvttps_epi32(r);
        const __m256 frac = _mm256_sub_ps(r, _mm256_cvtepi32_ps(l));
        const __m256 u = uniforms.next(mix);
        // level = min(l + [u < frac], levels); neg = v < 0 and level > 0.
        const __m256i up = _mm256_castps_si256(_mm256_cmp_ps(u, frac, _CMP_LT_OQ));  // -1 / 0
        const __m256i level = _mm256_min_epi32(_mm256_sub_epi32(l, up), vlevels);
        const __m256i negative =
            _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
        const __m256i neg = _mm256_and_si256(
            _mm256_and_si256(negative, _mm256_cmpgt_epi32(level, _mm256_setzero_si256())), one);
        const __m256i code = _mm256_add_epi32(_mm256_add_epi32(level, level), neg);
        const __m128i c16 =
            _mm_packus_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out + (i - i0)), _mm_packus_epi16(c16, c16));
    }
    for (; i < i1; ++i) out[i - i0] = code_s(x[i], scale, s, levels, uniform01_s(key, i));
}

}  // namespace

void qsgd_codes_avx2(const float* x, std::size_t begin, std::size_t end, std::size_t n,
                     const float* scales, std::size_t bucket_size, int levels, std::uint64_t key,
                     std::uint8_t* codes) {
    const Mixer mix;
    std::size_t i = begin;
    while (i < end) {
        // One bucket's part of [begin, end): constant scale.
        const std::size_t j = i / bucket_size;
        const std::size_t bucket_stop =
            n - j * bucket_size > bucket_size ? (j + 1) * bucket_size : n;
        const std::size_t stop = bucket_stop < end ? bucket_stop : end;
        codes_run(x, i, stop, scales[j], levels, key, codes + (i - begin), mix);
        i = stop;
    }
}

}  // namespace detail
}  // namespace laqcore
