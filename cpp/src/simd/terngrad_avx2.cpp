// AVX2 TernGrad block functions (scalar references in terngrad.cpp; formula in
// terngrad.hpp): the two lane-order statistics passes and the stochastic ternary codes.
#include <immintrin.h>

#include <cfloat>

#include "kernels_avx2.hpp"
#include "lanes_avx2.hpp"
#include "rng_avx2.hpp"

namespace laqcore {
namespace detail {
void sum_max_block_avx2(const float* x, std::size_t count, double* sum, float* max_abs,
                        bool* nonfinite) {
    FiniteAbs finite_abs;
    __m256 m = _mm256_setzero_ps();
    Lanes s;
    const std::size_t full = count / 8 * 8;
    for (std::size_t i = 0; i < full; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        m = _mm256_max_ps(m, finite_abs(v));  // order independent for finite input (else an error)
        s.add_widened(v);
    }
    float mx = hmax(m);
    bool bad = finite_abs.any_nonfinite();
    s.spill();
    for (std::size_t i = full; i < count; ++i) {
        const float a = __builtin_fabsf(x[i]);
        bad |= !(a <= FLT_MAX);
        mx = a > mx ? a : mx;
        s.tail[i - full] += static_cast<double>(x[i]);
    }
    *sum = s.total();
    *max_abs = mx;
    *nonfinite = bad;
}

double centered_sumsq_avx2(const float* x, std::size_t count, double mean) {
    const __m256d vmean = _mm256_set1_pd(mean);
    Lanes s;
    const std::size_t full = count / 8 * 8;
    for (std::size_t i = 0; i < full; i += 8) {
        s.add_squares(_mm256_sub_pd(lo_pd(x + i), vmean), _mm256_sub_pd(hi_pd(x + i), vmean));
    }
    s.spill();
    for (std::size_t i = full; i < count; ++i) {
        const double d = static_cast<double>(x[i]) - mean;
        s.tail[i - full] += d * d;
    }
    return s.total();
}

void terngrad_codes_avx2(const float* x, std::size_t begin, std::size_t end, float threshold,
                         float scaler, std::uint64_t key, std::uint8_t* codes) {
    const Mixer mix;
    Uniforms8 uniforms(key, begin);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256 vthr = _mm256_set1_ps(threshold);
    const __m256 vscaler = _mm256_set1_ps(scaler);
    const __m256 zero = _mm256_setzero_ps();
    const __m256i one = _mm256_set1_epi32(1);
    const bool positive = scaler > 0.0f;
    std::size_t i = begin;
    for (; i + 8 <= end; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        // a = |v| < thr ? |v| : thr;  p = a / scaler (0 if scaler == 0);  keep = u < p
        const __m256 a = _mm256_min_ps(_mm256_and_ps(v, abs_mask), vthr);
        const __m256 p = positive ? _mm256_div_ps(a, vscaler) : zero;
        const __m256 u = uniforms.next(mix);
        const __m256i keep = _mm256_castps_si256(_mm256_cmp_ps(u, p, _CMP_LT_OQ));
        const __m256i negative = _mm256_castps_si256(_mm256_cmp_ps(v, zero, _CMP_LT_OQ));
        // keep << (v < 0): 1 + [v < 0] where kept, else 0.
        const __m256i code =
            _mm256_and_si256(keep, _mm256_sub_epi32(one, negative));  // negative is -1 / 0
        const __m128i c16 =
            _mm_packus_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + (i - begin)),
                         _mm_packus_epi16(c16, c16));
    }
    for (; i < end; ++i) {
        const float v = x[i];
        const float av = __builtin_fabsf(v);
        const float a = av < threshold ? av : threshold;
        const float p = scaler > 0.0f ? a / scaler : 0.0f;
        const unsigned keep = uniform01_s(key, i) < p ? 1u : 0u;
        codes[i - begin] = static_cast<std::uint8_t>(keep << (v < 0.0f ? 1 : 0));
    }
}

}  // namespace detail
}  // namespace laqcore
